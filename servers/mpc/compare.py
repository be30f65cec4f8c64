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

from splitface.servers.mpc import truncation
from splitface.servers.mpc.beaver import mul_many
from splitface.servers.mpc.errors import ShapeError
from splitface.servers.mpc.prep.material import cmp_chunks
from splitface.servers.mpc.share import AuthShare, concat
from splitface.shared import ring
from splitface.shared.fixedpoint import K

DEFAULT_BITS = 36  # |x| < 2^35 in ring units: |value| < 2^19 at F = 16 fractional bits
CHUNK = 5  # bits per one-hot chunk; see docs/PROTOCOL.md for the measured trade-off


def _open_masked(x: AuthShare, bits: int, skip: int = 0
                 ) -> tuple[np.ndarray, list[AuthShare]]:
    """Open c = x + r; returns the low 64 bits of c and the one-hots of (r >> skip)."""
    party = x.party
    m = party.prep.compare_masks(x.shape, bits, chunk_for(bits), skip)
    (c,) = party.open((ring.add(x.val, m.r[0]), ring.add(x.mac, m.r[1])))
    onehots = [AuthShare(party, v, mac) for v, mac in m.onehots]
    return c[0], onehots


def _pick(onehot: AuthShare, idx: np.ndarray) -> AuthShare:
    """onehot[..., idx] elementwise (local)."""
    full = np.broadcast_to(idx.astype(np.intp)[None, ..., None], (2, *idx.shape, 1))
    return AuthShare(onehot.party, np.take_along_axis(onehot.val, full, -1)[..., 0],
                     np.take_along_axis(onehot.mac, full, -1)[..., 0])


def _reduce(lists: list[list[tuple[AuthShare, AuthShare | None]]]
            ) -> list[tuple[AuthShare, AuthShare | None]]:
    """Fold each list of (lt, eq) pairs (most significant first) to one pair with
    (lt, eq) o (lt', eq') = (lt + eq lt', eq eq'); all lists advance together, one
    batched round of products per level."""
    while any(len(pairs) > 1 for pairs in lists):
        mults, plans = [], []
        for pairs in lists:
            plan = []
            for i in range(0, len(pairs) - 1, 2):
                (lh, eh), (ll, el) = pairs[i], pairs[i + 1]
                if eh is None:
                    raise ShapeError("only the least significant chunk may lack an eq term")
                mults.append((eh, ll))
                if el is not None:
                    mults.append((eh, el))
                plan.append((lh, el is not None))
            plans.append(plan)
        prods = iter(mul_many(mults))
        folded = []
        for pairs, plan in zip(lists, plans, strict=True):
            new = []
            for lh, has_eq in plan:
                lt = lh + next(prods)
                new.append((lt, next(prods) if has_eq else None))
            if len(pairs) % 2:
                new.append(pairs[-1])
            folded.append(new)
        lists = folded
    return [pairs[0] for pairs in lists]


def _combine(pairs: list[tuple[AuthShare, AuthShare | None]]) -> AuthShare:
    """Fold (lt, eq) pairs, most significant first, into the overall lt; one round per level."""
    return _reduce([pairs])[0][0]


def _shared_low_chunks(cls: list[np.ndarray], bits: int) -> int:
    """How many low chunks hold the same public value for every shift (a function of the
    public opened values only): their terms and combining products are computed once."""
    if len(cls) < 2:
        return 0
    shared, offset = 0, 0
    for w in cmp_chunks(bits, chunk_for(bits))[:-1]:
        offset += w
        low = np.uint64((1 << offset) - 1)
        if not all(np.array_equal(cls[0] & low, cl & low) for cl in cls[1:]):
            break
        shared += 1
    return shared


def _top_bits(cls: list[np.ndarray], onehots: list[AuthShare], bits: int) -> AuthShare:
    """Bit bits-1 of each (c + t) - r, shift-major: the chunk terms folded together.

    Shifts that differ only above the low chunks (the sigmoid's +-2) share those chunks'
    fold: it runs once, in the same round as the per-shift fold of the high chunks, and
    one last product joins the two (7 products per element instead of 8 at 14 bits).
    """
    shared = _shared_low_chunks(cls, bits)
    if shared < 2:
        return _combine(_chunk_pairs(cls, onehots, bits, 0))
    pairs = _chunk_pairs(cls, onehots, bits, shared)
    (lt_hi, eq_hi), (lt_lo, _) = _reduce([pairs[:-shared], pairs[-shared:]])
    assert eq_hi is not None
    (joined,) = mul_many([(eq_hi, concat([lt_lo] * len(cls)))])
    return lt_hi + joined


