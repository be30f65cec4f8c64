"""Training through the daemons at gallery scale: templates alone, or a refusal up front.

The logistic model's work grows with identities x enrolments x epochs (1,000 x 1,000 x 1
took 27 s here), while identification and verification read only the templates (one pass
over the enrolments). A large gallery must therefore be trainable without the logistic
model, and a run that would take hours is refused with the way out, not started.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from splitface.edge.client import ServerRefused
from splitface.servers.deploy_local import LocalDeployment
from splitface.shared import api
from tests.services.conftest import client_for, gallery_openings, running, unit

RNG = np.random.default_rng(41)  # test data only
IDENTITIES = 40  # 40 x 40 enrolments x 100,000 epochs = 1.6e8 logits: over the limit


@pytest.fixture(scope="module")
def dep(tmp_path_factory):
    with running(tmp_path_factory.mktemp("scale") / "dep",
                 train={"epochs": 100_000, "batch_size": 32, "learning_rate": 1.0,
                        "logistic": "true"}) as d:
        yield d


def _set_logistic(d: LocalDeployment, on: bool, parties: tuple[str, ...] = ("p0", "p1")
                  ) -> None:
    for p in parties:
        cfg = d.root / p / "config.toml"
        text = cfg.read_text()
        old, new = ("false", "true") if on else ("true", "false")
        assert f"logistic = {old}" in text
        cfg.write_text(text.replace(f"logistic = {old}", f"logistic = {new}"))


CENTRES = unit(np.random.default_rng(40).normal(size=(IDENTITIES, 128)))


def test_a_logistic_run_of_hours_is_refused_and_templates_alone_train_in_seconds(dep):
    centres = CENTRES
    with client_for(dep, timeout=60.0) as admin:
        for i, c in enumerate(centres):
            admin.enroll(f"id-{i:03d}", c)
        t0 = time.monotonic()
        with pytest.raises(ServerRefused) as err:
            admin.admin("train")
        assert time.monotonic() - t0 < 20.0  # refused up front, not after hours of SGD
        assert err.value.code == api.BAD_REQUEST
        assert "train.logistic = false" in err.value.reason
        assert "40 identities" in err.value.reason
    dep.stop()
    _set_logistic(dep, on=False)
    dep.start()
    with client_for(dep, timeout=60.0) as admin:
        dep.wait_ready(admin)
        out = admin.admin("train")
        assert out.status == "trained"
        assert out.details["models"] == ["templates"]
        opened = gallery_openings(dep)
        assert opened == [out.details["model_version"]] * 2  # by the training, on both
        probe = unit(centres[7] + 0.05 * RNG.normal(size=128))
        assert admin.identify(probe).identity == "id-007"
        assert gallery_openings(dep) == opened  # the first identification reused it
        stranger = unit(RNG.normal(size=128))
        assert admin.identify(stranger).identity is None


def test_servers_with_different_training_settings_refuse_and_say_which(dep):
    """One server set to templates only, the other not: the SGD would desynchronise the
    protocol halfway; the servers compare their [train] settings first and name them."""
    dep.stop()
    _set_logistic(dep, on=True, parties=("p1",))
    dep.start()
    try:
        with client_for(dep, timeout=60.0) as admin:
            dep.wait_ready(admin)
            with pytest.raises(ServerRefused) as err:
                admin.admin("train")
            assert err.value.code == api.BAD_REQUEST
            assert "settings differ" in err.value.reason
            assert "P0 [100000, 32, 1.0, False], P1 [100000, 32, 1.0, True]" in err.value.reason
            # the model trained before still answers, 1:N and 1:1 (one template row read)
            probe = unit(CENTRES[3] + 0.05 * RNG.normal(size=128))
            assert admin.identify(probe).identity == "id-003"
            assert admin.verify("id-003", probe).accepted
            assert not admin.verify("id-004", probe).accepted
            assert not admin.verify("nobody", probe).accepted
    finally:
        dep.stop()
        _set_logistic(dep, on=False, parties=("p1",))
        dep.start()
        with client_for(dep) as c:
            dep.wait_ready(c)
