"""Tap -> read -> nonces -> sign -> both servers check, through the real pcscd + pyscard.

Every test here talks to ``pcscd --foreground`` with the vpcd driver; the card is the
pure-Python VirtualCardApplet in tests/card/virtual_card.py.
"""

from __future__ import annotations

import os

import pytest

from splitface.edge.card import (
    CardRemovedError,
    CardTerminal,
    ConnectionOptions,
    NoCardError,
    PinBlockedError,
    PinRequest,
    SecurityStatusError,
    TerminalOptions,
    UnknownCardError,
    UnresponsiveCardError,
    WrongPinError,
)
from splitface.servers.cards import CardAuthReason
from splitface.shared.card_binding import CardAuthRequest, RequestKind
from tests.card.flow import check_all, sign_request
from tests.card.virtual_card import CardBehaviour, VirtualCardApplet

pytestmark = [pytest.mark.card, pytest.mark.timeout(60)]

ALICE_CARD = bytes.fromhex("5346000000000001")
BOB_CARD = bytes.fromhex("5346000000000002")
PAYLOAD = b"masked embedding message for query 1"


def bind_everywhere(servers, applet: VirtualCardApplet, identity: str) -> None:
    for s in servers:
        s.registry.bind(applet.card_id, applet.public_key, identity)


def reasons(results) -> list[CardAuthReason]:
    return [r.reason for r in results]


def test_tap_reads_card_id_and_public_key(insert_card, terminal):
    applet = VirtualCardApplet(ALICE_CARD)
    insert_card(applet)
    with terminal.tap() as session:
        assert session.identity.card_id == ALICE_CARD
        assert session.identity.public_key == applet.public_key
        assert session.atr == applet.atr


def test_signed_request_accepted_by_both_servers(insert_card, terminal, servers):
    applet = VirtualCardApplet(ALICE_CARD)
    bind_everywhere(servers, applet, "alice")
    insert_card(applet)
    with terminal.tap() as session:
        request = sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
    results = check_all(servers, request, RequestKind.VERIFY, PAYLOAD)
    assert all(r.ok for r in results), results
    assert {r.identity_id for r in results} == {"alice"}
    assert applet.signatures_made == 1
    # the request survives the wire encoding unchanged
    assert CardAuthRequest.from_wire(request.to_wire()) == request


def test_replayed_signature_rejected(insert_card, terminal, servers):
    applet = VirtualCardApplet(ALICE_CARD)
    bind_everywhere(servers, applet, "alice")
    insert_card(applet)
    with terminal.tap() as session:
        request = sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
    assert all(r.ok for r in check_all(servers, request, RequestKind.VERIFY, PAYLOAD))
    replay = check_all(servers, request, RequestKind.VERIFY, PAYLOAD)
    assert reasons(replay) == [CardAuthReason.REPLAYED_SIGNATURE] * 2


def test_signature_cannot_move_to_another_payload_or_kind(insert_card, terminal, servers):
    applet = VirtualCardApplet(ALICE_CARD)
    bind_everywhere(servers, applet, "alice")
    insert_card(applet)
    with terminal.tap() as session:
        first = sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
        second = sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
    moved = check_all(servers, first, RequestKind.VERIFY, b"another embedding")
    assert reasons(moved) == [CardAuthReason.REQUEST_MISMATCH] * 2
    as_enrol = check_all(servers, second, RequestKind.ENROLL, PAYLOAD)
    assert reasons(as_enrol) == [CardAuthReason.REQUEST_MISMATCH] * 2


def test_tampered_signature_and_identity_rejected(insert_card, terminal, servers):
    alice, bob = VirtualCardApplet(ALICE_CARD), VirtualCardApplet(BOB_CARD)
    bind_everywhere(servers, alice, "alice")
    bind_everywhere(servers, bob, "bob")
    insert_card(alice)
    with terminal.tap() as session:
        good = sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
        claims_bob = sign_request(session, servers, RequestKind.VERIFY, "bob", PAYLOAD)
    sig = bytearray(good.signature)
    sig[-1] ^= 0x01
    bad = CardAuthRequest(good.challenge, good.public_key, bytes(sig))
    assert (
        reasons(check_all(servers, bad, RequestKind.VERIFY, PAYLOAD))
        == [CardAuthReason.BAD_SIGNATURE] * 2
    )
    assert (
        reasons(check_all(servers, claims_bob, RequestKind.VERIFY, PAYLOAD))
        == [CardAuthReason.IDENTITY_MISMATCH] * 2
    )


def test_wrong_card_rejected(insert_card, terminal, servers):
    alice = VirtualCardApplet(ALICE_CARD)
    bind_everywhere(servers, alice, "alice")
    clone = alice.clone_with_id(ALICE_CARD)  # same id, its own key: a forgery
    insert_card(clone)
    with terminal.tap() as session:
        assert session.identity.card_id == ALICE_CARD
        forged = sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
    results = check_all(servers, forged, RequestKind.VERIFY, PAYLOAD)
    assert reasons(results) == [CardAuthReason.WRONG_CARD] * 2
    assert "not the bound key" in results[0].detail


