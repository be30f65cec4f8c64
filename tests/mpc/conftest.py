"""Fixtures for engine tests: in-process parties and a real loopback cluster."""

from __future__ import annotations

import pytest

from splitface.servers.loopback_cluster import LoopbackCluster
from splitface.servers.mpc.local_runtime import make_parties
from splitface.servers.mpc.prep.dealer import DealerCore


@pytest.fixture
def core() -> DealerCore:
    return DealerCore()


@pytest.fixture
def parties(core):
    p = make_parties(core)
    yield p
    for party in p:
        party.channel.close()


@pytest.fixture(scope="session")
def cluster():
    with LoopbackCluster() as c:
        yield c
