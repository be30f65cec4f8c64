"""What a smart card signs to authorise one request, and how both sides check it.

The card never signs a bare nonce: it signs a challenge that binds *everything* the
servers must agree on, so a signature cannot be replayed (fresh nonce from each
server), moved to another request (digest of the request payload), or to another
person (claimed identity), or reused across request kinds (verify vs enroll).

Encoding (version 1), every variable field length-prefixed so no two distinct
tuples share an encoding::

    lp(x)   = uint32_be(len(x)) || x
    message = lp(DOMAIN) || uint8(version) || lp(card_id) || lp(nonce_p0)
              || lp(nonce_p1) || uint8(kind) || lp(utf8(claimed_identity))
              || lp(payload_digest)
    challenge = SHA-256(message)                       # 32 bytes, fits one short APDU

The card computes ECDSA P-256 with SHA-256 over the 32-byte ``challenge`` (JavaCard
``Signature.ALG_ECDSA_SHA_256``, available since JC 2.2.2), and returns the
signature DER-encoded. Public keys travel as uncompressed SEC1 points (65 bytes).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

CARD_BINDING_VERSION = 1
DOMAIN = b"splitface/card-binding/v1"
NONCE_LEN = 32
DIGEST_LEN = 32
PUBLIC_KEY_LEN = 65  # 0x04 || X || Y on P-256
MAX_CARD_ID_LEN = 64
MAX_IDENTITY_LEN = 256
MAX_SIGNATURE_LEN = 80  # DER ECDSA P-256 is at most 72 bytes
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class RequestKind(IntEnum):
    """What the signature authorises; part of the signed message."""

    VERIFY = 1
    ENROLL = 2


class CardBindingError(ValueError):
    """Base class for every rejected card-binding input."""


class MalformedCardRequestError(CardBindingError):
    """A field is missing, has the wrong type, or the wrong length."""


class InvalidCardPublicKeyError(MalformedCardRequestError):
    """The bytes are not an uncompressed P-256 point on the curve."""


def _lp(field: bytes) -> bytes:
    return struct.pack(">I", len(field)) + field


def _require_bytes(name: str, value: object, lo: int, hi: int) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise MalformedCardRequestError(f"{name} must be bytes, got {type(value).__name__}")
    if not lo <= len(value) <= hi:
        want = f"{lo}" if lo == hi else f"{lo}..{hi}"
        raise MalformedCardRequestError(f"{name} must be {want} bytes, got {len(value)}")
    return bytes(value)


def payload_digest(payload: bytes) -> bytes:
    """SHA-256 of the request payload (the lead passes the masked-embedding message)."""
    return hashlib.sha256(payload).digest()


@dataclass(frozen=True)
class CardChallenge:
    """The tuple a card signs; ``digest()`` is the 32-byte challenge sent to the card."""

    card_id: bytes
    nonce_p0: bytes
    nonce_p1: bytes
    kind: RequestKind
    claimed_identity: str
    payload_digest: bytes
    version: int = CARD_BINDING_VERSION

    def __post_init__(self) -> None:
        if self.version != CARD_BINDING_VERSION:
            raise MalformedCardRequestError(f"unsupported card-binding version {self.version!r}")
        _require_bytes("card_id", self.card_id, 1, MAX_CARD_ID_LEN)
        _require_bytes("nonce_p0", self.nonce_p0, NONCE_LEN, NONCE_LEN)
        _require_bytes("nonce_p1", self.nonce_p1, NONCE_LEN, NONCE_LEN)
        _require_bytes("payload_digest", self.payload_digest, DIGEST_LEN, DIGEST_LEN)
        try:
            object.__setattr__(self, "kind", RequestKind(self.kind))
        except ValueError as exc:
            raise MalformedCardRequestError(f"unknown request kind {self.kind!r}") from exc
        if not isinstance(self.claimed_identity, str):
            raise MalformedCardRequestError("claimed_identity must be a str")
        ident = self.claimed_identity.encode("utf-8")
        if not 1 <= len(ident) <= MAX_IDENTITY_LEN:
            raise MalformedCardRequestError(f"claimed_identity must be 1..{MAX_IDENTITY_LEN} bytes")

    def nonce_for(self, server_index: int) -> bytes:
        """The nonce that server ``server_index`` (0 or 1) issued."""
        if server_index == 0:
            return self.nonce_p0
        if server_index == 1:
            return self.nonce_p1
        raise ValueError(f"server_index must be 0 or 1, got {server_index!r}")

    def encode(self) -> bytes:
        """The canonical, domain-separated message (see module docstring)."""
        return b"".join(
            (
                _lp(DOMAIN),
                struct.pack(">B", self.version),
                _lp(self.card_id),
                _lp(self.nonce_p0),
                _lp(self.nonce_p1),
                struct.pack(">B", int(self.kind)),
                _lp(self.claimed_identity.encode("utf-8")),
                _lp(self.payload_digest),
            )
        )

    def digest(self) -> bytes:
        """SHA-256 of ``encode()``: the 32 bytes the card's INTERNAL AUTHENTICATE signs."""
        return hashlib.sha256(self.encode()).digest()


