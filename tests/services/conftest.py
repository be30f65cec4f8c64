"""A real deployment (dealer, P0, P1 daemons) on loopback, shared by the service tests."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from splitface.edge.client import ClientOptions, ServerEndpoint, SplitfaceClient
from splitface.servers.deploy_local import LocalDeployment


def free_base_port(span: int = 12) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + span < 65000 and all(_free(base + i) for i in range(span)):
            return base
    raise RuntimeError("no free port range")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def client_for(dep: LocalDeployment, name: str = "edge-1", timeout: float = 20.0,
               retries: int = 0) -> SplitfaceClient:
    pub, sec, k0, k1 = dep.edge_keys(name)
    e0, e1 = dep.endpoints()
    return SplitfaceClient(ClientOptions((ServerEndpoint(e0, k0), ServerEndpoint(e1, k1)), pub,
                                         sec, timeout_s=timeout, retries=retries))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy") / "dep"
    dep = LocalDeployment.create(root, edges=2, base_port=free_base_port(),
                                 train={"epochs": 5, "batch_size": 32, "learning_rate": 1.0})
    dep.start()
    with client_for(dep) as c:
        dep.wait_ready(c)
    yield dep
    codes = dep.stop()
    assert codes == {"dealer": 0, "p0": 0, "p1": 0}, codes


@pytest.fixture
def client(deployment):
    with client_for(deployment) as c:
        yield c


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)
