"""Comparisons, ReLU, interval tests and secret-index one-hots from one masked opening each.

Every function opens c = x + r for a uniform 128-bit dealer mask r (so c says nothing about
x) and evaluates a function-secret-sharing key from the dealer on public functions of c
(fss/dcf.py, fss/dpf.py). The keys' payloads carry the value and its MAC share together,
so every result is an authenticated share and a server that evaluates wrongly is caught
by the MAC check like any other tamper (docs/PROTOCOL.md, "Comparisons by FSS").

Sign test for |x| < 2^(skip+bits-1) (``ltz``): with x' = x + 2^(skip+bits-1) and
c~ = (c + 2^(skip+bits-1)) mod 2^(skip+bits), the top bit of x' >> skip is
  top(c~ >> skip) XOR s XOR [(c~ >> skip) mod 2^(bits-1) < (r >> skip) mod 2^(bits-1)],
s = bit skip+bits-1 of r. The DCF key gives (1 - 2s) * [ . < . ]; adding the dealer's [s]
yields s XOR [ . < . ], and [x < 0] is that or its complement as top(c~) is 0 or 1. With
skip = 0 the test is exact for every |x| < 2^(bits-1); bits = 64 covers all of Z_2^64.
With skip > 0 the borrow out of the low bits is ignored: a test may answer [x + t < 0]
wrongly only for x + t in [-2^skip, 0).
"""

from __future__ import annotations

import numpy as np

from splitface.servers.mpc import truncation
from splitface.servers.mpc.beaver import mul_many
from splitface.servers.mpc.errors import ShapeError
from splitface.servers.mpc.fss import dcf, dpf, kernels
from splitface.servers.mpc.prep.base import LtzMask, join_keys
from splitface.servers.mpc.prep.material import FssKey
from splitface.servers.mpc.rounds import Opening, run_round
from splitface.servers.mpc.share import AuthShare, concat
from splitface.shared import ring
from splitface.shared.fixedpoint import K

DEFAULT_BITS = K  # exact for any x in Z_2^64 read as a signed integer
_ALL64 = np.uint64(2**64 - 1)


def _mask(bits: int) -> np.uint64:
    return np.uint64((1 << bits) - 1) if bits < 64 else _ALL64


def _check_window(skip: int, bits: int) -> None:
    if skip < 0 or bits < 2 or skip + bits > K:
        raise ValueError(f"comparison window skip={skip} bits={bits} out of range")


def eval_key(party_id: int, key: FssKey, points: np.ndarray) -> np.ndarray:
    """This party's shares (2, K, E, P) of a DCF key's payload at points (K, E)."""
    spec = key.spec
    if spec.kind != "dcf" or points.shape[0] != spec.keys:
        raise ShapeError(f"{points.shape[0]} point rows for {spec.keys} {spec.kind} keys")
    return dcf.eval_dcf(party_id, spec.n, key.root, *key.corrections, points)


def _share(party, out: np.ndarray, col: int, shape: tuple[int, ...]) -> AuthShare:
    """The value/MAC pair at payload columns (col, col + P/2) of an evaluation."""
    half = out.shape[-1] // 2
    return AuthShare(party, out[..., col].reshape((2, *shape)),
                     out[..., col + half].reshape((2, *shape)))


def _sign_tests(party, c64: np.ndarray, offset: int, shifts: list[int], skip: int, bits: int,
                sign: tuple[np.ndarray, np.ndarray], key: FssKey, shape: tuple[int, ...]
                ) -> list[AuthShare]:
    """[x + t < 0] per shift t, from the opened low word c64 = x + offset + r (mod 2^64)."""
    base = (1 << (skip + bits - 1)) - offset
    wins = [((c64 + np.uint64((base + t) % (1 << 64))) & _mask(skip + bits)) >> np.uint64(skip)
            for t in shifts]
    points = np.stack([w & _mask(bits - 1) for w in wins], axis=1)  # (n, E)
    out = eval_key(party.id, key, points)  # (2, n, E, 2)
    s = AuthShare(party, sign[0].reshape(2, -1), sign[1].reshape(2, -1))
    tests = []
    for e, w in enumerate(wins):
        u = s + _share(party, out[:, :, e], 0, (w.size,))  # s XOR [low(c~) < low(r)]
        top = (w >> np.uint64(bits - 1)).astype(bool)
        tests.append(_pick(top, u, 1 - u).reshape(shape))
    return tests


