"""Server nonces for card challenges: CSPRNG, single use, short TTL, bounded memory.

A nonce is bound at issue time to the card id the edge announced, so a signature
made by another card cannot consume it. Spent and expired nonces are remembered for
a while (bounded) only so that a replay is reported as a replay, not as "unknown".
Restarting the server forgets every outstanding nonce, which fails closed.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from splitface.shared.card_binding import NONCE_LEN, same_bytes


class NonceCheck(Enum):
    """Outcome of presenting a nonce; only FRESH authorises anything."""

    FRESH = "fresh"
    REPLAYED = "replayed"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    WRONG_CARD = "wrong_card"


class NonceStoreFullError(RuntimeError):
    """Too many outstanding nonces: refuse new taps rather than evict live sessions."""


@dataclass(frozen=True)
class NonceOptions:
    """TTL and memory bounds; defaults suit a tap that completes within seconds."""

    ttl_s: float = 30.0
    capacity: int = 4096
    retired_capacity: int = 16384
    retain_s: float = 600.0

    def __post_init__(self) -> None:
        if self.ttl_s <= 0 or self.retain_s < 0:
            raise ValueError("ttl_s must be > 0 and retain_s >= 0")
        if self.capacity < 1 or self.retired_capacity < 0:
            raise ValueError("capacity must be >= 1 and retired_capacity >= 0")


@dataclass(frozen=True)
class IssuedNonce:
    """A fresh nonce and how long the edge has to use it."""

    nonce: bytes
    ttl_s: float


@dataclass
class _Live:
    issued_at: float
    card_id: bytes


class NonceStore:
    """Issue and consume single-use nonces; thread-safe, clock injectable for tests."""

    def __init__(
        self, options: NonceOptions | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._opts = options or NonceOptions()
        self._clock = clock
        self._lock = threading.Lock()
        self._live: OrderedDict[bytes, _Live] = OrderedDict()  # issue order == expiry order
        self._retired: OrderedDict[bytes, tuple[NonceCheck, float]] = OrderedDict()

    @classmethod
    def from_options(
        cls, options: NonceOptions, clock: Callable[[], float] = time.monotonic
    ) -> NonceStore:
        return cls(options, clock)

    @property
    def options(self) -> NonceOptions:
        return self._opts

    def __len__(self) -> int:
        """Outstanding (issued, unspent, unexpired) nonces."""
        with self._lock:
            self._purge(self._clock())
            return len(self._live)

    def issue(self, card_id: bytes) -> IssuedNonce:
        """A fresh 32-byte nonce bound to ``card_id``; raises NonceStoreFullError at capacity."""
        if not isinstance(card_id, bytes) or not card_id:
            raise ValueError("card_id must be non-empty bytes")
        with self._lock:
            now = self._clock()
            self._purge(now)
            if len(self._live) >= self._opts.capacity:
                raise NonceStoreFullError(
                    f"{len(self._live)} outstanding card nonces (capacity {self._opts.capacity})"
                )
            nonce = secrets.token_bytes(NONCE_LEN)
            self._live[nonce] = _Live(now, bytes(card_id))
            return IssuedNonce(nonce, self._opts.ttl_s)

    def consume(self, nonce: bytes, card_id: bytes) -> NonceCheck:
        """Spend ``nonce`` for ``card_id``. Any presentation spends it, success or not."""
        if not isinstance(nonce, bytes) or len(nonce) != NONCE_LEN:
            return NonceCheck.UNKNOWN
        with self._lock:
            now = self._clock()
            self._purge(now)
            live = self._live.pop(nonce, None)
            if live is None:
                retired = self._retired.get(nonce)
                return NonceCheck.UNKNOWN if retired is None else retired[0]
            if now - live.issued_at > self._opts.ttl_s:
                self._retire(nonce, NonceCheck.EXPIRED, now)
                return NonceCheck.EXPIRED
            self._retire(nonce, NonceCheck.REPLAYED, now)
            if not same_bytes(live.card_id, card_id):
                return NonceCheck.WRONG_CARD
            return NonceCheck.FRESH

    def _retire(self, nonce: bytes, outcome: NonceCheck, now: float) -> None:
        if self._opts.retired_capacity == 0:
            return
        self._retired[nonce] = (outcome, now)
        self._retired.move_to_end(nonce)
        while len(self._retired) > self._opts.retired_capacity:
            self._retired.popitem(last=False)

    def _purge(self, now: float) -> None:
        while self._live:
            nonce, live = next(iter(self._live.items()))
            if now - live.issued_at <= self._opts.ttl_s:
                break
            del self._live[nonce]
            self._retire(nonce, NonceCheck.EXPIRED, now)
        while self._retired:
            nonce, (_, at) = next(iter(self._retired.items()))
            if now - at <= self._opts.retain_s:
                break
            del self._retired[nonce]
