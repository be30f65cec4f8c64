"""The length-doubling PRG of the FSS trees: fixed-key AES in Matyas-Meyer-Oseas mode.

G_j(s) = AES_k(s XOR j) XOR s XOR j for a public fixed key k and block index j (a tweak),
a correlation-robust hash as used by FSS implementations (BGI16; Guo et al., S&P 2020);
one AES-ECB call expands many seeds at once. A seed is 128 bits held as two uint64 limbs
(low, high); the least significant bit of a child seed is the tree's control bit t and is
cleared in the seed itself.
"""

from __future__ import annotations

import threading

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

FIXED_KEY = bytes.fromhex("73706c6974666163652d6673732d7631")  # b"splitface-fss-v1"


def expand(seeds: np.ndarray, tweaks: np.ndarray) -> np.ndarray:
    """G_j(s) for every seed and tweak: seeds (K, 2) uint64, tweaks (K, B) or (B,) ints;
    returns (K, B, 2) uint64 blocks."""
    seeds = np.ascontiguousarray(seeds, dtype=np.uint64)
    tw = np.broadcast_to(np.asarray(tweaks, dtype=np.uint64), (seeds.shape[0],
                                                                np.shape(tweaks)[-1]))
    x = np.empty((seeds.shape[0], tw.shape[1], 2), dtype=np.uint64)
    x[..., 0] = seeds[:, None, 0] ^ tw
    x[..., 1] = seeds[:, None, 1]
    return mmo(x)


_local = threading.local()  # one ECB encryptor per thread (the dealer and the parties' threads)


def _encryptor():
    """The fixed-key AES-ECB encryptor, made once per thread: ECB keeps no state between
    whole blocks, and making one per call cost more than encrypting 20,000 blocks."""
    enc = getattr(_local, "enc", None)
    if enc is None:
        enc = _local.enc = Cipher(algorithms.AES(FIXED_KEY), modes.ECB()).encryptor()
    return enc


def encrypt(x: np.ndarray) -> np.ndarray:
    """AES_k(x) for input blocks x (..., 2) uint64 (the numpy reference path; the compiled
    kernels run the same cipher on AES-NI, fss/aesni.py)."""
    x = np.ascontiguousarray(x, dtype=np.uint64)
    if x.ndim == 0 or x.shape[-1] != 2:  # a partial block would stay in the encryptor and
        raise ValueError(f"AES blocks must be (..., 2) uint64, got {x.shape}")  # shift all
    out = np.empty(x.size + 2, dtype=np.uint64)  # update_into wants a block of slack
    n = _encryptor().update_into(x.reshape(-1).view(np.uint8), out.view(np.uint8))
    if n != x.nbytes:
        _local.enc = None  # never reuse an encryptor that holds a partial block
        raise RuntimeError("AES-ECB returned a partial block")
    return out[:x.size].reshape(x.shape)


def mmo(x: np.ndarray) -> np.ndarray:
    """AES_k(x) XOR x for prepared input blocks x (..., 2) uint64."""
    x = np.ascontiguousarray(x, dtype=np.uint64)
    y = encrypt(x)
    y ^= x
    return y


def split_seed(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(seed with its low bit cleared, control bit) from a (K, 2) block."""
    t = (block[:, 0] & np.uint64(1)).astype(bool)
    s = block.copy()
    s[:, 0] &= ~np.uint64(1)
    return s, t


def to_ring(blocks: np.ndarray) -> np.ndarray:
    """(K, P, 2) blocks as a ring array (2, K, P) (each block one element of Z_2^128)."""
    return np.ascontiguousarray(np.moveaxis(blocks, -1, 0))
