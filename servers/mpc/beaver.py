"""Beaver multiplication, matrix products and the fixed-model product.

Elementwise product of [x] and [y] with an authenticated triple ([a], [b], [c = ab]):
  1. open d = x - a and e = y - b in one round (MACs queued for the check);
  2. [z] = [c] + d[b] + e[a] + de  (party 0 adds the public de; MACs add alpha_i * de).
Matrix products use the same steps with matrix triples (SecureML).

Fixed model W (a gallery or a trained classifier): open E = W - B once with a dealer
mask B kept by the dealer; each query x then needs only a fresh (A, C = A @ B) and the
opening of d = x - A:  x @ W = x @ E + d @ B + C.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from splitface.servers.mpc import ring_kernels
from splitface.servers.mpc.errors import ShapeError
from splitface.servers.mpc.prep.material import fan_index
from splitface.servers.mpc.rounds import Opening, run_round
from splitface.servers.mpc.share import AuthShare
from splitface.shared import fixedpoint, ring
from splitface.shared.fixedpoint import F

# Fixed operands larger than this are MAC-checked as soon as they are opened, so the party
# drops its copies of the opened value and MAC (two gallery-sized arrays) at once.
EARLY_CHECK_ELEMENTS = 4 << 20


def rescale(z: AuthShare) -> AuthShare:
    """Bring a product back to F fractional bits (no-op for integer/bit products)."""
    return z.truncate(z.frac - F) if z.frac > F else z


def _squeeze_shape(m: int, p: int, left_vector: bool, right_vector: bool) -> tuple[int, ...]:
    """Result shape of a product whose operands were promoted to matrices."""
    return tuple(s for s, keep in ((m, not left_vector), (p, not right_vector)) if keep)


def mul_many(pairs: Sequence[tuple[AuthShare, AuthShare]]) -> list[AuthShare]:
    """Several elementwise products in one round and one triple request.

    Products that share their left operand (the same AuthShare object, e.g. a comparison
    bit that selects both a value and an index) share one triple factor a, so x - a is
    opened once for all of them (``fan_triples``).
    """
    if not pairs:
        return []
    party = pairs[0][0].party
    groups: dict[int, list[int]] = {}
    for i, (x, y) in enumerate(pairs):
        if x.party is not party or y.party is not party:
            raise ShapeError("operands belong to different parties")
        groups.setdefault(id(x), []).append(i)
    if len(groups) == len(pairs):
        return _mul_plain(pairs, party)
    return _mul_fan(pairs, list(groups.values()), party)


def _flatten(shares: Sequence[AuthShare]) -> tuple[np.ndarray, np.ndarray]:
    vals = [s.val.reshape(2, -1) for s in shares]
    macs = [s.mac.reshape(2, -1) for s in shares]
    return (ring.concat(vals) if len(vals) > 1 else vals[0],
            ring.concat(macs) if len(macs) > 1 else macs[0])


def _beaver(party, d: np.ndarray, e: np.ndarray, t_a: tuple[np.ndarray, np.ndarray],
            t_b: tuple[np.ndarray, np.ndarray], t_c: tuple[np.ndarray, np.ndarray]
            ) -> tuple[np.ndarray, np.ndarray]:
    """[c] + d[b] + e[a] + de, values and MACs (d, [a] already aligned with e, [b])."""
    de = ring.mul(d, e)
    val = ring.add(ring.add(t_c[0], ring.mul(d, t_b[0])), ring.mul(e, t_a[0]))
    if party.id == 0:
        val = ring.add(val, de)
    mac = ring.add(ring.add(ring.add(t_c[1], ring.mul(d, t_b[1])), ring.mul(e, t_a[1])),
                   party.alpha_times(de))
    return val, mac


def _split(pairs: Sequence[tuple[AuthShare, AuthShare]], order: Sequence[int],
           val: np.ndarray, mac: np.ndarray) -> list[AuthShare]:
    """Cut the flat products (laid out in ``order``) back into one share per pair."""
    party = pairs[0][0].party
    out: list[AuthShare | None] = [None] * len(pairs)
    start = 0
    for i in order:
        x, y = pairs[i]
        shape = np.broadcast_shapes(x.shape, y.shape)
        k = int(np.prod(shape, dtype=np.int64))
        out[i] = AuthShare(party, val[:, start:start + k].reshape((2, *shape)),
                           mac[:, start:start + k].reshape((2, *shape)), x.frac + y.frac)
        start += k
    return out  # type: ignore[return-value]


def _mul_plain(pairs: Sequence[tuple[AuthShare, AuthShare]], party) -> list[AuthShare]:
    xs, ys = [], []
    for x, y in pairs:
        shape = np.broadcast_shapes(x.shape, y.shape)
        xs.append(x.broadcast_to(shape))
        ys.append(y.broadcast_to(shape))
    xv, xm = _flatten(xs)
    yv, ym = _flatten(ys)
    with party.op("mul"):
        t = party.prep.triples((xv.shape[1],))
        d, e = party.open((ring.sub(xv, t.a[0]), ring.sub(xm, t.a[1])),
                          (ring.sub(yv, t.b[0]), ring.sub(ym, t.b[1])))
    val, mac = _beaver(party, d, e, t.a, t.b, t.c)
    return _split(pairs, range(len(pairs)), val, mac)


def _mul_fan(pairs: Sequence[tuple[AuthShare, AuthShare]], groups: list[list[int]],
             party) -> list[AuthShare]:
    """Products grouped by shared left operand: open each left operand's x - a once."""
    lefts, rights, spec, order = [], [], [], []
    for members in groups:
        x = pairs[members[0]][0]
        shape = x.shape
        for i in members:
            if np.broadcast_shapes(shape, pairs[i][1].shape) != shape:
                shape = None
                break
        if shape is None:  # a right operand broadcasts the left one: no sharing here
            for i in members:
                xi, yi = pairs[i]
                sh = np.broadcast_shapes(xi.shape, yi.shape)
                lefts.append(xi.broadcast_to(sh))
                rights.append(yi.broadcast_to(sh))
                spec.append((int(np.prod(sh, dtype=np.int64)), 1))
                order.append(i)
            continue
        lefts.append(x)
        rights.extend(pairs[i][1].broadcast_to(shape) for i in members)
        spec.append((int(np.prod(shape, dtype=np.int64)), len(members)))
        order.extend(members)
    if any(size == 0 for size, _ in spec):
        return _mul_plain(pairs, party)
    xv, xm = _flatten(lefts)
    yv, ym = _flatten(rights)
    with party.op("mul"):
        t = party.prep.fan_triples(spec)
        d, e = party.open((ring.sub(xv, t.a[0]), ring.sub(xm, t.a[1])),
                          (ring.sub(yv, t.b[0]), ring.sub(ym, t.b[1])))
    idx = fan_index(tuple(spec))
    a_wide = (t.a[0][:, idx], t.a[1][:, idx])
    val, mac = _beaver(party, d[:, idx], e, a_wide, t.b, t.c)
    return _split(pairs, order, val, mac)



