"""A generic MPC server process for tests and engine benchmarks.

It connects to its peer and the dealer on real CurveZMQ sockets, then runs jobs sent by
the controlling process over a pipe: ``(\"module:function\", kwargs)`` is called as
``function(party, state, **kwargs)`` with a per-process ``state`` dict that persists
between jobs (e.g. a FixedOperand). Product daemons use the same engine through
``servers/service``; this worker exists so that every engine property can be exercised
over the real two-process path.
"""

from __future__ import annotations

import importlib
import os
import traceback
from multiprocessing.connection import Connection
from typing import Any

import psutil
import zmq

from splitface.servers.mpc.netparty import connect_party
from splitface.servers.mpc.threads import limit_blas_threads, limit_malloc_arenas
from splitface.servers.mpc.warmup import load_compiled_kernels
from splitface.shared.transport.zap import start_authenticator


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    if not module.startswith(("splitface.", "tests.", "benchmarks.")):
        raise ValueError(f"refusing to run job from {module!r}")
    return getattr(importlib.import_module(module), name)


def worker_main(party: int, conn: Connection, cfg: dict[str, Any]) -> None:
    """Process entry point: connect, then serve jobs until ("stop", {}) or EOF."""
    limit_malloc_arenas()  # as the daemons do: what the benchmarks measure is what they hold
    limit_blas_threads(cfg.get("blas_threads", 1))
    load_compiled_kernels()  # as the daemons do: no job pays numba's cache load and LLVM start
    ctx = zmq.Context()
    auth = start_authenticator(ctx, [cfg["peer_public"], cfg["dealer_public"]]) if party == 0 \
        else None
    p = None
    try:
        p = connect_party(party, ctx, peer_endpoint=cfg["peer_endpoint"],
                          public_key=cfg["public"], secret_key=cfg["secret"],
                          peer_public_key=cfg["peer_public"],
                          dealer_endpoint=cfg["dealer_endpoint"],
                          dealer_public_key=cfg["dealer_public"])
        p.prep.mac_key_share()
        conn.send(("ready", os.getpid()))
        state: dict[str, Any] = {}
        while True:
            try:
                job, kwargs = conn.recv()
            except EOFError:
                break
            if job == "stop":
                break
            if job == "stats":
                s = p.channel.stats
                conn.send(("ok", {"bytes_sent": s.bytes_sent, "bytes_received": s.bytes_received,
                                  "rounds": s.rounds, "per_op": dict(s.per_op),
                                  "rss_mb": psutil.Process().memory_info().rss / 2**20,
                                  "peak_rss_mb": _peak_rss_mb()}))
                continue
            try:
                conn.send(("ok", _resolve(job)(p, state, **kwargs)))
            except Exception as exc:
                conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        if p is not None:
            p.prep.close()
            p.channel.close()
        if auth is not None:
            auth.stop()
        ctx.destroy(linger=0)


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
