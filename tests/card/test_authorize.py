"""verify_card_authorization paths that need no reader (software key as the card)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from splitface.servers.cards import (
    CardAuthorizationError,
    CardAuthReason,
    CardRegistry,
    NonceStore,
    verify_card_authorization,
)
from splitface.shared.card_binding import (
    CardAuthRequest,
    CardChallenge,
    RequestKind,
    encode_card_public_key,
    payload_digest,
)

PAYLOAD = b"payload"


@pytest.fixture
def registry(tmp_path):
    with CardRegistry(tmp_path / "p0.db") as reg:
        yield reg


def signed(
    key,
    nonces: NonceStore,
    card_id: bytes,
    kind=RequestKind.VERIFY,
    ident="alice",
    sig_override: bytes | None = None,
) -> CardAuthRequest:
    n0 = nonces.issue(card_id).nonce
    c = CardChallenge(card_id, n0, b"\x01" * 32, kind, ident, payload_digest(PAYLOAD))
    sig = sig_override or key.sign(c.digest(), ec.ECDSA(hashes.SHA256()))
    return CardAuthRequest(c, encode_card_public_key(key.public_key()), sig)


def check(req, nonces, registry, kind=RequestKind.VERIFY):
    return verify_card_authorization(
        req,
        server_index=0,
        nonces=nonces,
        registry=registry,
        kind=kind,
        payload_digest=payload_digest(PAYLOAD),
    )


def test_ok_and_raise_for_failure(registry):
    key, nonces = ec.generate_private_key(ec.SECP256R1()), NonceStore()
    registry.bind(b"c1", encode_card_public_key(key.public_key()), "alice")
    result = check(signed(key, nonces, b"c1"), nonces, registry)
    assert result.ok and result.identity_id == "alice"
    assert result.raise_for_failure() is result
    bad = check(signed(key, nonces, b"c1", ident="mallory"), nonces, registry)
    with pytest.raises(CardAuthorizationError, match="identity mismatch") as err:
        bad.raise_for_failure()
    assert err.value.result.reason is CardAuthReason.IDENTITY_MISMATCH
    assert bad.identity_id == ""


def test_enrolment_needs_proof_of_possession(registry):
    key, nonces = ec.generate_private_key(ec.SECP256R1()), NonceStore()
    ok = check(
        signed(key, nonces, b"new", RequestKind.ENROLL), nonces, registry, RequestKind.ENROLL
    )
    assert ok.ok
    other = ec.generate_private_key(ec.SECP256R1())
    forged = signed(
        key,
        nonces,
        b"new",
        RequestKind.ENROLL,
        sig_override=other.sign(b"x" * 32, ec.ECDSA(hashes.SHA256())),
    )
    assert check(forged, nonces, registry, RequestKind.ENROLL).reason is (
        CardAuthReason.BAD_SIGNATURE
    )
    registry.bind(b"old", encode_card_public_key(key.public_key()), "alice")
    moved = check(
        signed(key, nonces, b"new2", RequestKind.ENROLL), nonces, registry, RequestKind.ENROLL
    )
    assert moved.reason is CardAuthReason.WRONG_CARD  # same key under a second id
    taken = check(
        signed(key, nonces, b"old", RequestKind.ENROLL, ident="bob"),
        nonces,
        registry,
        RequestKind.ENROLL,
    )
    assert taken.reason is CardAuthReason.IDENTITY_MISMATCH


def test_unknown_nonce_and_malformed_signature(registry):
    key, nonces = ec.generate_private_key(ec.SECP256R1()), NonceStore()
    registry.bind(b"c1", encode_card_public_key(key.public_key()), "alice")
    req = signed(key, nonces, b"c1")
    assert check(req, NonceStore(), registry).reason is CardAuthReason.UNKNOWN_NONCE
    junk = signed(key, nonces, b"c1", sig_override=b"\x30" * 20)
    assert check(junk, nonces, registry).reason is CardAuthReason.MALFORMED_REQUEST
    bad_index = verify_card_authorization(
        req,
        server_index=2,
        nonces=nonces,
        registry=registry,
        kind=RequestKind.VERIFY,
        payload_digest=payload_digest(PAYLOAD),
    )
    assert bad_index.reason is CardAuthReason.MALFORMED_REQUEST
