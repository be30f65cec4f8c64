"""Card binding registry on SQLite: bind, idempotence, conflicts, revocation, durability."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from splitface.servers.cards import (
    BindingStatus,
    CardAlreadyBoundError,
    CardRegistry,
    CardRevokedError,
)
from splitface.shared.card_binding import MalformedCardRequestError, encode_card_public_key


def new_key() -> bytes:
    return encode_card_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())


def test_bind_lookup_and_reopen(tmp_path):
    db = tmp_path / "cards.db"
    key = new_key()
    with CardRegistry(db) as reg:
        b = reg.bind(b"card-1", key, "alice")
        assert b.is_bound and b.identity_id == "alice"
    with CardRegistry(db) as reg:  # durable across reopen
        got = reg.lookup(b"card-1")
        assert (got.public_key, got.identity_id, got.status) == (key, "alice", BindingStatus.BOUND)
        assert reg.lookup_by_public_key(key).card_id == b"card-1"
        assert reg.lookup(b"nope").status is BindingStatus.UNKNOWN
        assert reg.lookup_by_public_key(new_key()).status is BindingStatus.UNKNOWN
        assert [c.card_id for c in reg.cards_of("alice")] == [b"card-1"]
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_bind_is_idempotent_and_conflicts_are_named(tmp_path):
    key, other = new_key(), new_key()
    with CardRegistry(tmp_path / "c.db") as reg:
        reg.bind(b"card-1", key, "alice")
        reg.bind(b"card-1", key, "alice")  # retry after a crash: fine
        with pytest.raises(CardAlreadyBoundError):
            reg.bind(b"card-1", key, "bob")
        with pytest.raises(CardAlreadyBoundError):
            reg.bind(b"card-1", other, "alice")
        with pytest.raises(CardAlreadyBoundError):
            reg.bind(b"card-2", key, "alice")  # same key under a second id
        assert len(reg.cards_of("alice")) == 1


def test_revocation_is_permanent(tmp_path):
    key = new_key()
    with CardRegistry(tmp_path / "c.db") as reg:
        reg.bind(b"card-1", key, "alice")
        revoked = reg.unbind(b"card-1")
        assert revoked.status is BindingStatus.REVOKED and revoked.revoked_at is not None
        assert reg.unbind(b"card-1").status is BindingStatus.REVOKED  # idempotent
        assert reg.lookup(b"card-1").status is BindingStatus.REVOKED
        with pytest.raises(CardRevokedError):
            reg.bind(b"card-1", key, "alice")
        with pytest.raises(CardRevokedError):
            reg.bind(b"card-9", key, "alice")
        assert reg.unbind(b"never").status is BindingStatus.UNKNOWN


def test_bad_inputs_rejected(tmp_path):
    with CardRegistry(tmp_path / "c.db") as reg:
        with pytest.raises(MalformedCardRequestError):
            reg.bind(b"card-1", b"\x04" + b"\x00" * 64, "alice")
        with pytest.raises(ValueError):
            reg.bind(b"", new_key(), "alice")
        with pytest.raises(ValueError):
            reg.bind(b"card-1", new_key(), "")


def test_concurrent_binds_of_one_card_yield_one_owner(tmp_path):
    key = new_key()
    db = tmp_path / "c.db"
    outcomes: list[str] = []
    regs = [CardRegistry(db) for _ in range(4)]

    def bind(i: int) -> None:
        try:
            regs[i].bind(b"card-1", key, f"user-{i}")
            outcomes.append("ok")
        except CardAlreadyBoundError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=bind, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in regs:
        r.close()
    assert sorted(outcomes) == ["conflict"] * 3 + ["ok"]
