"""Identities and model versions through the real daemons: the lifecycle an operator runs
(enrol, a different person under the same name refused, revoke, restore, re-enrol) and a
crash of either server between the two model commits, healed without an operator."""

from __future__ import annotations

import time

import numpy as np
import pytest

from splitface.edge.client import ServerRefused, ServerUnavailable
from splitface.servers.deploy_local import LocalDeployment
from splitface.shared import api
from tests.services.conftest import client_for, free_base_port, unit

RNG = np.random.default_rng(91)  # test data only
CENTRES = {name: unit(RNG.normal(size=128)) for name in ("ann", "bob", "cid")}


def _near(name: str) -> np.ndarray:
    return unit(CENTRES[name] + RNG.normal(size=128) * 0.05)


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle") / "dep"
    d = LocalDeployment.create(root, edges=1, base_port=free_base_port(),
                               train={"epochs": 2, "batch_size": 16})
    d.start()
    with client_for(d) as c:
        d.wait_ready(c)
        for name in CENTRES:
            for _ in range(3):
                assert c.enroll(name, _near(name)).status == "enrolled"
        assert c.admin("train").status == "trained"
    yield d
    d.stop()


def _both(dep: LocalDeployment) -> tuple[dict, dict]:
    with client_for(dep) as c:
        return c.status(names=True)


def test_another_person_under_an_existing_name_is_refused_unless_forced(dep):
    with client_for(dep) as admin:
        before = _both(dep)[0]["records"]
        with pytest.raises(ServerRefused) as err:
            admin.enroll("ann", _near("bob"))  # bob's face as ann
        assert err.value.code == api.NOT_THE_SAME_PERSON
        assert _both(dep)[0]["records"] == before  # nothing stored
        assert admin.enroll("ann", _near("ann")).status == "enrolled"  # ann herself: fine
        assert admin.enroll("ann", _near("bob"), force=True).status == "enrolled"
        assert _both(dep)[0]["records"] == before + 2


def test_revoke_removes_at_once_restore_brings_back(dep):
    with client_for(dep) as admin:
        with pytest.raises(ServerRefused) as err:
            admin.admin("revoke", "nobody-like-that")
        assert err.value.code == api.UNKNOWN_IDENTITY
        assert admin.identify(_near("cid")).identity == "cid"
        out = admin.admin("revoke", "cid")
        assert out.status == "revoked" and out.details["records"] == 3
        # gone from identification at once, without retraining; the others still work
        assert admin.identify(_near("cid")).identity is None
        assert admin.identify(_near("bob")).identity == "bob"
        assert admin.verify("cid", _near("cid")).accepted is False
        s0, s1 = _both(dep)
        assert "cid" in s0["revoked"] and s0["digest"] == s1["digest"]
        with pytest.raises(ServerRefused) as err:
            admin.enroll("cid", _near("cid"))
        assert err.value.code == api.REVOKED and "restore" in err.value.reason
        assert admin.admin("restore", "cid").details["records"] == 3
        with pytest.raises(ServerRefused):
            admin.admin("restore", "cid")  # not revoked any more
        assert admin.admin("train").status == "trained"
        assert admin.identify(_near("cid")).identity == "cid"
        assert admin.enroll("cid", _near("cid")).status == "enrolled"  # re-enrol


@pytest.mark.parametrize("victim, point", [("p1", "before_model_commit"),
                                           ("p0", "before_model_commit"),
                                           ("p1", "after_model_commit")])
def test_a_crash_between_the_model_commits_heals_by_itself(dep, victim, point):
    """The server started with a failpoint dies in the middle of the two-phase commit of
    a training; restarted normally, the pair converges on one model version and serves."""
    before = _both(dep)[0]["model_version"]
    dep.stop((victim,))
    dep.start((victim,), extra_env={"SPLITFACE_FAILPOINT": point})
    with client_for(dep, timeout=8.0) as admin:
        dep.wait_ready(admin)
        with pytest.raises((ServerRefused, ServerUnavailable)):  # it dies with the server
            admin.admin("train")
    assert dep.procs[victim].wait(20) == 70  # it died at the failpoint
    del dep.procs[victim]
    dep.start((victim,))
    deadline = time.monotonic() + 30
    with client_for(dep, timeout=10.0) as admin:
        while True:
            try:
                if admin.identify(_near("ann")).identity == "ann":
                    break
            except (ServerRefused, ServerUnavailable):
                pass
            assert time.monotonic() < deadline, {n: p.read_text()[-3000:]
                                                 for n, p in dep.logs.items()}
            time.sleep(0.5)
    recovered_s = time.monotonic() - deadline + 30
    s0, s1 = _both(dep)
    assert recovered_s < 15.0
    assert s0["model_version"] == s1["model_version"] >= before
    assert s0["digest"] == s1["digest"]


def test_an_identity_whose_samples_cancel_is_named_and_training_refused(dep):
    """Issue 11: a class whose samples cancel used to give a zero template silently."""
    v = unit(RNG.normal(size=128))
    with client_for(dep, timeout=60.0) as admin:
        admin.enroll("dee", v)
        admin.enroll("dee", -v)
        with pytest.raises(ServerRefused) as err:
            admin.admin("train")
        assert err.value.code == api.BAD_REQUEST and "'dee'" in err.value.reason
        admin.admin("revoke", identity="dee")
        assert admin.admin("train").status == "trained"