def mul(x: AuthShare, y: AuthShare) -> AuthShare:
    """[x * y] with automatic fixed-point rescaling."""
    return rescale(mul_many([(x, y)])[0])


def _as_matrix(x: AuthShare) -> tuple[AuthShare, bool]:
    if x.ndim == 1:
        return x.reshape(1, x.shape[0]), True
    if x.ndim != 2:
        raise ShapeError(f"matmul needs vectors or matrices, got shape {x.shape}")
    return x, False


def matmul(x: AuthShare, w: AuthShare | Any) -> AuthShare:
    """[x @ w] for a shared or public right operand."""
    if not isinstance(w, AuthShare):
        return share_matmul_public(x, w)
    with x.party.op("matmul"):
        (z,) = run_round(x.party, [matmul_opening(x, w)])
    return rescale(z)


def matmul_opening(x: AuthShare, w: AuthShare) -> Opening:
    """The round of a shared product x @ w, result unscaled (to run beside other work)."""
    x2, squeeze = _as_matrix(x)
    w2 = w.reshape(w.shape[0], 1) if w.ndim == 1 else w
    if w2.ndim != 2 or x2.shape[1] != w2.shape[0]:
        raise ShapeError(f"matmul shape mismatch: {x.shape} @ {w.shape}")
    m, n = x2.shape
    p = w2.shape[1]
    party = x.party
    t = party.prep.matrix_triples(m, n, p)

    def finish(opened: list[np.ndarray]) -> AuthShare:
        d, e = opened
        return _matrix_beaver(party, t, d, e, m, p, x.frac + w.frac
                              ).reshape(_squeeze_shape(m, p, squeeze, w.ndim == 1))

    return Opening([(ring.sub(x2.val, t.a[0]), ring.sub(x2.mac, t.a[1])),
                    (ring.sub(w2.val, t.b[0]), ring.sub(w2.mac, t.b[1]))], finish)


