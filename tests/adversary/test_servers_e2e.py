"""A malicious P1 daemon (modified code) against an honest P0, through the real services.

The malicious server fails a MAC check on purpose. Before, the honest server still sent
its sigma and both resynchronised under the same alpha: one failed check gave alpha away
and the next session accepted forged MACs. Now the honest server retires the key epoch,
the dealer draws a new alpha, the stored shares are re-authenticated under it, and the
service goes on with correct answers. A dealer restart keeps every stored share usable.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from splitface.edge.client import ServerRefused
from splitface.servers.deploy_local import LocalDeployment
from tests.services.conftest import client_for, free_base_port, unit

RNG = np.random.default_rng(31)  # test data only
CENTRES = unit(RNG.normal(size=(4, 128)))
NAMES = [f"member-{i}" for i in range(4)]


@pytest.fixture(scope="module")
def evil_deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("evil") / "dep"
    flag = root.parent / "tamper-next-opening"
    dep = LocalDeployment.create(root, edges=1, base_port=free_base_port(),
                                 train={"epochs": 2, "batch_size": 16})
    repo = str(Path(__file__).resolve().parents[2])
    dep.start(extra_env={"SPLITFACE_EVIL_FLAG": str(flag), "PYTHONPATH": repo},
              modules={"p1": "tests.adversary.evil_server"})
    with client_for(dep) as c:
        dep.wait_ready(c)
        for name, centre in zip(NAMES, CENTRES, strict=True):
            for _ in range(3):
                assert c.enroll(name, unit(centre + RNG.normal(size=128) * 0.05)).status \
                    == "enrolled"
        assert c.admin("train").status == "trained"
    yield dep, flag
    dep.stop()


def _identify_all(c) -> list[str | None]:
    return [c.identify(unit(centre + RNG.normal(size=128) * 0.04)).identity
            for centre in CENTRES]


def _wait_epoch(c, epoch: int, timeout: float = 60.0) -> tuple[dict, dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s0, s1 = c.status()
            if s0["key_epoch"] >= epoch and s1["key_epoch"] >= epoch and s0["peer_ok"]:
                return s0, s1
        except Exception:
            pass
        time.sleep(0.3)
    raise AssertionError(f"servers did not reach key epoch {epoch}")


def test_a_failed_check_retires_the_key_and_the_service_recovers(evil_deployment):
    dep, flag = evil_deployment
    with client_for(dep) as c:
        assert _identify_all(c) == NAMES
        before = c.status()[0]["key_epoch"]
        flag.touch()  # P1 tampers with its next opening
        with pytest.raises(ServerRefused) as err:
            c.identify(unit(CENTRES[0]))
        assert err.value.code == "aborted"
        assert not flag.exists()
        s0, s1 = _wait_epoch(c, before + 1)
        assert s0["key_epoch"] == s1["key_epoch"] == before + 1
        assert s0["digest"] == s1["digest"]  # every record kept
        assert _identify_all(c) == NAMES  # shares re-authenticated, answers unchanged
    log = dep.logs["p0"].read_text()
    assert "RETIRED" in log and "re-authenticated under key epoch" in log


def test_the_dealer_restarting_keeps_every_share_usable(evil_deployment):
    dep, _ = evil_deployment
    with client_for(dep) as c:
        epoch = c.status()[0]["key_epoch"]
        dep.stop(("dealer",))
        dep.start(("dealer",))
        deadline = time.monotonic() + 60
        while True:
            try:
                got = _identify_all(c)
                break
            except (ServerRefused, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert got == NAMES
        assert c.status()[0]["key_epoch"] == epoch  # no re-key needed: same keys


def test_planned_rotation_rekeys_and_keeps_answers(evil_deployment):
    dep, _ = evil_deployment
    with client_for(dep) as c:
        epoch = c.status()[0]["key_epoch"]
        out = c.admin("rotate_key")
        assert out.status == "rotated"
        _wait_epoch(c, epoch + 1)
        assert _identify_all(c) == NAMES
