"""Give memory freed after a large computation back to the operating system.

Training and gallery builds allocate hundreds of MB of short-lived numpy buffers; glibc
keeps freed heap pages mapped, so a server's resident size stayed near its peak (issue 13:
1.1 GB after training on 1,000 identities, 61 MB before). ``malloc_trim`` returns them,
but only from the main arena's top and from free chunks below it, which is why every MPC
process allocates from one arena (``servers/mpc/threads.py``).
"""

from __future__ import annotations

import gc
import logging

from splitface.servers.mpc.threads import libc_function

log = logging.getLogger("splitface.server")


def release_free_memory() -> bool:
    """Collect garbage and return free heap pages to the OS; False where libc cannot."""
    gc.collect()
    return trim_heap()


def trim_heap() -> bool:
    """Return free heap pages to the OS without collecting garbage first: after a training
    on 1,000 identities it takes about a millisecond where the full collection took 71 ms,
    and it returns nearly all (7.5 GB -> 90 MB, with or without the collection, in one
    trial); False where libc cannot."""
    trim = libc_function("malloc_trim")
    if trim is None:
        return False
    try:
        trim(0)
    except OSError as exc:  # never fatal: this only affects resident size
        log.debug("malloc_trim failed: %s", exc)
        return False
    return True
