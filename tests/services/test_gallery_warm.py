"""The gallery is opened when a session starts, not by the first identification.

Every session (a restart of any process, a resync after an aborted request, a key
rotation) starts with fresh dealer masks, so the opened gallery W - B is per session. It
used to be built by the session's first identification: 6-10 s at N = 100,000 (1 s at
10,000) that the first terminal after every restart waited for. Now P0 has both servers
open it as soon as the session is up.
"""

from __future__ import annotations

import time

import numpy as np

from splitface.servers.deploy_local import LocalDeployment
from tests.services.conftest import client_for, gallery_openings, running, unit

RNG = np.random.default_rng(97)  # test data only


def _wait_openings(d: LocalDeployment, want: list[int], timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (got := gallery_openings(d)) != want and time.monotonic() < deadline:
        time.sleep(0.2)
    return got


def test_after_a_restart_both_servers_open_the_gallery_before_any_identification(tmp_path):
    with running(tmp_path / "dep", train={"epochs": 1, "batch_size": 8}) as dep:
        faces = unit(RNG.normal(size=(4, 128)))
        with client_for(dep) as admin:
            for i, face in enumerate(faces):
                assert admin.enroll(f"p{i}", face).status == "enrolled"
            version = admin.admin("train").details["model_version"]
        dep.stop()
        dep.start()
        with client_for(dep) as admin:
            dep.wait_ready(admin)
            # no identification yet: the new session opened it, on both servers, once
            assert _wait_openings(dep, [version, version]) == [version, version]
            assert admin.identify(faces[2]).identity == "p2"
            assert admin.identify(unit(RNG.normal(size=128))).identity is None
        assert gallery_openings(dep) == [version, version]  # the identifications reused it


def test_without_a_model_a_new_session_opens_nothing(tmp_path):
    with running(tmp_path / "dep") as dep, client_for(dep) as admin:
        dep.wait_ready(admin)
        assert admin.enroll("solo", unit(RNG.normal(size=128))).status == "enrolled"
        time.sleep(1.0)
        assert gallery_openings(dep) == []
