"""Model versions: two-phase commits, healing a split after any crash, revocation riding on
a commit, and stores written before versions existed."""

from __future__ import annotations

import itertools
import json
import sqlite3

import numpy as np
import pytest

from splitface.servers.store import (
    KEEP_COMMITTED,
    ModelState,
    ShareStore,
    StoredShare,
    StoreError,
    plan_models,
)


def _share(rows: int, dim: int = 4, fill: int = 1) -> StoredShare:
    a = np.full((2, rows, dim), fill, dtype=np.uint64)
    return StoredShare(a, a.copy(), 16)


def _apply(store: ShareStore, peer: ModelState) -> None:
    plan = plan_models(store.model_state(), peer)
    if plan.commit:
        store.commit_models(plan.commit)
    if plan.roll_back_to is not None:
        store.roll_back_models(plan.roll_back_to)
    if plan.discard_staged:
        store.discard_staged_models()


def _heal(a: ShareStore, b: ShareStore) -> None:
    sa, sb = a.model_state(), b.model_state()  # exchanged at session start
    _apply(a, sb)
    _apply(b, sa)


def test_a_staged_version_is_not_served_until_committed(tmp_path):
    s = ShareStore(tmp_path / "s.db")
    s.stage_models(1, {"templates": _share(2)}, {"identities": ["a", "b"]})
    assert s.models()[0] == 0 and s.model_state().staged == 1
    s.commit_models(1)
    version, meta, models = s.models()
    assert version == 1 and meta["identities"] == ["a", "b"] and "templates" in models
    with pytest.raises(StoreError):
        s.stage_models(1, {"templates": _share(2)}, {})  # a number is never reused


def test_only_the_newest_committed_versions_are_kept(tmp_path):
    s = ShareStore(tmp_path / "s.db")
    for v in range(1, 6):
        s.stage_models(v, {"templates": _share(1, fill=v)}, {"identities": ["a"]})
        s.commit_models(v)
    st = s.model_state()
    assert st.committed == tuple(range(6 - KEEP_COMMITTED, 6)) and st.current == 5
    assert st.seen == 5 and s.tensor_count() == KEEP_COMMITTED


# every point at which one or both servers can stop during a two-phase commit of version 2
# (both hold version 1): the number of steps each one completed of stage, commit
STEPS = {0: "nothing", 1: "staged", 2: "committed"}


@pytest.mark.parametrize("done_a, done_b", [
    (a, b) for a, b in itertools.product(STEPS, STEPS)
    # a server commits only after both staged: a commit on one side implies a stage on the other
    if not (a == 2 and b == 0) and not (b == 2 and a == 0)])
def test_any_crash_during_a_commit_heals_to_one_version(tmp_path, done_a, done_b):
    a, b = ShareStore(tmp_path / "a.db"), ShareStore(tmp_path / "b.db")
    for s in (a, b):
        s.stage_models(1, {"templates": _share(1)}, {"identities": ["x"]})
        s.commit_models(1)
    for s, done in ((a, done_a), (b, done_b)):
        if done >= 1:
            s.stage_models(2, {"templates": _share(2)}, {"identities": ["x", "y"]})
        if done >= 2:
            s.commit_models(2)
    _heal(a, b)
    va, vb = a.models()[0], b.models()[0]
    assert va == vb, (STEPS[done_a], STEPS[done_b])
    assert va == (2 if 2 in (done_a, done_b) else 1)  # anything committed anywhere wins
    assert a.model_state().staged == b.model_state().staged == 0
    _heal(a, b)  # and healing again changes nothing
    assert a.models()[0] == b.models()[0] == va


def test_stores_from_different_points_fall_back_to_the_newest_common_version(tmp_path):
    """A store restored from a backup: no roll-forward possible, both take the newest
    version both committed (or none)."""
    a, b = ShareStore(tmp_path / "a.db"), ShareStore(tmp_path / "b.db")
    for v in (1, 2, 3):
        a.stage_models(v, {"templates": _share(1)}, {"identities": ["x"]})
        a.commit_models(v)
    for v in (1, 2):
        b.stage_models(v, {"templates": _share(1)}, {"identities": ["x"]})
        b.commit_models(v)
    _heal(a, b)
    assert a.models()[0] == b.models()[0] == 2
    c = ShareStore(tmp_path / "c.db")
    c.stage_models(7, {"templates": _share(1)}, {"identities": ["x"]})
    c.commit_models(7)
    _heal(a, c)
    assert a.models()[0] == c.models()[0] == 0  # nothing in common: no model, retrain


def _state(common: int, extra: int, staged: bool) -> ModelState:
    """A server that committed up to ``common`` with its peer, then ``extra`` more alone,
    perhaps with one more staged."""
    committed = tuple(v for v in range(max(1, common - 1), common + 1) if v) + \
        tuple(range(common + 1, common + 1 + extra))
    committed = committed[-KEEP_COMMITTED:]
    cur = committed[-1] if committed else 0
    st = cur + 1 if staged else 0
    return ModelState(cur, st, committed, max(cur, st))


def test_plans_agree_on_random_states():
    """Both servers reach the same current version from any pair of such states."""
    rng = np.random.default_rng(3)  # test data only
    for _ in range(2000):
        common = int(rng.integers(0, 4))
        a = _state(common, int(rng.integers(0, 2)), bool(rng.integers(0, 2)))
        b = _state(common, int(rng.integers(0, 2)), bool(rng.integers(0, 2)))
        pa, pb = plan_models(a, b), plan_models(b, a)

        def result(s: ModelState, p) -> int:
            cur = p.commit or s.current
            return cur if p.roll_back_to is None else p.roll_back_to
        assert result(a, pa) == result(b, pb), (a, b, pa, pb)


