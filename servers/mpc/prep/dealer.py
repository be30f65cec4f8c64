"""The dealer's state machine: generates each request once and hands each party its part.

Both parties issue the same sequence of requests (the protocol is deterministic given
public data), each numbered by a per-session sequence counter. The first party to ask
for number ``seq`` triggers generation; the other party's part waits until it is
collected. A mismatch between the two parties' requests is a protocol error.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.prep import material
from splitface.servers.mpc.prep.material import FixedMasks, Request
from splitface.shared import ring
from splitface.shared.fixedpoint import S
from splitface.shared.prg import Prg, fresh_seed

MAX_PENDING = 4096


@dataclass
class Part:
    """One party's part of a request: a seed (party 0) or explicit arrays (party 1)."""

    seed: bytes | None
    arrays: list[np.ndarray]


class DealerCore:
    """Holds the global MAC key alpha and generates authenticated correlated randomness."""

    def __init__(self, alpha: int | None = None, *, rng: Prg | None = None) -> None:
        self._rng = rng or Prg()
        if alpha is None:
            alpha = int.from_bytes(self._rng.bytes(S // 8), "little")
        if not 0 <= alpha < 1 << S:
            raise ValueError("MAC key must lie in [0, 2^S)")
        self._alpha = ring.from_pyint(alpha)
        share0 = self._rng.ring(())
        self._alpha_shares = (share0, ring.sub(self._alpha, share0))
        self._fixed = FixedMasks()
        self._pending: dict[tuple[str, int], tuple[Request, Part]] = {}
        self._lock = threading.Lock()

    def mac_key_share(self, party: int) -> np.ndarray:
        """Party ``party``'s additive share of alpha."""
        return self._alpha_shares[party].copy()

    def produce(self, req: Request) -> tuple[Part, Part]:
        """Generate a request and split it into the two parties' parts."""
        values = material.generate(req, self._rng, self._fixed)
        seed = fresh_seed()
        p0 = material.expand_p0(req, seed)
        return Part(seed, []), Part(None, material.split_for_p1(values, p0, self._alpha))

    def serve(self, session: str, party: int, seq: int, req: Request) -> Part:
        """Return ``party``'s part of request number ``seq`` of ``session``."""
        if party not in (0, 1):
            raise ProtocolError(f"unknown party {party}")
        key = (session, seq)
        with self._lock:
            waiting = self._pending.pop(key, None)
            if waiting is not None:
                other_req, part = waiting
                if other_req != req:
                    raise ProtocolError(f"parties disagree on preprocessing request {seq}: "
                                        f"{other_req.kind} vs {req.kind}")
                return part
            if len(self._pending) >= MAX_PENDING:
                raise ProtocolError("too many uncollected preprocessing parts")
            parts = self.produce(req)
            self._pending[key] = (req, parts[1 - party])
            return parts[party]

    def forget_session(self, session: str) -> None:
        """Drop uncollected parts of a session (after an abort)."""
        with self._lock:
            for key in [k for k in self._pending if k[0] == session]:
                del self._pending[key]
