"""One server's durable store of shares: enrolments and trained models (SQLite, WAL).

Every write is one transaction, so a crash leaves either the old or the new state,
never a torn record. Enrolment is idempotent by request id. Shares are stored as raw
little-endian uint64 blobs with their shape and fixed-point scale; nothing in here is
meaningful without the other server's store.

Every stored MAC is valid under the alpha of one *key epoch* (``key_epoch``). After a
failed MAC check that epoch is marked retired here before anything else happens, and
the shares are re-authenticated under a new epoch (servers/service/rekey.py): the new
shares are first *staged*, and switched to in one transaction only once the other server
has staged its own, so a crash at any point leaves both stores recoverable.
The database files are created private (mode 0600).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splitface.shared.private_files import make_private

SCHEMA = """
CREATE TABLE IF NOT EXISTS enrolments (
    request_id TEXT PRIMARY KEY,
    identity   TEXT NOT NULL,
    dim        INTEGER NOT NULL,
    frac       INTEGER NOT NULL,
    val        BLOB NOT NULL,
    mac        BLOB NOT NULL,
    created    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS enrolments_identity ON enrolments(identity);
CREATE TABLE IF NOT EXISTS revoked (
    identity TEXT PRIMARY KEY,
    revoked  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    name    TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    meta    TEXT NOT NULL,
    shape   TEXT NOT NULL,
    frac    INTEGER NOT NULL,
    val     BLOB NOT NULL,
    mac     BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    request_id  TEXT PRIMARY KEY,
    identity    TEXT NOT NULL,
    dim         INTEGER NOT NULL,
    frac        INTEGER NOT NULL,
    val         BLOB NOT NULL,
    mac         BLOB NOT NULL,
    key_epoch   INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    at          REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rekey_staged (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    val  BLOB NOT NULL,
    mac  BLOB NOT NULL,
    PRIMARY KEY (kind, name)
);
"""
ENROLMENT, MODEL = "enrolment", "model"


class StoreError(RuntimeError):
    """The store refused an operation (duplicate with different content, corruption)."""


@dataclass(frozen=True)
class StoredShare:
    """A share as stored: value and MAC limbs, logical shape, fractional bits."""

    val: np.ndarray
    mac: np.ndarray
    frac: int


@dataclass(frozen=True)
class Enrolment:
    request_id: str
    identity: str
    share: StoredShare


def _blob(a: np.ndarray) -> bytes:
    if a.dtype != np.uint64:
        raise StoreError("shares must be uint64 ring arrays")
    return np.ascontiguousarray(a).tobytes()


def _array(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    a = np.frombuffer(blob, dtype=np.uint64)
    if a.size != 2 * int(np.prod(shape, dtype=np.int64)):
        raise StoreError(f"stored share has {a.size} limbs, expected shape {shape}")
    return a.reshape((2, *shape)).copy()


class ShareStore:
    """SQLite-backed share storage for one server; safe to use from several threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        make_private(self.path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=30)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        if self._db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise StoreError(f"{self.path} failed SQLite's integrity check")
        for suffix in ("-wal", "-shm"):
            make_private(self.path.with_name(self.path.name + suffix), create=False)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ------------------------------------------------------------ meta
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE "
                       "SET value=excluded.value", (key, value))

    # ------------------------------------------------------------ key epochs
    def key_epoch(self) -> int:
        """The epoch whose alpha every stored MAC is valid under (0: nothing stored yet)."""
        return int(self.get_meta("key_epoch") or 0)

    def adopt_key_epoch(self, epoch: int) -> None:
        """Start using ``epoch`` for an empty store (nothing to re-authenticate)."""
        if self.tensor_count():
            raise StoreError("the store holds shares: change its key epoch by re-keying")
        self.set_meta("key_epoch", str(epoch))

    def retired_epoch(self) -> int:
        """The newest key epoch known to be retired (a failed MAC check), 0 if none."""
        return int(self.get_meta("retired_epoch") or 0)

    def retire_epoch(self, epoch: int) -> None:
        """Record durably that ``epoch`` must never serve MPC again (before anything else)."""
        if epoch > self.retired_epoch():
            self.set_meta("retired_epoch", str(epoch))

    def tensor_count(self) -> int:
        with self._lock:
            n = self._db.execute("SELECT COUNT(*) FROM enrolments").fetchone()[0]
            return n + self._db.execute("SELECT COUNT(*) FROM models").fetchone()[0]

    def tensors(self) -> list[tuple[str, str, StoredShare]]:
        """Every stored share as (kind, name, share), in a canonical order both servers share
        (enrolments by request id, then models by name)."""
        with self._lock:
            enr = self._db.execute("SELECT request_id, dim, frac, val, mac FROM enrolments "
                                   "ORDER BY request_id").fetchall()
            mod = self._db.execute("SELECT name, shape, frac, val, mac FROM models "
                                   "ORDER BY name").fetchall()
        out = [(ENROLMENT, r, StoredShare(_array(v, (d,)), _array(m, (d,)), f))
               for r, d, f, v, m in enr]
        for n, shp, f, v, m in mod:
            shape = tuple(json.loads(shp))
            out.append((MODEL, n, StoredShare(_array(v, shape), _array(m, shape), f)))
        return out

    def staged_epoch(self) -> int:
        """The key epoch of staged re-keyed shares, 0 if none are staged."""
        return int(self.get_meta("rekey_target") or 0)

    def stage_rekey(self, target: int, items: list[tuple[str, str, StoredShare]]) -> None:
        """Durably keep re-keyed shares beside the current ones (phase one of the switch)."""
        with self._tx() as db:
            db.execute("DELETE FROM rekey_staged")
            db.executemany("INSERT INTO rekey_staged VALUES(?, ?, ?, ?)",
                           [(k, n, _blob(s.val), _blob(s.mac)) for k, n, s in items])
            db.execute("INSERT OR REPLACE INTO meta VALUES('rekey_target', ?)", (str(target),))

    def rekey_failures(self, epoch: int) -> int:
        """Failed or interrupted re-keying checks under ``epoch`` (each may have told a
        malicious peer a little about that epoch's key: capped, see coordinator.py)."""
        return int(self.get_meta(f"rekey_failures:{epoch}") or 0)

    def note_rekey_failure(self, epoch: int) -> int:
        n = self.rekey_failures(epoch) + 1
        self.set_meta(f"rekey_failures:{epoch}", str(n))
        return n

    def clear_rekey_failures(self) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM meta WHERE key LIKE 'rekey_failures:%'")

    def quarantine_enrolments(self, request_ids: list[str], reason: str) -> int:
        """Move enrolments aside (kept, never used): records the other server says it lacks
        are not deleted on its word alone. Returns how many were moved."""
        with self._tx() as db:
            return self._quarantine_locked(db, request_ids, reason)

    def _quarantine_locked(self, db: sqlite3.Connection, request_ids: list[str],
                           reason: str) -> int:
        epoch = int(self.get_meta_locked(db, "key_epoch") or 0)
        n = 0
        for rid in request_ids:
            row = db.execute("SELECT request_id, identity, dim, frac, val, mac FROM enrolments "
                             "WHERE request_id=?", (rid,)).fetchone()
            if row is None:
                continue
            db.execute("INSERT OR REPLACE INTO quarantine VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (*row, epoch, reason, time.time()))
            db.execute("DELETE FROM enrolments WHERE request_id=?", (rid,))
            n += 1
        return n

    def quarantined(self) -> list[tuple[str, str, str]]:
        """(request id, identity, reason) of every quarantined enrolment."""
        with self._lock:
            return [tuple(r) for r in self._db.execute(
                "SELECT request_id, identity, reason FROM quarantine ORDER BY at")]

    def commit_rekey(self, target: int) -> int:
        """Switch to the staged shares in one transaction (phase two). Enrolments that were
        not re-keyed (the other server says it lacks them) are quarantined, not deleted;
        models that were not are dropped (retraining rebuilds them). Returns the number of
        enrolments quarantined."""
        with self._tx() as db:
            if self.get_meta_locked(db, "rekey_target") != str(target):
                raise StoreError(f"no re-keyed shares staged for key epoch {target}")
            staged = {(k, n) for k, n in db.execute("SELECT kind, name FROM rekey_staged")}
            for kind, table, col in ((ENROLMENT, "enrolments", "request_id"),
                                     (MODEL, "models", "name")):
                db.execute(f"UPDATE {table} SET (val, mac) = (SELECT s.val, s.mac FROM "
                           f"rekey_staged s WHERE s.kind = ? AND s.name = {table}.{col}) "
                           f"WHERE {col} IN (SELECT name FROM rekey_staged WHERE kind = ?)",
                           (kind, kind))
            lost = [rid for rid, in db.execute("SELECT request_id FROM enrolments").fetchall()
                    if (ENROLMENT, rid) not in staged]
            dropped = self._quarantine_locked(db, lost, f"not re-keyed to epoch {target}: "
                                                        "the other server lacks it")
            for name, in db.execute("SELECT name FROM models").fetchall():
                if (MODEL, name) not in staged:  # a partial model is useless: drop them all
                    db.execute("DELETE FROM models")
                    break
            db.execute("DELETE FROM rekey_staged")
            db.execute("DELETE FROM meta WHERE key='rekey_target'")
            db.execute("INSERT OR REPLACE INTO meta VALUES('key_epoch', ?)", (str(target),))
        return dropped

    def discard_staged(self) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM rekey_staged")
            db.execute("DELETE FROM meta WHERE key='rekey_target'")

    # ------------------------------------------------------------ enrolments
    def has_enrolment(self, request_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM enrolments WHERE request_id=?",
                                    (request_id,)).fetchone() is not None

    def add_enrolment(self, request_id: str, identity: str, share: StoredShare) -> bool:
        """Store an enrolment; False if this request id is already stored (idempotent)."""
        if share.val.ndim != 2:
            raise StoreError("an enrolment is one embedding vector")
        with self._tx() as db:
            if db.execute("SELECT 1 FROM revoked WHERE identity=?", (identity,)).fetchone():
                raise StoreError(f"identity {identity!r} is revoked")
            try:
                db.execute("INSERT INTO enrolments VALUES(?, ?, ?, ?, ?, ?, ?)",
                           (request_id, identity, share.val.shape[1], share.frac,
                            _blob(share.val), _blob(share.mac), time.time()))
            except sqlite3.IntegrityError:
                return False
        return True

    def enrolments(self) -> list[Enrolment]:
        """All enrolments, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT request_id, identity, dim, frac, val, mac "
                                    "FROM enrolments ORDER BY created, request_id").fetchall()
        return [Enrolment(r, i, StoredShare(_array(v, (d,)), _array(m, (d,)), f))
                for r, i, d, f, v, m in rows]

    def identities(self) -> list[str]:
        """Enrolled identities in first-enrolment order (the gallery order)."""
        with self._lock:
            rows = self._db.execute("SELECT identity, MIN(created) AS first FROM enrolments "
                                    "GROUP BY identity ORDER BY first, identity").fetchall()
        return [r[0] for r in rows]

    def record_ids(self) -> list[tuple[str, str]]:
        """(request id, identity) of every enrolment: what P0 and P1 compare."""
        with self._lock:
            return [tuple(r) for r in self._db.execute(
                "SELECT request_id, identity FROM enrolments ORDER BY request_id")]

    def digest(self) -> str:
        """A digest of the record set (ids and identities only, never shares)."""
        h = hashlib.sha256()
        for rid, ident in self.record_ids():
            h.update(f"{len(rid)}:{rid}{len(ident)}:{ident}".encode())
        return h.hexdigest()

    def delete_enrolments(self, request_ids: list[str]) -> int:
        with self._tx() as db:
            n = 0
            for rid in request_ids:
                n += db.execute("DELETE FROM enrolments WHERE request_id=?", (rid,)).rowcount
        return n

    def revoke(self, identity: str) -> int:
        """Delete an identity's enrolments and refuse it from now on; returns records removed."""
        with self._tx() as db:
            n = db.execute("DELETE FROM enrolments WHERE identity=?", (identity,)).rowcount
            db.execute("INSERT OR REPLACE INTO revoked VALUES(?, ?)", (identity, time.time()))
            db.execute("DELETE FROM models")  # models trained on the identity must go too
        return n

    # ------------------------------------------------------------ models
    def put_models(self, models: dict[str, StoredShare], meta: dict) -> int:
        """Replace all models at once (one transaction); returns the new version."""
        with self._tx() as db:
            row = db.execute("SELECT MAX(version) FROM models").fetchone()
            prev = self.get_meta_locked(db, "model_version")
            version = max(int(row[0] or 0), int(prev or 0)) + 1
            db.execute("DELETE FROM models")
            for name, s in models.items():
                db.execute("INSERT INTO models VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                           (name, version, json.dumps(meta), json.dumps(list(s.val.shape[1:])),
                            s.frac, _blob(s.val), _blob(s.mac), time.time()))
            db.execute("INSERT OR REPLACE INTO meta VALUES('model_version', ?)", (str(version),))
        return version

    @staticmethod
    def get_meta_locked(db: sqlite3.Connection, key: str) -> str | None:
        row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def models(self) -> tuple[int, dict, dict[str, StoredShare]]:
        """(version, meta, shares by name) of the current models; version 0 if none."""
        with self._lock:
            rows = self._db.execute("SELECT name, version, meta, shape, frac, val, mac "
                                    "FROM models").fetchall()
        if not rows:
            return 0, {}, {}
        out = {n: StoredShare(_array(v, tuple(json.loads(s))), _array(m, tuple(json.loads(s))), f)
               for n, _, _, s, f, v, m in rows}
        return rows[0][1], json.loads(rows[0][2]), out
