"""Comparison, equality, selection and argmax on authenticated shares.

Comparison with a dealer mask r whose low L bits come with one-hot encodings of their
5-bit chunks (docs/PROTOCOL.md, "comparison"): for |x| < 2^(L-1),
  1. x' = x + 2^(L-1) lies in [0, 2^L); open c = x' + r (uniform 128-bit mask);
  2. with c_L = c mod 2^L and r_L = r mod 2^L, bit L-1 of x' is
     c_{L-1} XOR r_{L-1} XOR [c_L mod 2^(L-1) < r_L mod 2^(L-1)];
  3. per chunk j, [c_j < r_j] and [c_j == r_j] are sums of one-hot entries selected by
     the public c_j, so they cost no interaction; the top chunk also folds in bit L-1;
  4. chunks combine most-significant first, (lt, eq) o (lt', eq') = (lt + eq lt', eq eq'),
     in a tree of Beaver products: ceil(log2(#chunks)) rounds;
  5. x < 0 iff bit L-1 of x' is 0.
Every value involved is authenticated, so a cheating server is caught by the MAC check.
"""

from __future__ import annotations

import numpy as np

from splitface.servers.mpc.beaver import mul_many
from splitface.servers.mpc.errors import ShapeError
from splitface.servers.mpc.prep.material import cmp_chunks
from splitface.servers.mpc.share import AuthShare, concat
from splitface.shared import ring

DEFAULT_BITS = 36  # |x| < 2^35 in ring units: |value| < 2^19 at F = 16 fractional bits
CHUNK = 5  # bits per one-hot chunk; see docs/PROTOCOL.md for the measured trade-off


def _open_masked(x: AuthShare, bits: int) -> tuple[np.ndarray, list[AuthShare]]:
    party = x.party
    m = party.prep.compare_masks(x.shape, bits, CHUNK)
    (c,) = party.open((ring.add(x.val, m.r[0]), ring.add(x.mac, m.r[1])))
    onehots = [AuthShare(party, v, mac) for v, mac in m.onehots]
    return ring.low_bits(c, bits), onehots


def _weighted(onehot: AuthShare, coef: np.ndarray) -> AuthShare:
    """sum_v coef[..., v] * onehot[..., v] for coefficients in {-1, 0, 1} (local).

    Selecting with 0/1 masks avoids full 128-bit products: one masked limb sum each
    for the +1 and the -1 entries.
    """
    val = ring.masked_sum(onehot.val, coef == 1)
    mac = ring.masked_sum(onehot.mac, coef == 1)
    if np.any(coef == -1):
        val = ring.sub(val, ring.masked_sum(onehot.val, coef == -1))
        mac = ring.sub(mac, ring.masked_sum(onehot.mac, coef == -1))
    return AuthShare(onehot.party, val, mac)


def _pick(onehot: AuthShare, idx: np.ndarray) -> AuthShare:
    """onehot[..., idx] elementwise (local)."""
    full = np.broadcast_to(idx.astype(np.intp)[None, ..., None], (2, *idx.shape, 1))
    return AuthShare(onehot.party, np.take_along_axis(onehot.val, full, -1)[..., 0],
                     np.take_along_axis(onehot.mac, full, -1)[..., 0])


def _combine(pairs: list[tuple[AuthShare, AuthShare | None]]) -> AuthShare:
    """Fold (lt, eq) pairs, most significant first, into the overall lt; one round per level."""
    while len(pairs) > 1:
        mults, plan = [], []
        for i in range(0, len(pairs) - 1, 2):
            (lh, eh), (ll, el) = pairs[i], pairs[i + 1]
            if eh is None:
                raise ShapeError("only the least significant chunk may lack an eq term")
            mults.append((eh, ll))
            if el is not None:
                mults.append((eh, el))
            plan.append((lh, el is not None))
        prods = iter(mul_many(mults))
        new = []
        for lh, has_eq in plan:
            lt = lh + next(prods)
            new.append((lt, next(prods) if has_eq else None))
        if len(pairs) % 2:
            new.append(pairs[-1])
        pairs = new
    return pairs[0][0]


