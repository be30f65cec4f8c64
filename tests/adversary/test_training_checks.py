"""A cheating server is caught during a long training, not only at its end.

Training used to hold every opened value of every step for one MAC check at the end
(7.5 GB per server after 20 epochs on 1,000 identities), so a server that corrupted its
share in the first step had the honest server compute all the remaining steps on the
corrupted data. The training now checks whenever CHECK_PENDING_LIMIT opened elements wait
(``Party.check_if_over``): the honest server aborts a few steps after the tamper.
"""

from __future__ import annotations

import threading

import pytest

from splitface.servers.mpc import party as party_mod
from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.party import Party
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.prep.local import local_pair as local_prep_pair
from splitface.servers.recognition import training
from splitface.shared.transport.local import local_pair
from tests.mpc.harness import as_share, share_floats
from tests.mpc.test_fault_injection import TamperingPrep
from tests.mpc.test_training import clusters

EPOCHS, BATCH = 4, 30  # 150 rows: 5 steps an epoch, 20 in all


def _train_with_tamper(target: int, which: int) -> tuple[object, list[int]]:
    """P1 corrupts one share of its ``target``-th dealer item; returns what honest P0's
    training ended with and the steps it completed."""
    core = DealerCore()
    x, y = clusters(5, 30, 16, spread=0.2, seed=4)
    shares = share_floats(core, x)
    c0, c1 = local_pair()
    prep0, prep1 = local_prep_pair(core)
    parties = [Party(0, c0, prep0), Party(1, c1, TamperingPrep(prep1, target, which))]
    opts = training.SgdOptions(EPOCHS, BATCH, 1.0)
    steps: list[int] = []
    out: list[object] = [None, None]

    def go(i: int) -> None:
        p = parties[i]
        try:
            progress = (lambda e, k: steps.append(e * 5 + k)) if i == 0 else None
            training.train_logistic(as_share(p, shares[i]), y, 5, opts, progress)
            p.check()
            out[i] = "finished"
        except Exception as exc:  # the outcome under test
            out[i] = exc
            p.channel.close()

    threads = [threading.Thread(target=go, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out[0], steps


@pytest.mark.parametrize("target,which", [(2, 0), (3, 1), (4, 0)])
def test_a_tamper_early_in_training_aborts_within_a_few_steps(monkeypatch, target, which):
    monkeypatch.setattr(party_mod, "CHECK_PENDING_LIMIT", 2_000)
    outcome, steps = _train_with_tamper(target, which)
    assert isinstance(outcome, ProtocolError), outcome
    assert len(steps) < 8, steps  # of 20: the honest server stopped soon after


def test_without_mid_training_checks_the_tamper_surfaces_only_at_the_end(monkeypatch):
    """The control: with a limit no training reaches, the same tamper is still caught (by
    the final check), but only after every step was computed on corrupted data."""
    monkeypatch.setattr(party_mod, "CHECK_PENDING_LIMIT", 1 << 40)
    outcome, steps = _train_with_tamper(2, 0)
    assert isinstance(outcome, ProtocolError), outcome
    assert len(steps) == EPOCHS * 5