def _matrix_beaver(party, t, d: np.ndarray, e: np.ndarray, m: int, p: int, frac: int
                   ) -> AuthShare:
    """[C] + d[B] + [A]e + de (SecureML), values and MACs."""
    de = ring.matmul(d, e)
    dstack = ring.stack_limbs(ring.concat([t.b[0], t.b[1]], axis=1))  # d @ [B | mB]
    dB = ring.matmul_limbs(d, dstack)
    aE = ring.matmul(ring.concat([t.a[0], t.a[1]], axis=0), e)  # [A; mA] @ e
    val = ring.add(ring.add(t.c[0], dB[:, :, :p]), aE[:, :m])
    if party.id == 0:
        val = ring.add(val, de)
    mac = ring.add(ring.add(ring.add(t.c[1], dB[:, :, p:]), aE[:, m:]), party.alpha_times(de))
    return AuthShare(party, val, mac, frac)


def _encode_public_matrix(c: Any) -> tuple[np.ndarray, int]:
    arr = np.asarray(c)
    if arr.dtype.kind in "iub":
        return fixedpoint.encode_int(arr.astype(np.int64)), 0
    return fixedpoint.encode(arr, F), F


def share_matmul_public(x: AuthShare, c: Any, *, kernel: bool = False) -> AuthShare:
    """[x] @ C for a public matrix or vector C (local). ``kernel=True`` multiplies by the
    compiled kernel (ring_kernels.matmul), for few rows against a long inner dimension:
    an identification's one-hot rows times the name table are 9x (N = 10,000) to 13x
    (N = 100,000) faster there than the limb GEMMs, which stay the default for training's
    many-row products (benchmarks/HISTORY.md, session 9)."""
    cr, cf = _encode_public_matrix(c)
    x2, left_vec = _as_matrix(x)
    right_vec = cr.ndim == 2
    c2 = cr.reshape(2, -1, 1) if right_vec else cr
    if c2.ndim != 3 or x2.shape[1] != c2.shape[1]:
        raise ShapeError(f"matmul shape mismatch: {x.shape} @ {np.shape(c)}")
    m, p = x2.shape[0], c2.shape[2]
    product = ring_kernels.matmul if kernel else ring.matmul
    both = product(ring.concat([x2.val, x2.mac], axis=0), c2)
    z = AuthShare(x.party, both[:, :m], both[:, m:], x.frac + cf)
    return rescale(z.reshape(_squeeze_shape(m, p, left_vec, right_vec)))


def public_matmul(c: Any, x: AuthShare) -> AuthShare:
    """C @ [x] for a public matrix or vector C (local)."""
    cr, cf = _encode_public_matrix(c)
    left_vec, right_vec = cr.ndim == 2, x.ndim == 1
    c2 = cr.reshape(2, 1, -1) if left_vec else cr
    x2 = x.reshape(x.shape[0], 1) if right_vec else x
    if c2.ndim != 3 or x2.ndim != 2 or c2.shape[2] != x2.shape[0]:
        raise ShapeError(f"matmul shape mismatch: {np.shape(c)} @ {x.shape}")
    m, p = c2.shape[1], x2.shape[1]
    both = ring.matmul_limbs(c2, ring.stack_limbs(ring.concat([x2.val, x2.mac], axis=1)))
    z = AuthShare(x.party, both[:, :, :p], both[:, :, p:], x.frac + cf)
    return rescale(z.reshape(_squeeze_shape(m, p, left_vec, right_vec)))


