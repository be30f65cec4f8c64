"""Signed fixed-point encoding of reals into the ring.

Parameters (constant, documented in docs/PROTOCOL.md):

* ``K = 64``: values live in Z_2^64 as two's-complement integers (the low 64 bits of a share).
* ``S = 64``: MAC security parameter; shares and MACs live in Z_2^(K+S) = Z_2^128.
* ``F = 16``: fractional bits. A real ``v`` is encoded as ``round(v * 2^16)``; resolution
  1.5e-5. Ranges (docs/PROTOCOL.md, "Primitives"): encoded values |v| < 2^46; compared
  values |a - b| < 2^47 (exact); a product x*y before its truncation carries 2F bits, so
  |xy| < 2^(K-2-2F) = 2^30. Products wrap silently beyond that (the low 64 bits cannot
  tell), so callers keep them inside by construction: probes and enrolments are checked
  unit vectors, and training settings are range-checked (shared/training_range.py).
"""

from __future__ import annotations

import numpy as np

from splitface.shared import ring

K = 64
S = 64
F = 16
SCALE = float(1 << F)
MAX_ABS = float(1 << (K - 2 - F))
MAX_PRODUCT = float(1 << (K - 2 - 2 * F))  # |x*y| below this before the product's truncation


def encode(x: np.ndarray | float, frac: int = F) -> np.ndarray:
    """Reals to ring elements with ``frac`` fractional bits; rejects NaN/inf and overflow."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot encode NaN or infinity")
    scaled = np.rint(x * float(1 << frac))
    if np.any(np.abs(scaled) >= 2.0**62):
        raise OverflowError(f"value too large for fixed point with {frac} fractional bits")
    return ring.from_int64(scaled.astype(np.int64))


def decode(a: np.ndarray, frac: int = F) -> np.ndarray:
    """Ring elements (read mod 2^K as signed) to float64 reals."""
    return ring.low64_signed(a).astype(np.float64) / float(1 << frac)


def encode_int(x: np.ndarray | int) -> np.ndarray:
    """Signed integers (indices, bits, counts) to ring elements."""
    return ring.from_int64(np.asarray(x, dtype=np.int64))


def decode_int(a: np.ndarray) -> np.ndarray:
    """Ring elements (mod 2^K, signed) to int64."""
    return ring.low64_signed(a)
