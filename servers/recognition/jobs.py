"""Worker jobs for identification over the loopback cluster (engine benchmark and tests)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from splitface.servers.mpc import client_jobs
from splitface.servers.mpc.party import Party
from splitface.servers.mpc.share import concat
from splitface.servers.recognition.identify import Gallery, identify


def gallery_chunk(party: Party, state: dict[str, Any], masked: np.ndarray, n: int) -> None:
    """Accept one chunk of template values (column-major: identity after identity)."""
    x, _ = client_jobs.take_input(party, state, masked, n)
    state.setdefault("chunks", []).append(x)


def gallery_prepare(party: Party, state: dict[str, Any], dim: int, key: str) -> float:
    """Assemble the templates, open W - B once and check it; returns seconds taken."""
    t0 = time.perf_counter()
    flat = concat(state.pop("chunks"))
    w = flat.reshape(flat.size // dim, dim).T
    state["gallery"] = Gallery(w, key)
    party.check()
    return time.perf_counter() - t0


def identify_query(party: Party, state: dict[str, Any], masked: np.ndarray, dim: int,
                   threshold: float) -> dict[str, Any]:
    """One identification: probe in, (index or -1, accept) out to the client, with costs."""
    t0, prep0 = time.perf_counter(), party.prep.seconds
    b0, r0 = party.channel.stats.bytes_sent, party.channel.stats.rounds
    probe, masks = client_jobs.take_input(party, state, masked, dim)
    out = identify(state["gallery"], probe, threshold)
    opened = client_jobs.deliver(party, out, masks)
    return {"opened": opened, "frac": out.frac, "seconds": time.perf_counter() - t0,
            "prep_seconds": party.prep.seconds - prep0,
            "bytes": party.channel.stats.bytes_sent - b0,
            "rounds": party.channel.stats.rounds - r0}
