"""A hostile terminal: a valid terminal key, perhaps a card of its own, any name it likes.

Before, any terminal could enrol, the card-signed identity was not compared with the
request's, an identity could gain more cards, and binding a card already bound elsewhere
crashed both servers. A terminal with a self-made card enrolled its own face as an
existing card-bound user and, after routine training, passed card-bound verification as
that user.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zmq
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from splitface.edge.client import ServerRefused
from splitface.servers.deploy_local import LocalDeployment
from splitface.shared import api, wire
from splitface.shared.card_binding import (
    CardAuthRequest,
    CardChallenge,
    RequestKind,
    encode_card_public_key,
)
from splitface.shared.names import decode_name
from splitface.shared.wire import Message
from tests.services.conftest import client_for, free_base_port, unit

RNG = np.random.default_rng(41)  # test data only
VICTIM, ATTACKER, BYSTANDER = (unit(RNG.normal(size=128)) for _ in range(3))


class SelfMadeCard:
    """A card anyone can make: a fresh P-256 key that signs what it is asked to."""

    def __init__(self, card_id: bytes, claim: str | None = None) -> None:
        self.card_id, self.claim = card_id, claim
        self.key = ec.generate_private_key(ec.SECP256R1())

    def sign(self, n0: bytes, n1: bytes, kind: RequestKind, identity: str, digest: bytes
             ) -> CardAuthRequest:
        ch = CardChallenge(self.card_id, n0, n1, kind, self.claim or identity, digest)
        sig = self.key.sign(ch.digest(), ec.ECDSA(hashes.SHA256()))
        return CardAuthRequest(ch, encode_card_public_key(self.key.public_key()), sig)


def _near(v: np.ndarray) -> np.ndarray:
    return unit(v + RNG.normal(size=128) * 0.04)


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    root = tmp_path_factory.mktemp("terminal") / "dep"
    d = LocalDeployment.create(root, edges=3, base_port=free_base_port(),
                               train={"epochs": 2, "batch_size": 16})
    d.start()
    with client_for(d) as c:
        d.wait_ready(c)
    yield d
    assert d.stop() == {"dealer": 0, "p0": 0, "p1": 0}  # nothing crashed a server


@pytest.fixture(scope="module")
def victim_card(dep):
    card = SelfMadeCard(b"victim-card-0001")
    with client_for(dep) as admin:
        for _ in range(3):
            assert admin.enroll("victim", _near(VICTIM), card_id=card.card_id,
                                signer=card.sign).status == "enrolled"
        for _ in range(3):
            assert admin.enroll("bystander", _near(BYSTANDER)).status == "enrolled"
        assert admin.admin("train").status == "trained"
    return card


def _state(dep: LocalDeployment) -> tuple:
    with client_for(dep) as c:
        s0, s1 = c.status()
    return s0["digest"], s1["digest"], s0["records"], s1["records"]


def test_a_terminal_that_is_not_an_admin_cannot_enrol(dep, victim_card):
    before = _state(dep)
    with client_for(dep, "edge-2") as c, pytest.raises(ServerRefused) as err:
        c.enroll("victim", ATTACKER)
    assert err.value.code == "unauthorized" and "admin" in err.value.reason
    assert _state(dep) == before


@pytest.mark.parametrize("how", ["own_card", "no_card", "card_signed_for_another_name"])
def test_enrolling_as_a_card_bound_user_needs_that_users_card(dep, victim_card, how):
    before = _state(dep)
    with client_for(dep) as admin, pytest.raises(ServerRefused) as err:
        if how == "own_card":  # a self-made card claiming the victim
            card = SelfMadeCard(b"attacker-card-01")
            admin.enroll("victim", ATTACKER, card_id=card.card_id, signer=card.sign)
        elif how == "no_card":
            admin.enroll("victim", ATTACKER)
        else:  # the signed identity differs from the request's
            card = SelfMadeCard(b"attacker-card-02", claim="mallory")
            admin.enroll("victim", ATTACKER, card_id=card.card_id, signer=card.sign)
    assert err.value.code == "card_rejected", err.value
    assert _state(dep) == before


def test_the_attack_chain_fails_end_to_end(dep, victim_card):
    """Enrol as the victim with a self-made card, train, verify as the victim: refused at
    the first step, so the victim's card with the attacker's face is rejected."""
    card = SelfMadeCard(b"attacker-card-03")
    with client_for(dep) as admin:
        with pytest.raises(ServerRefused):
            admin.enroll("victim", _near(ATTACKER), card_id=card.card_id, signer=card.sign)
        assert admin.admin("train").status == "trained"
        out = admin.verify("victim", _near(ATTACKER), card_id=victim_card.card_id,
                           signer=victim_card.sign)
        assert out.accepted is False
        with pytest.raises(ServerRefused) as err:  # and with its own card: not the victim's
            admin.verify("victim", _near(ATTACKER), card_id=card.card_id, signer=card.sign)
        assert err.value.code == "card_rejected"
        assert admin.verify("victim", _near(VICTIM), card_id=victim_card.card_id,
                            signer=victim_card.sign).accepted


@pytest.mark.parametrize("signed_for", ["someone-else", "victim"])
def test_binding_a_card_bound_elsewhere_is_a_clean_refusal(dep, victim_card, signed_for):
    """Signed for the card's own identity but offered under another name, this passed the
    card check, stored the sample and then crashed both servers when binding."""
    before = _state(dep)

    def signer(n0, n1, kind, identity, digest):
        return victim_card.sign(n0, n1, kind, signed_for, digest)

    with client_for(dep) as admin:
        with pytest.raises(ServerRefused) as err:
            admin.enroll("someone-else", ATTACKER, card_id=victim_card.card_id,
                         signer=signer)
        assert err.value.code == "card_rejected"
        # both servers are still there and answer the next request
        assert admin.identify(_near(BYSTANDER)).identity == "bystander"
    assert _state(dep) == before


def test_an_identity_gets_at_most_one_card(dep, victim_card):
    card = SelfMadeCard(b"second-card-0001")
    with client_for(dep) as admin, pytest.raises(ServerRefused) as err:
        admin.enroll("victim", _near(VICTIM), card_id=card.card_id, signer=card.sign)
    assert err.value.code == "card_rejected" and "already has a card" in err.value.reason


# ---------------------------------------------------------------- the accept bit as an oracle
def _raw(c, op: str, k: int, probe: np.ndarray, identity: str = "") -> tuple[str, object]:
    """Send a probe as is (the client library would normalise it): ('ok', result words)
    or ('refused', code)."""
    offer = api.Offer(f"rawprobe-{op}-{k:06d}", op, probe.size, identity)
    try:
        out, req, _ = c._transact(offer, probe)
    except ServerRefused as exc:
        return "refused", exc.code
    return "ok", c._result(out, req)


def test_scaled_probes_are_refused_not_answered(dep, victim_card):
    """The review's attack: a non-admin terminal sends the attacker's own face scaled by
    10..400 to verify as a card-less user (the bystander); the accept bit of a scaled probe
    was a coin flip (5 of 12 accepted). Now every such probe is refused as out of range,
    and after a few the terminal is shut out altogether."""
    codes = []
    with client_for(dep, "edge-2") as c:
        assert c.verify("bystander", _near(ATTACKER)).accepted is False  # unit norm: no
        for k in range(8):
            kind, got = _raw(c, "verify", k, ATTACKER * (10.0 + 37.3 * k), "bystander")
            assert kind == "refused", got  # never an accept bit
            codes.append(got)
    assert codes[:5] == ["bad_probe"] * 5 and set(codes[5:]) == {"rate_limited"}
    audit = (dep.root / "p0" / "state" / "audit.jsonl")
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert sum(e["code"] == "bad_probe" and e["terminal"] == "edge-2" for e in entries) == 5


def test_basis_vector_probes_cannot_read_templates(dep, victim_card):
    """The original oracle: scaled basis vectors binary-searched on the accept bit. A basis
    vector has unit norm but scaling it is refused, so the search has nothing to read; the
    unit basis vectors themselves get ordinary answers (the documented residual leak that
    rate limits bound)."""
    with client_for(dep) as c:
        e0 = np.zeros(128)
        e0[0] = 1.0
        kind, _ = _raw(c, "identify", 0, e0)
        assert kind == "ok"
        for k, scale in enumerate((0.5, 2.0, 1e3)):
            kind, code = _raw(c, "identify", k + 1, e0 * scale)
            assert (kind, code) == ("refused", "bad_probe")


def test_an_identification_reply_carries_only_the_matched_name(dep, victim_card):
    with client_for(dep, "edge-2") as c:  # not an admin: no list of names in status
        s0, _ = c.status(names=True)
        assert "identities" not in s0 and "identities_count" not in s0
    with client_for(dep) as c:
        out, req, _ = c._transact(api.Offer("onlythename01", "identify", 128), _near(BYSTANDER))
        assert set(out[0].meta) == {"req", "model_version"}  # no list of names travels
        assert decode_name(np.asarray(c._result(out, req))) == "bystander"


# ---------------------------------------------------------------- what a terminal learns (review 2)
def test_status_hides_store_activity_from_non_admins(dep, victim_card):
    """Record count, digest, model version and key epoch would let any terminal watch
    enrolments and revocations happen; a non-admin sees only that the servers are up."""
    with client_for(dep, "edge-2") as spy, client_for(dep) as admin:
        before = spy.status(names=True)
        admin.enroll("bystander", _near(BYSTANDER))
        after = spy.status(names=True)
    for b, a in zip(before, after, strict=True):
        assert set(b) == {"req", "status", "party", "peer_ok"}
        assert {**b, "req": ""} == {**a, "req": ""}


def test_verify_answers_every_name_alike(dep, victim_card):
    """Unknown names, card-bound names without their card and enrolled names all get an
    ordinary verification: "rejected" for a stranger's face, never "unknown identity" or
    "card-bound" (a membership oracle needing no face)."""
    with client_for(dep, "edge-3") as c:
        outs = {name: c.verify(name, _near(ATTACKER))
                for name in ("bystander", "victim", "nobody-of-that-name")}
        assert {o.status for o in outs.values()} == {"rejected"}
        assert c.verify("victim", _near(VICTIM)).status == "rejected"  # no card: rejected


def _raw_offer(dep: LocalDeployment, terminal: str, meta: dict, ctx: zmq.Context
               ) -> list[zmq.Socket]:
    """An offer sent to both servers as is; the sockets are returned unread."""
    socks = dep.raw_sockets(ctx, terminal)
    for s in socks:
        s.send_multipart(wire.encode(Message("offer", meta)))
    return socks


def test_abandoned_offers_are_strikes_and_stall_nobody_for_long(dep, victim_card):
    """A terminal that sends offers and never its submit held both servers for 5 s each,
    uncounted: one key kept the servers ~50x oversubscribed. Now each costs one strike
    and at most the submit timeout (1 s), a terminal has at most 4 requests waiting, and
    after its strikes it is refused everything."""
    ctx = zmq.Context()
    try:
        socks = [s for k in range(4) for s in _raw_offer(
            dep, "edge-3", {"req": f"loris-{k:010d}", "op": "identify", "dim": 128}, ctx)]
        time.sleep(0.3)
        t0 = time.monotonic()
        with client_for(dep, "edge-1", timeout=12.0) as victim:
            assert victim.identify(_near(BYSTANDER)).identity == "bystander"
        assert time.monotonic() - t0 < 6.0  # behind four abandoned offers of 1 s at most
        socks += [s for k in range(4, 6) for s in _raw_offer(
            dep, "edge-3", {"req": f"loris-{k:010d}", "op": "identify", "dim": 128}, ctx)]
        time.sleep(3.0)
        with client_for(dep, "edge-3") as c, pytest.raises(ServerRefused) as err:
            c.identify(_near(BYSTANDER))  # five strikes: shut out
        assert err.value.code == api.RATE_LIMITED and "abandoned" in err.value.reason
        for s in socks:
            s.close(linger=0)
    finally:
        ctx.term()


@pytest.mark.parametrize("name", ["É" * 70, "漢" * 43, "a" * 127 + "é", "alice\n",
                                  "E\u0301ric"])
def test_a_name_no_identification_result_can_carry_is_refused_at_enrolment(dep, victim_card,
                                                                           name):
    """Such a name (more than 128 UTF-8 bytes, a trailing newline, not NFC) used to enrol
    and train, then fail every identification by every terminal."""
    ctx = zmq.Context()
    try:
        socks = _raw_offer(dep, "edge-1", {"req": "longname-0001", "op": "enroll",
                                           "dim": 128, "identity": name}, ctx)
        for s in socks:
            assert s.poll(10_000), "no answer"
            reply = wire.decode(s.recv_multipart())
            assert reply.kind == "error" and reply.meta["code"] == api.BAD_REQUEST
            s.close(linger=0)
    finally:
        ctx.term()
    with client_for(dep) as admin:
        assert admin.identify(_near(BYSTANDER)).identity == "bystander"
