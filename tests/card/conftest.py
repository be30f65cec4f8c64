"""Fixtures: one real pcscd (vpcd driver) per test session, cards, and two servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from splitface.edge.card import (
    CardTerminal,
    ConnectionOptions,
    ReaderFilter,
    ReaderMonitor,
    TerminalOptions,
)
from splitface.servers.cards import CardRegistry, NonceOptions, NonceStore
from tests.card.flow import Server
from tests.card.pcscd import Pcscd
from tests.card.session import session_pcscd
from tests.card.virtual_card import VirtualCardApplet, VpcdCard


@pytest.fixture(scope="session")
def pcscd(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pcscd:
    """The real pcscd --foreground; failing to start it fails the tests (never skips).

    Shared with tests/card_e2e through the pytest config (see tests/card/session.py).
    """
    return session_pcscd(request.config, tmp_path_factory.mktemp("pcscd"))


@pytest.fixture
def running_pcscd(pcscd: Pcscd) -> Pcscd:
    """pcscd, restarted if an earlier test stopped it on purpose."""
    if not pcscd.running:
        pcscd.start()
    return pcscd


@pytest.fixture
def insert_card(running_pcscd: Pcscd) -> Iterator[Callable[..., VpcdCard]]:
    """``insert_card(applet, slot=0)`` taps a card and waits until pcscd sees it."""
    cards: list[tuple[VpcdCard, str]] = []

    def insert(applet: VirtualCardApplet, slot: int = 0, wait: bool = True) -> VpcdCard:
        reader = running_pcscd.readers[slot]
        card = VpcdCard(applet, running_pcscd.slot_port(slot)).insert()
        cards.append((card, reader))
        if wait:
            with ReaderMonitor(ReaderFilter(reader)) as mon:
                mon.wait_for_card(5.0)
        return card

    yield insert
    for card, _ in cards:
        card.remove()
    if running_pcscd.running:
        with ReaderMonitor() as mon:
            for _, reader in cards:
                assert mon.wait_for_removal(reader, 5.0), (
                    f"{reader} still shows a card; pcscd log:\n{running_pcscd.log_tail(20)}"
                )


@pytest.fixture
def terminal(running_pcscd: Pcscd) -> Iterator[CardTerminal]:
    opts = TerminalOptions(tap_timeout_s=5.0, connection=ConnectionOptions(apdu_timeout_s=2.0))
    with CardTerminal.from_options(opts) as term:
        yield term


class FakeClock:
    """Monotonic clock the test can move forward (TTL tests without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def servers(tmp_path: Path, clock: FakeClock) -> Iterator[list[Server]]:
    """P0 and P1, each with its own nonce store and its own SQLite registry."""
    out = [
        Server(i, NonceStore(NonceOptions(ttl_s=30.0), clock), CardRegistry(tmp_path / f"p{i}.db"))
        for i in (0, 1)
    ]
    yield out
    for server in out:
        server.registry.close()
