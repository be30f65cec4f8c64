"""Worker jobs for identification over the loopback cluster (engine benchmark and tests)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from splitface.servers.mpc import client_io, client_jobs
from splitface.servers.mpc.party import Party
from splitface.servers.mpc.prep.material import Request
from splitface.servers.mpc.prep.prefetch import PrefetchingPreprocessing
from splitface.servers.mpc.probe_check import accept_checked_probe
from splitface.servers.mpc.rounds import run_round
from splitface.servers.mpc.share import AuthShare, concat
from splitface.servers.recognition.identify import Gallery, NameTable, identify
from splitface.shared.fixedpoint import F


def gallery_chunk(party: Party, state: dict[str, Any], masked: np.ndarray, n: int) -> None:
    """Accept one chunk of template values, dimension-major (row d holds every identity)."""
    x, _ = client_jobs.take_input(party, state, masked, n)
    state.setdefault("chunks", []).append(x)


def gallery_prepare(party: Party, state: dict[str, Any], dim: int, key: str) -> float:
    """Assemble the (dim x N) templates chunk by chunk, open W - B once and check it.

    Chunks are copied into one preallocated array and dropped as they go, and W - B is
    formed in place, so the peak is about two gallery-sized arrays (2 GiB budget at N=10^5).
    """
    t0 = time.perf_counter()
    chunks = state.pop("chunks")
    total = sum(c.size for c in chunks)
    val = np.empty((2, total), dtype=np.uint64)
    mac = np.empty((2, total), dtype=np.uint64)
    start = 0
    while chunks:
        c = chunks.pop(0)
        val[:, start:start + c.size], mac[:, start:start + c.size] = c.val, c.mac
        start += c.size
        del c
    w = AuthShare(party, val.reshape(2, dim, total // dim), mac.reshape(2, dim, total // dim), F)
    del val, mac
    state["gallery"] = Gallery(w, party.fresh_key(key), consume=True)
    state["names"] = NameTable(bench_names(state["gallery"].size))
    del w
    party.check()
    return time.perf_counter() - t0


def bench_names(n: int) -> list[str]:
    """The names benchmark galleries use: identity j is "id-j"."""
    return [f"id-{j}" for j in range(n)]


def identify_query(party: Party, state: dict[str, Any], masked: np.ndarray, dim: int,
                   threshold: float, pipeline: bool = False, prefetch_offer: bool = False
                   ) -> dict[str, Any]:
    """One identification as the service runs it: probe in (range-checked), the matched
    name's words out to the client (or nothing), with its costs.

    ``pipeline``: at the start of the query, queue every preprocessing request it will
    make (recorded on the first query: they depend on public sizes only), so the dealer
    generates this query's material level by level while the parties compute.
    ``prefetch_offer``: at its end, queue the next offer's material, as the service
    prefetches a batch's checked inputs with its plan (servers/service/plans.py).
    ``prep_seconds`` includes the offer job's wait for the dealer.
    """
    t0, prep0 = time.perf_counter(), party.prep.seconds - state.pop("offer_prep_seconds", 0.0)
    b0, r0 = party.channel.stats.bytes_sent, party.channel.stats.rounds
    prep = party.prep
    misses0 = getattr(prep, "misses", 0)
    pipeline = pipeline and isinstance(prep, PrefetchingPreprocessing)
    plan = state.get("identify_plan") if pipeline else None
    if pipeline:
        if plan is None:
            prep.record()
        else:
            prep.expect(plan)
    checked = state.pop("offer_checked")
    got = accept_checked_probe(party, checked, masked, dim)
    out = identify(state["gallery"], got.probe, threshold, state["names"], [got.check],
                   got.digest)
    opened, ok = run_round(party, [client_io.output_opening(party, out, got.masks),
                                   client_io.bit_opening(party, got.check.ok)])
    party.check()
    if pipeline and plan is None:
        state["identify_plan"] = prep.stop_recording()
    if prefetch_offer and isinstance(prep, PrefetchingPreprocessing):
        prep.expect([Request("checked_input", state["offer_size"])])
    return {"opened": opened, "ok": ok, "seconds": time.perf_counter() - t0,
            "prep_seconds": party.prep.seconds - prep0,
            "prep_misses": getattr(prep, "misses", 0) - misses0,
            "bytes": party.channel.stats.bytes_sent - b0,
            "rounds": party.channel.stats.rounds - r0}


def train_run(party: Party, state: dict[str, Any], dim: int, labels: list[int], classes: int,
              epochs: int, batch_size: int, learning_rate: float,
              reveal_for_evaluation: bool = False) -> dict[str, Any]:
    """Train templates and the logistic model on the accepted chunks (benchmarks and tests).

    ``reveal_for_evaluation`` opens the trained weights to both servers so a benchmark
    can score a held-out split; the product never does this.
    """
    from splitface.servers.recognition import training

    flat = concat(state.pop("chunks"))
    x = flat.reshape(flat.size // dim, dim)
    lab = np.asarray(labels, dtype=np.int64)
    opts = training.SgdOptions(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate)
    t0, b0, r0 = time.perf_counter(), party.channel.stats.bytes_sent, party.channel.stats.rounds
    prep0 = party.prep.seconds
    model = training.train_logistic(x, lab, classes, opts)
    party.check()
    train_s = time.perf_counter() - t0
    out: dict[str, Any] = {"train_s": train_s, "bytes": party.channel.stats.bytes_sent - b0,
                           "rounds": party.channel.stats.rounds - r0,
                           "prep_s": party.prep.seconds - prep0}
    t1 = time.perf_counter()
    templates = training.train_templates(x, lab, classes)
    party.check()
    out["templates_s"] = time.perf_counter() - t1
    if reveal_for_evaluation:
        out["w"], out["b"] = model.w.reveal_float(), model.b.reveal_float()
        out["templates"] = templates.reveal_float()
    return out
