"""A real deployment (dealer, P0, P1 daemons) on loopback, shared by the service tests."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from splitface.edge.client import SplitfaceClient
from splitface.servers.deploy_local import LocalDeployment, free_base_port


def client_for(dep: LocalDeployment, name: str = "edge-1", timeout: float = 20.0,
               retries: int = 0) -> SplitfaceClient:
    return dep.client(name, timeout, retries)


@contextlib.contextmanager
def running(root: Path, **create: Any) -> Iterator[LocalDeployment]:
    """A deployment with two terminals, started and ready; every daemon must exit 0. A test
    that fails still stops its daemons (left running, they held ports and CPU for the rest
    of the suite)."""
    dep = LocalDeployment.create(root, edges=2, base_port=free_base_port(), **create)
    dep.start()
    try:
        with client_for(dep) as c:
            dep.wait_ready(c)
        yield dep
    except BaseException:
        dep.stop()
        raise
    codes = dep.stop()
    assert codes == {"dealer": 0, "p0": 0, "p1": 0}, codes


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    with running(tmp_path_factory.mktemp("deploy") / "dep",
                 train={"epochs": 5, "batch_size": 32, "learning_rate": 1.0}) as dep:
        yield dep


@pytest.fixture
def client(deployment):
    with client_for(deployment) as c:
        yield c


def prefetch_counters(client: SplitfaceClient) -> tuple[dict, dict]:
    """Both servers' prefetch counters (``status``) once they have settled after a reply:
    P0 may answer a ``status`` while it counts the waiting requests, before it queues the
    next plan, and P1 queues it when P0's message reaches it (coordinator._prefetch_next,
    _follow_prefetch). So two readings 50 ms apart must agree, and the servers with them."""
    deadline = time.monotonic() + 5.0
    last = None
    while True:
        s0, s1 = client.status()
        now = (s0["prefetch"], s1["prefetch"])
        if (now == last and now[0]["queued"] == now[1]["queued"]) \
                or time.monotonic() > deadline:
            return now
        last = now
        time.sleep(0.05)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def gallery_openings(d: LocalDeployment) -> list[int]:
    """The model versions whose galleries P0 and P1 opened since this start (their logs)."""
    pattern = re.compile(r"P[01]: opened the gallery of model version (\d+)")
    return [int(v) for p in ("p0", "p1")
            for v in pattern.findall(d.logs[p].read_text().split("signal 15")[-1])]


# Trainings that identifications must queue behind: 30 one-batch epochs (about 0.6 s more
# than one epoch). With one epoch a training took 150-170 ms on a quiet host, so terminals
# started a fixed 0.1-0.2 s later could find the pair idle and never form a batch.
SLOW_TRAINING = {"epochs": 30, "batch_size": 16}


def wait_until_training(d: LocalDeployment, timeout: float = 30.0) -> None:
    """Return once P0 logs the first epoch of a new SLOW_TRAINING run (the rest follow)."""
    first = f"epoch 1/{SLOW_TRAINING['epochs']}:"  # progress.py's line after the first epoch
    seen = d.logs["p0"].read_text().count(first)
    deadline = time.monotonic() + timeout
    while d.logs["p0"].read_text().count(first) == seen:
        assert time.monotonic() < deadline, "the training did not start"
        time.sleep(0.01)
