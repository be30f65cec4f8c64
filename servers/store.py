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

Models are versioned the same way: a new version is *staged* on both servers, then each
*commits* it only once the other has staged it (handlers.py), so a committed version is
always at least staged on the other side; the two newest committed versions are kept, so a
split left by a crash heals by rolling forward or back to the newest common version
(``plan_models``), without an operator. Revoking an identity keeps its enrolments (marked
revoked, restorable) and is applied in the same transaction as the model version without
it. The database files are created private (mode 0600).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
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
    created    REAL NOT NULL,
    revoked    REAL
);
CREATE INDEX IF NOT EXISTS enrolments_identity ON enrolments(identity);
CREATE TABLE IF NOT EXISTS revoked (
    identity TEXT PRIMARY KEY,
    revoked  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS model_versions (
    version INTEGER PRIMARY KEY,
    state   TEXT NOT NULL CHECK (state IN ('staged', 'committed')),
    meta    TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS model_tensors (
    version INTEGER NOT NULL REFERENCES model_versions(version) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    shape   TEXT NOT NULL,
    frac    INTEGER NOT NULL,
    val     BLOB NOT NULL,
    mac     BLOB NOT NULL,
    PRIMARY KEY (version, name)
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
KEEP_COMMITTED = 2  # committed model versions kept: the newest, and one to roll back to


class StoreError(RuntimeError):
    """The store refused an operation (duplicate with different content, corruption)."""


@dataclass(frozen=True)
class StoredShare:
    """A share as stored: value and MAC limbs, logical shape, fractional bits."""

    val: np.ndarray
    mac: np.ndarray
    frac: int


@dataclass(frozen=True)
class ModelState:
    """What a server tells its peer about its model versions at session start."""

    current: int  # newest committed version, 0 if none
    staged: int  # a staged version, 0 if none
    committed: tuple[int, ...]  # every committed version kept
    seen: int  # the highest version number ever staged here (never reused)

    def to_meta(self) -> dict:
        return {"current": self.current, "staged": self.staged,
                "committed": list(self.committed), "seen": self.seen}

    @classmethod
    def from_meta(cls, meta: object) -> ModelState:
        if not isinstance(meta, dict):
            raise ValueError("no model state")
        ints = [meta.get(k) for k in ("current", "staged", "seen")]
        committed = meta.get("committed")
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 62
                   for v in ints) or not isinstance(committed, list) or len(committed) > 16 \
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1 << 62
                           for v in committed):
            raise ValueError("malformed model state")
        return cls(ints[0], ints[1], tuple(committed), ints[2])


@dataclass(frozen=True)
class ModelPlan:
    """How one server heals its model versions against the peer's (``plan_models``)."""

    commit: int = 0  # commit this staged version (the peer already committed it)
    roll_back_to: int | None = None  # drop committed versions above this one
    discard_staged: bool = False


def plan_models(mine: ModelState, peer: ModelState) -> ModelPlan:
    """The same decision on both servers, from both states.

    A version is committed only after both staged it, so a version the peer committed and
    this server staged is rolled *forward* (committed here too). If the servers' current
    versions still differ (e.g. a store restored from a backup), both fall back to the
    newest version both have committed (0: no model; retrain). Staged leftovers go.
    """
    def forward(a: ModelState, b: ModelState) -> tuple[int, set[int]]:
        if a.staged and a.staged == b.current and a.staged > a.current:
            return a.staged, {*a.committed, a.staged}
        return a.current, set(a.committed)

    my_current, my_set = forward(mine, peer)
    peer_current, peer_set = forward(peer, mine)
    commit = my_current if my_current != mine.current else 0
    target = my_current if my_current == peer_current else max(my_set & peer_set, default=0)
    roll_back = target if target != my_current else None
    leftover = bool(mine.staged) and mine.staged != commit
    return ModelPlan(commit, roll_back, leftover)


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


def _bucket(request_id: str) -> str:
    """The digest bucket of a request id ([A-Za-z0-9_-], so any id of the bucket sorts
    below bucket + "\\x7f")."""
    return request_id[:2]


def _hash_rows(rows: list) -> bytes:
    """SHA-256 over (request id, identity, revoked) rows, each length-prefixed."""
    h = hashlib.sha256()
    for rid, ident, revoked in rows:
        h.update(f"{len(rid)}:{rid}{len(ident)}:{ident}{'r' if revoked else '-'}".encode())
    return h.digest()


class ShareStore:
    """SQLite-backed share storage for one server; safe to use from several threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        make_private(self.path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=30)
        self._lock = threading.RLock()
        # the record digest per bucket of request ids; a commit marks the buckets it touched
        # (or all of them), another connection's commit (PRAGMA data_version) all of them
        self._buckets: dict[str, bytes] = {}
        self._dirty: set[str] = set()
        self._dirty_all = True
        self._data_version: int | None = None
        # a committed version's meta never changes (versions are never reused), and at
        # 100,000 identities parsing its name list took 7 ms per request
        self._meta: tuple[tuple[int, float], dict] = ((0, 0.0), {})
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._migrate()
        if self._db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise StoreError(f"{self.path} failed SQLite's integrity check")
        for suffix in ("-wal", "-shm"):
            make_private(self.path.with_name(self.path.name + suffix), create=False)

    def _migrate(self) -> None:
        """Stores written before model versions and restorable revocations: one committed
        version from the old ``models`` table; revoked identities had their records
        deleted, so there is nothing to mark."""
        with self._tx() as db:
            cols = {r[1] for r in db.execute("PRAGMA table_info(enrolments)")}
            if "revoked" not in cols:
                db.execute("ALTER TABLE enrolments ADD COLUMN revoked REAL")
            old = db.execute("SELECT name FROM sqlite_master WHERE type='table' AND "
                             "name='models'").fetchone()
            if old is None:
                return
            rows = db.execute("SELECT name, version, meta, shape, frac, val, mac, created "
                              "FROM models").fetchall()
            if rows:
                version, meta, created = rows[0][1], rows[0][2], rows[0][7]
                db.execute("INSERT OR REPLACE INTO model_versions VALUES(?, 'committed', ?, ?)",
                           (version, meta, created))
                db.executemany("INSERT OR REPLACE INTO model_tensors VALUES(?, ?, ?, ?, ?, ?)",
                               [(version, n, shp, f, v, m) for n, _, _, shp, f, v, m, _ in rows])
            db.execute("DROP TABLE models")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self, touched: Iterable[str] | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``touched``: the only enrolment request ids it may change
        (their digest buckets are rehashed); None: it may change any."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if touched is None:
                self._dirty_all = True
            else:
                self._dirty.update(_bucket(r) for r in touched)

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
            return n + self._db.execute("SELECT COUNT(*) FROM model_tensors").fetchone()[0]

    def tensors(self) -> list[tuple[str, str, StoredShare]]:
        """Every stored share as (kind, name, share), in a canonical order both servers share
        (enrolments by request id, revoked ones too; then model tensors as VERSION/NAME)."""
        with self._lock:
            enr = self._db.execute("SELECT request_id, dim, frac, val, mac FROM enrolments "
                                   "ORDER BY request_id").fetchall()
            mod = self._db.execute("SELECT version || '/' || name, shape, frac, val, mac "
                                   "FROM model_tensors ORDER BY version, name").fetchall()
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
            for kind, table, col in ((ENROLMENT, "enrolments", "enrolments.request_id"),
                                     (MODEL, "model_tensors", "model_tensors.version || '/' "
                                                              "|| model_tensors.name")):
                db.execute(f"UPDATE {table} SET (val, mac) = (SELECT s.val, s.mac FROM "
                           f"rekey_staged s WHERE s.kind = ? AND s.name = {col}) "
                           f"WHERE {col} IN (SELECT s.name FROM rekey_staged s WHERE s.kind = ?)",
                           (kind, kind))
            lost = [rid for rid, in db.execute("SELECT request_id FROM enrolments").fetchall()
                    if (ENROLMENT, rid) not in staged]
            dropped = self._quarantine_locked(db, lost, f"not re-keyed to epoch {target}: "
                                                        "the other server lacks it")
            for version, name in db.execute("SELECT version, name FROM model_tensors"
                                            ).fetchall():
                if (MODEL, f"{version}/{name}") not in staged:  # a partial version is useless
                    db.execute("DELETE FROM model_versions WHERE version=?", (version,))
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
        with self._tx([request_id]) as db:
            if db.execute("SELECT 1 FROM revoked WHERE identity=?", (identity,)).fetchone():
                raise StoreError(f"identity {identity!r} is revoked: restore it (admin restore "
                                 "NAME) or enrol under another name")
            try:
                db.execute("INSERT INTO enrolments VALUES(?, ?, ?, ?, ?, ?, ?, NULL)",
                           (request_id, identity, share.val.shape[1], share.frac,
                            _blob(share.val), _blob(share.mac), time.time()))
            except sqlite3.IntegrityError:
                return False
        return True

    def enrolments(self) -> list[Enrolment]:
        """Active (not revoked) enrolments, oldest first: what training uses."""
        with self._lock:
            rows = self._db.execute("SELECT request_id, identity, dim, frac, val, mac "
                                    "FROM enrolments WHERE revoked IS NULL "
                                    "ORDER BY created, request_id").fetchall()
        return [Enrolment(r, i, StoredShare(_array(v, (d,)), _array(m, (d,)), f))
                for r, i, d, f, v, m in rows]

    def identities(self) -> list[str]:
        """Active identities in first-enrolment order (the gallery order)."""
        with self._lock:
            rows = self._db.execute("SELECT identity, MIN(created) AS first FROM enrolments "
                                    "WHERE revoked IS NULL GROUP BY identity "
                                    "ORDER BY first, identity").fetchall()
        return [r[0] for r in rows]

    def revoked_identities(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT identity FROM revoked "
                                                   "ORDER BY identity")]

    def record_ids(self) -> list[tuple[str, str]]:
        """(request id, identity) of every enrolment, revoked ones too: what P0 and P1
        compare and reconcile."""
        with self._lock:
            return [tuple(r) for r in self._db.execute(
                "SELECT request_id, identity FROM enrolments ORDER BY request_id")]

    def active_records(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM enrolments WHERE revoked IS NULL"
                                    ).fetchone()[0]

    def digest(self) -> str:
        """A digest of the record set (ids, identities, revoked or not; never shares).

        Every request compares it, so it is kept per bucket of request ids (their first two
        characters): SHA-256 over the buckets' SHA-256s, each over its rows in id order. An
        enrolment rehashes its own bucket, not 100,000 records."""
        with self._lock:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:  # another connection committed
                self._dirty_all, self._data_version = True, version
            if self._dirty_all:
                rows = self._db.execute("SELECT request_id, identity, revoked IS NOT NULL FROM "
                                        "enrolments ORDER BY request_id").fetchall()
                self._buckets = {b: _hash_rows(list(group)) for b, group in
                                 itertools.groupby(rows, key=lambda r: _bucket(r[0]))}
            else:
                for b in self._dirty:
                    rows = self._db.execute(
                        "SELECT request_id, identity, revoked IS NOT NULL FROM enrolments "
                        "WHERE request_id >= ? AND request_id < ? ORDER BY request_id",
                        (b, b + "\x7f")).fetchall()
                    if rows:
                        self._buckets[b] = _hash_rows(rows)
                    else:
                        self._buckets.pop(b, None)
            self._dirty_all, self._dirty = False, set()
            h = hashlib.sha256()
            for b in sorted(self._buckets):
                h.update(f"{len(b)}:{b}".encode() + self._buckets[b])
            return h.hexdigest()

    def delete_enrolments(self, request_ids: list[str]) -> int:
        with self._tx(request_ids) as db:
            n = 0
            for rid in request_ids:
                n += db.execute("DELETE FROM enrolments WHERE request_id=?", (rid,)).rowcount
        return n

    def revoke(self, identity: str) -> int:
        """Mark an identity's enrolments revoked and refuse new ones; returns the number
        marked. Kept, so that ``restore`` can undo it. (With a model, revocation rides on
        the commit of the version without the identity: ``commit_models``.)"""
        with self._tx() as db:
            return self._revoke_locked(db, identity)

    @staticmethod
    def _revoke_locked(db: sqlite3.Connection, identity: str) -> int:
        now = time.time()
        n = db.execute("UPDATE enrolments SET revoked=? WHERE identity=? AND revoked IS NULL",
                       (now, identity)).rowcount
        db.execute("INSERT OR REPLACE INTO revoked VALUES(?, ?)", (identity, now))
        return n

    def restore(self, identity: str) -> int:
        """Undo a revocation: the enrolments count again (at the next training)."""
        with self._tx() as db:
            n = db.execute("UPDATE enrolments SET revoked=NULL WHERE identity=?",
                           (identity,)).rowcount
            db.execute("DELETE FROM revoked WHERE identity=?", (identity,))
        return n

    # ------------------------------------------------------------ models
    def model_state(self) -> ModelState:
        with self._lock:
            rows = self._db.execute("SELECT version, state FROM model_versions "
                                    "ORDER BY version").fetchall()
            seen = int(self.get_meta_locked(self._db, "model_seen") or 0)
        committed = tuple(v for v, st in rows if st == "committed")
        staged = max((v for v, st in rows if st == "staged"), default=0)
        return ModelState(committed[-1] if committed else 0, staged, committed,
                          max(seen, staged, committed[-1] if committed else 0))

    def stage_models(self, version: int, models: dict[str, StoredShare], meta: dict) -> None:
        """Phase one: keep a new version beside the committed ones (replacing any other
        staged version). ``version`` must be new to both servers (above both ``seen``)."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM model_versions WHERE version=?", (version,)
                          ).fetchone():
                raise StoreError(f"model version {version} exists already")
            db.execute("DELETE FROM model_versions WHERE state='staged'")
            db.execute("INSERT INTO model_versions VALUES(?, 'staged', ?, ?)",
                       (version, json.dumps(meta), time.time()))
            db.executemany("INSERT INTO model_tensors VALUES(?, ?, ?, ?, ?, ?)",
                           [(version, name, json.dumps(list(s.val.shape[1:])), s.frac,
                             _blob(s.val), _blob(s.mac)) for name, s in models.items()])
            seen = int(self.get_meta_locked(db, "model_seen") or 0)
            db.execute("INSERT OR REPLACE INTO meta VALUES('model_seen', ?)",
                       (str(max(seen, version)),))

    def commit_models(self, version: int) -> None:
        """Phase two, once the other server staged ``version`` too: it becomes current, in
        one transaction with the revocation it carries (meta ``revoke``); only the
        KEEP_COMMITTED newest committed versions are kept."""
        with self._tx() as db:
            row = db.execute("SELECT state, meta FROM model_versions WHERE version=?",
                             (version,)).fetchone()
            if row is None or row[0] != "staged":
                raise StoreError(f"model version {version} is not staged")
            db.execute("UPDATE model_versions SET state='committed' WHERE version=?",
                       (version,))
            revoke = json.loads(row[1]).get("revoke")
            if isinstance(revoke, str):
                self._revoke_locked(db, revoke)
            old = [v for v, in db.execute("SELECT version FROM model_versions WHERE "
                                          "state='committed' ORDER BY version DESC")]
            for v in old[KEEP_COMMITTED:]:
                db.execute("DELETE FROM model_versions WHERE version=?", (v,))

    def roll_back_models(self, version: int) -> None:
        """Drop every model version above ``version`` (0: no model at all)."""
        with self._tx() as db:
            db.execute("DELETE FROM model_versions WHERE version>?", (version,))

    def discard_staged_models(self) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM model_versions WHERE state='staged'")

    def model_meta(self) -> tuple[int, dict]:
        """(version, meta) of the current model without loading its shares (0, {} if none):
        identification asks per request, and the gallery is built once per version. The
        meta is cached per version: read it, never change it."""
        with self._lock:
            row = self._db.execute("SELECT version, created FROM model_versions WHERE "
                                   "state='committed' ORDER BY version DESC LIMIT 1"
                                   ).fetchone()
            if row is None:
                return 0, {}
            if self._meta[0] != row:
                (text,) = self._db.execute("SELECT meta FROM model_versions WHERE version=?",
                                           (row[0],)).fetchone()
                self._meta = (row, json.loads(text))
            return row[0], self._meta[1]

    def models(self) -> tuple[int, dict, dict[str, StoredShare]]:
        """(version, meta, shares by name) of the current (newest committed) model; version
        0 if none."""
        with self._lock:  # re-entrant: the version and its tensors are read together
            version, meta = self.model_meta()
            if not version:
                return 0, {}, {}
            rows = self._db.execute("SELECT name, shape, frac, val, mac FROM model_tensors "
                                    "WHERE version=?", (version,)).fetchall()
        out = {}
        for n, shp, f, v, m in rows:
            shape = tuple(json.loads(shp))
            out[n] = StoredShare(_array(v, shape), _array(m, shape), f)
        return version, meta, out

    def model_row(self, version: int, name: str, row: int) -> StoredShare | None:
        """Row ``row`` of a 2-D tensor of model ``version`` (None if it has no such tensor),
        read through SQLite's incremental blob I/O: an enrolment checks one identity's
        template without loading a gallery of 100,000 of them. Every row takes the same
        time (verification must not tell who is enrolled, or since when)."""
        with self._lock:
            found = self._db.execute("SELECT rowid, shape, frac FROM model_tensors WHERE "
                                     "version=? AND name=?", (version, name)).fetchone()
            if found is None:
                return None
            rowid, shp, frac = found
            shape = tuple(json.loads(shp))
            if len(shape) != 2 or not 0 <= row < shape[0]:
                raise StoreError(f"row {row} of a tensor of shape {shape}")
            rows, cols = shape
            parts = []
            for column in ("val", "mac"):
                with self._db.blobopen("model_tensors", column, rowid, readonly=True) as blob:
                    if len(blob) != 16 * rows * cols:
                        raise StoreError(f"stored {name} has {len(blob)} bytes for {shape}")
                    # A blob read walks SQLite's overflow-page chain up to its offset, so a
                    # read's time would tell which row (which identity, enrolled when) was
                    # asked for. The last word is read first: the walk always goes to the
                    # end, and the handle's cached chain makes the row's own reads O(1).
                    blob.seek(len(blob) - 8)
                    blob.read(8)
                    limbs = []
                    for limb in range(2):  # (2, rows, cols) uint64: one slice per limb
                        blob.seek(8 * (limb * rows + row) * cols)
                        limbs.append(np.frombuffer(blob.read(8 * cols), dtype=np.uint64))
                    parts.append(np.stack(limbs))
        return StoredShare(parts[0], parts[1], frac)

    @staticmethod
    def get_meta_locked(db: sqlite3.Connection, key: str) -> str | None:
        row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None
