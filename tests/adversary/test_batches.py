"""Batched identification against a malicious P0 and hostile terminals.

Concurrent identifications run as one MPC run (coordinator._take_batch). P0 picks the
batch, so a malicious P0 must not be able to run one terminal's request twice, lift P1's
limits for a terminal hidden among others, smuggle in another request type, or exceed P1's
own batch size; and one hostile terminal in a batch (an abandoned submit, different
vectors to the two servers, an out-of-range probe) must lose its own request only.
"""

from __future__ import annotations

import re
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from splitface.edge.client import ServerRefused
from splitface.servers.deploy_local import LocalDeployment
from splitface.servers.recognition.identify import batch_limit
from splitface.servers.service.coordinator import _offer_digest
from splitface.servers.service.handlers import NodeOptions
from splitface.shared import api
from splitface.shared.wire import Message
from tests.adversary.stub_coordinator import begin_for, make_node, offer
from tests.services.conftest import (
    SLOW_TRAINING,
    client_for,
    free_base_port,
    unit,
    wait_until_training,
)

KEY2, KEY3 = "2" * 40, "3" * 40  # two terminals' Z85 keys


def _batch_begin(node, inbounds) -> Message:
    """A ``begin`` naming several requests, as P0 sends for a batch."""
    msg = begin_for(node, inbounds[0])
    msg.meta["more"] = [[ib.offer.request_id, ib.key, _offer_digest(ib)] for ib in inbounds[1:]]
    return msg


def _step_with(node, gw, peer, inbounds, begin: Message) -> Message:
    for ib in inbounds:
        gw.inbox.append(ib)
    peer.send(begin)
    node._step(0)
    return peer.recv("begin_ack", timeout=3)


def test_p1_admits_each_item_of_a_batch_by_its_own_limits(tmp_path):
    """A terminal P1 has shut out is declined even hidden in a batch with a good one."""
    p1, gw, peer, ran = make_node(tmp_path, 1)
    for _ in range(20):
        p1.rate.strike("edge-2", "out-of-range probe")
    good, shut = offer(KEY3, "edge-3", req="g" * 16), offer(KEY2, "edge-2", req="s" * 16)
    ack = _step_with(p1, gw, peer, [good, shut], _batch_begin(p1, [good, shut]))
    assert ack.meta["ok"] is True
    assert [d[:2] for d in ack.meta["declined"]] == [[1, api.RATE_LIMITED]]
    assert [[t.req for t in txns] for txns in ran] == [["g" * 16]]
    assert [m.meta.get("code") for _, m in gw.replies] == [api.RATE_LIMITED]


def test_p1_refuses_a_batch_that_names_a_request_twice(tmp_path):
    p1, gw, peer, ran = make_node(tmp_path, 1)
    ib = offer(KEY3, "edge-3", req="d" * 16)
    ack = _step_with(p1, gw, peer, [ib], _batch_begin(p1, [ib, ib]))
    assert ack.meta["ok"] is False and ack.meta["code"] == api.BAD_REQUEST
    assert not ran


def test_p1_refuses_a_batch_larger_than_its_own_setting(tmp_path):
    p1, gw, peer, ran = make_node(tmp_path, 1, NodeOptions(peer_timeout_s=1.0, batch_max=2))
    ibs = [offer(KEY3, "edge-3", req=f"{k:016d}") for k in range(3)]
    ack = _step_with(p1, gw, peer, ibs, _batch_begin(p1, ibs))
    assert ack.meta["ok"] is False and ack.meta["code"] == api.BAD_REQUEST
    assert not ran


def _large_gallery(node, identities: int = 100_000) -> None:
    """A committed model of ``identities`` names (their shares do not matter here)."""
    node.store.stage_models(1, {}, {"identities": [f"id-{i:06d}" for i in range(identities)]})
    node.store.commit_models(1)


