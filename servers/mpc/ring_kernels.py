"""Products of ring matrices mod 2^128 by a compiled kernel, for the fixed gallery product.

Every identification multiplies the probe (and its MAC row) by the opened gallery E = W - B
and the opened d = x - A by B's value and MAC shares: (2K x 128) @ (128 x N) twice. The
numpy reference (``ring.matmul``) splits both sides into eight 16-bit float64 limbs and
runs 36 limb GEMMs: exact, but 64 bytes per gallery element kept split and 36 flops per
element pair. The kernel multiplies the two uint64 words directly (a 64 x 64 -> 128-bit
product from four 32-bit ones, plus the two cross terms that reach the high word), reads
the gallery as it is stored (16 bytes per element) and shares each gallery load among four
left rows. Measured on this host (benchmarks/HISTORY.md, session 8): 2.7-3.4x for one
probe at N = 10,000 to 100,000, 2.1-2.2x for a batch of 8. ``SPLITFACE_NO_NUMBA=1`` or a
missing numba falls back to the reference, in column blocks so its limb split stays small.
"""

from __future__ import annotations

import numpy as np

from splitface.servers.mpc.fss.kernels import AVAILABLE, njit
from splitface.shared import ring

FALLBACK_BLOCK = 4096  # columns per reference product when not compiled (bounded memory)


@njit(inline="always")
def _mac(a0, a1, al, ah, bl, bh, clo, chi, i, j):  # pragma: no cover - compiled
    """c[i, j] += a * b mod 2^128 for a = (al, ah), b = (bl, bh); a0/a1 are al's halves."""
    s32 = np.uint64(32)
    low = np.uint64(0xFFFFFFFF)
    b0 = bl & low
    b1 = bl >> s32
    p00 = a0 * b0
    p01 = a0 * b1
    p10 = a1 * b0
    mid = (p00 >> s32) + (p01 & low) + (p10 & low)
    lo = (p00 & low) | (mid << s32)
    hi = a1 * b1 + (p01 >> s32) + (p10 >> s32) + (mid >> s32) + al * bh + ah * bl
    old = clo[i, j]
    new = old + lo
    clo[i, j] = new
    chi[i, j] += hi + (new < old)


@njit(cache=True, nogil=True)
def _matmul(alo, ahi, blo, bhi, clo, chi):  # pragma: no cover - compiled
    """C += A @ B mod 2^128 on (lo, hi) word planes; rows of A in groups of four."""
    m, n = alo.shape
    p = blo.shape[1]
    s32 = np.uint64(32)
    low = np.uint64(0xFFFFFFFF)
    i = 0
    while i + 4 <= m:
        for k in range(n):
            l0, h0, l1, h1 = alo[i, k], ahi[i, k], alo[i + 1, k], ahi[i + 1, k]
            l2, h2, l3, h3 = alo[i + 2, k], ahi[i + 2, k], alo[i + 3, k], ahi[i + 3, k]
            for j in range(p):
                bl, bh = blo[k, j], bhi[k, j]
                _mac(l0 & low, l0 >> s32, l0, h0, bl, bh, clo, chi, i, j)
                _mac(l1 & low, l1 >> s32, l1, h1, bl, bh, clo, chi, i + 1, j)
                _mac(l2 & low, l2 >> s32, l2, h2, bl, bh, clo, chi, i + 2, j)
                _mac(l3 & low, l3 >> s32, l3, h3, bl, bh, clo, chi, i + 3, j)
        i += 4
    while i < m:
        for k in range(n):
            al, ah = alo[i, k], ahi[i, k]
            for j in range(p):
                _mac(al & low, al >> s32, al, ah, blo[k, j], bhi[k, j], clo, chi, i, j)
        i += 1


def matmul(a: np.ndarray, b: np.ndarray, compiled: bool | None = None) -> np.ndarray:
    """a @ b mod 2^128 for ring matrices (2, m, n) @ (2, n, p); equal to ``ring.matmul``.

    ``compiled`` picks the kernel (default: when numba is available) or the reference."""
    if a.ndim != 3 or b.ndim != 3 or a.shape[2] != b.shape[1]:
        raise ValueError(f"matmul shape mismatch: {ring.shape_of(a)} @ {ring.shape_of(b)}")
    m, p = a.shape[1], b.shape[2]
    if not (AVAILABLE if compiled is None else compiled):
        out = np.empty((2, m, p), dtype=np.uint64)
        for s in range(0, p, FALLBACK_BLOCK):
            out[:, :, s:s + FALLBACK_BLOCK] = ring.matmul(a, b[:, :, s:s + FALLBACK_BLOCK])
        return out
    out = np.zeros((2, m, p), dtype=np.uint64)
    _matmul(np.ascontiguousarray(a[0]), np.ascontiguousarray(a[1]),
            np.ascontiguousarray(b[0]), np.ascontiguousarray(b[1]), out[0], out[1])
    return out
