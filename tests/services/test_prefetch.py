"""Runs of enrolments and identifications through the daemons take their dealer material
from the prefetch (coordinator._prefetch_next), and a wrong guess costs nothing but the
discarded material: every request still succeeds."""

from __future__ import annotations

import numpy as np

from tests.services.conftest import client_for, running, unit

RNG = np.random.default_rng(71)  # test data only
FACES = unit(RNG.normal(size=(4, 128)))


def _prefetch(client) -> tuple[dict, dict]:
    s0, s1 = client.status()
    return s0["prefetch"], s1["prefetch"]


def test_enrolments_and_identifications_take_prefetched_material(tmp_path):
    with running(tmp_path / "dep", train={"epochs": 1, "batch_size": 8}) as dep, \
            client_for(dep) as admin:
        start = _prefetch(admin)
        for i, face in enumerate(FACES):
            assert admin.enroll(f"p{i}", face).status == "enrolled"
        after_enrol = _prefetch(admin)
        for p in (0, 1):  # the first enrolment is fetched on demand, the next three not
            assert after_enrol[p]["hits"] - start[p]["hits"] >= 3 * 5
            assert after_enrol[p] == after_enrol[0]  # both servers alike
        assert admin.admin("train").status == "trained"
        before = _prefetch(admin)
        for i, face in enumerate(FACES):
            assert admin.identify(unit(face + RNG.normal(size=128) * 0.03)).identity == f"p{i}"
        assert admin.enroll("p0", FACES[0]).status == "enrolled"  # after identifications
        assert admin.identify(FACES[1]).identity == "p1"  # after an enrolment
        end = _prefetch(admin)
        assert end[0]["hits"] - before[0]["hits"] >= 3 * 10  # identifications 2..4
        assert end[0] == end[1]
