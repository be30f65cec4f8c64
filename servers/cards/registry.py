"""Card binding registry: which card (id + public key) belongs to which identity.

One SQLite database per server (WAL, synchronous=FULL) so a binding survives a crash
the moment ``bind`` returns. Revocation keeps the row (status ``revoked``): a lost or
stolen card must stay refused, and its key can never be bound again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from splitface.shared.card_binding import (
    MAX_CARD_ID_LEN,
    MAX_IDENTITY_LEN,
    card_key_fingerprint,
    load_card_public_key,
)
from splitface.shared.closing import Closing
from splitface.shared.private_files import make_private

_SCHEMA = """
CREATE TABLE IF NOT EXISTS card_bindings (
    card_id     BLOB PRIMARY KEY,
    public_key  BLOB NOT NULL UNIQUE,
    identity_id TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('bound', 'revoked')),
    bound_at    REAL NOT NULL,
    revoked_at  REAL
);
CREATE INDEX IF NOT EXISTS card_bindings_identity ON card_bindings (identity_id);
"""


class BindingStatus(Enum):
    BOUND = "bound"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


class CardRegistryError(RuntimeError):
    """Base class for refused registry operations."""


class CardAlreadyBoundError(CardRegistryError):
    """The card id or its key is already bound to another identity (or another key)."""


class CardRevokedError(CardRegistryError):
    """The card was revoked; it cannot be bound again."""


@dataclass(frozen=True)
class CardBinding:
    """A registry row; ``status`` UNKNOWN is the typed empty result."""

    card_id: bytes
    public_key: bytes
    identity_id: str
    status: BindingStatus
    bound_at: float = 0.0
    revoked_at: float | None = None

    @classmethod
    def unknown(cls, card_id: bytes = b"") -> CardBinding:
        return cls(card_id, b"", "", BindingStatus.UNKNOWN)

    @property
    def is_bound(self) -> bool:
        return self.status is BindingStatus.BOUND

    def __repr__(self) -> str:  # keys are public, but keep log lines short
        fp = card_key_fingerprint(self.public_key) if self.public_key else "-"
        return (
            f"CardBinding(card_id={self.card_id.hex()}, key={fp}, "
            f"identity_id={self.identity_id!r}, status={self.status.value})"
        )


def _check_card_id(card_id: bytes) -> bytes:
    if not isinstance(card_id, bytes) or not 1 <= len(card_id) <= MAX_CARD_ID_LEN:
        raise ValueError(f"card_id must be 1..{MAX_CARD_ID_LEN} bytes")
    return card_id


class CardRegistry(Closing):
    """SQLite-backed map card id / public key -> identity id; thread-safe."""

    def __init__(self, db_path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self._path = Path(db_path)
        make_private(self._path)
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(self._path), isolation_level=None, check_same_thread=False, timeout=10.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)
        for suffix in ("-wal", "-shm"):
            make_private(self._path.with_name(self._path.name + suffix), create=False)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _row(row: tuple | None, card_id: bytes = b"") -> CardBinding:
        if row is None:
            return CardBinding.unknown(card_id)
        cid, key, ident, status, bound_at, revoked_at = row
        return CardBinding(
            bytes(cid), bytes(key), ident, BindingStatus(status), bound_at, revoked_at
        )

    def lookup(self, card_id: bytes) -> CardBinding:
        """The binding for ``card_id`` (status UNKNOWN when there is none)."""
        _check_card_id(card_id)
        with self._lock:
            row = self._db.execute(
                "SELECT card_id, public_key, identity_id, status, bound_at, revoked_at "
                "FROM card_bindings WHERE card_id = ?",
                (card_id,),
            ).fetchone()
        return self._row(row, card_id)

    def lookup_by_public_key(self, public_key: bytes) -> CardBinding:
        """The binding holding ``public_key`` (status UNKNOWN when there is none)."""
        with self._lock:
            row = self._db.execute(
                "SELECT card_id, public_key, identity_id, status, bound_at, revoked_at "
                "FROM card_bindings WHERE public_key = ?",
                (bytes(public_key),),
            ).fetchone()
        return self._row(row)

    def cards_of(self, identity_id: str) -> list[CardBinding]:
        """Every card ever bound to ``identity_id`` (bound and revoked)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT card_id, public_key, identity_id, status, bound_at, revoked_at "
                "FROM card_bindings WHERE identity_id = ? ORDER BY bound_at",
                (identity_id,),
            ).fetchall()
        return [self._row(r) for r in rows]

    def bind(self, card_id: bytes, public_key: bytes, identity_id: str) -> CardBinding:
        """Bind on enrolment; idempotent for the same (card, key, identity)."""
        _check_card_id(card_id)
        load_card_public_key(public_key)  # validates the point
        ident_len = len(identity_id.encode()) if isinstance(identity_id, str) else 0
        if not 1 <= ident_len <= MAX_IDENTITY_LEN:
            raise ValueError(f"identity_id must be 1..{MAX_IDENTITY_LEN} bytes of UTF-8")
        public_key = bytes(public_key)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT card_id, public_key, identity_id, status, bound_at, revoked_at "
                    "FROM card_bindings WHERE card_id = ? OR public_key = ?",
                    (card_id, public_key),
                ).fetchall()
                for existing in map(self._row, rows):
                    if existing.status is BindingStatus.REVOKED:
                        raise CardRevokedError(f"card {existing.card_id.hex()} was revoked")
                    if (existing.card_id, existing.public_key, existing.identity_id) != (
                        card_id,
                        public_key,
                        identity_id,
                    ):
                        raise CardAlreadyBoundError(
                            f"card {existing.card_id.hex()} is already bound "
                            "to another identity or key"
                        )
                if rows:
                    self._db.execute("COMMIT")
                    return self._row(rows[0])
                now = self._clock()
                self._db.execute(
                    "INSERT INTO card_bindings VALUES (?, ?, ?, 'bound', ?, NULL)",
                    (card_id, public_key, identity_id, now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return CardBinding(card_id, public_key, identity_id, BindingStatus.BOUND, now, None)

    def unbind(self, card_id: bytes) -> CardBinding:
        """Revoke ``card_id``; idempotent. Returns the (revoked) row, UNKNOWN if never bound."""
        _check_card_id(card_id)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "UPDATE card_bindings SET status = 'revoked', revoked_at = ? "
                    "WHERE card_id = ? AND status = 'bound'",
                    (self._clock(), card_id),
                )
                row = self._db.execute(
                    "SELECT card_id, public_key, identity_id, status, bound_at, revoked_at "
                    "FROM card_bindings WHERE card_id = ?",
                    (card_id,),
                ).fetchone()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return self._row(row, card_id)
