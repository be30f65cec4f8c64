"""Attacker review 10 (padding rows, 6204c39; the peer's abort reason, 58833d7): its
findings as tests (each failed before its fix). In process, no daemons: two real
Coordinators on real Parties (LocalChannel, in-process dealer) with stub gateways and a
scripted terminal, or one Coordinator with a scripted peer (stub_coordinator).
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np

from splitface.servers.cards.nonces import NonceStore
from splitface.servers.cards.registry import CardRegistry
from splitface.servers.mpc.local_runtime import make_parties
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.service.coordinator import Coordinator
from splitface.servers.service.gateway import Inbound
from splitface.servers.service.handlers import NodeOptions, Txn
from splitface.servers.store import ShareStore
from splitface.shared.client_protocol import ClientRequest
from splitface.shared.names import NAME_WORDS, decode_name
from splitface.shared.wire import Message
from tests.adversary.coordinator_harness import FakeDealerClient
from tests.adversary.stub_coordinator import StubGateway, make_node, offer
from tests.mpc.harness import share_floats

NAMES = ["ada", "bo", "cy", "dee"]
DIM = 128


class _Gateway(StubGateway):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def reply(self, ident, msg):
        with self.lock:
            self.replies.append((ident, msg))
        return True

    def to(self, ident):
        with self.lock:
            return [m for i, m in self.replies if i == ident]


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _models_of(sh):
    """A handlers._models stand-in that returns this server's template shares."""
    return lambda txn: (1, {"identities": NAMES}, {
        "templates": SimpleNamespace(val=sh[0], mac=sh[1], frac=sh[2])})


def _pair(tmp_path):
    """Two Coordinators in one session with a committed 4-identity model (shares only)."""
    core = DealerCore()
    parties = make_parties(core)
    templates = _unit(np.random.default_rng(1).normal(size=(len(NAMES), DIM)))
    shares = share_floats(core, templates)
    nodes = []
    for p in parties:
        n = Coordinator(p.id, _Gateway(), p.channel, lambda s, e: None,
                        FakeDealerClient(core, p.id), ShareStore(tmp_path / f"s{p.id}.db"),
                        CardRegistry(tmp_path / f"c{p.id}.db"), NonceStore(),
                        NodeOptions(peer_timeout_s=10.0, submit_timeout_s=2.0))
        n.party, n.session = p, "s" * 24
        n.handlers._model_meta = lambda txn: (1, {"identities": NAMES})
        n.handlers._models = _models_of(shares[p.id])
        nodes.append(n)
    return nodes, templates


class _Terminal:
    """Waits for both servers' offers of ``ib``, then submits to the servers in ``to``."""

    def __init__(self, nodes, ib, probe, to=(0, 1)) -> None:
        self.nodes, self.ib, self.to = nodes, ib, to
        self.req = ClientRequest(probe, NAME_WORDS) if probe is not None else None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 20
        offers = [None, None]
        while time.monotonic() < deadline and any(o is None for o in offers):
            for i, n in enumerate(self.nodes):
                for m in n.gateway.to(self.ib.ident):
                    if m.kind == "offer":
                        offers[i] = m.arrays
            time.sleep(0.005)
        if self.req is None or any(o is None for o in offers):
            return
        masked = self.req.masked(offers[0], offers[1])
        for i in self.to:
            self.nodes[i].gateway.inbox.append(Inbound(
                ident=self.ib.ident, key=self.ib.key, name=self.ib.name,
                msg=Message("submit", {"req": self.ib.offer.request_id}, [masked])))

    def name(self):
        got = [[m for m in n.gateway.to(self.ib.ident) if m.kind == "result"]
               for n in self.nodes]
        if all(len(g) == 1 for g in got):
            return decode_name(self.req.result(got[0][0].arrays[0], got[1][0].arrays[0]))
        return None


