"""Cryptographic pseudo-random generation for shares, masks and preprocessing.

AES-128 in CTR mode (``cryptography``) keyed from ``os.urandom`` or from a 16-byte seed
shared with the dealer. A seeded PRG lets the dealer send party 0 only a seed and party 1
an explicit correction. ``numpy.random`` is never used for anything secret.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SEED_BYTES = 16


class Prg:
    """A stream of pseudo-random bytes from AES-128-CTR; deterministic for a given seed."""

    def __init__(self, seed: bytes | None = None) -> None:
        seed = os.urandom(SEED_BYTES) if seed is None else seed
        if len(seed) != SEED_BYTES:
            raise ValueError(f"PRG seed must be {SEED_BYTES} bytes, got {len(seed)}")
        self._enc = Cipher(algorithms.AES(seed), modes.CTR(b"\x00" * 16)).encryptor()

    def bytes(self, n: int) -> bytes:
        """The next ``n`` pseudo-random bytes."""
        return self._enc.update(b"\x00" * n)

    def uint64(self, shape: Sequence[int] | int) -> np.ndarray:
        """Uniform uint64 array."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        n = math.prod(shape)  # np.prod cost more than the AES of a small request
        return np.frombuffer(self.bytes(8 * n), dtype=np.uint64).reshape(shape).copy()

    def ring(self, shape: Sequence[int] | int) -> np.ndarray:
        """Uniform element of Z_2^128, shaped ``(2, *shape)``."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        return self.uint64((2, *shape))

    def below_pow2(self, shape: Sequence[int] | int, bits: int) -> np.ndarray:
        """Uniform integers in [0, 2^bits) for bits <= 64, as uint64."""
        u = self.uint64(shape)
        return u if bits == 64 else u & np.uint64((1 << bits) - 1)


def fresh_seed() -> bytes:
    """A new random seed from the operating system's CSPRNG."""
    return os.urandom(SEED_BYTES)
