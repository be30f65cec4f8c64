"""Admission is each server's own decision (attacker review 2, finding 2).

A malicious P0 starting requests for a terminal P1's limiter has shut out must meet P1's
refusal; a refusal P1 only repeats on P0's word is recorded as the peer's decision, so
P0 cannot write the honest server's audit trail for it. Abandoned offers are strikes
(finding 5) and one terminal cannot fill the queue.
"""

from __future__ import annotations

import json

from splitface.servers.service.admission import RateLimiter, RateOptions
from splitface.servers.service.handlers import NodeOptions
from splitface.shared import api
from splitface.shared.wire import Message
from tests.adversary.stub_coordinator import begin_for, make_node, offer

KEY = "T" * 40  # a terminal's Z85 key


def test_p1_refuses_what_its_own_limiter_refuses_whatever_p0_starts(tmp_path):
    p1, gw, peer, ran = make_node(tmp_path, 1)
    for _ in range(20):  # P1 itself saw this terminal send 20 out-of-range probes
        p1.rate.strike("edge-2", "out-of-range probe")
    for i in range(50):  # a malicious P0 starts 50 identifications for it
        ib = offer(KEY, "edge-2", req=f"{i:016d}")
        gw.inbox.append(ib)
        peer.send(begin_for(p1, ib))
        p1._step(0)
        ack = peer.recv("begin_ack", timeout=2)
        assert ack.meta["ok"] is False and ack.meta["code"] == api.RATE_LIMITED
    assert not ran
    assert all(m.meta["code"] == api.RATE_LIMITED for _, m in gw.replies)


def test_p1_keeps_the_result_rate_when_p0_lifts_it(tmp_path):
    opts = NodeOptions(peer_timeout_s=1.0, rate=RateOptions(per_second=1.0, burst=5.0))
    p1, gw, peer, ran = make_node(tmp_path, 1, opts)
    acks = []
    for i in range(40):  # one burst, far above the terminal's burst of 5
        ib = offer(KEY, "edge-2", req=f"{i:016d}")
        gw.inbox.append(ib)
        peer.send(begin_for(p1, ib))
        p1._step(0)
        acks.append(peer.recv("begin_ack", timeout=2).meta["ok"])
    assert 5 <= acks.count(True) <= 6 and len(ran) == acks.count(True)


def test_a_refusal_on_p0s_word_is_audited_as_the_peers_decision(tmp_path):
    audit = tmp_path / "audit1.jsonl"
    p1, gw, peer, ran = make_node(tmp_path, 1, NodeOptions(peer_timeout_s=1.0,
                                                           audit_path=audit))
    ib = offer(KEY, "edge-honest", req="0" * 16)
    peer.send(Message("refuse", {"req": ib.offer.request_id, "key": KEY, "code": "bad_probe",
                                 "reason": "the probe is out of range (5th this hour)"}))
    p1._step(0)
    gw.inbox.append(ib)
    p1._step(0)
    (entry,) = [json.loads(line) for line in audit.read_text().splitlines()]
    assert entry["decided_by"] == "peer" and entry["party"] == 1 and not ran


def test_strikes_shut_a_terminal_out_of_everything():
    now = [0.0]
    rate = RateLimiter(RateOptions(strikes_per_hour=5.0), clock=lambda: now[0])
    for _ in range(5):
        assert rate.admit("edge-2", "identify") is None
        rate.strike("edge-2", "offer abandoned")
    assert "abandoned" in rate.admit("edge-2", "identify")
    assert rate.admit("edge-2", "enroll") is not None  # everything
    assert rate.admit("edge-3", "identify") is None  # only that terminal
    now[0] += 3600 / 5
    assert rate.admit("edge-2", "identify") is None  # one strike refilled


def test_verify_budget_is_per_identity_across_terminals_and_blind_to_enrolment():
    rate = RateLimiter(RateOptions(per_second=1e6, burst=1e6, verify_per_identity_per_hour=3))
    answers = [rate.admit(f"edge-{k}", "verify", "alice") for k in range(5)]
    assert answers[:3] == [None] * 3 and all(a is not None for a in answers[3:])
    # a name nobody enrolled is limited alike: the refusal says nothing about enrolment
    assert [rate.admit("edge-9", "verify", "nobody") is None for _ in range(4)] == \
        [True, True, True, False]
    assert rate.admit("edge-9", "identify") is None  # identification is not per identity


def test_one_terminal_cannot_fill_the_queue(tmp_path):
    p0, gw, peer, ran = make_node(tmp_path, 0)
    p0.peer_ok = False
    p0._last_resync = float("inf")  # keep P0 from leading: requests stay queued
    for i in range(10):
        gw.inbox.append(offer(KEY, "edge-2", req=f"{i:016d}"))
    p0._pump(0)
    assert [ib.offer.request_id for ib in p0._queue] == [f"{i:016d}" for i in range(6, 10)]
    evicted = [m for _, m in gw.replies if m.meta.get("code") == api.ABORTED]
    assert len(evicted) == 6  # the oldest go: a terminal's newest requests are its live ones
    gw.inbox.append(offer("U" * 40, "edge-3", req="x" * 16))
    p0._pump(0)
    assert len(p0._queue) == 5  # another terminal still gets in
