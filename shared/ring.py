"""Vectorised arithmetic in the ring Z_2^128, the share and MAC space of the protocol.

numpy has no 128-bit integers, so an element is stored as two uint64 limbs along a
leading axis of length 2: ``a[0]`` holds the low 64 bits and ``a[1]`` the high 64 bits.
A ring array of logical shape ``S`` therefore has numpy shape ``(2, *S)``.

Matrix products use float64 BLAS on 16-bit limbs: every limb product is below 2^32 and
a sum of ``n`` of them (times at most 8 limb pairs) stays below 2^53, so the GEMM is
exact as long as the inner dimension is below 2^18 (checked).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

RING_BITS = 128
MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_LIMB_BITS = 16
_LIMBS = RING_BITS // _LIMB_BITS  # 8
_MAX_INNER = 1 << 18  # exactness bound of the float64 limb GEMM, see module docstring


def zeros(shape: Sequence[int] | int) -> np.ndarray:
    """The zero element, shaped ``(2, *shape)``."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return np.zeros((2, *shape), dtype=np.uint64)


def shape_of(a: np.ndarray) -> tuple[int, ...]:
    """Logical shape of a ring array."""
    return tuple(a.shape[1:])


def check(a: np.ndarray) -> np.ndarray:
    """Validate that ``a`` is a ring array; protocol code calls this on anything from the wire."""
    if not isinstance(a, np.ndarray) or a.dtype != np.uint64 or a.ndim < 1 or a.shape[0] != 2:
        raise TypeError(f"not a Z_2^128 array (need uint64 with leading axis 2), got "
                        f"{getattr(a, 'dtype', type(a))} {getattr(a, 'shape', '')}")
    return a


def from_int64(x: np.ndarray | int) -> np.ndarray:
    """Embed signed 64-bit integers by sign extension (so -1 maps to 2^128 - 1)."""
    x = np.asarray(x, dtype=np.int64)
    out = np.empty((2, *x.shape), dtype=np.uint64)
    out[0] = x.view(np.uint64) if x.ndim else np.uint64(x.astype(np.uint64))
    out[1] = np.where(x < 0, MASK64, np.uint64(0))
    return out


def from_uint64(x: np.ndarray | int) -> np.ndarray:
    """Embed unsigned 64-bit integers (high limb zero)."""
    x = np.asarray(x, dtype=np.uint64)
    out = np.zeros((2, *x.shape), dtype=np.uint64)
    out[0] = x
    return out


def from_pyint(v: int, shape: Sequence[int] = ()) -> np.ndarray:
    """A Python integer reduced mod 2^128, broadcast to ``shape``."""
    v %= 1 << RING_BITS
    out = np.empty((2, *shape), dtype=np.uint64)
    out[0] = np.uint64(v & 0xFFFFFFFFFFFFFFFF)
    out[1] = np.uint64(v >> 64)
    return out


def to_pyints(a: np.ndarray) -> list[int]:
    """Flatten to Python integers in [0, 2^128) (tests and debugging only)."""
    lo = a[0].ravel().tolist()
    hi = a[1].ravel().tolist()
    return [(h << 64) | lo_ for lo_, h in zip(lo, hi, strict=True)]


def low64_signed(a: np.ndarray) -> np.ndarray:
    """The low 64 bits read as a signed integer: the value of a share in Z_2^64."""
    return a[0].view(np.int64).copy()


def _wraps(fn: Callable) -> Callable:
    """Silence numpy's overflow warning on 0-d operands: wrap-around is the point here.

    numpy warns only in scalar arithmetic; when the first operand has a logical shape,
    every step of these functions is an array operation, so the warning state (2 us of a
    5 us add on a tournament level) is entered only for 0-d first operands."""

    @functools.wraps(fn)
    def inner(*args: np.ndarray) -> np.ndarray:
        if getattr(args[0], "ndim", 0) >= 2:
            return fn(*args)
        with np.errstate(over="ignore"):
            return fn(*args)

    return inner


