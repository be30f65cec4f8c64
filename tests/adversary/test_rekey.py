"""Re-keying stored shares after a key epoch ends, against a malicious peer and crashes.

The servers re-authenticate every stored share under the dealer's new key without either
seeing a stored value; a malicious peer that tampers with the opened masked values is
caught by the check under the old key before anything is staged; a crash between the two
servers' switches is recovered from their key states.
"""

from __future__ import annotations

import numpy as np
import pytest

from splitface.servers.mpc.errors import MacCheckError, ProtocolError
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.service.coordinator import KeyState, SessionPlan, plan_session
from splitface.servers.service.rekey import rekey_store
from splitface.servers.store import ShareStore, StoredShare
from splitface.shared import fixedpoint, ring
from splitface.shared.wire import Message
from tests.adversary.harness import (
    honest_strategy,
    pair_with_adversary,
    run_honest_vs_adversary,
    shift_low,
)
from tests.mpc.harness import share_floats

EMB = np.linspace(-0.9, 0.9, 3 * 8).reshape(3, 8)
MODEL = np.linspace(0.1, 0.7, 8 * 3).reshape(8, 3)


def _stores(tmp_path, core: DealerCore) -> list[ShareStore]:
    stores = [ShareStore(tmp_path / f"p{i}.db") for i in (0, 1)]
    for s in stores:
        s.adopt_key_epoch(core.epoch)
    for k, row in enumerate(EMB):
        for i, (v, m, f) in enumerate(share_floats(core, row)):
            stores[i].add_enrolment(f"request-{k:04d}", f"id-{k}", StoredShare(v, m, f))
    for i, (v, m, f) in enumerate(share_floats(core, MODEL)):
        for version in (1, 2):  # two committed versions (the newest and its fallback)
            stores[i].stage_models(version, {"templates": StoredShare(v, m, f)},
                                   {"identities": ["a"]})
            stores[i].commit_models(version)
    return stores


def _agree_funcs(party):
    def agree(name, value):
        return party._exchange("agree", [], {"name": name, "v": value}).meta.get("v")

    def agree_blob(name, data):
        msg = party._exchange("blob", [np.frombuffer(data, dtype=np.uint8)], {"name": name})
        return msg.arrays[0].tobytes()

    return agree, agree_blob


def _decode_all(stores: list[ShareStore], core: DealerCore, epoch: int) -> dict[str, np.ndarray]:
    """Reconstruct every stored value (test only) and check its MAC under ``epoch``."""
    alpha = ring.add(core.mac_key_share(0, epoch), core.mac_key_share(1, epoch))
    out = {}
    for (k0, n0, s0), (k1, n1, s1) in zip(stores[0].tensors(), stores[1].tensors(),
                                            strict=True):
        assert (k0, n0) == (k1, n1)
        v, m = ring.add(s0.val, s1.val), ring.add(s0.mac, s1.mac)
        a = alpha.reshape((2,) + (1,) * (v.ndim - 1))
        assert ring.equal(ring.mul(a, v), m), f"MAC of {n0} invalid under epoch {epoch}"
        out[n0] = fixedpoint.decode(v, s0.frac)
    return out


def _rekey(stores, core, strategy=honest_strategy):
    old = core.epoch
    new = core.rotate(old)
    honest, bad, _, _ = pair_with_adversary(strategy, core=core, epoch=old)
    parties = {id(honest): (honest, stores[0]), id(bad): (bad, stores[1])}

    def job(p):
        party, store = parties[id(p)]
        agree, agree_blob = _agree_funcs(party)
        return rekey_store(party, store, new, agree, agree_blob)

    return run_honest_vs_adversary(job, honest, bad), old, new


def test_rekey_keeps_every_value_and_moves_every_mac(tmp_path):
    core = DealerCore()
    stores = _stores(tmp_path, core)
    before = _decode_all(stores, core, core.epoch)
    old_shares = [s.val.copy() for _, _, s in stores[0].tensors()]
    (h, b), old, new = _rekey(stores, core)
    assert h.error is None and b.error is None, (h.error, b.error)
    assert [s.key_epoch() for s in stores] == [new, new]
    after = _decode_all(stores, core, new)
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])
    for old_val, (_, _, new) in zip(old_shares, stores[0].tensors(), strict=True):
        assert not np.array_equal(old_val, new.val)  # fresh shares, not only new MACs


def test_tampering_during_rekey_is_caught_before_anything_is_staged(tmp_path):
    core = DealerCore()
    stores = _stores(tmp_path, core)

    def tamper(kind, ours, honest, view):
        if kind == "open" and not view.state.get("done"):
            view.state["done"] = True
            return Message(kind, ours.meta, [shift_low(ours.arrays[0], 1 << 20, 3)])
        return ours

    (h, _), old, _ = _rekey(stores, core, tamper)
    assert isinstance(h.error, MacCheckError)
    assert stores[0].key_epoch() == old and stores[0].staged_epoch() == 0
    _decode_all(stores, core, old)  # untouched: still valid under the old key


def test_rekey_drops_records_only_one_server_holds(tmp_path):
    core = DealerCore()
    stores = _stores(tmp_path, core)
    v, m, f = share_floats(core, EMB[0])[0]
    stores[0].add_enrolment("orphan-request-1", "id-x", StoredShare(v, m, f))
    (h, b), _, new = _rekey(stores, core)
    assert h.error is None and b.error is None
    assert not stores[0].has_enrolment("orphan-request-1")
    _decode_all(stores, core, new)


def test_plan_finishes_a_switch_interrupted_by_a_crash():
    # P0 switched to epoch 3; P1 crashed after staging epoch 3, before switching
    p1 = KeyState(epoch=2, staged=3, retired=2, count=10)
    p0 = KeyState(epoch=3, staged=0, retired=2, count=10)
    assert plan_session(p1, p0, current=3) == SessionPlan(3, switch_staged=True)
    assert plan_session(p0, p1, current=3) == SessionPlan(3)


def test_plan_never_serves_a_retired_epoch():
    s = KeyState(epoch=4, staged=0, retired=4, count=5)
    plan = plan_session(s, s, current=4)
    assert plan.rotate and plan.epoch == 4  # end it at the dealer, then re-key
    plan = plan_session(s, s, current=5)
    assert plan == SessionPlan(4)  # a re-key session at 4 towards 5
    # the peer's retirement counts too (one server saw the failure)
    fresh = KeyState(epoch=4, staged=0, retired=0, count=5)
    assert plan_session(fresh, s, current=4).rotate


def test_plan_refuses_split_epochs_and_a_dealer_behind_the_stores():
    with pytest.raises(ProtocolError, match=r"different|epochs"):
        plan_session(KeyState(2, 0, 0, 1), KeyState(3, 0, 0, 1), current=3)
    with pytest.raises(ProtocolError, match="dealer"):
        plan_session(KeyState(5, 0, 0, 1), KeyState(5, 0, 0, 1), current=4)


def test_plan_empty_stores_adopt_the_current_epoch():
    empty = KeyState(0, 0, 0, 0)
    assert plan_session(empty, empty, current=7) == SessionPlan(7, adopt=7)
    full = KeyState(6, 0, 0, 3)
    assert plan_session(empty, full, current=7) == SessionPlan(6, adopt=6)
