"""Explicit rounds: operations that each need one masked opening, run side by side.

An :class:`Opening` is the first half of an operation (its masked values, its dealer
material already fetched) and a ``finish`` that turns the opened values into its result
locally. ``run_round`` opens the masked values of several independent operations in ONE
exchange, so protocols can put, say, a tournament level and a probe check in the same
round (MP-SPDZ's prepare/exchange/finalize split; the style brief's "make rounds visible").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from splitface.servers.mpc.prep.base import AuthPair


@dataclass
class Opening:
    """Masked values to open and what to do with them once opened."""

    pairs: list[AuthPair]
    finish: Callable[[list[np.ndarray]], Any]


def run_round(party, openings: Sequence[Opening], sync: bytes | None = None) -> list[Any]:
    """Open every operation's masked values in one round; returns their results in order.
    ``sync`` rides along and must equal the peer's (e.g. a digest of the terminal's input)."""
    pairs = [p for o in openings for p in o.pairs]
    opened = party.open(*pairs, sync=sync) if pairs else []
    results, i = [], 0
    for o in openings:
        k = len(o.pairs)
        results.append(o.finish(opened[i:i + k]))
        i += k
    return results


class SideWork(Protocol):
    """Independent work whose openings ride on the rounds a protocol runs anyway (e.g. the
    probe check beside an identification)."""

    def openings(self) -> list[Opening]:
        """This round's openings ([] when done)."""


def drain(party, side: Sequence[SideWork], sync: bytes | None = None) -> None:
    """Run the side work's remaining openings in rounds of their own (``sync`` rides on
    the first)."""
    while True:
        extra = [o for w in side for o in w.openings()]
        if not extra:
            return
        run_round(party, extra, sync=sync)
        sync = None
