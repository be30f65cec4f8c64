"""A hostile terminal against the prefetch (attacker review 7).

After every identification or enrolment run both servers queue the dealer requests of the
next one. A run that fetches nothing (a wrong-dimension probe, a duplicate enrolment)
leaves that queue untouched, so queueing again after each such run grew it without bound:
a terminal's burst of wrong-dimension probes at N = 100,000 queued 262 MB of keys per
request on both servers. At most one plan is queued now.
"""

from __future__ import annotations

import numpy as np
import pytest

from splitface.edge.client import ServerRefused
from tests.services.conftest import client_for, prefetch_counters, running, unit

RNG = np.random.default_rng(83)  # test data only


def _queued(client) -> tuple[int, int]:
    p0, p1 = prefetch_counters(client)
    return p0["queued"], p1["queued"]


def test_requests_that_fetch_nothing_do_not_grow_the_prefetch_queue(tmp_path):
    with running(tmp_path / "dep", train={"epochs": 1, "batch_size": 8}) as dep, \
            client_for(dep) as admin:
        faces = unit(RNG.normal(size=(3, 128)))
        for i, face in enumerate(faces):
            assert admin.enroll(f"p{i}", face).status == "enrolled"
        assert admin.admin("train").status == "trained"
        assert admin.identify(faces[0]).identity == "p0"  # records the plan, queues it
        queued = _queued(admin)
        assert queued[0] == queued[1] > 0
        with client_for(dep, "edge-2") as hostile:
            for _ in range(6):
                with pytest.raises(ServerRefused) as err:
                    hostile.identify(unit(RNG.normal(size=64)))
                assert err.value.code == "wrong_dimension"
        assert _queued(admin) == queued  # one plan, not seven
        assert admin.identify(faces[1]).identity == "p1"  # and it is still the right one
