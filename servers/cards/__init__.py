"""Server side of card-bound requests: nonces, the card binding registry, the gate."""

from .authorize import (
    CardAuthorization,
    CardAuthorizationError,
    CardAuthReason,
    verify_card_authorization,
)
from .nonces import IssuedNonce, NonceCheck, NonceOptions, NonceStore, NonceStoreFullError
from .registry import (
    BindingStatus,
    CardAlreadyBoundError,
    CardBinding,
    CardRegistry,
    CardRegistryError,
    CardRevokedError,
)

__all__ = [
    "BindingStatus",
    "CardAlreadyBoundError",
    "CardAuthReason",
    "CardAuthorization",
    "CardAuthorizationError",
    "CardBinding",
    "CardRegistry",
    "CardRegistryError",
    "CardRevokedError",
    "IssuedNonce",
    "NonceCheck",
    "NonceOptions",
    "NonceStore",
    "NonceStoreFullError",
    "verify_card_authorization",
]
