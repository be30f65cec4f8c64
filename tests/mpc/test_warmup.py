"""Daemons load the compiled kernels at start (servers/mpc/warmup.py), so the first request
after a restart does not pay numba's load (0.6-1 s, ~60 MB). That only holds if the
warm-up calls each kernel with the argument types real requests use: another dtype or
layout is another specialization, loaded again by the first request."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from splitface.servers.loopback_cluster import LoopbackCluster
from splitface.servers.mpc import ring_kernels
from splitface.servers.mpc.fss import kernels

# every compiled kernel a daemon calls (the warm-up must load each of them)
KERNELS = {"matmul": ring_kernels._matmul, "relu_finish": kernels.relu_finish,
           **({"dcf_gen": kernels.dcf_gen, "dcf_eval": kernels.dcf_eval,
               "dpf_gen": kernels.dpf_gen, "dpf_one_hot": kernels.dpf_one_hot}
              if kernels.DCF else {})}

SCRIPT = """
import json
import numpy as np
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.warmup import load_compiled_kernels
from tests.mpc.test_identify import _run, unit
from tests.mpc.test_warmup import KERNELS

def signatures():
    return {name: [str(s) for s in fn.signatures] for name, fn in KERNELS.items()}

load_compiled_kernels()
warm = signatures()
rng = np.random.default_rng(5)  # test data only
templates = unit(rng.normal(size=(3, 16)))
_run(DealerCore(), templates, templates[1], 0.5, ["a", "b", "c"])
print(json.dumps({"warm": warm, "after": signatures()}))
"""


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")
def test_the_warm_up_loads_the_specializations_an_identification_uses():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=300, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["after"] == got["warm"]
    assert all(len(sigs) == 1 for sigs in got["warm"].values()), got["warm"]


def loaded_kernels(party, state) -> dict[str, int]:
    """Worker job: how many specializations of each kernel this process holds."""
    return {name: len(fn.signatures) for name, fn in KERNELS.items()}


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")
def test_engine_workers_load_the_kernels_before_their_first_job():
    """The engine benchmark's workers hold what the daemons hold: before this, the first
    timed job (a whole training in bench_train.py) paid the load, 0.5 s of 1.5 s."""
    with LoopbackCluster() as cluster:
        for loaded in cluster.run("tests.mpc.test_warmup:loaded_kernels"):
            assert all(n >= 1 for n in loaded.values()), loaded
