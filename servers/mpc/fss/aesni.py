"""Fixed-key AES-128 inside numba kernels, through the processor's AES-NI instructions.

The DCF kernels expand one or two tree nodes per level and key. Calling ``cryptography``
once per level cost a Python round trip, two passes over a block buffer and a copy each
time: at N = 100 a tournament level (50 keys) spent 15x longer around its AES than in it.
With AES inside the kernel a whole evaluation or key generation is one compiled call.

The round keys come from the FIPS-197 key schedule below (the key is public: it is the
fixed MMO key of prg.py), and each round is LLVM's ``llvm.x86.aesni.aesenc`` intrinsic, so
the cipher is the hardware's: constant time and bit-for-bit the AES of ``cryptography``
(tests/mpc/test_fss.py checks both against the FIPS-197 vectors). A uint64 pair
(low, high) is the block's 16 bytes in little-endian order, as numpy lays them out.

``SUPPORTED`` is false off x86-64, on processors without AES-NI, without numba, or when
numba is told to compile for another processor; the DCF then runs the numpy reference.
"""

from __future__ import annotations

import atexit
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np


def _sbox() -> list[int]:
    """The AES S-box: multiplicative inverse in GF(2^8), then the affine map."""
    box, p, q = [0] * 256, 1, 1
    while True:
        p ^= ((p << 1) & 0xFF) ^ (0x1B if p & 0x80 else 0)  # p *= 3
        q ^= q << 1  # q /= 3
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        rot = q ^ ((q << 1 | q >> 7) & 0xFF) ^ ((q << 2 | q >> 6) & 0xFF) \
            ^ ((q << 3 | q >> 5) & 0xFF) ^ ((q << 4 | q >> 4) & 0xFF)
        box[p] = (rot ^ 0x63) & 0xFF
        if p == 1:
            break
    box[0] = 0x63
    return box


def round_keys(key: bytes) -> np.ndarray:
    """The 11 round keys of AES-128 (FIPS-197, section 5.2) as (11, 2) uint64 blocks."""
    if len(key) != 16:
        raise ValueError("AES-128 takes a 16-byte key")
    box = _sbox()
    words = [list(key[4 * i:4 * i + 4]) for i in range(4)]
    rcon = 1
    for i in range(4, 44):
        w = list(words[i - 1])
        if i % 4 == 0:
            w = [box[b] for b in w[1:] + w[:1]]
            w[0] ^= rcon
            rcon = (rcon << 1) ^ (0x11B if rcon & 0x80 else 0)
        words.append([a ^ b for a, b in zip(words[i - 4], w, strict=True)])
    flat = bytes(b for w in words for b in w)
    return np.frombuffer(flat, dtype=np.uint64).reshape(11, 2).copy()


def _numba_cache_dir() -> None:
    """Give numba a folder it can write before it is imported.

    numba caches compiled kernels in ``__pycache__`` beside their source, else in the
    user's cache folder, and refuses to define a cached kernel at all when it can write
    neither: the case of a service user under ProtectSystem=strict and ProtectHome=yes (the
    daemons then failed at import). The units set NUMBA_CACHE_DIR to their
    CacheDirectory=; anywhere else without a writable source tree, a private temporary
    folder serves (the kernels are compiled again at each start, some seconds)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = Path(__file__).resolve().parent
    if all(_writable(d / "__pycache__") for d in (here, here.parent)):
        return
    systemd = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    if systemd and _writable(Path(systemd)):
        os.environ["NUMBA_CACHE_DIR"] = systemd
    else:
        folder = tempfile.mkdtemp(prefix="splitface-numba-")
        atexit.register(shutil.rmtree, folder, True)
        os.environ["NUMBA_CACHE_DIR"] = folder
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba was imported first: it read its settings then
        config.reload_config()


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _host_has_aesni() -> bool:
    if os.environ.get("SPLITFACE_NO_NUMBA") or platform.machine().lower() not in (
            "x86_64", "amd64"):
        return False
    try:
        import llvmlite.binding as llvm
        import numba  # noqa: F401 - it starts LLVM, which fails where code cannot be mapped
        from numba.core import config
    except (ImportError, OSError):  # no numba, or no executable memory for its JIT
        return False
    if config.CPU_NAME not in (None, "host"):  # compiling for another processor
        return "+aes" in (config.CPU_FEATURES or "")
    return bool(llvm.get_host_cpu_features().get("aes", False))


_numba_cache_dir()
SUPPORTED = _host_has_aesni()

if SUPPORTED:  # pragma: no branch - the kernels below exist only where they can run
    from llvmlite import ir
    from numba import njit, types
    from numba.core import cgutils
    from numba.extending import intrinsic

    _BLOCK = ir.VectorType(ir.IntType(64), 2)
    _I32 = ir.IntType(32)

    def _aes_round(name: str):
        """An intrinsic (lo, hi, key_lo, key_hi) -> (lo, hi) for one AES-NI round."""

        @intrinsic
        def aes_round(typingctx, lo, hi, key_lo, key_hi):
            u64 = types.uint64
            sig = types.UniTuple(u64, 2)(u64, u64, u64, u64)

            def codegen(context, builder, signature, args):
                def block(a, b):
                    v = builder.insert_element(ir.Constant(_BLOCK, ir.Undefined), a,
                                               ir.Constant(_I32, 0))
                    return builder.insert_element(v, b, ir.Constant(_I32, 1))

                fn = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(_BLOCK, [_BLOCK, _BLOCK]), name)
                out = builder.call(fn, [block(args[0], args[1]), block(args[2], args[3])])
                return context.make_tuple(builder, signature.return_type, [
                    builder.extract_element(out, ir.Constant(_I32, 0)),
                    builder.extract_element(out, ir.Constant(_I32, 1))])

            return sig, codegen

        return aes_round

    aesenc = _aes_round("llvm.x86.aesni.aesenc")
    aesenclast = _aes_round("llvm.x86.aesni.aesenclast")

    @njit(inline="always")
    def encrypt_block(lo, hi, rk):  # pragma: no cover - compiled
        """AES_k of one block under the round keys rk (11, 2)."""
        a = lo ^ rk[0, 0]
        b = hi ^ rk[0, 1]
        for r in range(1, 10):
            a, b = aesenc(a, b, rk[r, 0], rk[r, 1])
        return aesenclast(a, b, rk[10, 0], rk[10, 1])

    @njit(inline="always")
    def mmo(lo, hi, rk):  # pragma: no cover - compiled
        """AES_k(x) XOR x for the block x = (lo, hi): prg.mmo on one block."""
        a, b = encrypt_block(lo, hi, rk)
        return a ^ lo, b ^ hi

    @njit(cache=True, nogil=True)
    def encrypt_blocks(x, rk, out):  # pragma: no cover - compiled
        """AES_k of every block of x (B, 2) into out (B, 2) (tests: against cryptography)."""
        for i in range(x.shape[0]):
            out[i, 0], out[i, 1] = encrypt_block(x[i, 0], x[i, 1], rk)
