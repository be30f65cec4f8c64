"""Attacker review 4 (batched identification): findings as tests.

In process, no daemons: Coordinators with a stub terminal gateway and real Parties on a
LocalChannel; the model lookup and the gallery are stubbed, because every path here ends
before the gallery is used (no submit, or a refused item), so no MPC product runs.
"""

from __future__ import annotations

import contextlib
import threading
from types import SimpleNamespace

import numpy as np

from splitface.servers.cards.nonces import NonceStore
from splitface.servers.cards.registry import CardRegistry
from splitface.servers.mpc.fss import prg
from splitface.servers.mpc.local_runtime import make_parties
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.service.coordinator import Coordinator
from splitface.servers.service.handlers import NodeOptions, Txn
from splitface.servers.store import ShareStore
from splitface.shared import api
from tests.adversary.coordinator_harness import FakeDealerClient
from tests.adversary.stub_coordinator import StubGateway, offer

KEY_A, KEY_B = "A" * 40, "B" * 40


class Gateway(StubGateway):
    """Replies are delivered (a connected terminal), and recorded per connection."""

    def reply(self, ident: bytes, msg):
        super().reply(ident, msg)
        return True

    def to(self, ident: bytes) -> list:
        return [m for i, m in self.replies if i == ident]


def _node(tmp_path, party, core) -> Coordinator:
    gw = Gateway()
    node = Coordinator(party.id, gw, party.channel,
                       lambda s, e: None, FakeDealerClient(core, party.id),
                       ShareStore(tmp_path / f"store{party.id}.db"),
                       CardRegistry(tmp_path / f"cards{party.id}.db"), NonceStore(),
                       NodeOptions(peer_timeout_s=2.0, submit_timeout_s=0.1))
    node.party, node.session = party, "s" * 24
    # a committed model of dim 128 (never computed on here: no submit ever arrives)
    node.handlers._model_meta = lambda txn: (1, {"identities": ["ada", "bo"]})
    node.gallery = lambda version, build: SimpleNamespace(dim=128)
    node.name_table = lambda version, names: None
    return node


def _run_batch_on_both(tmp_path, inbounds) -> list[Coordinator]:
    """Both servers run the batch of ``inbounds`` (no terminal ever submits); returns them."""
    core = DealerCore()
    nodes = [_node(tmp_path, p, core) for p in make_parties(core)]
    runs = [threading.Thread(target=n._run, args=(
        [Txn(ib, ib.offer, {"model_version": 1}) for ib in inbounds],)) for n in nodes]
    for t in runs:
        t.start()
    for t in runs:
        t.join(30)
    return nodes


def test_a_request_whose_submit_never_comes_is_answered_once(tmp_path):
    """The offer answered the terminal's request; the timeout must not be sent on that
    connection as a second reply ("never answer twice": at f6d1721 wait_submit raised
    before awaiting_reply was set; _offer_inputs_many now sets it for every item, with or
    without a submit, so the TIMEOUT goes out as a second reply to the offer's request)."""
    core = DealerCore()
    p0, _ = make_parties(core)
    node = _node(tmp_path, p0, core)
    a = offer(KEY_A, "edge-a", req="a" * 16)
    node._run([Txn(a, a.offer, {"model_version": 1})])
    kinds = [m.kind for m in node.gateway.to(a.ident)]
    assert kinds == ["offer"], f"replies on the offer's connection: {kinds}"


def test_batch_items_without_submit_are_answered_once(tmp_path):
    """Same in a batch of two (both servers run it; _agree_inputs exchanges digests)."""
    a, b = offer(KEY_A, "edge-a", req="a" * 16), offer(KEY_B, "edge-b", req="b" * 16)
    nodes = _run_batch_on_both(tmp_path, [a, b])
    for n in nodes:
        for ib in (a, b):
            kinds = [m.kind for m in n.gateway.to(ib.ident)]
            assert kinds == ["offer"], f"P{n.id} replied {kinds} on {ib.key[:1]}'s connection"


def test_a_terminal_gets_its_own_error_not_its_batch_neighbours(tmp_path):
    """Terminal A (wrong dimension) batched with B (which never submits): A must get its own
    wrong_dimension; the lone live item's error is raised for the whole run instead
    (Handlers.identify: ``if len(todo) == 1 ...: raise got[0]``) and _run sends B's
    error to every terminal of the batch, A included. Likewise ``raise opened[0]`` sends a
    lone live item's bad_probe to every other item of its batch: a terminal that spoils
    its own item (split submit, costs no strike) learns whether its neighbour's probe was
    in range. Both servers run it: a batch agrees on its inputs even with one item left to
    offer (attacker review 10)."""
    a = offer(KEY_A, "edge-a", req="a" * 16, dim=64)
    b = offer(KEY_B, "edge-b", req="b" * 16)
    for node in _run_batch_on_both(tmp_path, [a, b]):
        (reply,) = node.gateway.to(a.ident)
        assert reply.kind == "error"
        assert reply.meta.get("code") == api.WRONG_DIMENSION, \
            f"A got {reply.meta.get('code')!r}: {reply.meta.get('reason')!r} (B's error)"


def test_one_odd_sized_aes_call_does_not_poison_the_thread(tmp_path):
    """prg.mmo keeps one ECB encryptor per thread; update_into buffers a partial block, so
    a single call with a length that is not a whole number of blocks leaves 8 bytes in the
    encryptor and every later call on that thread returns wrong blocks without any error
    (the old code made a fresh encryptor per call). No caller passes such an array today;
    hardening (check x.shape[-1] == 2 before encrypting, or drop the encryptor on error)."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 2 ** 63, size=(4, 2), dtype=np.uint64)
    out: dict[str, np.ndarray] = {}

    def worker():
        good = prg.mmo(x)
        with contextlib.suppress(RuntimeError, ValueError):
            prg.mmo(np.zeros(3, dtype=np.uint64))
        out["good"], out["after"] = good, prg.mmo(x)

    t = threading.Thread(target=worker)  # its own encryptor: the test thread's stays clean
    t.start()
    t.join(30)
    assert np.array_equal(out["good"], out["after"])
