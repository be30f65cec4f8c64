"""The test process as the edge: inputs via the client protocol, outputs unmasked here."""

from __future__ import annotations

from typing import Any

import numpy as np

from splitface.servers.loopback_cluster import LoopbackCluster


def run_job(cluster: LoopbackCluster, job: str, inputs: list[np.ndarray], n_out: int,
            **kwargs: Any) -> tuple[np.ndarray, int] | None:
    """Send ``inputs`` (reals) through the client protocol and run ``job`` on both servers."""
    flat = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in inputs]) \
        if inputs else np.zeros(0)
    req, r0, r1 = cluster.client_job(job, flat, n_out, **kwargs)
    if r0 is None:
        return None
    (v0, frac), (v1, _) = r0, r1
    return req.result(v0, v1), frac


def mpc_op(cluster: LoopbackCluster, op: str, *arrays: np.ndarray, public: list | None = None,
           out_shape: tuple[int, ...]) -> np.ndarray:
    """Evaluate OPS[op] on secret inputs over the real two-process engine; return floats."""
    n_out = int(np.prod(out_shape, dtype=np.int64))
    res = run_job(cluster, "tests.mpc.jobs:compute", list(arrays), n_out,
                  shapes=[list(np.shape(a)) for a in arrays], op=op, public=public)
    assert res is not None
    vals, frac = res
    return (vals.astype(np.float64) / float(1 << frac)).reshape(out_shape)