def chunk_for(bits: int) -> int:
    """One-hot chunk width: 4 for short comparisons (fewer entries), 5 for long (fewer rounds)."""
    return 4 if bits <= 16 else CHUNK


def _chunk_coefs(cj: np.ndarray, w: int, top: bool, first: bool) -> list[np.ndarray]:
    """Coefficients over one chunk's one-hot entries for its (lt[, eq]) terms, given the
    public chunk value cj; entries are in {-1, 0, 1}."""
    v = np.arange(1 << w, dtype=np.int64)
    c = cj[..., None]
    if not top:
        lt = (v > c).astype(np.int64)
        return [lt] if first else [lt, (v == c).astype(np.int64)]
    wt = w - 1
    t, h = v & ((1 << wt) - 1), v >> wt
    c_top, c_hi = c & ((1 << wt) - 1), c >> wt
    eq_t = (t == c_top).astype(np.int64)
    lt_t = (t > c_top).astype(np.int64)
    xh = c_hi ^ h
    return [(1 - eq_t) * (xh ^ lt_t) + eq_t * xh, eq_t * (1 - 2 * xh)]


def _chunk_pairs(cls: list[np.ndarray], onehots: list[AuthShare], bits: int, shared: int
                 ) -> list[tuple[AuthShare, AuthShare | None]]:
    """(lt, eq) per chunk, most significant first, for public opened values c mod 2^bits.

    ``cls`` holds one opened vector (n,) per shift; every term is a {-1,0,1}-weighted sum
    of the chunk's one-hot entries, computed for all shifts in one exact BLAS product.
    The terms of all shifts are concatenated shift-major, except in the lowest ``shared``
    chunks, which are the same for every shift and computed once (n elements).
    """
    party = onehots[0].party
    pairs: list[tuple[AuthShare, AuthShare | None]] = []
    offset = 0
    widths = cmp_chunks(bits, chunk_for(bits))
    for j, w in enumerate(widths):
        top, first = j == len(widths) - 1, j == 0
        per_shift = [_chunk_coefs(((cl >> np.uint64(offset)) & np.uint64((1 << w) - 1))
                                  .astype(np.int64), w, top, first)
                     for cl in (cls[:1] if j < shared else cls)]
        terms = len(per_shift[0])
        coefs = np.stack([c[t] for t in range(terms) for c in per_shift], axis=-2)
        oh = onehots[j]
        val, mac = ring.weighted_sums(coefs, ring.parts32_f64(oh.val, oh.mac), 2)
        shifts = len(per_shift)

        def term(t: int, val=val, mac=mac, shifts=shifts) -> AuthShare:
            sl = slice(t * shifts, (t + 1) * shifts)
            return AuthShare(party, _shift_major(val[..., sl]), _shift_major(mac[..., sl]))

        pairs.append((term(0), term(1) if terms > 1 else None))
        offset += w
    pairs.reverse()
    return pairs


def _shift_major(a: np.ndarray) -> np.ndarray:
    """(2, n, shifts) -> (2, shifts * n), shift-major."""
    return np.ascontiguousarray(np.swapaxes(a, 1, 2)).reshape(2, -1)


def ltz_shifted(x: AuthShare, shifts: list[int], bits: int | None = None, skip: int = 0
                ) -> list[AuthShare]:
    """[x + t < 0] for several public shifts t (ring units) from ONE masked opening.

    (x + t)' + r = c + t, so every shift reuses the opened c and the same one-hot masks;
    the combining products of all shifts run in one batched tree. Needs
    |x + t| < 2^(skip+bits-1) - 2^skip for every t. With ``skip`` > 0 the test is coarse:
    the carry out of the low skip bits is ignored, so it answers [x + t < -2^skip] in
    some cases and can differ from the exact test only for x + t in [-2^skip, 0).
    """
    bits = bits or DEFAULT_BITS
    _check_window(skip, bits)
    offset = 1 << (skip + bits - 1)
    with x.party.op("compare"):
        c, onehots = _open_masked(x.add_ring(ring.from_pyint(offset)).reshape(-1), bits, skip)
        return _sign_tests(c, offset, shifts, skip, bits, onehots, x.shape)