def reveal(x: AuthShare) -> np.ndarray:
    """Open [x] to both servers; returns x mod 2^64 sign-extended.

    Every earlier opening is MAC-checked *before* x is opened (x depends on them: an
    error added to one of them would otherwise steer what x reveals, and the opening
    would leak before the check failed, attacker review 3), and x's own opening after.
    The opened representative is x + 2^64 * a for a fresh random authenticated a, so
    its upper 64 bits are uniform and say nothing about x's representative.
    """
    party = x.party
    with party.op("reveal"):
        a = party.prep.triples(x.shape).a
        party.check()
        masked = (ring.add(x.val, ring.shl(a[0], 64)), ring.add(x.mac, ring.shl(a[1], 64)))
        (opened,) = party.open(masked)
        party.check()
    return ring.from_int64(ring.low64_signed(opened))


def open_fixed(w: AuthShare, key: str, *, consume: bool = False
               ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Open E = W - B for a dealer mask B kept under ``key``; returns (E, B's shares).

    ``consume=True`` forms W - B inside w's own arrays (w is unusable afterwards).
    """
    party = w.party
    with party.op("fixed_open"):
        b_val, b_mac = party.prep.fixed_mask(key, *w.shape)
        if consume:
            masked = (ring.isub(w.val, b_val), ring.isub(w.mac, b_mac))
            w.val = w.mac = None  # type: ignore[assignment]
        else:
            masked = (ring.sub(w.val, b_val), ring.sub(w.mac, b_mac))
        (e,) = party.open(masked)
    return e, (b_val, b_mac)


class FixedOperand:
    """A shared matrix W (n x p) that stays fixed across many left products x @ W.

    W - B is opened once (and MAC-checked with the next check); the public E = W - B and
    B's value and MAC shares are kept as ring arrays (16 bytes per element each) and
    multiplied by the compiled kernel (ring_kernels.matmul).
    """

    def __init__(self, w: AuthShare, key: str, *, consume: bool = False) -> None:
        """``consume=True`` computes W - B inside w's own arrays (w is unusable afterwards):
        for galleries of 10^5 identities this saves a full-size copy."""
        if w.ndim != 2:
            raise ShapeError(f"fixed operand must be a matrix, got {w.shape}")
        self.party, self.key, self.frac = w.party, key, w.frac
        self.n, self.p = w.shape
        e, (b_val, b_mac) = open_fixed(w, key, consume=consume)
        if self.n * self.p > EARLY_CHECK_ELEMENTS:
            self.party.check()
        self._E = np.ascontiguousarray(e)
        self._Bv, self._Bm = np.ascontiguousarray(b_val), np.ascontiguousarray(b_mac)

    def _products(self, xv: np.ndarray, d: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(xv @ E, d @ B, d @ mB)."""
        return (ring_kernels.matmul(xv, self._E), ring_kernels.matmul(d, self._Bv),
                ring_kernels.matmul(d, self._Bm))

    def left_matmul(self, x: AuthShare, *, rescale_result: bool = True) -> AuthShare:
        """[x @ W] for x of shape (m, n) or (n,), opening only x - A; unscaled (x.frac +
        W.frac fractional bits) if ``rescale_result`` is False."""
        with self.party.op("fixed_matmul"):
            (z,) = run_round(self.party, [self.left_matmul_opening(x)])
        return rescale(z) if rescale_result else z

    def left_matmul_opening(self, x: AuthShare) -> Opening:
        """The round of :meth:`left_matmul`, result unscaled (to run beside other work)."""
        x2, squeeze = _as_matrix(x)
        if x2.shape[1] != self.n:
            raise ShapeError(f"query has {x2.shape[1]} features, model expects {self.n}")
        m, party = x2.shape[0], self.party
        a, c = party.prep.fixed_triples(self.key, m, self.n, self.p)

        def finish(opened: list[np.ndarray]) -> AuthShare:
            xe, dbv, dbm = self._products(ring.concat([x2.val, x2.mac], axis=0), opened[0])
            val = ring.add(ring.add(xe[:, :m], dbv), c[0])
            mac = ring.add(ring.add(xe[:, m:], dbm), c[1])
            z = AuthShare(party, val, mac, x.frac + self.frac)
            return z.reshape(self.p) if squeeze else z

        return Opening([(ring.sub(x2.val, a[0]), ring.sub(x2.mac, a[1]))], finish)


class FixedRows:
    """A shared matrix X (n x d) that stays fixed while products use subsets of its rows.

    Training multiplies mini-batches X[idx] with changing weights, forwards and
    transposed. X - U is opened once (dealer mask U); a batch product then opens only the
    other operand's masked value:  X[idx] @ W = E[idx] @ W + U[idx] @ (W - V) + U[idx] @ V,
    with (V, U[idx] @ V) from the dealer, and likewise for X[idx]^T @ G.
    """

    def __init__(self, x: AuthShare, key: str) -> None:
        if x.ndim != 2:
            raise ShapeError(f"fixed rows need a matrix, got {x.shape}")
        self.party, self.key, self.frac = x.party, key, x.frac
        self.n, self.d = x.shape
        self.E, (self._Uv, self._Um) = open_fixed(x, key)

    def _rows(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = np.asarray(idx, dtype=np.int64)
        if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= self.n:
            raise ShapeError("row indices out of range")
        return self.E[:, idx], self._Uv[:, idx], self._Um[:, idx]

    @staticmethod
    def _combine(e: np.ndarray, wv: np.ndarray, wm: np.ndarray, uv: np.ndarray,
                 um: np.ndarray, f: np.ndarray, c: tuple[np.ndarray, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray]:
        """(e @ wv + uv @ f + c0, e @ wm + um @ f + c1) in two ring products, not four."""
        p, m = wv.shape[2], e.shape[1]
        ew = ring.matmul(e, ring.concat([wv, wm], axis=1))
        uf = ring.matmul(ring.concat([uv, um], axis=0), f)
        return (ring.add(ring.add(ew[:, :, :p], uf[:, :m]), c[0]),
                ring.add(ring.add(ew[:, :, p:], uf[:, m:]), c[1]))

    def matmul(self, idx: np.ndarray, w: AuthShare, *, rescale_result: bool = True
               ) -> AuthShare:
        """[X[idx] @ w] for a shared w (d x p); unscaled if ``rescale_result`` is False."""
        if w.ndim != 2 or w.shape[0] != self.d:
            raise ShapeError(f"rows of width {self.d} times {w.shape}")
        e, uv, um = self._rows(idx)
        party = self.party
        with party.op("rows_matmul"):
            v, c = party.prep.rows_triples(self.key, idx, w.shape[1], False, self.d)
            (f,) = party.open((ring.sub(w.val, v[0]), ring.sub(w.mac, v[1])))
        val, mac = self._combine(e, w.val, w.mac, uv, um, f, c)
        out = AuthShare(party, val, mac, self.frac + w.frac)
        return rescale(out) if rescale_result else out

    def t_matmul(self, idx: np.ndarray, g: AuthShare, *, rescale_result: bool = True
                 ) -> AuthShare:
        """[X[idx]^T @ g] for a shared g (len(idx) x p); unscaled if ``rescale_result`` is
        False (the caller folds the truncation into a later one)."""
        if g.ndim != 2 or g.shape[0] != len(idx):
            raise ShapeError(f"{len(idx)} rows transposed times {g.shape}")
        e, uv, um = self._rows(idx)
        party = self.party
        with party.op("rows_matmul"):
            v, c = party.prep.rows_triples(self.key, idx, g.shape[1], True, self.d)
            (h,) = party.open((ring.sub(g.val, v[0]), ring.sub(g.mac, v[1])))
        val, mac = self._combine(ring.transpose(e), g.val, g.mac, ring.transpose(uv),
                                 ring.transpose(um), h, c)
        out = AuthShare(party, val, mac, self.frac + g.frac)
        return rescale(out) if rescale_result else out