def ltz(x: AuthShare, bits: int | None = None) -> AuthShare:
    """[x < 0] as a shared bit, for |x| < 2^(bits-1) in ring units."""
    bits = bits or DEFAULT_BITS
    party = x.party
    with party.op("compare"):
        xp = x.add_ring(ring.from_pyint(1 << (bits - 1)))
        cl, onehots = _open_masked(xp, bits)
        widths = cmp_chunks(bits, CHUNK)
        pairs: list[tuple[AuthShare, AuthShare | None]] = []
        offset = 0
        for j, w in enumerate(widths):
            cj = ((cl >> np.uint64(offset)) & np.uint64((1 << w) - 1)).astype(np.int64)
            v = np.arange(1 << w, dtype=np.int64)
            if j < len(widths) - 1:
                lt = _weighted(onehots[j], (v > cj[..., None]).astype(np.int64))
                pairs.append((lt, _pick(onehots[j], cj) if j > 0 else None))
            else:
                wt = w - 1
                t, h = v & ((1 << wt) - 1), v >> wt
                c_top, c_hi = cj & ((1 << wt) - 1), cj >> wt
                eq_t = (t == c_top[..., None]).astype(np.int64)
                lt_t = (t > c_top[..., None]).astype(np.int64)
                xh = c_hi[..., None] ^ h
                f_a = (1 - eq_t) * (xh ^ lt_t) + eq_t * xh
                f_b = eq_t * (1 - 2 * xh)
                pairs.append((_weighted(onehots[j], f_a), _weighted(onehots[j], f_b)))
            offset += w
        pairs.reverse()
        top_bit = _combine(pairs)
    return 1 - top_bit


def eqz(x: AuthShare, bits: int | None = None) -> AuthShare:
    """[x == 0] as a shared bit, for |x| < 2^(bits-1) in ring units."""
    bits = bits or DEFAULT_BITS
    party = x.party
    with party.op("compare"):
        cl, onehots = _open_masked(x, bits)
        eqs, offset = [], 0
        for w, oh in zip(cmp_chunks(bits, CHUNK), onehots, strict=True):
            cj = ((cl >> np.uint64(offset)) & np.uint64((1 << w) - 1)).astype(np.int64)
            eqs.append(_pick(oh, cj))
            offset += w
        while len(eqs) > 1:
            prods = mul_many([(eqs[i], eqs[i + 1]) for i in range(0, len(eqs) - 1, 2)])
            eqs = prods + ([eqs[-1]] if len(eqs) % 2 else [])
    return AuthShare(party, eqs[0].val, eqs[0].mac, 0)


def select(bit: AuthShare, if_one: AuthShare, if_zero: AuthShare) -> AuthShare:
    """bit ? if_one : if_zero, elementwise."""
    (d,) = mul_many([(bit, if_one - if_zero)])
    return if_zero + d


def argmax(x: AuthShare, bits: int | None = None) -> tuple[AuthShare, AuthShare]:
    """(max, index of the first maximum) of a shared vector, by a tournament.

    ceil(log2 N) levels; each compares adjacent survivors and selects value and index
    with one batched product. ``bits`` bounds the pairwise differences (|a-b| < 2^(bits-1)).
    """
    if x.ndim != 1 or x.shape[0] == 0:
        raise ShapeError(f"argmax needs a non-empty vector, got shape {x.shape}")
    party = x.party
    vals = x
    idx = party_constant(party, np.arange(x.shape[0], dtype=np.int64))
    with party.op("argmax"):
        while vals.shape[0] > 1:
            n, h = vals.shape[0], vals.shape[0] // 2
            a, b = vals[0:2 * h:2], vals[1:2 * h:2]
            ia, ib = idx[0:2 * h:2], idx[1:2 * h:2]
            b_wins = (a - b).ltz(bits)
            dv, di = mul_many([(b_wins, b - a), (b_wins, ib - ia)])
            nv, ni = a + dv, ia + di
            if n % 2:
                nv, ni = concat([nv, vals[n - 1:n]]), concat([ni, idx[n - 1:n]])
            vals, idx = nv, ni
    return vals.reshape(()), idx.reshape(())


def party_constant(party, value: np.ndarray, frac: int = 0) -> AuthShare:
    """A public integer array as an authenticated share (party 0 holds it, MACs from alpha_i)."""
    c = ring.shl(ring.from_int64(np.asarray(value, dtype=np.int64)), frac)
    val = c if party.id == 0 else np.zeros_like(c)
    return AuthShare(party, val, party.alpha_times(c), frac)
