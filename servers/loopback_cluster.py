"""Start a dealer and two MPC worker processes on loopback (tests and benchmarks)."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import socket
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import zmq

from splitface.servers.dealer.service import DealerService
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.threads import limit_blas_threads, limit_malloc_arenas
from splitface.servers.mpc.warmup import load_compiled_kernels
from splitface.servers.mpc.worker import worker_main
from splitface.shared.client_protocol import ClientRequest
from splitface.shared.closing import Closing
from splitface.shared.transport.zap import start_authenticator

__all__ = ["JobError", "LoopbackCluster", "dealer_main"]


class JobError(RuntimeError):
    """A job raised in a worker; the message carries the worker's exception."""


def dealer_main(conn: Connection, cfg: dict[str, Any]) -> None:
    """Dealer process: serve until the controller closes the pipe or sends anything."""
    limit_malloc_arenas()
    limit_blas_threads(1)
    load_compiled_kernels(evaluate=False)  # as the dealer daemon does, before it serves
    ctx = zmq.Context()
    auth = start_authenticator(ctx, [cfg["p0"], cfg["p1"]])
    stop = threading.Event()
    service = DealerService(DealerCore(), ctx, cfg["endpoint"], public_key=cfg["public"],
                            secret_key=cfg["secret"], party_keys={0: cfg["p0"], 1: cfg["p1"]})
    thread = threading.Thread(target=service.serve, args=(stop,), daemon=True)
    thread.start()
    conn.send(("ready", service.endpoint))
    with contextlib.suppress(EOFError):
        conn.recv()
    stop.set()
    thread.join(5)
    service.close()
    auth.stop()
    ctx.destroy(linger=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackCluster(Closing):
    """Dealer (thread or process) + P0 + P1 as separate processes, all over CurveZMQ.

    ``run(job, kwargs0, kwargs1)`` runs a job on both servers concurrently and returns
    both results. Use as a context manager.
    """

    def __init__(self, peer_link: Callable[[int], str] | None = None) -> None:
        """``peer_link(port)`` returns the endpoint P1 connects to for P0 listening on
        ``port`` (a benchmark's WAN relay); P1 connects to P0 directly by default."""
        keys = {name: zmq.curve_keypair() for name in ("p0", "p1", "dealer")}
        mpctx = mp.get_context("spawn")
        self._conns, self.procs = [], []
        self._dealer_conn, child = mpctx.Pipe()
        self.dealer_proc = mpctx.Process(target=dealer_main, daemon=True, args=(child, {
            "endpoint": f"tcp://127.0.0.1:{_free_port()}", "public": keys["dealer"][0],
            "secret": keys["dealer"][1], "p0": keys["p0"][0], "p1": keys["p1"][0]}))
        self.dealer_proc.start()
        if not self._dealer_conn.poll(120):
            raise TimeoutError("dealer did not start")
        dealer_endpoint = self._dealer_conn.recv()[1]
        port = _free_port()
        peers = (f"tcp://127.0.0.1:{port}", peer_link(port) if peer_link is not None
                 else f"tcp://127.0.0.1:{port}")
        for i in (0, 1):
            me, other = keys[f"p{i}"], keys[f"p{1 - i}"]
            cfg = {"peer_endpoint": peers[i], "public": me[0], "secret": me[1],
                   "peer_public": other[0], "dealer_endpoint": dealer_endpoint,
                   "dealer_public": keys["dealer"][0]}
            parent, child = mpctx.Pipe()
            proc = mpctx.Process(target=worker_main, args=(i, child, cfg), daemon=True)
            proc.start()
            self._conns.append(parent)
            self.procs.append(proc)
        for c in self._conns:
            if not c.poll(120):
                self.close()
                raise TimeoutError("MPC worker did not start")
            c.recv()

    def run(self, job: str, kwargs0: dict[str, Any] | None = None,
            kwargs1: dict[str, Any] | None = None, timeout: float = 600.0) -> tuple[Any, Any]:
        for c, kw in zip(self._conns, (kwargs0 or {}, kwargs1 if kwargs1 is not None
                                       else kwargs0 or {}), strict=True):
            c.send((job, kw))
        out = []
        for c in self._conns:
            if not c.poll(timeout):
                raise TimeoutError(f"job {job} did not finish in {timeout} s")
            out.append(c.recv())
        for r in out:
            if r[0] == "error":
                raise JobError(r[1])
        return out[0][1], out[1][1]

    def client_job(self, job: str, values: np.ndarray, n_out: int, *,
                   checked_probe: int | None = None, **kw: Any
                   ) -> tuple[ClientRequest, Any, Any]:
        """Play the edge: input ``values`` (reals) by the client protocol, then run ``job``
        with the masked vector; returns the request (for unmasking) and both results.
        ``checked_probe``: the first that many inputs are a probe the servers range-check."""
        req = ClientRequest(values, n_out)
        if checked_probe is None:
            o0, o1 = self.run("splitface.servers.mpc.client_jobs:offer", {"n": req.n_total})
        else:
            o0, o1 = self.run("splitface.servers.mpc.client_jobs:offer_checked",
                              {"n": req.n_total, "n_probe": checked_probe})
        r0, r1 = self.run(job, {"masked": req.masked(o0, o1), **kw})
        return req, r0, r1

    def input_chunks(self, values: np.ndarray, job: str, chunk: int = 1 << 18) -> None:
        """Input a large vector chunk by chunk with ``job`` (which keeps each chunk)."""
        flat = np.asarray(values, dtype=np.float64).ravel()
        for s in range(0, flat.size, chunk):
            part = flat[s:s + chunk]
            self.client_job(job, part, 0, n=part.size)

    def stats(self) -> tuple[dict, dict]:
        return self.run("stats")

    def close(self) -> None:
        for c in [*self._conns, self._dealer_conn]:
            with contextlib.suppress(BrokenPipeError, OSError):
                c.send(("stop", {}))
        for p in [*self.procs, self.dealer_proc]:
            p.join(10)
            if p.is_alive():
                p.kill()