def _out(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """An uninitialised ring array of the broadcast logical shape of a and b."""
    if a.shape == b.shape:
        return np.empty(a.shape, dtype=np.uint64)
    return np.empty((2, *np.broadcast_shapes(a.shape[1:], b.shape[1:])), dtype=np.uint64)


@_wraps
def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b mod 2^128 (broadcasting over the logical shape)."""
    out = _out(a, b)
    np.add(a[0], b[0], out=out[0, ...])
    carry = out[0] < a[0]
    np.add(a[1], b[1], out=out[1, ...])
    out[1] += carry
    return out


@_wraps
def neg(a: np.ndarray) -> np.ndarray:
    """-a mod 2^128 (two's complement)."""
    out = np.empty_like(a)
    np.invert(a[0], out=out[0, ...])
    out[0] += np.uint64(1)
    np.invert(a[1], out=out[1, ...])
    out[1] += a[0] == 0
    return out


@_wraps
def sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a - b mod 2^128."""
    out = _out(a, b)
    borrow = a[0] < b[0]
    np.subtract(a[0], b[0], out=out[0, ...])
    np.subtract(a[1], b[1], out=out[1, ...])
    out[1] -= borrow
    return out


def iadd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a += b mod 2^128 in place."""
    with np.errstate(over="ignore"):
        a[0] += b[0]
        carry = a[0] < b[0]
        a[1] += b[1]
        a[1] += carry
    return a


def isub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a -= b mod 2^128 in place (no full-size temporaries; for very large operands)."""
    borrow = a[0] < b[0]
    with np.errstate(over="ignore"):
        a[0] -= b[0]
        a[1] -= b[1]
        a[1] -= borrow
    return a


def _mulhi64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """High 64 bits of the 128-bit product of two uint64 arrays (schoolbook on 32-bit halves)."""
    a_lo, a_hi = a & _M32, a >> _S32
    b_lo, b_hi = b & _M32, b >> _S32
    t = a_lo * b_lo
    u = a_hi * b_lo + (t >> _S32)
    v = a_lo * b_hi + (u & _M32)
    return a_hi * b_hi + (u >> _S32) + (v >> _S32)


@_wraps
def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise a * b mod 2^128 (broadcasting)."""
    out = _out(a, b)
    np.multiply(a[0], b[0], out=out[0, ...])
    out[1] = _mulhi64(a[0], b[0])
    out[1] += a[0] * b[1]
    out[1] += a[1] * b[0]
    return out


@_wraps
def mul_u64(a: np.ndarray, c: np.ndarray | int) -> np.ndarray:
    """a * c mod 2^128 for a non-negative 64-bit multiplier (public scalars, MAC key shares)."""
    c = np.asarray(c, dtype=np.uint64)
    out = np.empty((2, *np.broadcast_shapes(a.shape[1:], c.shape)), dtype=np.uint64)
    np.multiply(a[0], c, out=out[0, ...])
    out[1] = _mulhi64(a[0], c)
    out[1] += a[1] * c
    return out


def shl(a: np.ndarray, n: int) -> np.ndarray:
    """a * 2^n mod 2^128."""
    if n == 0:
        return a.copy()
    if n >= 128:
        return np.zeros_like(a)
    out = np.empty_like(a)
    if n >= 64:
        out[0] = 0
        np.left_shift(a[0], np.uint64(n - 64), out=out[1, ...])
        return out
    s, r = np.uint64(n), np.uint64(64 - n)
    np.left_shift(a[0], s, out=out[0, ...])
    np.left_shift(a[1], s, out=out[1, ...])
    out[1] |= a[0] >> r
    return out


def shr_low(a: np.ndarray, bits: int, n: int) -> np.ndarray:
    """floor((a mod 2^bits) / 2^n) for bits <= 64, as a ring array: used on opened values."""
    if not 0 < bits <= 64 or not 0 <= n < bits:
        raise ValueError(f"shr_low needs 0 <= n < bits <= 64, got bits={bits}, n={n}")
    low = a[0] if bits == 64 else a[0] & np.uint64((1 << bits) - 1)
    return from_uint64(low >> np.uint64(n))


def bit(a: np.ndarray, i: int) -> np.ndarray:
    """Bit ``i`` (< 128) of each element, as uint64 0/1."""
    limb = a[0] if i < 64 else a[1]
    return (limb >> np.uint64(i % 64)) & np.uint64(1)


def low_bits(a: np.ndarray, bits: int) -> np.ndarray:
    """a mod 2^bits for bits <= 64, as uint64."""
    if bits == 64:
        return a[0].copy()
    return a[0] & np.uint64((1 << bits) - 1)


def _parts32(a: np.ndarray) -> list[np.ndarray]:
    """The four 32-bit parts of each element, as uint64 (room to sum 2^32 of them)."""
    return [a[0] & _M32, a[0] >> _S32, a[1] & _M32, a[1] >> _S32]


def _from_parts32(s: list[np.ndarray]) -> np.ndarray:
    """sum_k s[k] * 2^(32 k) mod 2^128, for accumulated 32-bit parts (each < 2^63)."""
    return from_signed_parts32(np.stack(s, axis=-1).view(np.int64))


def sum_axis(a: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Sum mod 2^128 along a logical axis (None: all), exact via 32-bit limbs in uint64."""
    if axis is None:
        flat = a.reshape(2, -1)
        return sum_axis(flat, 0)
    ax = axis + 1 if axis >= 0 else a.ndim + axis
    n = a.shape[ax]
    if n >= 1 << 31:
        raise ValueError("sum over more than 2^31 terms")
    parts = _parts32(a)
    s = [p.sum(axis=ax - 1, dtype=np.uint64) for p in parts]  # each < 2^63
    # recombine: value = s0 + s1*2^32 + s2*2^64 + s3*2^96 mod 2^128
    return _from_parts32(s)


def segment_sum(a: np.ndarray, segments: np.ndarray, count: int) -> np.ndarray:
    """Sums of the rows of a ring matrix grouped by ``segments`` (row -> segment id).

    Exact via 32-bit parts accumulated in uint64 (up to 2^31 rows per segment); the
    local step of per-identity sums in training, without a (segments x rows) product.
    """
    if a.ndim < 2 or segments.shape != (a.shape[1],):
        raise ValueError("one segment id per row")
    parts = _parts32(a)
    sums = []
    for part in parts:
        acc = np.zeros((count, *part.shape[1:]), dtype=np.uint64)
        np.add.at(acc, segments, part)
        sums.append(acc)
    return _from_parts32(sums)


def parts32_f64(*arrays: np.ndarray) -> np.ndarray:
    """The 32-bit parts of several same-shape ring arrays as one float64 array.

    Shape (*logical, 4 * len(arrays)), parts ordered as in ``_parts32``. Small-integer
    weighted sums of these parts are exact in float64 (below 2^53), so they can go
    through BLAS; see ``weighted_sums``.
    """
    both = np.stack(arrays)  # (count, 2, *logical)
    limbs = np.moveaxis(both.reshape(2 * len(arrays), -1), 0, -1)  # (elements, 2 count)
    u32 = np.ascontiguousarray(limbs).view(np.uint32)  # little-endian: low half first
    return u32.astype(np.float64).reshape(*arrays[0].shape[1:], 4 * len(arrays))


def weighted_sums(coefs: np.ndarray, parts: np.ndarray, count: int) -> list[np.ndarray]:
    """sum_v coefs[..., k, v] * a[..., v] mod 2^128 for each of ``count`` ring arrays a.

    ``parts`` is ``parts32_f64(a_1, ..., a_count)`` of shape (..., V, 4 * count), and
    ``coefs`` small integers of shape (..., Kc, V) with sum |coef| * 2^32 < 2^53, so the
    batched float64 product is exact. Returns ``count`` ring arrays of shape (..., Kc).
    Why: the comparison's chunk lookups are exactly such sums, and one BLAS call per chunk
    replaces a masked uint64 reduction per coefficient set.
    """
    if np.abs(coefs).sum(axis=-1).max(initial=0) >= 1 << 20:
        raise ValueError("coefficients too large for exact float64 sums")
    s = np.matmul(coefs.astype(np.float64), parts).astype(np.int64)
    return [from_signed_parts32(s[..., 4 * i:4 * i + 4]) for i in range(count)]


@_wraps
def from_signed_parts32(s: np.ndarray) -> np.ndarray:
    """sum_k s[..., k] * 2^(32 k) mod 2^128 for signed int64 part sums (last axis 4).

    s1 * 2^32 = (s1 >> 32) * 2^64 + (s1 mod 2^32) * 2^32 with an arithmetic shift, so the
    low word is s0 + (s1 << 32) with one carry and everything else lands in the high word.
    """
    s0, s1, s2, s3 = (s[..., k] for k in range(4))
    out = np.empty((2, *s.shape[:-1]), dtype=np.uint64)
    low0 = s0.view(np.uint64)
    np.add(low0, (s1 << 32).view(np.uint64), out=out[0, ...])
    # carry out of the low word, counting s0's sign extension (-1 for negative s0)
    carry = (out[0] < low0).astype(np.int64) - (s0 < 0)
    out[1] = ((s1 >> 32) + s2 + (s3 << 32) + carry).view(np.uint64)
    return out


def concat(arrays: Sequence[np.ndarray], axis: int = 0) -> np.ndarray:
    """Concatenate ring arrays along a logical axis."""
    ax = axis + 1 if axis >= 0 else axis
    return np.concatenate(arrays, axis=ax)


def reshape(a: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Reshape the logical shape."""
    return a.reshape((2, *shape))


def transpose(a: np.ndarray) -> np.ndarray:
    """Transpose a logical matrix."""
    return np.ascontiguousarray(a.transpose(0, 2, 1)) if a.ndim == 3 else a.copy()


def equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Exact equality of two ring arrays."""
    return bool(np.array_equal(a, b))


# ---------------------------------------------------------------- matrix products

def to_limbs(a: np.ndarray) -> np.ndarray:
    """Split a ring matrix (2, r, c) into 8 float64 16-bit limbs, shape (8, r, c)."""
    if a.ndim != 3:
        raise ValueError(f"to_limbs needs a matrix, got logical shape {shape_of(a)}")
    u16 = a.transpose(1, 2, 0).copy().view(np.uint16)  # (r, c, 8) little-endian limbs
    return np.ascontiguousarray(u16.transpose(2, 0, 1), dtype=np.float64)


def _from_limb_sums(cs: np.ndarray) -> np.ndarray:
    """Recombine exact limb-diagonal sums cs[s] (< 2^53) as sum_s cs[s] * 2^(16 s) mod 2^128."""
    u = cs.astype(np.uint64)
    lo = np.zeros(u.shape[1:], dtype=np.uint64)
    hi = np.zeros(u.shape[1:], dtype=np.uint64)
    for s in range(_LIMBS):
        sh = _LIMB_BITS * s
        if sh < 64:
            add_lo = u[s] << np.uint64(sh)
            add_hi = u[s] >> np.uint64(64 - sh) if sh else np.zeros_like(lo)
        else:
            add_lo = np.zeros_like(lo)
            add_hi = u[s] << np.uint64(sh - 64)
        new_lo = lo + add_lo
        hi = hi + add_hi + (new_lo < lo).astype(np.uint64)
        lo = new_lo
    return np.stack([lo, hi])


def _diagonals_left(a_limbs: np.ndarray, b_stack: np.ndarray) -> np.ndarray:
    """Limb diagonals C_s = sum_j A_(s-j) B_j, shape (8, m, p), in 8 GEMMs.

    Only the 36 limb pairs with i + j < 8 matter mod 2^128, so GEMM j multiplies the
    stacked [A_0; ...; A_(7-j)] (a contiguous row slice) by B_j: 36/64 of a full band's
    flops and no band matrix to build.
    """
    _, m, n = a_limbs.shape
    p = b_stack.shape[1]
    a_rows = a_limbs.reshape(_LIMBS * m, n)
    out = np.zeros((_LIMBS, m, p))
    for j in range(_LIMBS):
        k = _LIMBS - j
        out[j:] += (a_rows[:k * m] @ b_stack[j * n:(j + 1) * n]).reshape(k, m, p)
    return out


def _diagonals_right(a_limbs: np.ndarray, b_limbs: np.ndarray) -> np.ndarray:
    """The same diagonals for a tall left operand: GEMM i multiplies A_i by the column
    slice [B_0 | ... | B_(7-i)]; returns shape (m, 8, p) (C_s at [:, s])."""
    _, m, n = a_limbs.shape
    p = b_limbs.shape[2]
    b_cols = np.ascontiguousarray(b_limbs.transpose(1, 0, 2)).reshape(n, _LIMBS * p)
    out = np.zeros((m, _LIMBS, p))
    for i in range(_LIMBS):
        k = _LIMBS - i
        out[:, i:] += (a_limbs[i] @ b_cols[:, :k * p]).reshape(m, k, p)
    return out


def matmul_limbs(a: np.ndarray, b_stack: np.ndarray) -> np.ndarray:
    """a @ B mod 2^128 where B is given pre-split as ``stack_limbs(B)`` (shape (8n, p))."""
    if a.ndim != 3:
        raise ValueError(f"matmul needs a matrix on the left, got {shape_of(a)}")
    m, n = a.shape[1:]
    if b_stack.shape[0] != _LIMBS * n:
        raise ValueError(f"matmul shape mismatch: ({m}, {n}) @ ({b_stack.shape[0] // _LIMBS}, "
                         f"{b_stack.shape[1]})")
    if n * _LIMBS >= _MAX_INNER:
        raise ValueError(f"inner dimension {n} too large for an exact float64 limb product")
    return _from_limb_sums(_diagonals_left(to_limbs(a), b_stack))


def stack_limbs(b: np.ndarray) -> np.ndarray:
    """Pre-split the right operand of a product: (2, n, p) -> float64 (8n, p)."""
    return to_limbs(b).reshape(_LIMBS * b.shape[1], b.shape[2])


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact matrix product mod 2^128 of ring matrices (2, m, n) @ (2, n, p).

    The GEMMs iterate over the limbs of whichever side is smaller (fewer, larger GEMMs);
    both orientations do the same number of flops.
    """
    if a.ndim != 3 or b.ndim != 3 or a.shape[2] != b.shape[1]:
        raise ValueError(f"matmul shape mismatch: {shape_of(a)} @ {shape_of(b)}")
    m, n = a.shape[1:]
    p = b.shape[2]
    block = _MAX_INNER // _LIMBS - 1
    if n > block:  # keep every float64 partial sum exact: split the inner dimension
        out = zeros((m, p))
        for s in range(0, n, block):
            out = add(out, matmul(a[:, :, s:s + block], b[:, s:s + block, :]))
        return out
    if m <= p:
        return matmul_limbs(a, stack_limbs(b))
    return _from_limb_sums(_diagonals_right(to_limbs(a), to_limbs(b)).transpose(1, 0, 2))