def truncate_and_test(x: AuthShare, m: int, shifts: list[int], skip: int, bits: int
                      ) -> tuple[AuthShare, list[AuthShare]]:
    """[x >> m] and coarse sign tests [x + t < 0] for public shifts t, from ONE opening.

    The truncation's opened c = x + 2^(K-2) + r also masks x + t + 2^(skip+bits-1) after a
    public adjustment, and the dealer adds one-hot chunks of (r >> skip) mod 2^bits, so the
    bits-bit comparison runs on (c >> skip). Ignoring the carry out of the low ``skip`` bits
    makes a test answer [x + t < -2^skip] instead of [x + t < 0] in some cases: it can differ
    from the exact test only for x + t in [-2^skip, 0). Needs |x| < 2^(K-2) for the
    truncation and |x + t| < 2^(skip+bits-1) - 2^skip for every t.
    """
    truncation.check_shift(m)
    _check_window(skip, bits)
    party = x.party
    flat = x.reshape(-1)
    with party.op("trunc_cmp"):
        mask = party.prep.trunc_compare_masks(flat.shape, m, skip, bits, chunk_for(bits))
        c = truncation.open_offset(flat, mask.trunc)
        onehots = [AuthShare(party, v, mac) for v, mac in mask.onehots]
        tests = _sign_tests(c[0], truncation.TRUNC_OFFSET, shifts, skip, bits, onehots,
                            x.shape)
    return truncation.finish(flat, c, mask.trunc, m).reshape(x.shape), tests


def _check_window(skip: int, bits: int) -> None:
    if skip < 0 or bits < 2 or skip + bits > K:
        raise ValueError(f"comparison window skip={skip} bits={bits} out of range")


def _sign_tests(c: np.ndarray, offset: int, shifts: list[int], skip: int, bits: int,
                onehots: list[AuthShare], shape: tuple[int, ...]) -> list[AuthShare]:
    """[x + t < 0] per shift, from the opened low word c = x + offset + r (mod 2^64) and
    the one-hot chunks of (r >> skip) mod 2^bits: the comparison reads the bits-bit window
    above the low skip bits of c + t + 2^(skip+bits-1) - offset."""
    base = (1 << (skip + bits - 1)) - offset
    top_bit = _top_bits([((c + np.uint64((base + t) % (1 << 64))) >> np.uint64(skip))
                         & _low_mask(bits) for t in shifts], onehots, bits)
    out, n = 1 - top_bit, c.size
    return [out[k * n:(k + 1) * n].reshape(shape) for k in range(len(shifts))]


def _low_mask(bits: int) -> np.uint64:
    return np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(2**64 - 1)


def ltz(x: AuthShare, bits: int | None = None, skip: int = 0) -> AuthShare:
    """[x < 0] as a shared bit, for |x| < 2^(skip+bits-1) - 2^skip in ring units
    (coarse within 2^skip below zero when skip > 0, see ltz_shifted)."""
    return ltz_shifted(x, [0], bits, skip)[0]


def eqz(x: AuthShare, bits: int | None = None) -> AuthShare:
    """[x == 0] as a shared bit, for |x| < 2^(bits-1) in ring units."""
    bits = bits or DEFAULT_BITS
    party = x.party
    with party.op("compare"):
        c, onehots = _open_masked(x, bits)
        cl = c & _low_mask(bits)
        eqs, offset = [], 0
        for w, oh in zip(cmp_chunks(bits, chunk_for(bits)), onehots, strict=True):
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


def argmax(x: AuthShare, bits: int | None = None, skip: int = 0
           ) -> tuple[AuthShare, AuthShare]:
    """(max, index of the first maximum) of a shared vector, by a tournament.

    ceil(log2 N) levels; each compares adjacent survivors and selects value and index
    with one batched product. ``bits`` bounds the pairwise differences
    (|a-b| < 2^(skip+bits-1) - 2^skip); ``skip`` > 0 makes the comparisons coarse (a
    difference in [-2^skip, 0) may count as a tie, which keeps the first).
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
            b_wins = ltz(a - b, bits, skip)
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