def _run_both(nodes, batches, rows, timeout):
    done = [False, False]

    def go(i):
        nodes[i]._run(batches[i], rows)
        done[i] = True

    threads = [threading.Thread(target=go, args=(i,), daemon=True) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return done


def test_padded_batch_gives_each_terminal_its_own_result(tmp_path):
    """Sanity (passes): two requests in four rows; each terminal decodes its own name."""
    nodes, w = _pair(tmp_path)
    a, b = offer("A" * 40, "edge-a", req="a" * 16), offer("B" * 40, "edge-b", req="b" * 16)
    ta, tb = _Terminal(nodes, a, w[1]), _Terminal(nodes, b, w[3])
    batches = [[Txn(ib, ib.offer, {"model_version": 1}) for ib in (a, b)] for _ in nodes]
    assert _run_both(nodes, batches, 4, timeout=30) == [True, True]
    ta.thread.join(5)
    tb.thread.join(5)
    assert (ta.name(), tb.name()) == ("bo", "dee")


def test_a_batch_with_one_live_item_still_agrees_on_its_inputs(tmp_path):
    """Finding 1 (older than padding, ae23e575; in the path padded runs take). A batch of two in
    which one item has the wrong dimension leaves ONE item to offer: _offer_inputs_many
    then skips _agree_inputs (``len(txns) > 1`` counts the offered items), while identify
    raises a lone error only for ``len(txns) == 1`` (the whole batch). A terminal that
    sends the live item's submit to P0 only (or whose submit reaches P1 late) leaves P0
    with an input and P1 with a timeout: P1 answers and returns without computing, P0
    enters the product and waits for P1's opening until its peer timeout (30 s in the
    daemon: request_timeout_s), then aborts and resynchronises. Every other terminal
    waits meanwhile; one hostile terminal (a wrong-dimension request and a split submit,
    one strike at P1 only) repeats it at will. Fixed: a batch agrees on its inputs
    whatever number of its items is left to offer."""
    nodes, w = _pair(tmp_path)
    a = offer("A" * 40, "edge-a", req="a" * 16, dim=64)  # wrong dimension
    b = offer("B" * 40, "edge-b", req="b" * 16)
    _Terminal(nodes, b, w[0], to=(0,))  # the submit reaches P0 only
    batches = [[Txn(ib, ib.offer, {"model_version": 1}) for ib in (a, b)] for _ in nodes]
    try:
        done = _run_both(nodes, batches, 2, timeout=8)
        assert done == [True, True], \
            f"P0 finished: {done[0]}, P1 finished: {done[1]} (P0 waits for an opening " \
            "P1 never sends: the servers disagree on which inputs they hold)"
    finally:
        for n in nodes:
            n.channel.close()


def test_p0_passes_on_p1s_declined_reason_escaped_and_bounded(tmp_path):
    """Finding 2 (the sibling of 58833d7's fix). P1's refusal of a ``begin`` (begin_ack
    ok: false, or ``abort``) reaches P0's terminals as f"the other server declined:
    {reason}" with the reason raw and unbounded (coordinator._lead); _drop_declined and
    _peer_refused pass a peer's reason raw too (300 characters). A malicious P1 thus puts
    escape sequences on an honest terminal's screen through the honest P0, which is what
    peer_abort_reason now prevents for an abort during a run."""
    p0, gw, peer, _ = make_node(tmp_path, 0)
    p0.peer_ok = True
    gw.inbox.append(offer("3" * 40, "edge-3", req="q" * 16))
    step = threading.Thread(target=p0._step, args=(0,))
    step.start()
    peer.recv("begin", timeout=3)
    peer.send(Message("begin_ack", {"ok": False, "code": "aborted\x1b[2J",
                                    "reason": "\x1b]52;c;ZXZpbA==\x07\nforged line" + "x" * 5000}))
    step.join(5)
    (reply,) = [m for _, m in gw.replies if m.kind == "error"]
    text = f"{reply.meta['code']}: {reply.meta['reason']}"
    assert all(ch.isprintable() for ch in text), repr(text[:80])
    assert len(text) <= 400


def test_the_terminal_prints_a_servers_reason_escaped(capsys):
    """Finding 3 (terminal side, older than this review's changes). run_guarded printed
    a refusal's code and reason as the server sent them; either server, malicious, replies to the
    terminal directly, so escaping the peer's reason on the honest server cannot keep
    control sequences (OSC 52 clipboard writes, hidden text, forged lines) off an
    operator's screen. cli_admin escapes what P0 sends (shown()); this path does not."""
    from splitface.edge.cli_common import run_guarded
    from splitface.edge.client import ServerRefused

    def body() -> int:
        raise ServerRefused("aborted\x1b[8m", "\x1b]52;c;ZXZpbA==\x07 ok\nsplitface-edge: forged")

    run_guarded(body)
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err, repr(err)
    assert err.count("\n") == 1, repr(err)


def test_p1_refuses_padding_rows_for_anything_but_an_identification(tmp_path):
    """Finding 5. A malicious P0 names one enrolment with rows = 2: P1 acknowledged it,
    then refused it in dispatch (its audit log blamed the honest terminal, and the pair
    resynchronised). P1 now declines it at ``begin``."""
    from splitface.shared import api
    from tests.adversary.stub_coordinator import begin_for

    p1, gw, peer, ran = make_node(tmp_path, 1, NodeOptions(
        peer_timeout_s=1.0, admin_terminals=frozenset({"edge-3"})))
    enrol = offer("3" * 40, "edge-3", op="enroll", req="e" * 16, identity="mallory")
    gw.inbox.append(enrol)
    begin = begin_for(p1, enrol)
    begin.meta["rows"] = 2
    peer.send(begin)
    p1._step(0)
    ack = peer.recv("begin_ack", timeout=3)
    assert ack.meta["ok"] is False and ack.meta["code"] == api.BAD_REQUEST
    assert not ran


def test_an_internal_error_reaches_the_peer_as_the_short_reason_only(tmp_path, monkeypatch):
    """Finding 4. A server tells its own terminals only an internal error's type, but sent
    the exception's text to the peer, which now passes the peer's reason on: the abort
    carries the short reason the server's own terminals get."""
    p1, gw, peer, ran = make_node(tmp_path, 1)
    del p1._run  # the real run, with a dispatch that fails inside

    def broken(txns, rows=1):
        raise KeyError("/var/lib/splitface/p1/secret-path")

    monkeypatch.setattr(p1.handlers, "dispatch", broken)
    monkeypatch.setattr(p1, "_close_party", lambda: None)
    p1.party = SimpleNamespace(id=1, mac_failed=False)
    ib = offer("3" * 40, "edge-3", req="k" * 16)
    p1._run([Txn(ib, ib.offer, {})])
    msg = peer.recv("abort", timeout=3)
    assert "secret-path" not in msg.meta["reason"]
    assert "internal error (KeyError)" in msg.meta["reason"]
