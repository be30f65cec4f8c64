"""Give memory freed after a large computation back to the operating system.

Training and gallery builds allocate hundreds of MB of short-lived numpy buffers; glibc
keeps freed heap pages mapped, so a server's resident size stayed near its peak (issue 13:
1.1 GB after training on 1,000 identities, 61 MB before). ``malloc_trim`` returns them,
but only from the main arena's top and from free chunks below it: the free top of a
thread's arena (the dealer prefetch thread expands training material there) stays
resident, 30-60 MB per server after each training. So each daemon keeps one arena.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger("splitface.server")
_libc: ctypes.CDLL | None = None


def _trim_fn():
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        if name is None:
            return None
        _libc = ctypes.CDLL(name)
    return getattr(_libc, "malloc_trim", None)  # glibc only (not musl, not macOS)


M_ARENA_MAX = -8  # mallopt parameter number (glibc malloc.h)


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Let every thread allocate from the same ``arenas`` glibc arenas, so that
    ``malloc_trim`` can return what they free. Call it first in a daemon's main(), before
    it starts threads; False where libc has no ``mallopt`` (not glibc)."""
    _trim_fn()
    mallopt = getattr(_libc, "mallopt", None) if _libc is not None else None
    if mallopt is None:
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """Collect garbage and return free heap pages to the OS; False where libc cannot."""
    gc.collect()
    trim = _trim_fn()
    if trim is None:
        return False
    try:
        trim(0)
    except OSError as exc:  # never fatal: this only affects resident size
        log.debug("malloc_trim failed: %s", exc)
        return False
    return True
