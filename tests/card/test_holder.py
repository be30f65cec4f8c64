"""Holder EF (SFI 03): TLV encoding, and READ/UPDATE BINARY through the real pcscd."""

from __future__ import annotations

import pytest

from splitface.edge.card import (
    HOLDER_EF_SIZE,
    CardTerminal,
    HolderTooLongError,
    MalformedResponseError,
    PinRequest,
    SecurityStatusError,
    TerminalOptions,
    decode_holder,
    encode_holder,
)
from splitface.edge.card.apdu import CommandAPDU
from splitface.edge.card.client import INS_UPDATE_BINARY
from tests.card.virtual_card import VirtualCardApplet

pytestmark = [pytest.mark.card, pytest.mark.timeout(60)]

CARD = bytes.fromhex("5346000000000d01")


@pytest.mark.parametrize("identity", ["obama", "Zoë O'Neil-Smith", "x" * 127, "é" * 64])
def test_holder_round_trip(identity):
    ef = encode_holder(identity)
    assert len(ef) == HOLDER_EF_SIZE and ef[:2] == b"\x5f\x20"
    assert decode_holder(ef) == identity
    assert decode_holder(ef.rstrip(b"\x00")) == identity  # a card may return a short EF


def test_unpersonalised_and_erased_efs_read_as_empty():
    assert decode_holder(b"") == ""
    assert decode_holder(bytes(HOLDER_EF_SIZE)) == ""
    assert decode_holder(b"\xff" * HOLDER_EF_SIZE) == ""
    assert encode_holder("") == bytes(HOLDER_EF_SIZE)


@pytest.mark.parametrize("ef", [
    b"\x5f\x21\x02ab",            # another tag
    b"\x5f\x20\x05ab",            # value shorter than its length
    b"\x5f\x20\x82\x00\x01a",     # long-form length we never write
    b"\x5f\x20\x02\xc3\x28",      # not UTF-8
    b"\x5f\x20\x00",              # empty value
    b"\x5f",                      # truncated tag
])
def test_malformed_holder_ef_is_named(ef):
    with pytest.raises(MalformedResponseError):
        decode_holder(ef)


def test_too_long_identity_is_refused_before_the_card():
    with pytest.raises(HolderTooLongError):
        encode_holder("é" * 65)  # 130 UTF-8 bytes


def test_write_then_read_holder_through_pcscd(insert_card, terminal):
    applet = VirtualCardApplet(CARD)
    insert_card(applet)
    with terminal.tap() as session:
        assert session.read_holder() == ""
        session.write_holder("a much longer name than the next one")
        session.write_holder("bob")  # the whole EF is rewritten: no tail of the old name
        assert session.read_holder() == "bob"
    assert bytes(applet.holder_ef) == encode_holder("bob")


def test_holder_write_needs_the_pin_when_the_card_has_one(insert_card, running_pcscd):
    applet = VirtualCardApplet(CARD, pin="2468")
    insert_card(applet)
    asked: list[PinRequest] = []

    def pin(request: PinRequest) -> str:
        asked.append(request)
        return "2468"

    opts = TerminalOptions(reader_name_contains=running_pcscd.readers[0], tap_timeout_s=5.0)
    with CardTerminal(opts, pin) as term, term.tap() as session:
        session.write_holder("carol")
        assert session.read_holder() == "carol"
    assert [a.retries_left for a in asked] == [3]
    with CardTerminal(opts) as term, term.tap() as session:  # no PIN provider: named refusal
        with pytest.raises(SecurityStatusError):
            session.write_holder("mallory")
        assert session.read_holder() == "carol"


def test_card_id_and_key_files_are_never_writable(insert_card, terminal):
    applet = VirtualCardApplet(CARD)
    insert_card(applet)
    with terminal.tap() as session:
        for sfi in (0x01, 0x02):
            cmd = CommandAPDU(0x00, INS_UPDATE_BINARY, 0x80 | sfi, 0x00, b"\x00" * 8)
            resp = session.client.channel.transmit(cmd)
            assert resp.sw == 0x6986
        too_long = CommandAPDU(0x00, INS_UPDATE_BINARY, 0x83, 0x10, b"\x00" * HOLDER_EF_SIZE)
        assert session.client.channel.transmit(too_long).sw == 0x6A84
        assert session.identity.card_id == CARD
        assert session.read_holder() == ""  # the refused writes changed nothing
