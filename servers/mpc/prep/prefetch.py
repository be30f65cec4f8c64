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

from splitface.servers.mpc.prep.base import AuthPair, Preprocessing
from splitface.servers.mpc.prep.material import Request


class PrefetchingPreprocessing(Preprocessing):
    """Wraps another source; every call to it runs on one worker thread (socket affinity)."""

    def __init__(self, inner: Preprocessing) -> None:
        self.inner, self.party = inner, inner.party
        self.session = getattr(inner, "session", "")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
        self._queue: collections.deque[tuple[Request, Future]] = collections.deque()
        self._lock = threading.Lock()
        self._recording: list[Request] | None = None
        self.hits = self.misses = 0

    def mac_key_share(self) -> np.ndarray:
        return self._pool.submit(self.inner.mac_key_share).result()

    def expect(self, requests: Iterable[Request]) -> None:
        """Queue requests the protocol will make next, in that order."""
        with self._lock:
            for r in requests:
                self._queue.append((r, self._pool.submit(self.inner.fetch, r)))

    def record(self) -> None:
        """Start recording the requests made from now on."""
        self._recording = []

    def stop_recording(self) -> list[Request]:
        """The requests made since ``record()``."""
        out, self._recording = self._recording or [], None
        return out

    def _fetch(self, req: Request) -> list[AuthPair]:
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
        for _, fut in stale:  # consumed on both parties alike: the pairing stays intact
            fut.result()
        if item is not None:
            self.hits += 1
            return item[1].result()
        self.misses += 1
        return self._pool.submit(self.inner.fetch, req).result()

    def close(self) -> None:
        """Stop promptly: queued fetches are cancelled, a running one is told to give up."""
        with self._lock:
            pending = list(self._queue)
            self._queue.clear()
        for _, fut in pending:
            fut.cancel()
        abort = getattr(self.inner, "abort", None)
        if abort is not None:
            abort()
        self._pool.submit(self.inner.close)
        self._pool.shutdown(wait=True)
