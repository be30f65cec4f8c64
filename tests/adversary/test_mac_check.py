"""Attacks on the MAC check by a rushing, adaptive malicious server.

Each test plays the attack that worked against the design before 2026-11-30 and asserts
that the honest server aborts, releases nothing, and (for a failed check) retires the key.
"""

from __future__ import annotations

import numpy as np
import pytest

from splitface.servers.mpc import client_jobs
from splitface.servers.mpc.beaver import mul_many
from splitface.servers.mpc.errors import MacCheckError, ProtocolError
from splitface.servers.mpc.party import Party
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.share import AuthShare
from splitface.shared import fixedpoint, ring
from splitface.shared.client_protocol import ClientRequest
from splitface.shared.prg import Prg
from splitface.shared.wire import Message
from tests.adversary.harness import (
    AdversaryView,
    honest_strategy,
    pair_with_adversary,
    run_honest_vs_adversary,
    shift_low,
)

X = np.array([0.75, -0.5, 0.25, 0.125])  # a, b: two products a*b go to the "terminal"


def _product_job(req: ClientRequest, masked: np.ndarray):
    """Servers: take the terminal's input, multiply its halves, deliver masked results."""

    def job(party: Party, state: dict) -> np.ndarray:
        x, masks = client_jobs.take_input(party, state, masked, 4)
        (z,) = mul_many([(x[:2], x[2:])])
        return client_jobs.deliver(party, z, masks)

    return job


def _run(strategy, *, evil: int = 1, core: DealerCore | None = None):
    honest, bad, view, core = pair_with_adversary(strategy, evil=evil, core=core)
    req = ClientRequest(X, 2)
    states = ({}, {})
    parties = (honest, bad) if evil == 1 else (bad, honest)
    offers = [client_jobs.offer(p, s, req.n_total) for p, s in zip(parties, states,
                                                                     strict=True)]
    masked = req.masked(*offers)
    job = _product_job(req, masked)
    st = {id(honest): states[1 - evil], id(bad): states[evil]}
    h, b = run_honest_vs_adversary(lambda p: job(p, st[id(p)]), honest, bad)
    return h, b, view, honest, core


def _assert_aborted(h, honest: Party) -> None:
    assert h.error is not None and h.value is None, "the honest server released a result"
    assert isinstance(h.error, ProtocolError), repr(h.error)
    assert honest.aborted


def test_honest_run_delivers():
    h, b, _, _, _ = _run(honest_strategy)
    assert h.error is None and b.error is None
    assert np.array_equal(h.value, b.value)


def test_rushing_echo_of_the_coin_is_refused():
    """P1 waits for P0's seed commitment and seed and echoes them; with XORed seeds the coin
    was zero, chi known in advance, and errors chi_1, -chi_0 on P1's shares of two opened
    values cancelled in the check: the terminal accepted a wrong result (checked against
    the old code). Now the echoed commitment cannot be opened as P1's."""
    chi = Prg(bytes(16)).uint64(8)  # chi of the old design for an echoed (zero) coin

    def strategy(kind: str, ours: Message, honest: Message, view: AdversaryView) -> Message:
        if kind in ("seedcommit", "seed"):
            return Message(kind, {**ours.meta, **{k: honest.meta[k] for k in ("c", "s")
                                                  if k in honest.meta}}, ours.arrays)
        return ours

    honest, bad, view, _ = pair_with_adversary(strategy)
    open_ = bad.open

    def evil_open(*pairs, **kw):  # its modified code: errors that cancel under the known chi
        if not view.state.get("tampered"):
            view.state["tampered"] = True
            v, m = pairs[0]
            v = shift_low(shift_low(v, int(chi[1]), 0), (1 << 128) - int(chi[0]), 1)
            pairs = ((v, m), *pairs[1:])
        return open_(*pairs, **kw)

    bad.open = evil_open
    req = ClientRequest(X, 2)
    states = ({}, {})
    offers = [client_jobs.offer(p, s, req.n_total) for p, s in zip((honest, bad), states,
                                                                     strict=True)]
    job = _product_job(req, req.masked(*offers))
    st = {id(honest): states[0], id(bad): states[1]}
    h, _ = run_honest_vs_adversary(lambda p: job(p, st[id(p)]), honest, bad)
    _assert_aborted(h, honest)
    assert isinstance(h.error, MacCheckError) and honest.mac_failed