def test_revocation_rides_on_the_commit_and_is_restorable(tmp_path):
    s = ShareStore(tmp_path / "s.db")
    for k, who in enumerate(["ann", "ann", "bob"]):
        s.add_enrolment(f"req-{k:04d}", who, StoredShare(*(np.zeros((2, 4), np.uint64),) * 2,
                                                          16))
    digest = s.digest()
    s.stage_models(1, {"templates": _share(1)}, {"identities": ["bob"], "revoke": "ann"})
    assert s.identities() == ["ann", "bob"]  # staged: nothing happened yet
    s.commit_models(1)
    assert s.identities() == ["bob"] and s.active_records() == 1
    assert len(s.record_ids()) == 3 and s.digest() != digest  # kept, marked
    with pytest.raises(StoreError, match="restore"):
        s.add_enrolment("req-0009", "ann", StoredShare(*(np.zeros((2, 4), np.uint64),) * 2,
                                                        16))
    assert s.restore("ann") == 2
    assert s.identities() == ["ann", "bob"] and s.digest() == digest


def test_a_store_from_before_model_versions_is_migrated(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE enrolments (request_id TEXT PRIMARY KEY, identity TEXT NOT NULL,
            dim INTEGER NOT NULL, frac INTEGER NOT NULL, val BLOB NOT NULL, mac BLOB NOT NULL,
            created REAL NOT NULL);
        CREATE TABLE models (name TEXT PRIMARY KEY, version INTEGER NOT NULL, meta TEXT NOT NULL,
            shape TEXT NOT NULL, frac INTEGER NOT NULL, val BLOB NOT NULL, mac BLOB NOT NULL,
            created REAL NOT NULL);""")
    t = _share(3)
    db.execute("INSERT INTO models VALUES('templates', 4, ?, '[3, 4]', 16, ?, ?, 0)",
               (json.dumps({"identities": ["a", "b", "c"]}), t.val.tobytes(), t.mac.tobytes()))
    z = np.zeros((2, 4), np.uint64).tobytes()
    db.execute("INSERT INTO enrolments VALUES('req-0001', 'a', 4, 16, ?, ?, 0)", (z, z))
    db.commit()
    db.close()
    s = ShareStore(path)
    version, meta, models = s.models()
    assert version == 4 and meta["identities"] == ["a", "b", "c"]
    assert np.array_equal(models["templates"].val, t.val)
    assert s.identities() == ["a"] and s.model_state().seen == 4


def test_one_row_of_a_stored_tensor_reads_back_exactly(tmp_path):
    """An enrolment checks its identity's template row alone (incremental blob reads at the
    row's offsets in both limbs), not the whole gallery."""
    store = ShareStore(tmp_path / "s.db")
    val = np.arange(2 * 7 * 5, dtype=np.uint64).reshape(2, 7, 5) * np.uint64(2**40 + 3)
    mac = ~val
    store.stage_models(1, {"templates": StoredShare(val, mac, 16)}, {"identities": list("abcdefg")})
    store.commit_models(1)
    for row in range(7):
        got = store.model_row(1, "templates", row)
        assert got is not None and got.frac == 16
        np.testing.assert_array_equal(got.val, val[:, row])
        np.testing.assert_array_equal(got.mac, mac[:, row])
    assert store.model_row(1, "logistic_w", 0) is None
    assert store.model_row(2, "templates", 0) is None
    with pytest.raises(StoreError):
        store.model_row(1, "templates", 7)


def test_the_incremental_record_digest_always_equals_a_full_rehash(tmp_path):
    """The digest rehashes only the buckets a commit touched; after any mix of enrolments,
    deletions, revocations, restores, a second connection's writes and quarantines it must
    equal what a fresh store computes from every row (and differ when the records do)."""
    rng = np.random.default_rng(5)  # test data only
    path = tmp_path / "s.db"
    s = ShareStore(path)
    zero = StoredShare(*(np.zeros((2, 4), np.uint64),) * 2, 16)
    ids: list[str] = []
    seen = set()
    for step in range(120):
        op = rng.integers(0, 10)
        if op < 6 or not ids:
            rid = "".join(rng.choice(list("ab0_-Z"), size=int(rng.integers(8, 12))))
            try:
                if s.add_enrolment(rid, f"p{rng.integers(0, 6)}", zero):
                    ids.append(rid)
            except StoreError:  # a revoked identity takes no new enrolments
                pass
        elif op == 6:
            s.delete_enrolments([ids.pop(int(rng.integers(0, len(ids))))])
        elif op == 7:
            who = f"p{rng.integers(0, 6)}"
            s.revoke(who)
            if step % 2:
                s.restore(who)
        elif op == 8:
            other = ShareStore(path)  # another connection (e.g. an operator's repair)
            other.delete_enrolments([ids.pop(int(rng.integers(0, len(ids))))])
            other.close()
        else:
            s.quarantine_enrolments([ids[int(rng.integers(0, len(ids)))]], "test")
        fresh = ShareStore(path)
        assert s.digest() == fresh.digest(), step
        fresh.close()
        seen.add(s.digest())
    assert len(seen) > 60  # the digest follows the records
