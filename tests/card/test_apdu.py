"""APDU encoding, status words, and the 61xx / 6Cxx handling of ApduChannel."""

from __future__ import annotations

import pytest

from splitface.edge.card import (
    ApduChannel,
    CardFileNotFoundError,
    CardStatusError,
    CommandAPDU,
    MalformedResponseError,
    PinBlockedError,
    ResponseAPDU,
    SecurityStatusError,
    WrongLengthError,
    WrongPinError,
    describe_sw,
    raise_for_status,
)
from splitface.edge.card.client import InvalidPinFormatError, encode_pin


@pytest.mark.parametrize(
    ("cmd", "wire"),
    [
        (CommandAPDU(0x00, 0xA4, 0x04, 0x00), "00A40400"),  # case 1
        (CommandAPDU(0x00, 0xB0, 0x81, 0x00, le=256), "00B0810000"),  # case 2, Le=256
        (CommandAPDU(0x00, 0xB0, 0x81, 0x00, le=65), "00B0810041"),
        (CommandAPDU(0x00, 0x20, 0x00, 0x81, b"\x31\x32"), "00200081023132"),  # case 3
        (CommandAPDU(0x00, 0x88, 0x00, 0x81, b"\xaa", le=256), "008800810 1AA00".replace(" ", "")),
        (CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=257), "00B00000000101"),  # ext case 2
        (CommandAPDU(0x00, 0xB0, 0x00, 0x00, le=65536), "00B00000000000"),
        (CommandAPDU(0x00, 0xDA, 0x00, 0x00, b"\x01" * 256), "00DA0000000100" + "01" * 256),
        (
            CommandAPDU(0x00, 0xDA, 0x00, 0x00, b"\x01" * 256, le=2),
            "00DA0000000100" + "01" * 256 + "0002",
        ),
    ],
)
def test_command_encoding(cmd, wire):
    assert cmd.encode().hex().upper() == wire.upper()


def test_command_rejects_bad_fields():
    with pytest.raises(ValueError):
        CommandAPDU(0x100, 0, 0, 0)
    with pytest.raises(ValueError):
        CommandAPDU(0, 0, 0, 0, le=0)
    with pytest.raises(ValueError):
        CommandAPDU(0, 0, 0, 0, b"\x00" * 65536)


def test_header_never_shows_data():
    header = CommandAPDU(0x00, 0x20, 0x00, 0x81, b"123456\xff\xff").header()
    assert "3132" not in header and "123456" not in header
    assert header == "00 20 00 81 Lc=8 Le=-"


def test_response_parsing():
    r = ResponseAPDU.from_bytes(b"\x01\x02\x90\x00")
    assert (r.data, r.sw, r.ok) == (b"\x01\x02", 0x9000, True)
    with pytest.raises(MalformedResponseError):
        ResponseAPDU.from_bytes(b"\x90")


@pytest.mark.parametrize(
    ("sw", "exc"),
    [
        (0x63C2, WrongPinError),
        (0x6983, PinBlockedError),
        (0x6982, SecurityStatusError),
        (0x6A82, CardFileNotFoundError),
        (0x6700, WrongLengthError),
        (0x6D00, CardStatusError),
    ],
)
def test_status_words_map_to_named_errors(sw, exc):
    with pytest.raises(exc) as err:
        raise_for_status(ResponseAPDU(b"", sw >> 8, sw & 0xFF), "op")
    assert err.value.sw == sw
    if exc is WrongPinError:
        assert err.value.retries_left == 2


def test_describe_sw():
    assert "3 retries" in describe_sw(0x63C3)
    assert "256 more" in describe_sw(0x6100)
    assert "exact length is 16" in describe_sw(0x6C10)


class ScriptedCard:
    """Replays fixed R-APDUs and records C-APDUs (the channel logic needs nothing more)."""

    def __init__(self, responses: list[str]) -> None:
        self.responses = [bytes.fromhex(r) for r in responses]
        self.sent: list[str] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu.hex().upper())
        return self.responses.pop(0)


def test_channel_follows_get_response_chain():
    card = ScriptedCard(["0102 6102", "0304 6101", "05 9000"])
    resp = ApduChannel(card).transmit(CommandAPDU(0x00, 0x88, 0x00, 0x81, b"\xaa", le=256))
    assert resp.data == b"\x01\x02\x03\x04\x05" and resp.ok
    assert card.sent[1:] == ["00C0000002", "00C0000001"]


def test_channel_reissues_with_exact_le():
    card = ScriptedCard(["6C08", "1122334455667788 9000"])
    resp = ApduChannel(card).transmit(CommandAPDU(0x00, 0xB0, 0x81, 0x00, le=256))
    assert resp.data == bytes.fromhex("1122334455667788")
    assert card.sent == ["00B0810000", "00B0810008"]


def test_channel_gives_up_on_endless_chain():
    card = ScriptedCard(["00 6101"] * 10)
    with pytest.raises(MalformedResponseError):
        ApduChannel(card, max_get_response=5).transmit(CommandAPDU(0, 0xB0, 0x81, 0, le=1))


def test_pin_encoding():
    assert encode_pin("1234") == b"1234\xff\xff\xff\xff"
    for bad in ("123", "123456789", "12a4", "１２３４"):
        with pytest.raises(InvalidPinFormatError):
            encode_pin(bad)