def load_card_public_key(encoded: bytes) -> ec.EllipticCurvePublicKey:
    """Parse an uncompressed SEC1 P-256 point; rejects points off the curve."""
    raw = _require_bytes("public_key", encoded, PUBLIC_KEY_LEN, PUBLIC_KEY_LEN)
    if raw[0] != 0x04:
        raise InvalidCardPublicKeyError("public_key must be an uncompressed point (0x04 prefix)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as exc:
        raise InvalidCardPublicKeyError("public_key is not a point on P-256") from exc


def encode_card_public_key(key: ec.EllipticCurvePublicKey) -> bytes:
    """Uncompressed SEC1 encoding (65 bytes), as stored on the card."""
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def card_key_fingerprint(encoded: bytes) -> str:
    """Short, non-secret handle for a card key, safe for logs (hex of SHA-256, 16 bytes)."""
    return hashlib.sha256(encoded).hexdigest()[:32]


def signature_to_der(signature: bytes) -> bytes:
    """Accept DER (JavaCard) or raw ``r || s`` (64 bytes, PIV-style cards); return DER."""
    sig = _require_bytes("signature", signature, 8, MAX_SIGNATURE_LEN)
    try:
        r, s = decode_dss_signature(sig)
    except ValueError:
        if len(sig) != 64:
            raise MalformedCardRequestError("signature is neither DER nor raw r||s") from None
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if not (0 < r < _P256_ORDER and 0 < s < _P256_ORDER):
        raise MalformedCardRequestError("signature scalars out of range")
    return encode_dss_signature(r, s)


def verify_card_signature(public_key: bytes, challenge: CardChallenge, signature: bytes) -> bool:
    """True iff ``signature`` is the card's ECDSA-P256-SHA256 signature over ``challenge``."""
    key = load_card_public_key(public_key)
    der = signature_to_der(signature)
    try:
        key.verify(der, challenge.digest(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def same_bytes(a: bytes, b: bytes) -> bool:
    """Constant-time equality for digests and keys."""
    return hmac.compare_digest(a, b)


@dataclass(frozen=True)
class CardAuthRequest:
    """What the edge sends each server: the signed tuple, the card's key and signature."""

    challenge: CardChallenge
    public_key: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _require_bytes("public_key", self.public_key, PUBLIC_KEY_LEN, PUBLIC_KEY_LEN)
        _require_bytes("signature", self.signature, 8, MAX_SIGNATURE_LEN)

    def to_wire(self) -> dict[str, Any]:
        """msgpack-friendly dict (bytes stay bytes)."""
        c = self.challenge
        return {
            "v": c.version,
            "card_id": c.card_id,
            "nonce_p0": c.nonce_p0,
            "nonce_p1": c.nonce_p1,
            "kind": int(c.kind),
            "identity": c.claimed_identity,
            "payload_digest": c.payload_digest,
            "public_key": self.public_key,
            "signature": self.signature,
        }

    @classmethod
    def from_wire(cls, obj: object) -> CardAuthRequest:
        """Validate and rebuild; any missing or ill-typed field raises MalformedCardRequestError."""
        if not isinstance(obj, dict):
            raise MalformedCardRequestError("card authorisation must be a map")
        expected = {
            "v",
            "card_id",
            "nonce_p0",
            "nonce_p1",
            "kind",
            "identity",
            "payload_digest",
            "public_key",
            "signature",
        }
        keys = set(obj)
        if keys != expected:
            missing, extra = sorted(expected - keys), sorted(map(str, keys - expected))
            raise MalformedCardRequestError(
                f"card authorisation fields: missing {missing}, extra {extra}"
            )
        if not isinstance(obj["v"], int) or not isinstance(obj["kind"], int):
            raise MalformedCardRequestError("version and kind must be integers")
        challenge = CardChallenge(
            card_id=obj["card_id"],
            nonce_p0=obj["nonce_p0"],
            nonce_p1=obj["nonce_p1"],
            kind=obj["kind"],
            claimed_identity=obj["identity"],
            payload_digest=obj["payload_digest"],
            version=obj["v"],
        )
        return cls(challenge=challenge, public_key=obj["public_key"], signature=obj["signature"])