def _pick(flag: np.ndarray, a: AuthShare, b: AuthShare) -> AuthShare:
    """a where the public flag is set, else b (local)."""
    f = flag.reshape((1, *flag.shape))
    return AuthShare(a.party, np.where(f, a.val, b.val), np.where(f, a.mac, b.mac), a.frac)


def ltz_opening(x: AuthShare, shifts: list[int], bits: int | None = None, skip: int = 0
                ) -> Opening:
    """The round of :func:`ltz_shifted` (to run beside other openings)."""
    bits = bits or DEFAULT_BITS
    _check_window(skip, bits)
    party = x.party
    flat = x.reshape(-1)
    m = party.prep.ltz_masks(flat.shape, bits, skip)

    def finish(opened: list[np.ndarray]) -> list[AuthShare]:
        return _sign_tests(party, opened[0][0], 0, shifts, skip, bits, m.sign, m.key,
                           x.shape)

    return Opening([(ring.add(flat.val, m.r[0]), ring.add(flat.mac, m.r[1]))], finish)


def ltz_shifted(x: AuthShare, shifts: list[int], bits: int | None = None, skip: int = 0
                ) -> list[AuthShare]:
    """[x + t < 0] for several public shifts t (ring units) from ONE masked opening.

    Needs |x + t| < 2^(skip+bits-1) - 2^skip for every t (bits=64, skip=0: any x, t with
    x + t not overflowing Z_2^64). With ``skip`` > 0 the test is coarse (module docstring).
    """
    with x.party.op("compare"):
        return run_round(x.party, [ltz_opening(x, shifts, bits, skip)])[0]


def ltz(x: AuthShare, bits: int | None = None, skip: int = 0) -> AuthShare:
    """[x < 0] as a shared bit, exact for |x| < 2^(bits-1) in ring units (default: any x);
    coarse within 2^skip below zero when skip > 0."""
    return ltz_shifted(x, [0], bits, skip)[0]


def truncate_and_test(x: AuthShare, m: int, shifts: list[int], skip: int, bits: int
                      ) -> tuple[AuthShare, list[AuthShare]]:
    """[x >> m] and sign tests [x + t < 0] for public shifts t, from ONE opening.

    The truncation's c = x + 2^(K-2) + r is also the masked value the tests need (after a
    public adjustment), and the dealer's trunc_ltz item adds the sign bit of r's window and
    a DCF key on it. Needs |x| < 2^(K-2) for the truncation and |x + t| < 2^(skip+bits-1)
    - 2^skip for every t; coarse within 2^skip below zero when skip > 0.
    """
    truncation.check_shift(m)
    _check_window(skip, bits)
    party = x.party
    flat = x.reshape(-1)
    with party.op("trunc_cmp"):
        mask = party.prep.trunc_ltz_masks(flat.shape, m, skip, bits)
        c = truncation.open_offset(flat, mask.trunc)
        tests = _sign_tests(party, c[0], truncation.TRUNC_OFFSET, shifts, skip, bits,
                            mask.sign, mask.key, x.shape)
    return truncation.finish(flat, c, mask.trunc, m).reshape(x.shape), tests


def relu(x: AuthShare, bits: int, skip: int = 0) -> AuthShare:
    """[x >= 0] * x from ONE opening and no product, for |x| < 2^(skip+bits-1) - 2^skip;
    with ``skip`` > 0 the test is coarse: x in [-2^skip, 0) may come back as x, not 0.

    With b = [x >= 0] and x = c - r (c opened, r the dealer's mask): b*x = c*[b] - [b*r];
    the DCF payload (1 - 2s) * (1, r) gives [u] and [u*r] for u = s XOR [ . < . ], and b
    is u or 1 - u as the public top bit says, so [b] and [b*r] are local (BCG+21's spline
    idea with the mask in the payload).
    """
    with x.party.op("relu"):
        return run_round(x.party, [relu_opening(x, bits, skip)])[0]


def relu_opening(x: AuthShare, bits: int, skip: int = 0) -> Opening:
    """The round of :func:`relu` (to run beside other openings)."""
    _check_window(skip, bits)
    party = x.party
    flat = x.reshape(-1)
    m = party.prep.ltz_masks(flat.shape, bits, skip, relu=True)

    def finish(opened: list[np.ndarray]) -> AuthShare:
        y = relu_from(party, opened[0], m, skip, bits)
        return AuthShare(party, y.val.reshape((2, *x.shape)), y.mac.reshape((2, *x.shape)),
                         x.frac)

    return Opening([(ring.add(flat.val, m.r[0]), ring.add(flat.mac, m.r[1]))], finish)


