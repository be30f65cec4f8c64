"""Keep BLAS single-threaded in MPC processes.

Each party is one process; on a small host the two servers and the dealer share the
cores, and OpenBLAS's own thread pool then oversubscribes them (measured here: 2.4x
slower training). Deployments with spare cores can raise ``threads``.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def limit_blas_threads(threads: int = 1) -> None:
    """Cap BLAS/OpenMP pools for the rest of this process."""
    threadpool_limits(limits=threads)
