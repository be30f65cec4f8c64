"""Client for the splitface card application (see firmware_notes/smartcard.md).

APDUs (CLA 00, basic channel):

=====================  ===========================================  =============
SELECT by AID          00 A4 04 00 Lc <AID> 00                        9000 / 6A82
READ BINARY (SFI)      00 B0 <80|SFI> <off> 00                        data 9000
READ BINARY (cur. EF)  00 B0 <off_hi> <off_lo> 00                     data 9000
VERIFY (status)        00 20 00 81                                    9000 / 63Cx
VERIFY                 00 20 00 81 08 <PIN ASCII, FF padded>          9000 / 63Cx
INTERNAL AUTHENTICATE  00 88 00 81 20 <SHA-256 challenge> 00          DER sig 9000
UPDATE BINARY (holder) 00 D6 83 00 84 <5F20 TLV, zero padded>         9000 / 6982
=====================  ===========================================  =============
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from splitface.shared.card_binding import (
    MAX_CARD_ID_LEN,
    PUBLIC_KEY_LEN,
    CardBindingError,
    load_card_public_key,
)

from .apdu import CommandAPDU, ResponseAPDU, raise_for_status
from .channel import ApduChannel
from .errors import (
    CardError,
    CardFileNotFoundError,
    MalformedResponseError,
    PinBlockedError,
    SecurityStatusError,
    UnknownCardError,
)
from .holder import HOLDER_EF_SIZE, decode_holder, encode_holder

_log = logging.getLogger(__name__)

DEFAULT_AID = bytes.fromhex("F0") + b"SPLITFACE" + bytes((0x01,))
INS_SELECT, INS_READ_BINARY, INS_VERIFY, INS_INTERNAL_AUTH = 0xA4, 0xB0, 0x20, 0x88
INS_UPDATE_BINARY = 0xD6


class InvalidPinFormatError(CardError, ValueError):
    """The PIN offered is not 4..8 ASCII digits (checked before it reaches the card)."""


@dataclass(frozen=True)
class PinRequest:
    """Passed to the PIN provider: how many tries the card still allows."""

    reader: str
    retries_left: int


PinProvider = Callable[[PinRequest], str]


@dataclass(frozen=True)
class AppletOptions:
    """Where the card keeps its data; defaults match firmware_notes/smartcard.md."""

    aid: bytes = DEFAULT_AID
    card_id_sfi: int = 0x01
    public_key_sfi: int = 0x02
    holder_sfi: int = 0x03
    pin_reference: int = 0x81
    key_reference: int = 0x81
    max_file_len: int = 4096


@dataclass(frozen=True)
class CardIdentity:
    """What a tap reveals: the card id and its P-256 public key (both public)."""

    card_id: bytes
    public_key: bytes

    def __repr__(self) -> str:
        return f"CardIdentity(card_id={self.card_id.hex()}, public_key=<{len(self.public_key)}B>)"


def encode_pin(pin: str) -> bytes:
    """ASCII digits padded with FF to 8 bytes (PIV-style format)."""
    if not isinstance(pin, str) or not pin.isascii() or not pin.isdigit() or not 4 <= len(pin) <= 8:
        raise InvalidPinFormatError("PIN must be 4 to 8 ASCII digits")
    return pin.encode("ascii").ljust(8, b"\xff")


class CardAppClient:
    """Speaks the splitface application over an ApduChannel."""

    def __init__(
        self, channel: ApduChannel, options: AppletOptions | None = None, reader: str = ""
    ) -> None:
        self._ch = channel
        self._opts = options or AppletOptions()
        self._reader = reader

    @property
    def channel(self) -> ApduChannel:
        """The underlying channel, for diagnostics and benchmarks."""
        return self._ch

    def select(self) -> bytes:
        """SELECT the application by AID; UnknownCardError if the card lacks it."""
        cmd = CommandAPDU(0x00, INS_SELECT, 0x04, 0x00, self._opts.aid, le=256)
        resp = self._ch.transmit(cmd)
        if resp.sw in (0x6A82, 0x6A86, 0x6D00, 0x6E00, 0x6A81):
            raise UnknownCardError(
                f"card does not carry the splitface application (SW={resp.sw:04X})"
            )
        return raise_for_status(resp, "SELECT application").data

    def read_binary(self, sfi: int, max_len: int | None = None) -> bytes:
        """Whole transparent EF by short file identifier, in <=256-byte chunks."""
        limit = max_len or self._opts.max_file_len
        out = bytearray()
        while len(out) < limit:
            offset = len(out)
            want = min(256, limit - offset)
            if offset == 0:
                cmd = CommandAPDU(0x00, INS_READ_BINARY, 0x80 | sfi, 0x00, le=want)
            elif offset <= 0x7FFF:
                cmd = CommandAPDU(0x00, INS_READ_BINARY, offset >> 8, offset & 0xFF, le=want)
            else:
                raise MalformedResponseError("EF larger than 32 KiB")
            resp = self._ch.transmit(cmd)
            if offset and resp.sw == 0x6B00:  # offset is exactly the end of the EF
                break
            if resp.sw != 0x6282:
                raise_for_status(resp, f"READ BINARY SFI {sfi}")
            out += resp.data
            if resp.sw == 0x6282 or len(resp.data) < want:
                break
        return bytes(out)

    def read_identity(self) -> CardIdentity:
        """READ BINARY the card id and public key; validate both."""
        card_id = self.read_binary(self._opts.card_id_sfi, MAX_CARD_ID_LEN + 1)
        if not 1 <= len(card_id) <= MAX_CARD_ID_LEN:
            raise MalformedResponseError(f"card id of {len(card_id)} bytes")
        public_key = self.read_binary(self._opts.public_key_sfi, PUBLIC_KEY_LEN + 1)
        try:
            load_card_public_key(public_key)
        except CardBindingError as exc:
            raise MalformedResponseError(f"card public key unusable: {exc}") from exc
        return CardIdentity(card_id, public_key)

    def pin_retries(self) -> int | None:
        """None when the PIN is already verified; else retries left (PinBlockedError at 0)."""
        resp = self._ch.transmit(CommandAPDU(0x00, INS_VERIFY, 0x00, self._opts.pin_reference))
        if resp.ok:
            return None
        if resp.sw1 == 0x63 and resp.sw2 & 0xF0 == 0xC0:
            if resp.sw2 & 0x0F == 0:
                raise PinBlockedError("PIN blocked: no retries left", resp.sw)
            return resp.sw2 & 0x0F
        raise_for_status(resp, "VERIFY (retry counter)")
        return None

    def unlock(self, pin_provider: PinProvider | None) -> bool:
        """Verify the PIN now, if the card has one; False for a card without a PIN.

        Terminals call this before opening a server transaction, so a person typing a
        PIN (or a wrong PIN) never holds a server nonce or a transaction open.
        """
        cmd = CommandAPDU(0x00, INS_VERIFY, 0x00, self._opts.pin_reference)
        resp = self._ch.transmit(cmd)
        if resp.sw in (0x6A88, 0x6A86, 0x6D00):  # no such PIN / VERIFY not supported
            return False
        if resp.ok:
            return True
        if resp.sw1 == 0x63 and resp.sw2 & 0xF0 == 0xC0 and resp.sw2 & 0x0F:
            if pin_provider is None:
                raise SecurityStatusError("card requires a PIN and no PIN provider is set", resp.sw)
            self.verify_pin(pin_provider(PinRequest(self._reader, resp.sw2 & 0x0F)))
            return True
        if resp.sw1 == 0x63 and resp.sw2 & 0xF0 == 0xC0:
            raise PinBlockedError("PIN blocked: no retries left", resp.sw)
        raise_for_status(resp, "VERIFY (retry counter)")
        return False

    def verify_pin(self, pin: str) -> None:
        """VERIFY; raises WrongPinError(retries_left) or PinBlockedError. PIN never logged."""
        data = encode_pin(pin)
        cmd = CommandAPDU(0x00, INS_VERIFY, 0x00, self._opts.pin_reference, data)
        raise_for_status(self._ch.transmit(cmd), "VERIFY PIN")

    def _internal_authenticate(self, challenge: bytes) -> ResponseAPDU:
        cmd = CommandAPDU(
            0x00, INS_INTERNAL_AUTH, 0x00, self._opts.key_reference, challenge, le=256
        )
        return self._ch.transmit(cmd)

    def read_holder(self) -> str:
        """The identity the card claims (holder EF); "" if the card is not personalised."""
        try:
            ef = self.read_binary(self._opts.holder_sfi, HOLDER_EF_SIZE)
        except CardFileNotFoundError:  # a card issued before the holder EF existed
            return ""
        return decode_holder(ef)

    def write_holder(self, identity: str, pin_provider: PinProvider | None = None) -> None:
        """UPDATE BINARY the whole holder EF ("" erases); asks for the PIN if the card wants it."""
        data = encode_holder(identity)
        cmd = CommandAPDU(0x00, INS_UPDATE_BINARY, 0x80 | self._opts.holder_sfi, 0x00, data)
        resp = self._with_pin(lambda: self._ch.transmit(cmd), pin_provider, "UPDATE BINARY")
        raise_for_status(resp, f"UPDATE BINARY SFI {self._opts.holder_sfi}")

    def _with_pin(
        self, send: Callable[[], ResponseAPDU], pin_provider: PinProvider | None, what: str
    ) -> ResponseAPDU:
        """Send; on 6982 verify the PIN (if not verified yet) and send once more."""
        resp = send()
        if resp.sw == 0x6982:
            if pin_provider is None:
                raise SecurityStatusError(
                    f"{what}: card requires a PIN and no PIN provider is set", resp.sw
                )
            retries = self.pin_retries()
            if retries is not None:
                self.verify_pin(pin_provider(PinRequest(self._reader, retries)))
            resp = send()
        return resp

    def sign(self, challenge: bytes, pin_provider: PinProvider | None = None) -> bytes:
        """INTERNAL AUTHENTICATE over the 32-byte challenge, asking for the PIN if needed."""
        if len(challenge) != 32:
            raise ValueError("challenge must be the 32-byte SHA-256 of the card binding")
        resp = self._with_pin(
            lambda: self._internal_authenticate(challenge), pin_provider, "INTERNAL AUTHENTICATE"
        )
        return raise_for_status(resp, "INTERNAL AUTHENTICATE").data