def relu_from(party, c: np.ndarray, m: LtzMask, skip: int, bits: int, *,
              compiled: bool | None = None) -> AuthShare:
    """The local half of :func:`relu` for the opened c = x + r (2, n): evaluate the DCF key,
    then b*c - [b*r]. ``compiled`` picks kernels.relu_finish (default: with numba) or the
    numpy steps below, its reference."""
    w = ((c[0] + np.uint64(1 << (skip + bits - 1))) & _mask(skip + bits)) >> np.uint64(skip)
    out = eval_key(party.id, m.key, (w & _mask(bits - 1)).reshape(-1, 1))[:, :, 0]
    if kernels.AVAILABLE if compiled is None else compiled:
        y_v, y_m = np.empty(c.shape, np.uint64), np.empty(c.shape, np.uint64)
        arrays = [np.ascontiguousarray(a) for a in (party.alpha, c, *m.r, *m.sign, *m.sign_r,
                                                     out)]  # one specialization (warmup.py)
        kernels.relu_finish(party.id, *arrays, skip, bits, y_v, y_m)
        return AuthShare(party, y_v, y_m)
    n = (c.shape[1],)
    r = AuthShare(party, m.r[0], m.r[1])
    u = AuthShare(party, m.sign[0], m.sign[1]) + _share(party, out, 0, n)
    ur = AuthShare(party, m.sign_r[0], m.sign_r[1]) + _share(party, out, 1, n)
    top = (w >> np.uint64(bits - 1)).astype(bool)
    b = _pick(top, 1 - u, u)  # [x >= 0] = MSB of x + 2^(bits-1)
    br = _pick(top, r - ur, ur)
    return b.mul_ring(c) - br


def in_interval(x: AuthShare, lo: int, size: int, n: int = K) -> AuthShare:
    """[(x - lo) mod 2^n < size] as a shared bit, exact (x read mod 2^n; lo, size public).

    One DCF key at r mod 2^n evaluated at two points: for y = (c - r) mod 2^n,
    [y < T] = [c' < T] + [(c' - T) mod 2^n < r] - [c' < r] with c' = (c - lo) mod 2^n.
    """
    with x.party.op("interval"):
        return run_round(x.party, [interval_opening(x, lo, size, n)])[0]


def interval_opening(x: AuthShare, lo: int, size: int, n: int = K) -> Opening:
    """The round of :func:`in_interval` (to run beside other openings)."""
    if not 1 <= n <= K or not 0 < size <= 1 << n:
        raise ValueError(f"interval of size {size} in 2^{n} is out of range")
    party = x.party
    flat = x.reshape(-1)
    m = party.prep.interval_masks(flat.shape, n)

    def finish(opened: list[np.ndarray]) -> AuthShare:
        return interval_from(party, opened[0][0], m.key, lo, size, n).reshape(x.shape)

    return Opening([(ring.add(flat.val, m.r[0]), ring.add(flat.mac, m.r[1]))], finish)


def interval_from(party, c64: np.ndarray, key: FssKey, lo: int, size: int, n: int
                   ) -> AuthShare:
    """[(c - r - lo) mod 2^n < size] for a key at r mod 2^n (local)."""
    cy = (c64 - np.uint64(lo % (1 << 64))) & _mask(n)
    cy2 = (cy - np.uint64(size % (1 << 64))) & _mask(n)
    out = eval_key(party.id, key, np.stack([cy2, cy], axis=1))  # (2, K, 2, 2)
    k = cy.size
    res = _share(party, out[:, :, 0], 0, (k,)) - _share(party, out[:, :, 1], 0, (k,))
    return res.add_ring(ring.from_uint64((cy < np.uint64(size % (1 << 64))).astype(np.uint64))
                        if size < 1 << n else ring.from_uint64(np.ones(k, np.uint64)))


def intervals_from(party, tests: list[tuple[np.ndarray, FssKey]], lo: int, size: int, n: int
                   ) -> list[AuthShare]:
    """:func:`interval_from` for several (opened c, key) pairs of one interval in ONE
    evaluation pass (a batch's probe checks: K x 128 keys at once)."""
    sizes = [c.size for c, _ in tests]
    joined = interval_from(party, np.concatenate([c.reshape(-1) for c, _ in tests]),
                           join_keys([k for _, k in tests]), lo, size, n)
    ends = np.cumsum(sizes)
    return [joined[e - s:e] for s, e in zip(sizes, ends, strict=True)]


