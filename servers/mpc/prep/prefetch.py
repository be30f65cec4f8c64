"""Prefetching: fetch preprocessing that the protocol is known to need next, in the background.

The online phase is deterministic given public data, so a loop knows the requests of its
next iteration (the same kinds and shapes, e.g. the next training batch). ``expect``
queues them; a single worker thread fetches them in order while the parties compute.
``fetch`` then takes the queued item when it matches. A mismatch (the last, shorter batch)
discards what was queued — both parties discard the same items, so the dealer's sequence
numbers stay paired — and falls back to fetching on demand.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.prep.base import Preprocessing
from splitface.servers.mpc.prep.material import Item, Request, batches

# a prefetched dealer message holds at most this much (unless one request is larger): its
# first item waits for the whole message to be generated and sent
BATCH_BYTES = 1 << 20


class PrefetchingPreprocessing(Preprocessing):
    """Wraps another source; every call to it runs on one worker thread (socket affinity)."""

    def __init__(self, inner: Preprocessing) -> None:
        self.inner, self.party = inner, inner.party
        self.session, self.epoch = inner.session, inner.epoch
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._queue: collections.deque[tuple[Request, Future[list[Item]], int]] = \
            collections.deque()
        self._lock = threading.Lock()
        self._recording: list[Request] | None = None
        self._closed = False
        self.hits = self.misses = 0

    def _submit(self, fn, *args) -> Future:
        """Run on the worker; after close() a clear protocol error, never a RuntimeError."""
        try:
            return self._pool.submit(fn, *args)
        except RuntimeError:  # the pool was shut down: this session is over
            raise ProtocolError("the preprocessing session is closed") from None

    def mac_key_share(self, epoch: int | None = None) -> np.ndarray:
        return self._submit(self.inner.mac_key_share, epoch).result()

    def open(self, timeout_s: float | None = None) -> None:
        """Register the session with the dealer (on the worker thread: socket affinity)."""
        self._submit(self.inner.open, timeout_s).result()

    def expect(self, requests: Iterable[Request]) -> None:
        """Queue requests the protocol will make next, in that order.

        They travel in dealer messages of 1, 2, 4, ... requests (material.batches; at most
        BATCH_BYTES unless alone): the first item arrives as soon as alone, and an
        identification's 15-25 requests take 4-6 round trips instead of one each."""
        with self._lock:
            for batch in batches(list(requests), BATCH_BYTES):
                fut = self._submit(self.inner.fetch_many, batch)
                self._queue.extend((r, fut, j) for j, r in enumerate(batch))

    def queued(self) -> int:
        """Requests queued and not yet taken (both honest servers hold the same number)."""
        with self._lock:
            return len(self._queue)

    def record(self) -> None:
        """Start recording the requests made from now on."""
        self._recording = []

    def stop_recording(self) -> list[Request]:
        """The requests made since ``record()``."""
        out, self._recording = self._recording or [], None
        return out

    def _fetch(self, req: Request) -> Item:
        if self._recording is not None:
            self._recording.append(req)
        with self._lock:
            item = self._queue.popleft() if self._queue else None
            if item is not None and item[0] != req:
                stale = [item, *self._queue]
                self._queue.clear()
                item = None
            else:
                stale = []
        for _, fut, _ in stale:  # consumed on both parties alike: the pairing stays intact
            fut.result()
        if item is not None:
            self.hits += 1
            return item[1].result()[item[2]]
        self.misses += 1
        return self._submit(self.inner.fetch, req).result()

    def close(self) -> None:
        """Stop promptly: queued fetches are cancelled, a running one is told to give up."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            pending = list(self._queue)
            self._queue.clear()
        for _, fut, _ in pending:
            fut.cancel()
        abort = getattr(self.inner, "abort", None)
        if abort is not None:
            abort()
        self._pool.submit(self.inner.close)
        self._pool.shutdown(wait=True)
