"""ISO 7816-4 command/response APDUs and status-word interpretation.

Short APDUs carry Lc <= 255 and Le <= 256 (Le byte 00 means 256); anything larger
uses the extended form (Lc = 00 || 2 bytes, Le = 2 bytes, 0000 meaning 65536).
Only the header and lengths are ever logged: command data may hold a PIN.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import (
    CardFileNotFoundError,
    CardStatusError,
    MalformedResponseError,
    PinBlockedError,
    SecurityStatusError,
    WrongLengthError,
    WrongPinError,
)

SW_OK = 0x9000

_SW_TEXT = {
    0x6281: "part of returned data may be corrupted",
    0x6282: "end of file reached before reading Le bytes",
    0x6283: "selected file deactivated",
    0x6581: "memory failure",
    0x6700: "wrong length",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6984: "reference data not usable",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6A80: "incorrect parameters in the data field",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A86: "incorrect parameters P1-P2",
    0x6A88: "referenced data not found",
    0x6B00: "wrong parameters P1-P2 (offset outside the EF)",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}


def describe_sw(sw: int) -> str:
    """Human-readable meaning of a status word (ISO 7816-4 section 5.6)."""
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw == SW_OK:
        return "success"
    if sw1 == 0x61:
        return f"{sw2 or 256} more response bytes available (GET RESPONSE)"
    if sw1 == 0x6C:
        return f"wrong Le; exact length is {sw2 or 256}"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"verification failed, {sw2 & 0x0F} retries left"
    return _SW_TEXT.get(sw, "unknown status")


@dataclass(frozen=True)
class CommandAPDU:
    """One command; ``le`` None means no response data expected, 256 is short Le=00."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ValueError(f"{name} must be one byte, got {value!r}")
        if len(self.data) > 65535:
            raise ValueError("command data longer than 65535 bytes")
        if self.le is not None and not 1 <= self.le <= 65536:
            raise ValueError("le must be 1..65536 or None")

    @property
    def extended(self) -> bool:
        return len(self.data) > 255 or (self.le is not None and self.le > 256)

    def encode(self) -> bytes:
        """Serialise per ISO 7816-3 cases 1-4, short or extended."""
        out = bytearray((self.cla, self.ins, self.p1, self.p2))
        if not self.extended:
            if self.data:
                out.append(len(self.data))
                out += self.data
            if self.le is not None:
                out.append(self.le & 0xFF)
            return bytes(out)
        if self.data:
            out += bytes((0,)) + len(self.data).to_bytes(2, "big") + self.data
            if self.le is not None:
                out += (self.le & 0xFFFF).to_bytes(2, "big")
        elif self.le is not None:
            out += bytes((0,)) + (self.le & 0xFFFF).to_bytes(2, "big")
        return bytes(out)

    def with_le(self, le: int) -> CommandAPDU:
        return replace(self, le=le)

    def header(self) -> str:
        """Loggable summary: header and lengths, never the data."""
        le = "-" if self.le is None else str(self.le)
        return (
            f"{self.cla:02X} {self.ins:02X} {self.p1:02X} {self.p2:02X} Lc={len(self.data)} Le={le}"
        )


@dataclass(frozen=True)
class ResponseAPDU:
    """Response data plus SW1 SW2."""

    data: bytes
    sw1: int
    sw2: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> ResponseAPDU:
        if len(raw) < 2:
            raise MalformedResponseError(
                f"response of {len(raw)} byte(s) has no status word (mute or broken card)"
            )
        return cls(bytes(raw[:-2]), raw[-2], raw[-1])

    @property
    def sw(self) -> int:
        return (self.sw1 << 8) | self.sw2

    @property
    def ok(self) -> bool:
        return self.sw == SW_OK


def raise_for_status(response: ResponseAPDU, what: str) -> ResponseAPDU:
    """Return ``response`` when it is 9000 (or 62xx warnings with data); else raise."""
    sw = response.sw
    if sw == SW_OK:
        return response
    text = f"{what}: {describe_sw(sw)}"
    if response.sw1 == 0x63 and response.sw2 & 0xF0 == 0xC0:
        raise WrongPinError(text, sw, response.sw2 & 0x0F)
    if sw == 0x6983:
        raise PinBlockedError(text, sw)
    if sw == 0x6982:
        raise SecurityStatusError(text, sw)
    if sw == 0x6A82:
        raise CardFileNotFoundError(text, sw)
    if sw == 0x6700 or response.sw1 == 0x6C:
        raise WrongLengthError(text, sw)
    raise CardStatusError(text, sw)