def test_p1_refuses_a_batch_whose_keys_would_not_fit_at_its_gallery_size(tmp_path):
    """A malicious P0 naming 16 probes at N = 100,000 would make P1 hold 2.1 GB of
    tournament keys (twice that with the prefetch): P1 computes the batch limit from the
    gallery's size itself (identify.batch_limit: 3 here) and refuses one more."""
    limit = batch_limit(100_000, 16)
    assert 1 <= limit < 16
    p1, gw, peer, ran = make_node(tmp_path, 1)
    _large_gallery(p1)
    ibs = [offer(KEY3, "edge-3", req=f"{k:016d}") for k in range(limit + 1)]
    ack = _step_with(p1, gw, peer, ibs, _batch_begin(p1, ibs))
    assert ack.meta["ok"] is False and ack.meta["code"] == api.BAD_REQUEST
    assert not ran


def test_p0_takes_no_more_than_the_limit_at_its_gallery_size(tmp_path):
    limit = batch_limit(100_000, 16)
    p0, gw, peer, ran = make_node(tmp_path, 0)
    _large_gallery(p0)
    p0.peer_ok = True
    for k in range(limit + 1):
        gw.inbox.append(offer(KEY3, "edge-3", req=f"{k:016d}"))
    step = threading.Thread(target=p0._step, args=(0,))
    step.start()
    begin = peer.recv("begin", timeout=3)
    assert len(begin.meta["more"]) == limit - 1  # the last waits for its own run
    peer.send(Message("abort", {"reason": "test"}))
    step.join(5)


def test_only_identifications_run_in_batches(tmp_path):
    """An admin's enrolment slipped into an identification batch is declined: requests
    that store or change anything run alone, with their own checks."""
    p1, gw, peer, ran = make_node(tmp_path, 1, NodeOptions(
        peer_timeout_s=1.0, admin_terminals=frozenset({"edge-3"})))
    ident = offer(KEY2, "edge-2", req="i" * 16)
    enrol = offer(KEY3, "edge-3", op="enroll", req="e" * 16, identity="mallory")
    ack = _step_with(p1, gw, peer, [ident, enrol], _batch_begin(p1, [ident, enrol]))
    assert ack.meta["ok"] is True
    assert [d[:2] for d in ack.meta["declined"]] == [[1, api.BAD_REQUEST]]
    assert [[t.offer.op for t in txns] for txns in ran] == [["identify"]]


def test_a_batch_item_p1_never_received_is_declined_alone(tmp_path):
    p1, gw, peer, ran = make_node(tmp_path, 1)
    real, ghost = offer(KEY3, "edge-3", req="r" * 16), offer(KEY2, "edge-2", req="x" * 16)
    ack = _step_with(p1, gw, peer, [real], _batch_begin(p1, [real, ghost]))
    assert ack.meta["ok"] is True
    assert [d[:2] for d in ack.meta["declined"]] == [[1, api.TIMEOUT]]
    assert [[t.req for t in txns] for txns in ran] == [["r" * 16]]


def test_a_peer_that_accepts_a_batch_but_declines_every_item_gets_each_answered_once(tmp_path):
    """A malicious P1 answers ok while declining every item: P0 answers each terminal once,
    with P1's reason, and runs nothing (it answered them all a second time before)."""
    p0, gw, peer, ran = make_node(tmp_path, 0)
    p0.peer_ok = True
    ibs = [offer(KEY3, "edge-3", req="a" * 16), offer(KEY2, "edge-2", req="b" * 16)]
    for ib in ibs:
        gw.inbox.append(ib)
    step = threading.Thread(target=p0._step, args=(0,))
    step.start()
    begin = peer.recv("begin", timeout=3)
    assert len(begin.meta["more"]) == 1  # both in one batch
    peer.send(Message("begin_ack", {"ok": True, "sid": p0.session, "declined": [
        [0, api.RATE_LIMITED, "no"], [1, api.RATE_LIMITED, "no"]]}))
    step.join(5)
    assert not ran
    for ib in ibs:
        assert [m.meta.get("code") for i, m in gw.replies if i == ib.ident] == [api.RATE_LIMITED]


# ---------------------------------------------------------------- through the daemons
RNG = np.random.default_rng(53)  # test data only
FACES = {name: unit(RNG.normal(size=128)) for name in ("ada", "bo", "cy")}


