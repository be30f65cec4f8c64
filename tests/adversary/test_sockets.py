"""Malformed messages on every socket: the edge gateway, the dealer and the peer link.

One frame used to kill a server: a declared shape whose product overflowed int64 to 0
passed with a 0-byte frame and ``reshape`` raised a ValueError nothing caught. Here every
socket gets hypothesis-generated frames (more than 10,000 in all), and after each one a
correct request on the same socket must still get the correct answer.
"""

from __future__ import annotations

import threading

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitface.servers.dealer.service import DealerService
from splitface.servers.deploy_local import LocalDeployment
from splitface.servers.mpc import client_jobs
from splitface.servers.mpc.beaver import mul_many
from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.local_runtime import make_parties, run_pair
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.shared import wire
from splitface.shared.client_protocol import ClientRequest
from splitface.shared.transport.base import TransportError
from splitface.shared.transport.zap import start_authenticator
from splitface.shared.wire import Message, WireError
from tests.services.conftest import free_base_port


def fuzz(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck),
                    derandomize=True, database=None)

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1),
                    st.floats(allow_nan=True), st.text(max_size=20), st.binary(max_size=40))
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4),
                                                   st.dictionaries(st.text(max_size=8), c,
                                                                   max_size=4)), max_leaves=12)
specs = st.lists(st.one_of(st.lists(st.one_of(st.sampled_from(["u8", "u64", "i64", "f32",
                                                               "f64", "x"]),
                                              st.lists(st.integers(-1, 2**62), max_size=5)),
                                    min_size=2, max_size=2), values), max_size=3)


@st.composite
def near_valid_header(draw, kinds: list[str]) -> bytes:
    """A msgpack header close to the real format, so the fuzz reaches the deeper checks."""
    h = {"v": draw(st.sampled_from([1, 1, 1, 2, "1", None])),
         "kind": draw(st.sampled_from([*kinds, "", "x" * 50, 7])),
         "meta": draw(st.one_of(st.dictionaries(st.sampled_from(
             ["req", "op", "dim", "identity", "card_id", "params", "party", "session", "seq",
              "epoch", "req", "n", "card", "nonce"]), values, max_size=6), values)),
         "arrays": draw(specs)}
    if draw(st.booleans()):
        h.pop(draw(st.sampled_from(list(h))))
    return msgpack.packb(h, use_bin_type=True)


def frames_for(kinds: list[str]):
    header = st.one_of(st.binary(max_size=64), near_valid_header(kinds))
    return st.tuples(header, st.lists(st.binary(max_size=64), max_size=3)).map(
        lambda t: [t[0], *t[1]])


OVERFLOW = [msgpack.packb({"v": 1, "kind": "submit", "meta": {"req": "r" * 12},
                           "arrays": [["u64", [2**31 - 1] * 4 + [0, 0, 0, 16]]]},
                          use_bin_type=True), b""]


# ---------------------------------------------------------------- edge gateway (daemons)
@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "dep"
    dep = LocalDeployment.create(root, edges=1, base_port=free_base_port())
    dep.start()
    from tests.services.conftest import client_for

    with client_for(dep) as c:
        dep.wait_ready(c)
    yield dep
    assert dep.stop() == {"dealer": 0, "p0": 0, "p1": 0}


@pytest.fixture(scope="module")
def edge_socket(deployment):
    pub, sec, k0, _ = deployment.edge_keys()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)  # any envelope, not only a REQ's
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = pub, sec, k0
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(deployment.endpoints()[0])
    yield sock
    sock.close()
    ctx.term()


def _status_answered(sock: zmq.Socket, n: int) -> None:
    req = f"status-check-{n:06d}"
    sock.send_multipart([b"", *wire.encode(Message("status", {"req": req}))])
    while True:  # skip the error replies to the malformed message
        if not sock.poll(10_000):
            raise AssertionError("the server stopped answering")
        frames = sock.recv_multipart()
        reply = wire.decode(frames[1:])
        if reply.meta.get("req") == req:
            assert reply.kind == "done" and reply.meta["status"] == "ok"
            return


def test_an_overflowing_shape_is_a_clean_error(edge_socket):
    edge_socket.send_multipart([b"", *OVERFLOW])
    frames = edge_socket.recv_multipart()
    reply = wire.decode(frames[1:])
    assert reply.kind == "error" and reply.meta["code"] == "bad_request"
    _status_answered(edge_socket, 0)


EDGE_KINDS = ["offer", "submit", "status"]


@fuzz(6000)
@given(frames=frames_for(EDGE_KINDS), envelope=st.sampled_from([[b""], [], [b"x"]]))
def test_fuzz_edge_gateway(edge_socket, frames, envelope):
    edge_socket.send_multipart([*envelope, *frames])
    _status_answered(edge_socket, len(frames))


# ---------------------------------------------------------------- dealer
@pytest.fixture(scope="module")
def dealer():
    ctx = zmq.Context()
    keys = {n: zmq.curve_keypair() for n in ("dealer", "p0", "p1")}
    auth = start_authenticator(ctx, [keys["p0"][0], keys["p1"][0]])
    core = DealerCore()
    service = DealerService(core, ctx, "tcp://127.0.0.1:*", public_key=keys["dealer"][0],
                            secret_key=keys["dealer"][1],
                            party_keys={0: keys["p0"][0], 1: keys["p1"][0]})
    stop = threading.Event()
    thread = threading.Thread(target=service.serve, args=(stop,), daemon=True)
    thread.start()
    sock = ctx.socket(zmq.DEALER)
    sock.curve_publickey, sock.curve_secretkey = keys["p1"]
    sock.curve_serverkey = keys["dealer"][0]
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(service.endpoint)
    yield core, sock
    sock.close()
    stop.set()
    thread.join(5)
    service.close()
    auth.stop()
    ctx.destroy(linger=0)


