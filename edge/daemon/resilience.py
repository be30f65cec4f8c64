"""Fault domains of a terminal (camera, servers, card reader) with exponential back-off.

A terminal in the field must outlive an unplugged camera, a server restart or a removed card
reader without an operator: each fault is reported once as an event, retried on a growing
schedule (with jitter, so hundreds of terminals do not hammer a server that just came back in
lock-step), and reported again when it clears. Nothing here ever makes the daemon exit.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("splitface.edge.daemon")


@dataclass(frozen=True)
class BackoffOptions:
    """Delays grow ``initial_s * factor**n`` up to ``max_s``; ``jitter`` spreads them ±."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.1


class Jitter(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


@dataclass
class Backoff:
    """When the next attempt is due. ``clock`` is injectable for tests."""

    options: BackoffOptions = field(default_factory=BackoffOptions)
    clock: Callable[[], float] = time.monotonic
    rng: Jitter = field(default_factory=secrets.SystemRandom)  # jitter: the OS CSPRNG
    failures: int = 0
    next_at: float = float("-inf")

    def failed(self) -> float:
        """Record a failed attempt; returns the delay until the next one."""
        o = self.options
        base = min(o.max_s, o.initial_s * o.factor ** self.failures)
        delay = max(0.0, base * (1.0 + self.rng.uniform(-o.jitter, o.jitter)))
        self.failures += 1
        self.next_at = self.clock() + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.next_at = float("-inf")

    @property
    def due(self) -> bool:
        return self.clock() >= self.next_at

    def remaining(self) -> float:
        return max(0.0, self.next_at - self.clock())


Publish = Callable[..., Any]  # EventPublisher.publish(topic, **fields)


@dataclass
class FaultDomain:
    """One thing that can fail on its own, e.g. ``camera``; publishes ``NAME_unavailable`` on
    each failed attempt and ``NAME_restored`` once when it works again."""

    name: str
    publish: Publish
    backoff: Backoff = field(default_factory=Backoff)
    down_since: float | None = None
    reason: str = ""

    @property
    def healthy(self) -> bool:
        return self.down_since is None

    @property
    def due(self) -> bool:
        """Healthy, or down and its retry is due."""
        return self.healthy or self.backoff.due

    def failed(self, reason: str, **fields: Any) -> float:
        """A failed attempt: schedule the retry and report it. Returns the delay."""
        now = self.backoff.clock()
        if self.down_since is None:
            self.down_since = now
            log.warning("%s unavailable: %s", self.name, reason)
        else:
            log.info("%s still unavailable (attempt %d): %s", self.name,
                     self.backoff.failures + 1, reason)
        self.reason = reason
        delay = self.backoff.failed()
        self.publish(f"{self.name}_unavailable", reason=reason, attempt=self.backoff.failures,
                     down_s=round(now - self.down_since, 3), retry_in_s=round(delay, 3),
                     **fields)
        return delay

    def succeeded(self, **fields: Any) -> bool:
        """A working attempt; reports recovery if it was down. True if it was down."""
        if self.down_since is None:
            self.backoff.succeeded()
            return False
        down = self.backoff.clock() - self.down_since
        attempts = self.backoff.failures
        self.down_since, self.reason = None, ""
        self.backoff.succeeded()
        log.warning("%s restored after %.1f s (%d failed attempts)", self.name, down, attempts)
        self.publish(f"{self.name}_restored", down_s=round(down, 3), failed_attempts=attempts,
                     **fields)
        return True
