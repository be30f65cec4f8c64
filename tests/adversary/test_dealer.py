"""A malicious server asking the dealer for anything under its own key.

The attack that worked before: with only its own dealer key and a session it made up, a
server asked twice for a ``fixed_triple`` on the gallery key, got P0's seed (the dealer
handed the stored part to whoever asked second), solved for the mask B and unmasked the
opened W - B: every template in clear. ``rows_triple`` gave the enrolments the same way,
and a rogue ``fixed_mask`` overwrote B so that later identifications were silently wrong.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest
import zmq

from splitface.servers.dealer.service import DealerService
from splitface.servers.mpc.beaver import open_fixed
from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.local_runtime import make_parties, run_pair
from splitface.servers.mpc.prep import material
from splitface.servers.mpc.prep.dealer import DealerCore, SessionError
from splitface.servers.mpc.prep.material import MAX_BATCH, Request
from splitface.servers.mpc.prep.remote import DealerClient, DealerRefused, RemotePreprocessing
from splitface.shared import fixedpoint, ring, wire
from splitface.shared.transport.zap import start_authenticator
from splitface.shared.wire import Message
from tests.mpc.harness import as_share, share_floats

W = np.linspace(-0.5, 0.5, 4 * 6).reshape(4, 6)  # a gallery: 4-dim templates, 6 identities


def _open_gallery(core: DealerCore, *, with_e: bool = False):
    """Honest P0 and P1 open E = W - B in a real session (what every server sees)."""
    parties = make_parties(core)
    shared = share_floats(core, W)

    def fn(party, t):
        key = party.fresh_key("gallery")
        e, _ = open_fixed(as_share(party, t), key)
        party.check()
        return key, e

    (key, e), _ = run_pair(fn, parties, shared)
    return (parties, key, e) if with_e else (parties, key)


def _solve_mod_2_128(a: list[list[int]], c: list[list[int]]) -> list[list[int]] | None:
    """B with A @ B = C mod 2^128 (Gauss-Jordan with odd pivots), None if A is singular."""
    m = 1 << 128
    n = len(a)
    rows = [a[i][:] + c[i][:] for i in range(n)]
    for col in range(n):
        piv = next((r for r in range(col, n) if rows[r][col] % 2), None)
        if piv is None:
            return None
        rows[col], rows[piv] = rows[piv], rows[col]
        inv = pow(rows[col][col], -1, m)
        rows[col] = [v * inv % m for v in rows[col]]
        for r in range(n):
            if r != col and rows[r][col]:
                f = rows[r][col]
                rows[r] = [(v - f * w) % m for v, w in zip(rows[r], rows[col], strict=True)]
    return [row[n:] for row in rows]


def _attack_steal_p0_part(core: DealerCore, session: str, key: str, start_seq: int
                          ) -> list[object]:
    """Everything the attacker (party 1) can get for the gallery key: it asks for the
    same request twice, skips ahead, goes back. Returns what it received."""
    got = []
    req = Request("fixed_triple", (key, 4, 4, 6))
    for seq in (start_seq, start_seq, start_seq + 1, start_seq + 5, max(start_seq - 1, 0)):
        with contextlib.suppress(ProtocolError):
            got.append(core.serve(session, 1, seq, req))
    return got


def test_made_up_session_serves_nothing():
    core = DealerCore()
    _open_gallery(core)
    session = "made-up-session-0001"
    assert _attack_steal_p0_part(core, session, "gallery:0", 0) == []
    assert core.register(session, 1, core.epoch) is False  # alone: never a session
    assert _attack_steal_p0_part(core, session, "gallery:0", 0) == []


def test_asking_twice_never_yields_the_other_party_part():
    core = DealerCore()
    parties, key = _open_gallery(core)
    session = parties[1].prep.session
    seq = parties[1].prep._seq  # the attacker's own next number in the real session
    got = _attack_steal_p0_part(core, session, key, seq)
    # only its own parts of its next two numbers (asking again, skipping ahead or going
    # back is refused); never a seed (P0's parts are seeds)
    assert len(got) == 2 and all(p.seed is None for p in got)
    # the session is unusable for the honest party afterwards (mismatch kills it), so no
    # later computation can run on a desynchronised dealer
    with pytest.raises(ProtocolError):
        parties[0].prep.triples((1,))


def test_control_a_stolen_part_unmasks_every_template():
    """Control: the reconstruction the attacker needs, given P0's part (here taken by the
    test from the dealer as party 0 would): A and A @ B give B, and E + B is the gallery.
    So the refusals above are what stands between one server and every template."""
    core = DealerCore()
    parties, key, e = _open_gallery(core, with_e=True)
    req = Request("fixed_triple", (key, 4, 4, 6))
    sessions = parties[0].prep.session
    for _ in range(20):  # a random A is invertible mod 2^128 with probability ~0.3
        p0 = core.serve(sessions, 0, parties[0].prep._seq, req)
        p1 = core.serve(sessions, 1, parties[1].prep._seq, req)
        parties[0].prep._seq += 1
        parties[1].prep._seq += 1
        a0, c0 = material.item_p0(req, p0.seed, p0.arrays).values
        a1, c1 = material.item_p1(req, p1.arrays).values
        a = ring.to_pyints(ring.add(a0[0], a1[0]).reshape(2, -1))
        c = ring.to_pyints(ring.add(c0[0], c1[0]).reshape(2, -1))
        b = _solve_mod_2_128([a[i * 4:(i + 1) * 4] for i in range(4)],
                             [c[i * 6:(i + 1) * 6] for i in range(4)])
        if b is not None:
            break
    assert b is not None
    b_ring = ring.from_pyint(0, (4, 6))
    for i in range(4):
        for j in range(6):
            b_ring[:, i, j] = ring.from_pyint(b[i][j])
    w = fixedpoint.decode(ring.add(e, b_ring))
    assert np.abs(w - W).max() < 1e-4


def test_rogue_fixed_mask_cannot_replace_b():
    core = DealerCore()
    parties, key = _open_gallery(core)
    session = parties[1].prep.session
    rogue = Request("fixed_mask", (key, 4, 6))
    with pytest.raises(ProtocolError):
        core.serve(session, 1, parties[1].prep._seq, rogue)
    with pytest.raises(SessionError):  # the session is closed: nothing runs on a new B
        parties[0].prep.fixed_triples(key, 1, 4, 6)


def test_rows_triple_on_the_training_key_is_refused_outside_the_sequence():
    core = DealerCore()
    parties = make_parties(core)
    x = share_floats(core, np.eye(4)[:3])

    def fn(party, t):
        from splitface.servers.mpc.beaver import FixedRows

        key = party.fresh_key("train")
        FixedRows(as_share(party, t), key)
        party.check()
        return key

    key, _ = run_pair(fn, parties, x)
    session = parties[1].prep.session
    req = Request("rows_triple", (key, (0, 1, 2), 2, False, 4))
    seq = parties[1].prep._seq
    got = []
    for s in (seq, seq, seq + 3, seq - 1):
        with contextlib.suppress(ProtocolError):
            got.append(core.serve(session, 1, s, req))
    assert len(got) <= 1 and all(p.seed is None for p in got)


def test_dealer_memory_is_bounded_whatever_a_server_asks():
    core = DealerCore(max_pending_bytes=8 << 20)
    parties = make_parties(core)
    session = parties[1].prep.session
    req = Request("triple", ((4096,),))
    seq, refused = 0, None  # P1 runs ahead: P0's parts (16-byte seeds) wait, capped in count
    for seq in range(10_000):
        try:
            core.serve(session, 1, seq, req)
        except ProtocolError as exc:
            refused = exc
            break
    stats = core.stats()
    assert stats["pending_bytes"] <= 8 << 20 and stats["pending"] <= 4096
    assert refused is not None or seq == 9_999
    # P0 running ahead leaves P1's explicit arrays waiting: capped in bytes
    core2 = DealerCore(max_pending_bytes=8 << 20)
    parties2 = make_parties(core2)
    with pytest.raises(ProtocolError, match=r"budget|uncollected"):
        for s in range(10_000):
            core2.serve(parties2[0].prep.session, 0, s, Request("triple", ((65536,),)))
    assert core2.stats()["pending_bytes"] <= 8 << 20


def test_a_session_needs_both_registrations_and_one_half_per_party():
    core = DealerCore()
    for i in range(100):
        assert core.register(f"attacker-session-{i:04d}", 1, core.epoch) is False
    assert core.stats()["half_registered"] == 1
    assert core.stats()["sessions"] == 0


def test_fixed_masks_die_with_their_session():
    core = DealerCore()
    parties, key = _open_gallery(core)
    make_parties(core)  # both servers start a new session: the old one goes
    with pytest.raises(SessionError):
        parties[0].prep.fixed_triples(key, 1, 4, 6)


# ---------------------------------------------------------------- over the wire
@pytest.fixture
def dealer_service():
    ctx = zmq.Context()
    keys = {n: zmq.curve_keypair() for n in ("dealer", "p0", "p1", "stranger")}
    auth = start_authenticator(ctx, [keys["p0"][0], keys["p1"][0], keys["stranger"][0]])
    core = DealerCore()
    service = DealerService(core, ctx, "tcp://127.0.0.1:*", public_key=keys["dealer"][0],
                            secret_key=keys["dealer"][1],
                            party_keys={0: keys["p0"][0], 1: keys["p1"][0]})
    stop = threading.Event()
    thread = threading.Thread(target=service.serve, args=(stop,), daemon=True)
    thread.start()

    def client(name: str, party: int) -> DealerClient:
        return DealerClient(ctx, service.endpoint, party=party, public_key=keys[name][0],
                            secret_key=keys[name][1], dealer_key=keys["dealer"][0],
                            timeout_s=5.0)

    yield core, service, client, keys, ctx
    stop.set()
    thread.join(5)
    service.close()
    auth.stop()
    ctx.destroy(linger=0)


def test_a_server_key_cannot_claim_the_other_party(dealer_service):
    core, _, client, _, _ = dealer_service
    liar = client("p1", 0)  # P1's key, claiming to be P0
    with pytest.raises(DealerRefused, match="claims"):
        liar.key_share(core.epoch)
    stranger = client("stranger", 1)  # an allow-listed key that is neither server
    with pytest.raises(DealerRefused, match="not one of the two servers"):
        stranger.current_epoch()
    honest = client("p1", 1)
    assert np.array_equal(honest.key_share(core.epoch), core.mac_key_share(1))


def test_get_without_a_session_is_refused_over_the_wire(dealer_service):
    core, _, client, _, _ = dealer_service
    evil = client("p1", 1)
    for seq in range(3):
        with pytest.raises(DealerRefused, match="not registered"):
            evil.call("get", {"session": "made-up-session-0002", "seq": seq, "reqs": [
                Request("fixed_triple", ("gallery:0", 4, 4, 6)).to_wire()]}, expect="part")
    assert evil.current_epoch() == core.epoch  # and the service still answers


def test_malformed_dealer_messages_get_an_error_and_the_service_lives(dealer_service):
    _, service, _, keys, ctx = dealer_service
    sock = ctx.socket(zmq.REQ)
    sock.curve_publickey, sock.curve_secretkey = keys["p1"]
    sock.curve_serverkey = keys["dealer"][0]
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.connect(service.endpoint)
    bad = [[b""], [b"\xc1"], wire.encode(Message("get", {"party": 1}))[:1] + [b"x"],
           [wire.encode(Message("get", {"party": 1, "session": "s" * 20, "seq": -1}))[0]],
           [wire.encode(Message("open", {"party": 1, "session": 7}))[0]],
           [wire.encode(Message("get", {"party": 1, "session": "s" * 20, "seq": 0,
                                        "reqs": [["triple", [[2**40, 2**40]]]]}))[0]],
           [wire.encode(Message("get", {"party": 1, "session": "s" * 20, "seq": 0,
                                        "reqs": "triple"}))[0]]]
    for frames in bad:
        sock.send_multipart(frames)
        reply = wire.decode(sock.recv_multipart())
        assert reply.kind == "error"
    sock.close(linger=0)


def _registered(client) -> tuple[RemotePreprocessing, RemotePreprocessing]:
    """Both servers' dealer sessions over the wire (P0 and P1 register the same id)."""
    sid = "batched-session-0001"
    preps = [RemotePreprocessing(client(f"p{i}", i), session=sid, epoch=1) for i in (0, 1)]
    threads = [threading.Thread(target=p.open, daemon=True) for p in preps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return preps[0], preps[1]


def test_batched_requests_are_capped_before_anything_is_generated(dealer_service):
    """One dealer message may carry several requests (prefetching). A server must not use
    that to make the dealer generate and hold many large parts for one reply, or more than
    MAX_BATCH items: such a message is refused before generation, and the session goes on."""
    core, _, client, _, _ = dealer_service
    p0, p1 = _registered(client)
    session = p1.session
    big = Request("triple", ((1 << 20,),)).to_wire()  # ~100 MB of parts each
    small = Request("triple", ((4,),)).to_wire()
    evil = p1.client
    for reqs, why in (([big, big], "bytes together"), ([small] * (MAX_BATCH + 1), "1 to"),
                      ([], "1 to")):
        with pytest.raises(DealerRefused, match=why):
            evil.call("get", {"session": session, "seq": 0, "reqs": reqs}, expect="part")
        assert core.stats()["pending"] == 0 and core.stats()["pending_bytes"] == 0
    # a lone large request is still served, and the honest batch after it pairs up
    items1 = p1.fetch_many([Request("triple", ((4,),)), Request("trunc", ((3,), 16))])
    items0 = p0.fetch_many([Request("triple", ((4,),))])
    items0 += p0.fetch_many([Request("trunc", ((3,), 16))])
    for a, b in zip(items0, items1, strict=True):
        for (v0, _), (v1, _) in zip(a.values, b.values, strict=True):
            assert v0.shape == v1.shape
    assert core.stats()["pending"] == 0


def test_a_batch_cannot_reach_the_other_partys_parts(dealer_service):
    """Batches are served item by item under the session's rules: P1 asking ahead in one
    message leaves P0's parts tagged for P0; P1 cannot ask its numbers again."""
    core, _, client, _, _ = dealer_service
    p0, p1 = _registered(client)
    reqs = [Request("triple", ((8,),)), Request("random", ((4,),))]
    p1.fetch_many(reqs)
    assert core.stats()["pending"] == 2
    with pytest.raises(DealerRefused, match="out of order"):
        p1.client.call("get", {"session": p1.session, "seq": 0,
                               "reqs": [r.to_wire() for r in reqs]}, expect="part")
    items = p0.fetch_many(reqs)
    assert len(items) == 2 and core.stats()["pending"] == 0


def test_a_reply_the_wire_cannot_carry_costs_one_request_not_the_service(dealer_service,
                                                                          monkeypatch):
    """Encoding the reply happens after the request was handled: a reply of too many
    arrays once killed the dealer's serving thread (every later request timed out)."""
    core, service, client, _, _ = dealer_service
    honest = client("p1", 1)
    monkeypatch.setattr(service, "handle", lambda user, msg: Message(
        "epoch", {"current": 1}, [np.zeros(1, np.uint64)] * (wire.MAX_ARRAYS + 1)))
    with pytest.raises(DealerRefused, match="too large"):
        honest.current_epoch()
    monkeypatch.undo()
    assert honest.current_epoch() == core.epoch


def test_prefetch_batches_stay_within_what_the_dealer_accepts():
    """material.batches groups an identification's requests 1, 2, 4, ...: every group
    passes check_batch, and a large request travels alone."""
    plan = [Request("triple", ((4,),))] + [Request("ltz", ((1, n), 16, 7, True))
                                           for n in (5000, 9, 3, 2, 1, 1, 1)] \
        + [Request("random", ((2,),))] * 70
    groups = material.batches(plan, 1 << 20)
    assert [r for g in groups for r in g] == plan
    assert groups[0] == plan[:1] and groups[1] == [plan[1]]  # 5,000 keys: alone
    for g in groups:
        material.check_batch(g)
    assert max(len(g) for g in groups) > 4


def test_a_batch_failing_part_way_ends_the_session(dealer_service, monkeypatch):
    """Items are served one by one: if item k fails with anything but a protocol error
    (which closes the session already), items 0..k-1 were consumed and the dealer's
    numbering is ahead of the server's. The session must end then, not go on out of step
    (attacker review 14, F1)."""
    core, _, client, _, _ = dealer_service
    _, p1 = _registered(client)
    real = core.serve

    def failing(sid, party, seq, req):
        if seq == 2:
            raise ValueError("an internal error on the third item")
        return real(sid, party, seq, req)

    monkeypatch.setattr(core, "serve", failing)
    with pytest.raises(DealerRefused):
        p1.fetch_many([Request("random", ((2,),))] * 3)
    monkeypatch.undo()
    assert core.stats()["sessions"] == 0
    with pytest.raises(DealerRefused, match="not registered"):
        p1.client.call("get", {"session": p1.session, "seq": 2,
                               "reqs": [Request("random", ((2,),)).to_wire()]}, expect="part")


def _session_with_mask(rows: int, cols: int) -> tuple[DealerCore, str]:
    core = DealerCore()
    sid = "mask-session-0001"
    core.register(sid, 0, core.epoch)
    core.register(sid, 1, core.epoch)
    core.serve(sid, 1, 0, Request("fixed_mask", ("rows:0", rows, cols)))
    return core, sid


def test_a_mismatched_fixed_triple_costs_the_dealer_nothing():
    """rows_triple gathered U[rows] (rows x the mask's columns) before finding that the
    request's d did not fit: 4,096 rows of a 2,048-column mask allocated ~130 MB for a
    request declared at 0.2 MB, and the error left the session open to repeat it (attacker
    review 14, F2). Shapes are now checked before anything is gathered or multiplied, and
    the gathered size and the product's work are capped in the layout."""
    import tracemalloc

    core, sid = _session_with_mask(1, 2048)
    tracemalloc.start()
    with pytest.raises(ProtocolError, match="does not match"):
        core.serve(sid, 1, 1, Request("rows_triple", ("rows:0", (0,) * 4096, 1, False, 7)))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MB allocated for a refused request"
    with pytest.raises(ProtocolError, match="does not match"):
        core2, sid2 = _session_with_mask(4, 6)
        core2.serve(sid2, 1, 1, Request("fixed_triple", ("rows:0", 2, 5, 6)))
    for req in (Request("rows_triple", ("rows:0", (0,) * 60_000, 1, False, 4096)),
                Request("mtriple", (4096, 4096, 4096)),
                Request("fixed_triple", ("rows:0", 2048, 4096, 4096))):
        with pytest.raises(ProtocolError, match=r"too many|more than|too large"):
            material.layout(req)


def test_requests_hold_no_more_than_their_kind_needs():
    """A waiting part keeps its request, and layout() caches requests: extra parameters
    (4.5 MB of Python objects in one 'random' request, counted as 16 bytes) and the row
    lists of rows_triple (up to 65,536 indices) are refused or not cached (attacker review
    14, F3 and F4)."""
    with pytest.raises(ProtocolError, match="takes 1 parameters"):
        Request.from_wire(["random", [[2], [], {}, []]])
    with pytest.raises(ProtocolError, match="takes 0 parameters"):
        Request.from_wire(["zero_check", [[1]]])
    before = material._layout_cached.cache_info().currsize
    material.layout(Request("rows_triple", ("rows:0", tuple(range(60_000)), 1, False, 4)))
    assert material._layout_cached.cache_info().currsize == before
