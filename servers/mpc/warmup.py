"""Load the compiled kernels when a daemon starts, not in its first request.

numba loads each kernel from its disk cache on first call, and the first one also starts
LLVM: 0.6-1 s and about 60 MB resident, paid by whichever request came first after a
restart (an enrolment, or the first identification of a session). Calling every kernel
once on a few elements at start moves that cost before the daemon reports ready.
"""

from __future__ import annotations

import time

import numpy as np

from splitface.servers.mpc import ring_kernels
from splitface.servers.mpc.fss import dcf, dpf, kernels


def load_compiled_kernels(evaluate: bool = True) -> float:
    """Run every kernel a daemon uses once; returns the seconds it took (0 without numba).

    The dealer only generates keys (``evaluate=False``); the servers evaluate them and
    take ring products. The inputs have the dtypes and layouts real calls use, so the
    signatures loaded are the ones requests need (one per kernel)."""
    if not kernels.AVAILABLE:
        return 0.0
    t0 = time.perf_counter()
    if kernels.DCF:  # AES-NI here: the DCF runs compiled too
        k, n, p = 2, 4, 1
        roots = np.arange(2 * k * 2, dtype=np.uint64).reshape(2, k, 2)
        alpha = np.array([3, 9], dtype=np.uint64)
        beta = np.ones((2, k, p), dtype=np.uint64)
        keys = dcf.gen(alpha, beta, n, roots)
        points = dpf.gen(alpha, np.ones((2, k, 2), dtype=np.uint64), n, roots)
        if evaluate:
            x = np.array([[1, 4], [8, 15]], dtype=np.uint64)
            val, mac = np.empty((2, k, 1 << n), np.uint64), np.empty((2, k, 1 << n), np.uint64)
            for party in (0, 1):
                dcf.eval_dcf(party, n, keys.roots[party], keys.cw_s, keys.cw_t, keys.cw_v,
                             keys.cw_out, x)
                kernels.dpf_one_hot(party, n, points.roots[party], *points.corrections(),
                                    dpf.ROUND_KEYS, alpha, val, mac)
    if evaluate:
        a = np.ones((2, 2, 3), dtype=np.uint64)
        ring_kernels.matmul(a, np.ones((2, 3, 2), dtype=np.uint64))
        c = np.ones((2, 2), dtype=np.uint64)
        kernels.relu_finish(0, c[:, 0].copy(), *[c] * 7, np.ones((2, 2, 4), np.uint64), 0, 4,
                            np.empty_like(c), np.empty_like(c))
    return time.perf_counter() - t0
