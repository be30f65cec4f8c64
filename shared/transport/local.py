"""In-process channel pair for tests and one-process runs; messages still use the wire format."""

from __future__ import annotations

import queue

from splitface.shared import wire
from splitface.shared.transport.base import ChannelStats, TransportError, TransportTimeout
from splitface.shared.wire import Message


class LocalChannel:
    """One end of an in-memory link; build both ends with :func:`local_pair`."""

    def __init__(self, inbox: queue.Queue, outbox: queue.Queue, max_bytes: int) -> None:
        self._inbox, self._outbox, self._max = inbox, outbox, max_bytes
        self.stats = ChannelStats()
        self._closed = False
        self.tamper = None  # optional hook(Message) -> Message, used by fault-injection tests

    def send(self, msg: Message) -> None:
        if self._closed:
            raise TransportError("channel closed")
        if self.tamper is not None:
            msg = self.tamper(msg)
        frames = [bytes(f) for f in wire.encode(msg)]
        self.stats.record_send(sum(len(f) for f in frames))
        self._outbox.put(frames)

    def recv(self, expect: str | tuple[str, ...] | None = None,
             timeout: float | None = None) -> Message:
        if self._closed:
            raise TransportError("channel closed")
        try:
            frames = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise TransportTimeout(f"no message within {timeout} s") from None
        if frames is None:
            raise TransportError("peer closed the channel")
        self.stats.bytes_received += sum(len(f) for f in frames)
        self.stats.record_round()
        return wire.decode(frames, expect=expect, max_bytes=self._max)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._outbox.put(None)


def local_pair(max_bytes: int = wire.DEFAULT_MAX_BYTES << 4) -> tuple[LocalChannel, LocalChannel]:
    """Two connected channel ends."""
    a, b = queue.Queue(), queue.Queue()
    return LocalChannel(a, b, max_bytes), LocalChannel(b, a, max_bytes)