def eqz(x: AuthShare, bits: int | None = None) -> AuthShare:
    """[x == 0] as a shared bit, exact for |x| < 2^(bits-1) (default: any x in Z_2^64)."""
    return in_interval(x, 0, 1, bits or DEFAULT_BITS)


def one_hot(j: AuthShare, bits: int) -> AuthShare:
    """The authenticated one-hot vectors (length 2^bits) of secret indices j mod 2^bits,
    from ONE opening of j + r and DPF keys at r (full-domain evaluation): shape (2^bits,)
    for one index, (K, 2^bits) for K."""
    with j.party.op("lookup"):
        return run_round(j.party, [one_hot_opening(j, bits)])[0]


def one_hot_opening(j: AuthShare, bits: int) -> Opening:
    """The round of :func:`one_hot` (to run beside other openings); K indices share one
    dealer request of K keys."""
    party = j.party
    k = j.size
    if k < 1:
        raise ShapeError("one_hot takes at least one secret index")
    m = party.prep.lookup_mask(bits, k)
    flat = j.reshape(-1)

    def finish(opened: list[np.ndarray]) -> AuthShare:
        val, mac = one_hot_from(party, opened[0][0], m.key, bits)
        shape = (1 << bits,) if k == 1 else (k, 1 << bits)
        return AuthShare(party, val.reshape(2, *shape), mac.reshape(2, *shape))

    return Opening([(ring.add(flat.val, m.r[0]), ring.add(flat.mac, m.r[1]))], finish)


def one_hot_from(party, c64: np.ndarray, key: FssKey, bits: int, *,
                 compiled: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Value and MAC shares (2, K, 2^bits) of the one-hots from the opened low words c64
    (K,) of j + r and DPF keys at r with payload (1, alpha): entry t of row i is 1 iff
    j_i = t, i.e. V_i((c_i - t) mod 2^bits) shares [c_i - t == r_i]. ``compiled`` picks
    kernels.dpf_one_hot (default: where it runs) or the numpy gather below."""
    spec = key.spec
    if spec.width != 2 or spec.n != bits:
        raise ShapeError(f"a one-hot needs DPF keys of width 2 on {bits} bits")
    k = spec.keys
    low = np.ascontiguousarray(c64 & np.uint64((1 << bits) - 1), dtype=np.uint64)
    if kernels.DCF if compiled is None else compiled:
        val = np.empty((2, k, 1 << bits), dtype=np.uint64)
        mac = np.empty((2, k, 1 << bits), dtype=np.uint64)
        kernels.dpf_one_hot(party.id, bits, *[np.ascontiguousarray(a) for a in (
            key.root, *key.corrections)], dpf.ROUND_KEYS, low, val, mac)
        return val, mac
    leaves = dpf.eval_all(party.id, bits, key.root, *key.corrections)
    idx = (low.astype(np.int64)[:, None] - np.arange(1 << bits, dtype=np.int64)) \
        & ((1 << bits) - 1)
    sel = leaves[:, np.arange(k)[:, None], idx]  # (2, K, 2^bits, 2)
    return np.ascontiguousarray(sel[..., 0]), np.ascontiguousarray(sel[..., 1])


def select(bit: AuthShare, if_one: AuthShare, if_zero: AuthShare) -> AuthShare:
    """bit ? if_one : if_zero, elementwise."""
    (d,) = mul_many([(bit, if_one - if_zero)])
    return if_zero + d


def argmax(x: AuthShare, bits: int | None = None, skip: int = 0
           ) -> tuple[AuthShare, AuthShare]:
    """(max, index of the first maximum) of a shared vector, by a tournament.

    ceil(log2 N) levels; each compares adjacent survivors (one opening) and selects value
    and index with one batched product. ``bits`` bounds the pairwise differences
    (|a-b| < 2^(skip+bits-1) - 2^skip); ``skip`` > 0 makes the comparisons coarse (a
    difference in [-2^skip, 0) may count as a tie, which keeps the first), and such losses
    add up over levels: the pick is within ceil(log2 N) * (2^skip - 1) of the maximum.
    Identification uses the one-round-per-level packed tournament in
    recognition/identify.py instead (exact comparisons, so no loss builds up).
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