def _near(v: np.ndarray) -> np.ndarray:
    return unit(v + RNG.normal(size=128) * 0.03)


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    root = tmp_path_factory.mktemp("batches") / "dep"
    d = LocalDeployment.create(root, edges=6, base_port=free_base_port(),
                               train=SLOW_TRAINING,
                               limits={"per_second": 1000.0, "burst": 1000.0})
    d.start()
    with client_for(d) as admin:
        d.wait_ready(admin)
        for name, face in FACES.items():
            for _ in range(2):
                assert admin.enroll(name, _near(face)).status == "enrolled"
        assert admin.admin("train").status == "trained"
    yield d
    assert d.stop() == {"dealer": 0, "p0": 0, "p1": 0}  # nothing crashed a server


def _split_submit(client) -> None:
    """Make ``client`` send P1 a different masked vector than P0 (a hostile terminal)."""
    both = client._both

    def hostile(msgs, kinds):
        if msgs[0].kind == "submit":
            bad = msgs[1].arrays[0].copy()
            bad[0, 0] ^= np.uint64(1)
            msgs = (msgs[0], Message("submit", msgs[1].meta, [bad]))
        return both(msgs, kinds)

    client._both = hostile


def _abandon_submit(client) -> None:
    """Make ``client`` send its offers and never its submit."""
    both = client._both

    def hostile(msgs, kinds):
        if msgs[0].kind == "submit":
            raise ServerRefused(api.TIMEOUT, "never submitted (test)")
        return both(msgs, kinds)

    client._both = hostile


