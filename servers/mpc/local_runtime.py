"""Run a two-party computation in one process: two threads, a LocalChannel pair, one dealer.

Used by tests, the training benchmark's in-process mode and debugging. The parties still
exchange every message through the wire format, and each thread sees only its own shares.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from splitface.servers.mpc.party import Party
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.prep.local import local_pair as local_prep_pair
from splitface.servers.mpc.prep.prefetch import PrefetchingPreprocessing
from splitface.servers.mpc.threads import limit_blas_threads
from splitface.shared.transport.local import local_pair


def make_parties(core: DealerCore | None = None, *, prefetch: bool = False
                 ) -> tuple[Party, Party]:
    """Two connected parties sharing one in-process dealer (BLAS limited to one thread)."""
    limit_blas_threads(1)
    core = core or DealerCore()
    c0, c1 = local_pair()
    preps = list(local_prep_pair(core))
    if prefetch:
        preps = [PrefetchingPreprocessing(p) for p in preps]
    return Party(0, c0, preps[0]), Party(1, c1, preps[1])


def run_pair(fn: Callable[..., Any], parties: tuple[Party, Party], *args_per_party: Any,
             timeout: float = 300.0) -> tuple[Any, Any]:
    """Call ``fn(party, arg)`` for both parties concurrently; re-raise the first error.

    ``args_per_party`` holds one tuple (arg for P0, arg for P1) per positional argument.
    """
    results: list[Any] = [None, None]
    errors: list[BaseException | None] = [None, None]

    def target(i: int) -> None:
        try:
            results[i] = fn(parties[i], *[a[i] for a in args_per_party])
        except BaseException as exc:
            errors[i] = exc
            parties[i].channel.close()

    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        if t.is_alive():
            raise TimeoutError("two-party computation did not finish in time")
    for e in errors:
        if e is not None:
            raise e
    return results[0], results[1]
