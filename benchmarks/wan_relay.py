"""A delaying, rate-limiting TCP relay: the P0 <-> P1 link as a WAN for benchmarks.

Each direction holds every chunk it reads for half the round trip, then paces it onto the
other connection at the given rate, in order (a chunk of n bytes occupies the link for
n / rate seconds after the previous one). It runs an asyncio loop in a thread of the
benchmark's own process, started and stopped by the benchmark. ``measure_rtt`` runs a
ping-pong through it against a local echo server, so the latency a run reports is the
relay's measured one, not the configured one.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

CHUNK = 1 << 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WanRelay:
    """Listen on 127.0.0.1:``port`` and forward to ``target`` with delay and rate."""

    def __init__(self, target: tuple[str, int], rtt_ms: float, mbit: float,
                 port: int | None = None) -> None:
        self.target, self.port = target, port or free_port()
        self.one_way_s = rtt_ms / 2e3
        self.bytes_per_s = mbit * 1e6 / 8 if mbit > 0 else float("inf")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def __enter__(self) -> WanRelay:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        deadline = time.monotonic() + 30.0  # the target may still be starting
        while True:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
                break
            except OSError:
                if time.monotonic() > deadline:
                    writer.close()
                    return
                await asyncio.sleep(0.05)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._direction(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _direction(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        sender = asyncio.ensure_future(self._send(queue, dst))
        try:
            while True:
                data = await src.read(CHUNK)
                queue.put_nowait((time.monotonic(), data))
                if not data:
                    break
            await sender
        except (ConnectionError, asyncio.CancelledError):
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send(self, queue: asyncio.Queue, dst: asyncio.StreamWriter) -> None:
        link_free = 0.0  # when the paced link has sent everything before this chunk
        try:
            while True:
                arrived, data = await queue.get()
                if not data:
                    break
                start = max(arrived + self.one_way_s, link_free)
                link_free = start + len(data) / self.bytes_per_s
                delay = link_free - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            dst.close()


def _echo_server() -> tuple[socket.socket, Callable[[], None]]:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            while data := conn.recv(CHUNK):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.close


def measure_rtt(rtt_ms: float, mbit: float, pings: int = 20) -> dict[str, float]:
    """Median round trip of a 64-byte ping-pong through a relay with these settings (and
    the time a 1 MB message takes one way at the configured rate)."""
    srv, close = _echo_server()
    try:
        with WanRelay(srv.getsockname(), rtt_ms, mbit) as relay, \
                socket.create_connection(("127.0.0.1", relay.port)) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            times = []
            for _ in range(pings):
                t0 = time.perf_counter()
                c.sendall(b"x" * 64)
                got = 0
                while got < 64:
                    got += len(c.recv(64 - got))
                times.append(time.perf_counter() - t0)
            times.sort()
            return {"relay_rtt_ms": round(times[len(times) // 2] * 1e3, 2),
                    "relay_rtt_ms_max": round(times[-1] * 1e3, 2)}
    finally:
        close()
