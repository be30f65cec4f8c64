"""Runs of enrolments and identifications through the daemons take their dealer material
from the prefetch (coordinator._prefetch_next), and a wrong guess costs nothing but the
discarded material: every request still succeeds."""

from __future__ import annotations

import numpy as np

from tests.services.conftest import (
    SLOW_TRAINING,
    client_for,
    prefetch_counters,
    running,
    unit,
    wait_until_training,
)

RNG = np.random.default_rng(71)  # test data only
FACES = unit(RNG.normal(size=(4, 128)))


def test_enrolments_and_identifications_take_prefetched_material(tmp_path):
    with running(tmp_path / "dep", train={"epochs": 1, "batch_size": 8}) as dep, \
            client_for(dep) as admin:
        start = prefetch_counters(admin)
        for i, face in enumerate(FACES):
            assert admin.enroll(f"p{i}", face).status == "enrolled"
        after_enrol = prefetch_counters(admin)
        for p in (0, 1):  # the first enrolment is fetched on demand, the next three not
            assert after_enrol[p]["hits"] - start[p]["hits"] >= 3 * 5
            assert after_enrol[p] == after_enrol[0]  # both servers alike
        assert admin.admin("train").status == "trained"
        before = prefetch_counters(admin)
        for i, face in enumerate(FACES):
            assert admin.identify(unit(face + RNG.normal(size=128) * 0.03)).identity == f"p{i}"
        assert admin.enroll("p0", FACES[0]).status == "enrolled"  # after identifications
        assert admin.identify(FACES[1]).identity == "p1"  # after an enrolment
        end = prefetch_counters(admin)
        assert end[0]["hits"] - before[0]["hits"] >= 3 * 10  # identifications 2..4
        assert end[0] == end[1]


def test_a_short_batch_runs_padded_on_the_material_prefetched_for_a_full_one(tmp_path):
    """Two identifications queued behind a training run as a batch of two, and the
    servers prefetch for another two. One terminal alone then comes back: its run is
    padded to two rows and takes the prefetched material (no request misses it: the
    padding row's result opens beside the real one), and its answer is right. Without padding the
    run's requests differ from the queue's, which is drained and fetched anew."""
    import threading

    with running(tmp_path / "dep", train=SLOW_TRAINING) as dep, \
            client_for(dep) as admin:
        for i, face in enumerate(FACES):
            assert admin.enroll(f"p{i}", face).status == "enrolled"
        assert admin.admin("train").status == "trained"
        got: dict[int, str | None] = {}

        def identify(i: int, edge: str) -> None:
            with client_for(dep, edge, timeout=30.0) as c:
                got[i] = c.identify(FACES[i]).identity

        threads = [threading.Thread(target=identify, args=(i, f"edge-{i + 1}"))
                   for i in range(2)]
        trainer = threading.Thread(target=lambda: admin.admin("train"))
        trainer.start()
        wait_until_training(dep)  # both identifications queue behind it
        for t in threads:
            t.start()
        for t in threads + [trainer]:
            t.join(60)
        assert got == {0: "p0", 1: "p1"}
        assert "(batch of 2)" in dep.logs["p0"].read_text()
        before = prefetch_counters(admin)
        with client_for(dep, "edge-2") as lone:
            assert lone.identify(FACES[2]).identity == "p2"
        after = prefetch_counters(admin)
        assert "(+1 padding rows)" in dep.logs["p0"].read_text()
        for p in (0, 1):
            assert after[p]["misses"] - before[p]["misses"] == 0, (before, after)
            assert after[p]["hits"] - before[p]["hits"] >= 10


def test_first_runs_of_each_size_take_prefetched_material(tmp_path):
    """Identification plans are computed from public sizes (servers/service/plans.py), so
    even the first identification after a training, the first batch of a size and the
    first identification after a restart take their dealer material from the prefetch:
    each takes its whole plan (13 requests for one row, 14 for two). When plans were
    recorded from each size's first run, each of these fetched everything on demand."""
    import threading

    with running(tmp_path / "dep", train=SLOW_TRAINING) as dep:
        with client_for(dep) as admin:
            for i, face in enumerate(FACES):
                assert admin.enroll(f"p{i}", face).status == "enrolled"
            assert admin.admin("train").status == "trained"
            before = prefetch_counters(admin)
            assert admin.identify(FACES[3]).identity == "p3"  # the first after a training
            after = prefetch_counters(admin)
            for p in (0, 1):
                assert after[p]["misses"] == before[p]["misses"], (before, after)
            got: dict[int, str | None] = {}

            def identify(i: int, edge: str) -> None:
                with client_for(dep, edge, timeout=30.0) as c:
                    got[i] = c.identify(FACES[i]).identity

            # two identifications queue behind a training: its prefetch names a batch of 2
            threads = [threading.Thread(target=identify, args=(i, f"edge-{i + 1}"))
                       for i in range(2)]
            trainer = threading.Thread(target=lambda: admin.admin("train"))
            before = prefetch_counters(admin)
            trainer.start()
            wait_until_training(dep)
            for t in threads:
                t.start()
            for t in threads + [trainer]:
                t.join(60)
            assert got == {0: "p0", 1: "p1"}
            assert "(batch of 2)" in dep.logs["p0"].read_text()
            after = prefetch_counters(admin)
            for p in (0, 1):  # the training's own requests miss; the batch's 14 all hit
                assert after[p]["hits"] - before[p]["hits"] >= 14, (before, after)
        dep.stop()
        dep.start()
        with client_for(dep) as again:
            dep.wait_ready(again)
            before = prefetch_counters(again)
            assert again.identify(FACES[2]).identity == "p2"  # the session's first
            after = prefetch_counters(again)
            for p in (0, 1):  # the gallery's opening may still be running at the first look
                assert after[p]["hits"] - before[p]["hits"] >= 13, (before, after)
