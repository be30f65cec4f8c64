"""The signed card-binding message: canonical, injective, domain-separated; wire parsing."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from splitface.shared.card_binding import (
    DOMAIN,
    CardAuthRequest,
    CardChallenge,
    InvalidCardPublicKeyError,
    MalformedCardRequestError,
    RequestKind,
    encode_card_public_key,
    load_card_public_key,
    payload_digest,
    signature_to_der,
    verify_card_signature,
)

N0, N1 = b"\x10" * 32, b"\x11" * 32


def challenge(**kw) -> CardChallenge:
    base = dict(
        card_id=b"\x01\x02",
        nonce_p0=N0,
        nonce_p1=N1,
        kind=RequestKind.VERIFY,
        claimed_identity="alice",
        payload_digest=payload_digest(b"x"),
    )
    base.update(kw)
    return CardChallenge(**base)


def test_encoding_is_stable_and_domain_separated():
    c = challenge()
    enc = c.encode()
    assert enc.startswith(len(DOMAIN).to_bytes(4, "big") + DOMAIN)
    assert c.digest() == hashlib.sha256(enc).digest()
    # golden value: changing the format must be a deliberate version bump
    assert c.digest().hex() == ("71336d6a101a2b1e21574915bbc9231fab1bb5396192d234ecd4ca2d29547395")
    assert len(c.digest()) == 32


def test_every_field_changes_the_digest():
    base = challenge()
    variants = [
        challenge(card_id=b"\x01\x03"),
        challenge(nonce_p0=b"\x12" * 32),
        challenge(nonce_p1=b"\x12" * 32),
        challenge(nonce_p0=N1, nonce_p1=N0),  # swapping the servers' nonces
        challenge(kind=RequestKind.ENROLL),
        challenge(claimed_identity="alicf"),
        challenge(payload_digest=payload_digest(b"y")),
    ]
    digests = {v.digest() for v in variants} | {base.digest()}
    assert len(digests) == len(variants) + 1


def test_length_prefix_prevents_boundary_shifts():
    # the same concatenated bytes split differently between card id and identity
    a = challenge(card_id=b"\x01\x02", claimed_identity="ab")
    b = challenge(card_id=b"\x01\x02a", claimed_identity="b")
    assert a.encode() != b.encode()
    ids = [bytes([i]) * n for i, n in itertools.product(range(2), range(1, 4))]
    encs = {challenge(card_id=c).encode() for c in ids}
    assert len(encs) == len(ids)


@pytest.mark.parametrize(
    "bad",
    [
        dict(card_id=b""),
        dict(card_id=b"\x00" * 65),
        dict(nonce_p0=b"\x00" * 31),
        dict(nonce_p1="x" * 32),
        dict(payload_digest=b"\x00" * 16),
        dict(kind=7),
        dict(claimed_identity=""),
        dict(claimed_identity="x" * 257),
        dict(version=2),
    ],
)
def test_malformed_fields_rejected(bad):
    with pytest.raises(MalformedCardRequestError):
        challenge(**bad)


def test_sign_and_verify_roundtrip_and_raw_signature_form():
    key = ec.generate_private_key(ec.SECP256R1())
    pub = encode_card_public_key(key.public_key())
    c = challenge()
    der = key.sign(c.digest(), ec.ECDSA(hashes.SHA256()))
    assert verify_card_signature(pub, c, der)
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert verify_card_signature(pub, c, raw)
    assert signature_to_der(raw) == der
    assert not verify_card_signature(pub, challenge(claimed_identity="bob"), der)
    other = encode_card_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    assert not verify_card_signature(other, c, der)


def test_invalid_public_keys_rejected():
    key = encode_card_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    off_curve = key[:-1] + bytes([key[-1] ^ 1])
    for bad in (off_curve, b"\x02" + key[1:], key[:33]):
        with pytest.raises(MalformedCardRequestError):
            load_card_public_key(bad)
    with pytest.raises(InvalidCardPublicKeyError):
        load_card_public_key(off_curve)


def test_garbage_signature_is_malformed():
    with pytest.raises(MalformedCardRequestError):
        signature_to_der(b"\x30" * 40)
    with pytest.raises(MalformedCardRequestError):
        signature_to_der(b"\x00" * 64)  # r = s = 0


def test_wire_roundtrip_and_validation():
    key = ec.generate_private_key(ec.SECP256R1())
    c = challenge()
    req = CardAuthRequest(
        c, encode_card_public_key(key.public_key()), key.sign(c.digest(), ec.ECDSA(hashes.SHA256()))
    )
    wire = req.to_wire()
    assert CardAuthRequest.from_wire(wire) == req
    for mutate in (
        lambda w: w.pop("signature"),
        lambda w: w.update(extra=1),
        lambda w: w.update(kind="verify"),
        lambda w: w.update(nonce_p0=b"short"),
        lambda w: w.update(public_key=b"\x04" * 10),
    ):
        w = dict(wire)
        mutate(w)
        with pytest.raises(MalformedCardRequestError):
            CardAuthRequest.from_wire(w)
    with pytest.raises(MalformedCardRequestError):
        CardAuthRequest.from_wire([1, 2])


def test_nonce_for_server_index():
    c = challenge()
    assert (c.nonce_for(0), c.nonce_for(1)) == (N0, N1)
    with pytest.raises(ValueError):
        c.nonce_for(2)
    assert dataclasses.replace(c, kind=2).kind is RequestKind.ENROLL


_fields = st.tuples(
    st.binary(min_size=1, max_size=8),
    st.sampled_from([RequestKind.VERIFY, RequestKind.ENROLL]),
    st.text(min_size=1, max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(_fields, _fields)
def test_encoding_is_injective(a, b):
    ca = challenge(card_id=a[0], kind=a[1], claimed_identity=a[2])
    cb = challenge(card_id=b[0], kind=b[1], claimed_identity=b[2])
    assert (ca.encode() == cb.encode()) == (a == b)
