"""The Channel protocol between two parties, with byte and round accounting."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

from splitface.shared.wire import Message


class TransportError(RuntimeError):
    """The link failed (peer gone, socket closed, authentication refused)."""


class TransportTimeout(TransportError):
    """No message arrived within the timeout."""


@dataclass
class ChannelStats:
    """Bytes and message flights, in total and per operation label (for benchmarks)."""

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    rounds: int = 0
    per_op: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    op: str = "other"

    def record_send(self, nbytes: int) -> None:
        self.bytes_sent += nbytes
        self.messages_sent += 1
        self.per_op[self.op][0] += nbytes

    def record_round(self) -> None:
        self.rounds += 1
        self.per_op[self.op][1] += 1

    def snapshot(self) -> tuple[int, int, int]:
        """(bytes sent, bytes received, rounds) so far, for computing deltas."""
        return self.bytes_sent, self.bytes_received, self.rounds


class Channel(Protocol):
    """A reliable, ordered, authenticated message link to one peer."""

    stats: ChannelStats

    def send(self, msg: Message) -> None:
        """Queue a message to the peer."""

    def recv(self, expect: str | tuple[str, ...] | None = None,
             timeout: float | None = None) -> Message:
        """The next message; raises TransportTimeout or WireError."""

    def close(self) -> None:
        """Release the link."""