DEALER_KINDS = ["epoch", "key", "open", "get", "forget", "rotate", "confirm", "stats"]


@fuzz(4000)
@given(frames=frames_for(DEALER_KINDS), envelope=st.sampled_from([[b""], [], [b"x"]]))
def test_fuzz_dealer(dealer, frames, envelope):
    core, sock = dealer
    sock.send_multipart([*envelope, *frames])
    sock.send_multipart([b"", *wire.encode(Message("epoch", {"party": 1, "nonce": 424242}))])
    while True:
        assert sock.poll(10_000), "the dealer stopped answering"
        reply = wire.decode(sock.recv_multipart()[1:])
        if reply.meta.get("nonce") == 424242 and reply.kind == "epoch":
            assert reply.meta["current"] == core.epoch
            return


# ---------------------------------------------------------------- peer link
X = np.array([0.5, -0.25, 0.75, 0.5])


def _product(p, state, masked):
    x, masks = client_jobs.take_input(p, state, masked, 4)
    (z,) = mul_many([(x[:2], x[2:])])
    return client_jobs.deliver(p, z, masks)


def _run_product(parties) -> np.ndarray:
    req = ClientRequest(X, 2)
    states = ({}, {})
    offers = [client_jobs.offer(p, s, req.n_total) for p, s in zip(parties, states,
                                                                     strict=True)]
    masked = req.masked(*offers)
    r0, r1 = run_pair(lambda p, s: _product(p, s, masked), parties, states)
    return req.result(r0, r1)


@fuzz(1000)
@given(frames=frames_for(["open", "inputsync", "seed", "seedcommit", "checkmask",
                          "checkcommit", "checkopen", "agree", "blob"]),
       position=st.integers(0, 8))
def test_fuzz_peer_link(frames, position):
    """P1's k-th message is replaced by garbage: P0 aborts with a protocol error (never
    anything else, never an output); a new session then computes correctly."""
    core = DealerCore()
    p0, p1 = make_parties(core)
    sent = {"n": 0}
    inner = p1.channel._outbox.put

    def put(item):
        if item is not None and sent["n"] == position:
            item = frames
        sent["n"] += 1
        inner(item)

    p1.channel._outbox.put = put
    try:
        _run_product((p0, p1))
        garbage_used = sent["n"] <= position
    except (ProtocolError, TransportError, WireError):
        garbage_used = True
    assert garbage_used or p0.aborted is None
    fresh = make_parties(core)
    got = _run_product(fresh)
    np.testing.assert_allclose(got / 2.0**32, X[:2] * X[2:], atol=1e-4)


def _both_raw(dep: LocalDeployment, socks: list[zmq.Socket], msgs: list[Message]
              ) -> list[Message]:
    for s, m in zip(socks, msgs, strict=True):
        s.send_multipart(wire.encode(m))
    out = []
    for s in socks:
        assert s.poll(15_000), "no reply"
        out.append(wire.decode(s.recv_multipart()))
    return out


BAD_SUBMITS = {
    "no array": [],
    "two arrays": [np.zeros((2, 130), np.uint64)] * 2,
    "signed": [np.zeros((2, 130), np.int64)],
    "too short": [np.zeros((2, 10), np.uint64)],
    "three limbs": [np.zeros((3, 130), np.uint64)],
    "flat": [np.zeros(260, np.uint64)],
}


@pytest.mark.parametrize("what", BAD_SUBMITS)
def test_every_malformed_submit_gets_a_bad_request_that_says_why(deployment, what):
    """A submit with two arrays was never answered, and others came back "aborted" with
    messages like "masked input of shape (2, 130), expected (2, 130)"."""
    ctx = zmq.Context()
    socks = deployment.raw_sockets(ctx)
    try:
        req = f"badsubmit-{abs(hash(what)) % 10**8:08d}"
        offer = Message("offer", {"req": req, "op": "enroll", "dim": 128, "identity": "x"})
        replies = _both_raw(deployment, socks, [offer, offer])
        assert [r.kind for r in replies] == ["offer", "offer"], replies
        sub = Message("submit", {"req": req}, BAD_SUBMITS[what])
        replies = _both_raw(deployment, socks, [sub, sub])
        for r in replies:
            assert r.kind == "error" and r.meta["code"] == "bad_request", r
            assert r.meta["req"] == req
            assert "submit" in r.meta["reason"] or "masked" in r.meta["reason"]
        late = Message("submit", {"req": "nosuchrequest-01"}, [np.zeros((2, 130), np.uint64)])
        replies = _both_raw(deployment, socks, [late, late])
        assert all(r.kind == "error" and "no such request" in r.meta["reason"]
                   for r in replies)
    finally:
        for s in socks:
            s.close(linger=0)
        ctx.term()
    from tests.services.conftest import client_for

    with client_for(deployment) as c:  # and the pair still serves
        assert all(s["peer_ok"] for s in c.status())
