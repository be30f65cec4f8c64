"""The card's holder EF: which identity the card claims, written at enrolment.

The terminal must name the claimed identity in a verify request before any server has
looked at the card, so the card carries it: a transparent EF (SFI ``03``) of
``HOLDER_EF_SIZE`` bytes holding one BER-TLV ``5F20 L <UTF-8 identity id>`` (tag 5F20 =
cardholder name, ISO/IEC 7816-6), zero padded. An EF that starts with ``00`` or ``FF``
is unpersonalised. The claim is only a hint: the servers' registry decides whether the
card is bound to that identity, so a rewritten EF fails closed (identity mismatch).
"""

from __future__ import annotations

from .errors import MalformedResponseError

HOLDER_TAG = b"\x5f\x20"
MAX_HOLDER_BYTES = 128
HOLDER_EF_SIZE = len(HOLDER_TAG) + 2 + MAX_HOLDER_BYTES  # tag, BER length (<= 2 B), value


class HolderTooLongError(ValueError):
    """The identity does not fit the card's holder EF (at most 128 UTF-8 bytes)."""


def encode_holder(identity: str) -> bytes:
    """The whole EF content for ``identity`` (TLV, zero padded to the EF size); "" erases."""
    if not identity:
        return bytes(HOLDER_EF_SIZE)
    value = identity.encode("utf-8")
    if len(value) > MAX_HOLDER_BYTES:
        raise HolderTooLongError(
            f"identity is {len(value)} UTF-8 bytes; the card holds at most {MAX_HOLDER_BYTES}"
        )
    length = bytes((len(value),)) if len(value) < 0x80 else bytes((0x81, len(value)))
    return (HOLDER_TAG + length + value).ljust(HOLDER_EF_SIZE, b"\x00")


def decode_holder(ef: bytes) -> str:
    """Identity id from the EF content; "" when unpersonalised. Bad TLV -> MalformedResponse."""
    if not ef or ef[0] in (0x00, 0xFF):
        return ""
    if ef[:2] != HOLDER_TAG or len(ef) < 3:
        raise MalformedResponseError("holder EF does not start with tag 5F20")
    length, start = ef[2], 3
    if length == 0x81:
        if len(ef) < 4:
            raise MalformedResponseError("holder EF: truncated BER length")
        length, start = ef[3], 4
    elif length > 0x7F:
        raise MalformedResponseError("holder EF: unsupported BER length form")
    value = ef[start : start + length]
    if len(value) != length or not 1 <= length <= MAX_HOLDER_BYTES:
        raise MalformedResponseError(f"holder EF: value of {len(value)}/{length} bytes")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedResponseError("holder EF: identity is not UTF-8") from exc
