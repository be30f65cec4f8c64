"""PIN up front (CardSession.unlock): asked once, before any server transaction opens."""

from __future__ import annotations

import pytest

from splitface.edge.card import (
    CardTerminal,
    PinBlockedError,
    PinRequest,
    SecurityStatusError,
    TerminalOptions,
    WrongPinError,
)
from tests.card.virtual_card import VirtualCardApplet

pytestmark = [pytest.mark.card, pytest.mark.timeout(60)]

CARD = bytes.fromhex("5346000000000f01")


def _terminal(pcscd, pin: str | None, asked: list[int]) -> CardTerminal:
    def provider(request: PinRequest) -> str:
        asked.append(request.retries_left)
        return pin or ""

    opts = TerminalOptions(reader_name_contains=pcscd.readers[0], tap_timeout_s=5.0)
    return CardTerminal(opts, provider if pin is not None else None)


def test_card_without_pin_unlocks_without_asking(insert_card, running_pcscd):
    insert_card(VirtualCardApplet(CARD))
    asked: list[int] = []
    with _terminal(running_pcscd, "1234", asked) as term, term.tap() as session:
        assert session.unlock() is False
    assert asked == []


def test_pin_asked_once_then_signing_needs_nothing_more(insert_card, running_pcscd):
    applet = VirtualCardApplet(CARD, pin="1234")
    insert_card(applet)
    asked: list[int] = []
    with _terminal(running_pcscd, "1234", asked) as term, term.tap() as session:
        assert session.unlock() is True
        assert session.unlock() is True  # already verified: not asked again
        session.client.sign(b"\x11" * 32, None)  # no provider needed any more
    assert asked == [3] and applet.signatures_made == 1


def test_wrong_blocked_and_missing_pin_are_named(insert_card, running_pcscd):
    applet = VirtualCardApplet(CARD, pin="1234", pin_tries=2)
    insert_card(applet)
    asked: list[int] = []
    with _terminal(running_pcscd, None, asked) as term, term.tap() as session, \
            pytest.raises(SecurityStatusError):
        session.unlock()
    for left in (1, 0):
        with _terminal(running_pcscd, "9999", asked) as term, term.tap() as session, \
                pytest.raises(WrongPinError) as err:
            session.unlock()
        assert err.value.retries_left == left
    with _terminal(running_pcscd, "1234", asked) as term, term.tap() as session, \
            pytest.raises(PinBlockedError):
        session.unlock()
    assert asked == [2, 1] and applet.signatures_made == 0