def test_nonce_issued_for_one_card_cannot_serve_another(insert_card, terminal, servers):
    alice, bob = VirtualCardApplet(ALICE_CARD), VirtualCardApplet(BOB_CARD)
    bind_everywhere(servers, alice, "alice")
    bind_everywhere(servers, bob, "bob")
    insert_card(bob)
    n0 = servers[0].nonces.issue(ALICE_CARD).nonce  # issued after Alice's card was read
    n1 = servers[1].nonces.issue(ALICE_CARD).nonce
    with terminal.tap() as session:  # ... but Bob's card signs
        from splitface.shared.card_binding import payload_digest

        request = session.authorize(n0, n1, RequestKind.VERIFY, "bob", payload_digest(PAYLOAD))
    assert (
        reasons(check_all(servers, request, RequestKind.VERIFY, PAYLOAD))
        == [CardAuthReason.WRONG_CARD] * 2
    )


def test_expired_nonce_rejected(insert_card, terminal, servers, clock):
    applet = VirtualCardApplet(ALICE_CARD)
    bind_everywhere(servers, applet, "alice")
    insert_card(applet)
    with terminal.tap() as session:
        request = sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
    clock.advance(servers[0].nonces.options.ttl_s + 0.5)
    assert (
        reasons(check_all(servers, request, RequestKind.VERIFY, PAYLOAD))
        == [CardAuthReason.EXPIRED_NONCE] * 2
    )


def test_unknown_and_revoked_cards_rejected(insert_card, terminal, servers):
    applet = VirtualCardApplet(ALICE_CARD)
    insert_card(applet)
    with terminal.tap() as session:
        unknown = sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
        assert (
            reasons(check_all(servers, unknown, RequestKind.VERIFY, PAYLOAD))
            == [CardAuthReason.UNKNOWN_CARD] * 2
        )
        bind_everywhere(servers, applet, "alice")
        for s in servers:
            s.registry.unbind(ALICE_CARD)
        revoked = sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
    assert (
        reasons(check_all(servers, revoked, RequestKind.VERIFY, PAYLOAD))
        == [CardAuthReason.REVOKED_CARD] * 2
    )


def test_enrol_binds_then_verify_passes(insert_card, terminal, servers):
    applet = VirtualCardApplet(BOB_CARD)
    insert_card(applet)
    with terminal.tap() as session:
        enrol = sign_request(session, servers, RequestKind.ENROLL, "bob", b"enrolment shares")
        results = check_all(servers, enrol, RequestKind.ENROLL, b"enrolment shares")
        assert all(r.ok for r in results), results
        for s in servers:  # after the MPC enrolment committed
            s.registry.bind(session.identity.card_id, session.identity.public_key, "bob")
        verify = sign_request(session, servers, RequestKind.VERIFY, "bob", PAYLOAD)
    assert all(r.ok for r in check_all(servers, verify, RequestKind.VERIFY, PAYLOAD))


def test_pin_asked_when_card_requires_it(insert_card, running_pcscd, servers):
    applet = VirtualCardApplet(ALICE_CARD, pin="246810")
    bind_everywhere(servers, applet, "alice")
    insert_card(applet)
    asked: list[PinRequest] = []

    def provider(request: PinRequest) -> str:
        asked.append(request)
        return "246810"

    opts = TerminalOptions(tap_timeout_s=5.0)
    with CardTerminal(opts, provider) as term, term.tap() as session:
        request = sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
        again = sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
    assert [a.retries_left for a in asked] == [3]  # asked once; PIN stays verified in-tap
    assert all(r.ok for r in check_all(servers, request, RequestKind.VERIFY, PAYLOAD))
    assert all(r.ok for r in check_all(servers, again, RequestKind.VERIFY, PAYLOAD))
    # the session reset the card on close: a new tap must ask again
    with CardTerminal(opts, provider) as term, term.tap() as session:
        sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
    assert len(asked) == 2


def test_wrong_pin_counts_down_then_blocks(insert_card, running_pcscd, servers):
    applet = VirtualCardApplet(ALICE_CARD, pin="1234", pin_tries=2)
    insert_card(applet)
    opts = TerminalOptions(tap_timeout_s=5.0)
    with CardTerminal(opts, lambda req: "9999") as term, term.tap() as session:
        with pytest.raises(WrongPinError) as first:
            sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
        assert first.value.retries_left == 1
        assert first.value.sw == 0x63C1
        with pytest.raises(WrongPinError) as second:
            sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
        assert second.value.retries_left == 0
        with pytest.raises(PinBlockedError):
            sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
        with pytest.raises(PinBlockedError):  # even the right PIN cannot help now
            session.client.verify_pin("1234")
    assert applet.signatures_made == 0


def test_pin_required_without_provider_is_named(insert_card, terminal, servers):
    insert_card(VirtualCardApplet(ALICE_CARD, pin="1234"))
    with terminal.tap() as session, pytest.raises(SecurityStatusError) as err:
        sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
    assert err.value.sw == 0x6982


