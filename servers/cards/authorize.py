"""Server-side gate run before a server takes part in an MPC verification or enrolment.

Checks, in this order (the nonce is spent first, so every presentation is single use):

1. this server's nonce is one it issued, for this card, unspent and within its TTL;
2. the signed request matches what this server is about to process (kind, payload digest);
3. the card id is bound (or, for enrolment, not bound elsewhere) and not revoked;
4. the key presented is the key bound to that card id;
5. the ECDSA P-256 signature over the canonical challenge verifies;
6. the card is bound to the claimed identity.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

from splitface.shared.card_binding import (
    CardAuthRequest,
    CardBindingError,
    RequestKind,
    card_key_fingerprint,
    same_bytes,
    verify_card_signature,
)

from .nonces import NonceCheck, NonceStore
from .registry import BindingStatus, CardRegistry

_log = logging.getLogger(__name__)


class CardAuthReason(Enum):
    OK = "ok"
    REPLAYED_SIGNATURE = "replayed signature: this server's nonce was already used"
    EXPIRED_NONCE = "expired nonce: the challenge outlived its TTL"
    UNKNOWN_NONCE = "unknown nonce: this server never issued it (or forgot it)"
    WRONG_CARD = "wrong card: the nonce or the bound key belongs to another card"
    REQUEST_MISMATCH = "request mismatch: the signature covers another request"
    UNKNOWN_CARD = "unknown card: no binding for this card id"
    REVOKED_CARD = "revoked card"
    BAD_SIGNATURE = "bad signature"
    IDENTITY_MISMATCH = "identity mismatch: the card is bound to another identity"
    MALFORMED_REQUEST = "malformed card authorisation"


_NONCE_REASONS = {
    NonceCheck.REPLAYED: CardAuthReason.REPLAYED_SIGNATURE,
    NonceCheck.EXPIRED: CardAuthReason.EXPIRED_NONCE,
    NonceCheck.UNKNOWN: CardAuthReason.UNKNOWN_NONCE,
    NonceCheck.WRONG_CARD: CardAuthReason.WRONG_CARD,
}


class CardAuthorizationError(PermissionError):
    """Raised by ``CardAuthorization.raise_for_failure``; carries the typed result."""

    def __init__(self, result: CardAuthorization) -> None:
        super().__init__(
            f"card authorisation refused: {result.reason.value}"
            + (f" ({result.detail})" if result.detail else "")
        )
        self.result = result


@dataclass(frozen=True)
class CardAuthorization:
    """Typed verdict; ``identity_id`` is set only when ``ok``."""

    reason: CardAuthReason
    card_id: bytes = b""
    identity_id: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is CardAuthReason.OK

    def raise_for_failure(self) -> CardAuthorization:
        if not self.ok:
            raise CardAuthorizationError(self)
        return self


def verify_card_authorization(
    request: CardAuthRequest,
    *,
    server_index: int,
    nonces: NonceStore,
    registry: CardRegistry,
    kind: RequestKind,
    payload_digest: bytes,
) -> CardAuthorization:
    """Decide whether server ``server_index`` may proceed with this card-bound request.

    ``kind`` and ``payload_digest`` are what *this server* is about to process (the
    digest it computed itself over the message it received), not what the edge claims.
    For ``ENROLL`` an unbound card passes on proof of possession of the presented key;
    the caller binds it with ``registry.bind`` once the MPC enrolment has committed.
    """
    challenge = request.challenge
    card_id = challenge.card_id

    def refuse(reason: CardAuthReason, detail: str = "") -> CardAuthorization:
        _log.info("card %s refused by P%d: %s", card_id.hex(), server_index, reason.name)
        return CardAuthorization(reason, card_id, "", detail)

    try:
        own_nonce = challenge.nonce_for(server_index)
    except ValueError as exc:
        return refuse(CardAuthReason.MALFORMED_REQUEST, str(exc))

    check = nonces.consume(own_nonce, card_id)
    if check is not NonceCheck.FRESH:
        return refuse(_NONCE_REASONS[check], f"nonce {check.value}")

    if challenge.kind is not RequestKind(kind):
        return refuse(
            CardAuthReason.REQUEST_MISMATCH,
            f"signed for {challenge.kind.name}, server runs {RequestKind(kind).name}",
        )
    if not isinstance(payload_digest, bytes) or not same_bytes(
        challenge.payload_digest, payload_digest
    ):
        return refuse(CardAuthReason.REQUEST_MISMATCH, "payload digest differs")

    binding = registry.lookup(card_id)
    if binding.status is BindingStatus.REVOKED:
        return refuse(CardAuthReason.REVOKED_CARD)
    if binding.status is BindingStatus.UNKNOWN:
        if challenge.kind is not RequestKind.ENROLL:
            return refuse(CardAuthReason.UNKNOWN_CARD)
        other = registry.lookup_by_public_key(request.public_key)
        if other.status is not BindingStatus.UNKNOWN:
            return refuse(CardAuthReason.WRONG_CARD, "key already bound under another card id")
        key = request.public_key
    else:
        if not same_bytes(binding.public_key, request.public_key):
            return refuse(
                CardAuthReason.WRONG_CARD,
                f"presented key {card_key_fingerprint(request.public_key)} is not "
                f"the bound key {card_key_fingerprint(binding.public_key)}",
            )
        key = binding.public_key

    try:
        valid = verify_card_signature(key, challenge, request.signature)
    except CardBindingError as exc:
        return refuse(CardAuthReason.MALFORMED_REQUEST, str(exc))
    if not valid:
        return refuse(CardAuthReason.BAD_SIGNATURE)

    if binding.is_bound and binding.identity_id != challenge.claimed_identity:
        return refuse(CardAuthReason.IDENTITY_MISMATCH)

    return CardAuthorization(CardAuthReason.OK, card_id, challenge.claimed_identity)
