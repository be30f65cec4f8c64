"""Server nonces: single use, TTL, bound to a card, bounded memory."""

from __future__ import annotations

import pytest

from splitface.servers.cards import NonceCheck, NonceOptions, NonceStore, NonceStoreFullError
from tests.card.conftest import FakeClock

CARD, OTHER = b"card-a", b"card-b"


def store(clock: FakeClock, **kw) -> NonceStore:
    return NonceStore.from_options(NonceOptions(**{"ttl_s": 10.0, **kw}), clock)


def test_fresh_once_then_replayed():
    clock = FakeClock()
    s = store(clock)
    n = s.issue(CARD).nonce
    assert len(n) == 32
    assert s.consume(n, CARD) is NonceCheck.FRESH
    assert s.consume(n, CARD) is NonceCheck.REPLAYED
    assert len(s) == 0


def test_nonces_are_distinct():
    s = store(FakeClock(), capacity=2000)
    assert len({s.issue(CARD).nonce for _ in range(1000)}) == 1000


def test_expiry_and_unknown():
    clock = FakeClock()
    s = store(clock)
    n = s.issue(CARD).nonce
    clock.advance(10.01)
    assert s.consume(n, CARD) is NonceCheck.EXPIRED
    assert s.consume(b"\x00" * 32, CARD) is NonceCheck.UNKNOWN
    assert s.consume(b"short", CARD) is NonceCheck.UNKNOWN


def test_expired_nonce_purged_before_presentation_still_reads_expired():
    clock = FakeClock()
    s = store(clock)
    n = s.issue(CARD).nonce
    clock.advance(11)
    s.issue(CARD)  # triggers the purge
    assert s.consume(n, CARD) is NonceCheck.EXPIRED


def test_wrong_card_burns_the_nonce():
    s = store(FakeClock())
    n = s.issue(CARD).nonce
    assert s.consume(n, OTHER) is NonceCheck.WRONG_CARD
    assert s.consume(n, CARD) is NonceCheck.REPLAYED


def test_capacity_refuses_rather_than_evicting_live_nonces():
    clock = FakeClock()
    s = store(clock, capacity=3)
    live = [s.issue(CARD).nonce for _ in range(3)]
    with pytest.raises(NonceStoreFullError):
        s.issue(CARD)
    assert s.consume(live[0], CARD) is NonceCheck.FRESH  # frees a slot
    s.issue(CARD)
    clock.advance(11)  # all expire: room again
    for _ in range(3):
        s.issue(CARD)


def test_retired_memory_is_bounded():
    clock = FakeClock()
    s = store(clock, capacity=10, retired_capacity=5, retain_s=100.0)
    spent = []
    for _ in range(20):
        n = s.issue(CARD).nonce
        s.consume(n, CARD)
        spent.append(n)
    assert len(s._retired) == 5
    assert s.consume(spent[-1], CARD) is NonceCheck.REPLAYED
    assert s.consume(spent[0], CARD) is NonceCheck.UNKNOWN  # forgotten, still refused
    clock.advance(200)
    s.issue(CARD)
    assert len(s._retired) == 0


def test_options_validated():
    with pytest.raises(ValueError):
        NonceOptions(ttl_s=0)
    with pytest.raises(ValueError):
        NonceOptions(capacity=0)
    with pytest.raises(ValueError):
        NonceStore().issue(b"")