def test_a_hostile_terminal_in_a_batch_loses_only_its_own_request(dep):
    """Requests queued while the pair trains run afterwards as one batch: honest terminals
    get their names while a terminal that split its submit, one that sent an out-of-range
    probe and one that never submitted each get their own error."""
    results: dict[str, object] = {}
    start = threading.Event()

    def run(name: str, fn) -> None:
        if name != "train":
            start.wait()
            wait_until_training(dep)  # the pair is training now: these queue up behind it
        try:
            results[name] = fn()
        except ServerRefused as exc:
            results[name] = exc.code

    def honest(edge: str, who: str):
        with client_for(dep, edge, timeout=30.0) as c:
            return c.identify(_near(FACES[who])).identity

    def hostile(edge: str, tamper, who: str):
        with client_for(dep, edge, timeout=30.0) as c:
            tamper(c)
            return c.identify(_near(FACES[who])).identity

    def scaled():
        with client_for(dep, "edge-5", timeout=30.0) as c:
            out, _, _ = c._transact(api.Offer("scaled-probe-0001", "identify", 128, ""),
                                    FACES["bo"] * 3.0)
            return out

    def train():
        with client_for(dep, "edge-1", timeout=60.0) as admin:
            start.set()  # the others wait for its first epoch in P0's log
            return admin.admin("train").status

    jobs = {"train": train, "ada": lambda: honest("edge-2", "ada"),
            "bo": lambda: honest("edge-3", "bo"),
            "split": lambda: hostile("edge-4", _split_submit, "ada"), "scaled": scaled,
            "abandon": lambda: hostile("edge-6", _abandon_submit, "cy")}
    threads = [threading.Thread(target=run, args=(n, f)) for n, f in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert results["train"] == "trained"
    assert results["ada"] == "ada" and results["bo"] == "bo"
    assert results["split"] == api.BAD_REQUEST
    assert results["scaled"] == api.BAD_PROBE
    assert results["abandon"] == api.TIMEOUT
    log = (dep.root / "p0.log").read_text()
    (line,) = [ln for ln in log.splitlines() if "scaled-probe-0001" in ln]
    assert int(re.search(r"batch of (\d+)", line).group(1)) >= 4  # they ran together
    with client_for(dep, "edge-2") as c:  # and the pair serves on, in the same session
        assert c.identify(_near(FACES["cy"])).identity == "cy"


# ---------------------------------------------------------------- padding rows
@pytest.mark.parametrize("rows", ["3", True, 1.5, -1, 0, 1, 4, None])
def test_p1_refuses_padding_rows_it_cannot_hold(tmp_path, rows):
    """P0 names the rows of a padded run (its requests, then padding up to the batch it
    prefetched for). Rows that are no integer, fewer than the requests, or more than P1's
    own batch size are refused: a malicious P0 must not make P1 hold a bigger batch's
    keys than its own limit allows, or run a terminal's request as padding."""
    p1, gw, peer, ran = make_node(tmp_path, 1, NodeOptions(peer_timeout_s=1.0, batch_max=3))
    ibs = [offer(KEY3, "edge-3", req="a" * 16), offer(KEY2, "edge-2", req="b" * 16)]
    begin = _batch_begin(p1, ibs)
    begin.meta["rows"] = rows
    ack = _step_with(p1, gw, peer, ibs, begin)
    assert ack.meta["ok"] is False and ack.meta["code"] == api.BAD_REQUEST
    assert not ran


def test_p1_runs_the_padding_rows_p0_names(tmp_path):
    p1, gw, peer, ran = make_node(tmp_path, 1, NodeOptions(peer_timeout_s=1.0, batch_max=3))
    ibs = [offer(KEY3, "edge-3", req="a" * 16), offer(KEY2, "edge-2", req="b" * 16)]
    begin = _batch_begin(p1, ibs)
    begin.meta["rows"] = 3
    ack = _step_with(p1, gw, peer, ibs, begin)
    assert ack.meta["ok"] is True
    assert [[t.req for t in txns] for txns in ran] == [["a" * 16, "b" * 16]]
    assert p1.rows_ran == [3]


def test_p0_pads_a_short_batch_to_the_one_it_prefetched_for(tmp_path):
    """After a prefetch for 3, two requests arrive: P0 waits GATHER_S for the third, then
    runs the two in three rows (without padding, the run's first dealer request differs
    from the queued plan, and both servers wait for all of it before fetching anew)."""
    p0, gw, peer, ran = make_node(tmp_path, 0)
    p0.peer_ok = True
    p0._prefetched_batch = 3
    for k in range(2):
        gw.inbox.append(offer(KEY3, "edge-3", req=f"{k:016d}"))
    step = threading.Thread(target=p0._step, args=(0,))
    step.start()
    begin = peer.recv("begin", timeout=3)
    assert len(begin.meta["more"]) == 1 and begin.meta["rows"] == 3
    peer.send(Message("begin_ack", {"ok": True, "sid": p0.session, "declined": []}))
    step.join(5)
    assert [len(txns) for txns in ran] == [2] and p0.rows_ran == [3]


def test_p0_does_not_pad_without_a_prefetch(tmp_path):
    p0, gw, peer, ran = make_node(tmp_path, 0)
    p0.peer_ok = True
    for k in range(2):
        gw.inbox.append(offer(KEY3, "edge-3", req=f"{k:016d}"))
    step = threading.Thread(target=p0._step, args=(0,))
    step.start()
    begin = peer.recv("begin", timeout=3)
    assert begin.meta["rows"] == 2
    peer.send(Message("begin_ack", {"ok": True, "sid": p0.session, "declined": []}))
    step.join(5)
    assert p0.rows_ran == [2]


def test_p0_prefetches_for_those_waiting_and_those_just_answered(tmp_path):
    """After a batch of 7 with one identification still waiting, the next batch is 8: the
    7 just answered come back beside the one waiting. Naming the larger of the two (7)
    left one request over each time, and it waited a whole batch (seen at N = 10,000
    with 8 terminals: batches of 7, p99 1.47 s). A terminal answered that has already
    sent its next request counts once: counting it as waiting and as coming back ran
    batches of 8 padded to 9-12 rows (seen at N = 10,000, session 11)."""
    from splitface.servers.mpc.prep.dealer import DealerCore
    from splitface.servers.mpc.prep.local import LocalPreprocessing
    from splitface.servers.mpc.prep.prefetch import PrefetchingPreprocessing

    p0, gw, peer, _ = make_node(tmp_path, 0)
    prep = PrefetchingPreprocessing(LocalPreprocessing(DealerCore(), 0, "s" * 24, 0))
    answered = [f"{k}" * 40 for k in range(4, 8)] + ["a" * 40, "b" * 40, "c" * 40]
    try:
        p0.party = SimpleNamespace(id=0, prep=prep)
        p0._queue.append(offer(KEY3, "edge-3", req="w" * 16))
        p0._prefetch_next("identify", answered)
        assert peer.recv("prefetch", timeout=3).meta == {"op": "identify", "k": 8,
                                                         "sid": p0.session}
        for key in answered[:3]:  # three of them are back already
            p0._queue.append(offer(key, "edge-x", req="n" * 16))
        p0._prefetch_next("identify", answered)
        assert peer.recv("prefetch", timeout=3).meta["k"] == 8
        p0._queue.clear()
        p0._prefetch_next("identify", [f"{k:040d}" for k in range(16)])
        assert peer.recv("prefetch", timeout=3).meta["k"] == NodeOptions().batch_max
    finally:
        prep.close()


@pytest.mark.parametrize("k", [10**6, 4, 0, -1, True, "2", 2.0, None])
def test_p1_queues_no_plan_for_a_batch_p0_may_not_run(tmp_path, k):
    """P1 computes an identification's plan for the batch size P0's ``prefetch`` names
    (servers/service/plans.py), so a malicious P0 could make it queue the dealer
    material of any batch: 13 MB a row at N = 10,000, a million rows. P1 queues only 1
    to its own batch limit (here 3) of integer rows; a plan it may run is queued whole."""
    from splitface.servers.service.plans import identify_plan

    p1, peer, prep, gallery = _p1_with_gallery(tmp_path)
    try:
        peer.send(Message("prefetch", {"op": "identify", "k": k, "sid": p1.session}))
        p1._follow_if_asked()
        assert prep.queued() == 0
        peer.send(Message("prefetch", {"op": "identify", "k": 2, "sid": p1.session}))
        p1._follow_if_asked()
        assert prep.queued() == len(identify_plan(2, gallery)) == 14
    finally:
        prep.close()


def _p1_with_gallery(tmp_path):
    """P1 (batch limit 3) in a session with an opened gallery of 5 and a prefetching
    dealer source, with P0's end of the link."""
    from splitface.servers.mpc.prep.dealer import DealerCore
    from splitface.servers.mpc.prep.local import LocalPreprocessing
    from splitface.servers.mpc.prep.prefetch import PrefetchingPreprocessing

    p1, gw, peer, _ = make_node(tmp_path, 1, NodeOptions(peer_timeout_s=1.0, batch_max=3))
    _large_gallery(p1, identities=5)
    gallery = SimpleNamespace(dim=128, size=5, operand=SimpleNamespace(key="gallery-v1:0"))
    p1._gallery = (p1.session, 1, gallery)
    prep = PrefetchingPreprocessing(LocalPreprocessing(DealerCore(), 1, "s" * 24, 0))
    p1.party = SimpleNamespace(id=1, prep=prep)
    return p1, peer, prep, gallery


def test_p1_queues_the_plan_p0_names_however_late_it_comes(tmp_path):
    """P0 names the next run's plan after its run; P1 must queue it whenever it comes,
    since P0 queues it too. P1 used to wait 2 s for it after its own run and then go on
    without: P0 alone held a queued plan, and at its next wrong guess it alone discarded
    material, so the servers' dealer requests fell out of step and the dealer closed the
    session, failing the request (review 12). A ``prefetch`` of another session (sent
    before a resync) is not followed."""
    from splitface.servers.service.plans import identify_plan

    p1, peer, prep, gallery = _p1_with_gallery(tmp_path)
    try:
        p1._prefetch_next("identify", [KEY3])  # P1's run ended; P0 is still busy
        peer.send(Message("prefetch", {"op": "identify", "k": 1, "sid": "another" * 3}))
        peer.send(Message("prefetch", {"op": "identify", "k": 1, "sid": p1.session}))
        p1._follow_if_asked()
        assert prep.queued() == 0  # not this session's
        p1._follow_if_asked()
        assert prep.queued() == len(identify_plan(1, gallery)) == 13
    finally:
        prep.close()