def test_card_removed_between_read_and_sign(insert_card, terminal, servers):
    card = insert_card(VirtualCardApplet(ALICE_CARD))
    with terminal.tap() as session:
        card.remove()
        with pytest.raises(CardRemovedError):
            sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)


def test_card_removed_during_the_signing_apdu(insert_card, terminal, servers):
    applet = VirtualCardApplet(ALICE_CARD, behaviour=CardBehaviour(remove_on={0x88}))
    insert_card(applet)
    with terminal.tap() as session, pytest.raises(CardRemovedError):
        sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)


def test_swapped_card_is_not_silently_used(insert_card, terminal, servers):
    alice = VirtualCardApplet(ALICE_CARD)
    card = insert_card(alice)
    with terminal.tap() as session:
        card.remove()
        insert_card(VirtualCardApplet(BOB_CARD))  # a different card lands in the reader
        with pytest.raises(CardRemovedError):
            sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)


def test_mute_card_times_out_with_a_named_error(insert_card, running_pcscd):
    card = insert_card(VirtualCardApplet(ALICE_CARD, behaviour=CardBehaviour(mute_on={0x88})))
    opts = TerminalOptions(tap_timeout_s=5.0, connection=ConnectionOptions(apdu_timeout_s=0.5))
    with CardTerminal(opts) as term, term.tap() as session:
        with pytest.raises(UnresponsiveCardError, match="did not answer"):
            session.client.sign(os.urandom(32))
        with pytest.raises(UnresponsiveCardError):
            session.client.sign(os.urandom(32))
        reader = session.reader
    card.remove()
    # the abandoned exclusive handle is released once the card leaves: the reader is reusable
    with CardTerminal(opts) as term:
        assert term.wait_for_removal(reader, 5.0)
    insert_card(VirtualCardApplet(BOB_CARD))
    with CardTerminal(opts) as term, term.tap() as session:
        assert session.identity.card_id == BOB_CARD


def test_card_without_our_application_is_unknown(insert_card, terminal):
    insert_card(VirtualCardApplet(ALICE_CARD, aid=bytes.fromhex("A000000003000000")))
    with pytest.raises(UnknownCardError, match="splitface application"):
        terminal.tap()


def test_card_with_unusable_atr_is_named(insert_card, terminal):
    insert_card(VirtualCardApplet(ALICE_CARD, atr=b"\x00\x01"))
    with pytest.raises(UnknownCardError, match="protocol"):
        terminal.tap()


@pytest.mark.parametrize(
    "behaviour",
    [
        CardBehaviour(strict_le=True),  # T=0 style: 6Cxx on every short read
        CardBehaviour(eof_sw=0x6282),  # end-of-file warning on short reads
        CardBehaviour(chain_chunk=16),  # 61xx chaining, GET RESPONSE in 16-byte pieces
        CardBehaviour(chain_chunk=16, strict_le=True),  # 61xx then 6Cxx on GET RESPONSE
    ],
    ids=["6Cxx", "6282", "61xx", "61xx+6Cxx"],
)
def test_awkward_status_words_are_followed(insert_card, terminal, servers, behaviour):
    applet = VirtualCardApplet(ALICE_CARD, behaviour=behaviour)
    bind_everywhere(servers, applet, "alice")
    insert_card(applet)
    with terminal.tap() as session:
        assert session.identity.public_key == applet.public_key
        request = sign_request(session, servers, RequestKind.VERIFY, "alice", PAYLOAD)
    assert all(r.ok for r in check_all(servers, request, RequestKind.VERIFY, PAYLOAD))


def test_no_card_times_out(running_pcscd, terminal):
    with pytest.raises(NoCardError):
        terminal.tap(timeout_s=0.3)


def test_monitor_reports_insert_and_remove(insert_card, terminal, running_pcscd):
    monitor = terminal.monitor
    assert set(running_pcscd.readers) <= set(monitor.readers())
    list(monitor.events(0.05))  # learn the current state
    card = insert_card(VirtualCardApplet(ALICE_CARD), slot=1, wait=False)
    events = list(monitor.events(1.5))
    assert [(e.kind.value, e.reader) for e in events] == [("inserted", running_pcscd.readers[1])]
    assert events[0].atr == card.applet.atr
    card.remove()
    events = list(monitor.events(1.5))
    assert [(e.kind.value, e.reader) for e in events] == [("removed", running_pcscd.readers[1])]


def test_pcscd_going_away_is_named(running_pcscd, insert_card, terminal):
    from splitface.edge.card import PcscUnavailableError

    insert_card(VirtualCardApplet(ALICE_CARD))
    session = terminal.tap()
    running_pcscd.stop()
    try:
        with pytest.raises((PcscUnavailableError, CardRemovedError)):
            session.client.sign(os.urandom(32))
        with pytest.raises(PcscUnavailableError):
            terminal.monitor.snapshot()
    finally:
        session.close()
        running_pcscd.start()
