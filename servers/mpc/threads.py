"""Per-process settings of every MPC process: BLAS threads and malloc arenas.

Each party is one process; on a small host the two servers and the dealer share the
cores, and OpenBLAS's own thread pool then oversubscribes them (measured here: 2.4x
slower training). Deployments with spare cores can raise ``threads``.

glibc gives each thread its own malloc arena, and ``malloc_trim`` never returns the free
top of a thread's arena: the dealer prefetch thread expands training material in its
arena, so 30-60 MB stayed resident per server after each training at N = 1,000 (about
150 MB in the dealer). Every MPC process therefore allocates from one arena.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

from threadpoolctl import threadpool_limits

M_ARENA_MAX = -8  # mallopt parameter number (glibc malloc.h)
_libc: ctypes.CDLL | None = None


def limit_blas_threads(threads: int = 1) -> None:
    """Cap BLAS/OpenMP pools for the rest of this process."""
    threadpool_limits(limits=threads)


def libc_function(name: str) -> Any | None:
    """A function of the C library (loaded once), or None where it has none (glibc's
    ``mallopt`` and ``malloc_trim`` are missing on musl and macOS)."""
    global _libc
    if _libc is None:
        path = ctypes.util.find_library("c")
        if path is None:
            return None
        _libc = ctypes.CDLL(path)
    return getattr(_libc, name, None)


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Let every thread allocate from the same ``arenas`` glibc arenas, so that
    ``malloc_trim`` can return what they free. Call it first in a process's main, before
    it starts threads; False where libc has no ``mallopt`` (not glibc)."""
    mallopt = libc_function("mallopt")
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, arenas))