def test_echoing_the_commitment_alone_is_refused():
    """The commitment binds the party id: copying the honest one cannot be opened."""

    def strategy(kind, ours, honest, view):
        if kind == "seedcommit":
            return Message(kind, {**ours.meta, "c": honest.meta["c"]}, ours.arrays)
        return ours

    h, _, _, honest, _ = _run(strategy)
    _assert_aborted(h, honest)
    assert isinstance(h.error, MacCheckError)


def test_revealing_the_honest_seed_is_refused():
    """Even a commitment to the honest party's own seed (here leaked to the attacker by the
    test itself) does not fix the coin: a seed equal to ours is refused."""

    def strategy(kind, ours, honest, view):
        p = view.party
        if kind == "seedcommit":
            leak = view.state["honest"]._my_seed
            view.state["leak"] = leak
            return Message(kind, {**ours.meta, "c": p._seed_commit(p.id, leak)}, ours.arrays)
        if kind == "seed":
            return Message(kind, {**ours.meta, "s": view.state["leak"]}, ours.arrays)
        return ours

    honest, bad, view, core = pair_with_adversary(strategy)
    view.state["honest"] = honest
    req = ClientRequest(X, 2)
    states = ({}, {})
    offers = [client_jobs.offer(p, s, req.n_total) for p, s in zip((honest, bad), states,
                                                                     strict=True)]
    job = _product_job(req, req.masked(*offers))
    st = {id(honest): states[0], id(bad): states[1]}
    h, _ = run_honest_vs_adversary(lambda p: job(p, st[id(p)]), honest, bad)
    _assert_aborted(h, honest)
    assert "equals ours" in str(h.error)


@pytest.mark.parametrize("target", ["d", "z_commit", "z_open", "mac_share"])
def test_adaptive_errors_after_seeing_chi_are_caught(target):
    """An error in an opened value, then every adaptive move inside the check after the
    attacker has seen the coin, chi and the honest party's check messages first."""

    def strategy(kind, ours, honest, view):
        if kind == "open" and not view.state.get("tampered"):
            view.state["tampered"] = True
            return Message(kind, ours.meta, [shift_low(ours.arrays[0], 1, 0)])
        if kind == "checkmask" and target == "d":  # try to cancel sigma's error
            p = view.party
            return Message(kind, ours.meta, [ring.add(ours.arrays[0], p.alpha)])
        if kind == "checkcommit" and target == "z_commit":
            return Message(kind, {**ours.meta, "c": honest.meta["c"]}, ours.arrays)
        if kind == "checkopen" and target == "z_open":
            return Message(kind, {**ours.meta, "h": honest.meta["h"], "n": honest.meta["n"]},
                           ours.arrays)
        return ours

    if target == "mac_share":  # tamper the opening AND fix the attacker's MAC share with
        # its own alpha share: still wrong, because the other alpha share is unknown
        def strategy2(kind, ours, honest, view):
            if kind == "open" and not view.state.get("tampered"):
                view.state["tampered"] = True
                return Message(kind, ours.meta, [shift_low(ours.arrays[0], 1, 0)])
            return ours
        h, _, _, honest, _ = _run(strategy2)
    else:
        h, _, _, honest, _ = _run(strategy)
    _assert_aborted(h, honest)
    assert isinstance(h.error, MacCheckError) and honest.mac_failed


def test_a_failed_check_does_not_reveal_alpha():
    """The old check opened sigma_i; with an error e chosen by the attacker, the honest
    sigma gave alpha = -(sigma_0 + sigma_1) / e. Now the honest party sends sigma - a (a a
    dealer mask) and a hash; the old recovery applied to anything it sent finds nothing."""
    core = DealerCore()

    def strategy(kind, ours, honest, view):
        if kind == "open" and not view.state.get("tampered"):
            view.state["tampered"] = True
            return Message(kind, ours.meta, [shift_low(ours.arrays[0], 1, 0)])
        return ours

    h, _, view, honest, core = _run(strategy, core=core)
    assert isinstance(h.error, MacCheckError)
    alpha = ring.to_pyints(ring.add(core.mac_key_share(0), core.mac_key_share(1)).reshape(2, 1))
    alpha = alpha[0] % (1 << 64)
    seen_values = []
    for m in view.seen:
        if m.kind in ("checkmask", "checkcommit", "checkopen"):
            seen_values += [ring.to_pyints(a.reshape(2, -1))[0] for a in m.arrays]
            seen_values += [int.from_bytes(v[:16].ljust(16, b"\0"), "little")
                            for v in m.meta.values() if isinstance(v, bytes)]
    # the attacker's own sigma is known to it; alpha would be +-(sigma_h + sigma_a)
    for v in seen_values:
        for candidate in (v, -v, v ^ (1 << 127)):
            assert candidate % (1 << 64) != alpha


def test_forging_with_a_known_old_key_fails_after_retirement():
    """Worst case: the attacker knows alpha of the epoch that failed. With it, shifting its
    share of the terminal's input by delta and its MAC share by alpha * delta passes the
    check under that epoch (the control below), so the epoch must be retired: a session
    at the new epoch catches the same forgery."""
    core = DealerCore()
    old_epoch = core.epoch
    alpha_old = ring.add(core.mac_key_share(0), core.mac_key_share(1))
    delta = fixedpoint.encode(np.array([0.5]))  # +0.5 on the first input value

    def attack() -> tuple[BaseException | None, np.ndarray | None, ClientRequest]:
        honest, bad, _, _ = pair_with_adversary(honest_strategy, core=core)
        req = ClientRequest(X, 2)
        states = ({}, {})
        offers = [client_jobs.offer(p, s, req.n_total) for p, s in zip((honest, bad), states,
                                                                         strict=True)]
        masked = req.masked(*offers)

        def honest_job(p: Party) -> np.ndarray:
            return _product_job(req, masked)(p, states[0])

        def evil_job(p: Party) -> np.ndarray:
            x, masks = client_jobs.take_input(p, states[1], masked, 4)
            val, mac = x.val.copy(), x.mac.copy()
            val[:, :1] = ring.add(val[:, :1], delta)
            mac[:, :1] = ring.add(mac[:, :1], ring.mul(alpha_old.reshape(2, 1), delta))
            x = AuthShare(p, val, mac, x.frac)
            (z,) = mul_many([(x[:2], x[2:])])
            return client_jobs.deliver(p, z, masks)

        h, b = run_honest_vs_adversary(honest_job, honest, bad, evil_job)
        return h.error, (h.value, b.value), req

    err, (v0, v1), req = attack()
    assert err is None, "control: with a known alpha the forgery passes the check"
    forged = req.result(v0, v1).astype(np.float64) / 2.0 ** (2 * fixedpoint.F)
    assert abs(forged[0] - (X[0] + 0.5) * X[2]) < 1e-3  # a wrong result, accepted
    core.rotate(old_epoch)  # what the honest server does after a failed check
    err, _, _ = attack()
    assert isinstance(err, MacCheckError)


def test_a_retired_epoch_serves_no_computation():
    """After retirement the dealer serves a session at the old epoch only re-keying."""
    from splitface.servers.mpc.prep.local import local_pair

    core = DealerCore()
    old = core.epoch
    core.rotate(old)
    p0, _ = local_pair(core, epoch=old)
    with pytest.raises(ProtocolError, match="retired"):
        p0.triples((2,))


def test_dealer_keys_survive_a_restart(tmp_path):
    from splitface.servers.mpc.prep.keyring import KeyRing

    path = tmp_path / "keyring.json"
    first = DealerCore(KeyRing(path))
    shares = [first.mac_key_share(p) for p in (0, 1)]
    again = DealerCore(KeyRing(path))
    assert all(np.array_equal(a, again.mac_key_share(p)) for p, a in enumerate(shares))
    assert (path.stat().st_mode & 0o777) == 0o600
    again.rotate(again.epoch)
    third = DealerCore(KeyRing(path))
    assert third.epoch == first.epoch + 1
    assert np.array_equal(third.mac_key_share(0, first.epoch), shares[0])
