"""Private 1:N identification benchmark: dealer, P0 and P1 as separate processes on loopback.

The gallery (random unit templates) is input once through the client protocol and opened
as W - B once; then each query sends a probe (half of them a noisy copy of an enrolled
template, half unknown), computes scores, argmax and threshold under MPC and returns
(index or -1, accept) to this process, which plays the edge. Prints one JSON object.

Each query's preprocessing is generated during that query; nothing is prepared between
queries. Queries alternate between two ways of fetching it:
  * on demand: each item when the protocol needs it. online_ms is measured here: the
    query's wall time at the edge minus the slower server's time waiting for the dealer,
    in the offer and in the identification (the dealer then does not compete with the
    servers for this host's two cores);
  * pipelined: when the query starts, the servers queue all of its requests (recorded on
    the first query: they depend on public sizes only), so the dealer works level by
    level ahead of the tournament, and the query before queued its offer's material, as
    the service prefetches a batch's checked inputs. total_ms, the query's full wall time
    with its preprocessing, is measured here.
Both modes' medians of both measures are printed too. --on-demand disables pipelining.

--rtt-ms R --mbit M runs the P0 <-> P1 link through a relay (benchmarks/wan_relay.py) that
holds each chunk for R/2 ms per direction and paces it to M Mbit/s, as a WAN between two
organisations would; the relay's own round trip, measured by a ping-pong through it, is
reported as relay_rtt_ms. The dealer and the edge stay on loopback.

--service [--terminals T] measures the path users run instead: the three daemons and the
edge client (benchmarks/bench_service.py), one terminal alone and T terminals at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_service
from benchmarks.wan_relay import WanRelay, measure_rtt
from splitface.servers.loopback_cluster import LoopbackCluster
from splitface.servers.recognition.identify import plaintext_identify
from splitface.servers.recognition.jobs import bench_names
from splitface.shared.fixedpoint import F
from splitface.shared.names import NAME_WORDS, decode_name


def unit(v: np.ndarray, axis: int = 0) -> np.ndarray:
    return v / np.linalg.norm(v, axis=axis, keepdims=True)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--gallery", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--on-demand", action="store_true",
                    help="fetch each preprocessing item when needed (no pipelining)")
    ap.add_argument("--rtt-ms", type=float, default=0.0,
                    help="added round trip on the P0-P1 link (a WAN), through a relay")
    ap.add_argument("--mbit", type=float, default=0.0,
                    help="rate of the P0-P1 link in Mbit/s (0: not limited)")
    ap.add_argument("--service", action="store_true",
                    help="through the daemons and the edge client (bench_service.py)")
    ap.add_argument("--terminals", type=int, default=8, help="with --service")
    ap.add_argument("--templates-only", action="store_true",
                    help="with --service: train.logistic = false (large galleries)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.service:
        return bench_service.main(["--gallery", str(args.gallery), "--terminals",
                                   str(args.terminals), "--queries", str(args.queries)]
                                  + (["--templates-only"] if args.templates_only else [])
                                  + (["--json"] if args.json else []))
    rng = np.random.default_rng(args.seed)  # benchmark data only, never key material
    w = unit(rng.normal(size=(args.dim, args.gallery)))
    wan = args.rtt_ms > 0 or args.mbit > 0
    stack = contextlib.ExitStack()

    def through_relay(port: int) -> str:
        return stack.enter_context(WanRelay(("127.0.0.1", port), args.rtt_ms, args.mbit)
                                   ).endpoint

    with stack, LoopbackCluster(through_relay if wan else None) as cluster:
        t0 = time.perf_counter()
        # dimension-major: the servers assemble W (dim x N) without a transpose
        cluster.input_chunks(w.ravel(), "splitface.servers.recognition.jobs:gallery_chunk")
        prep_s = cluster.run("splitface.servers.recognition.jobs:gallery_prepare",
                             {"dim": args.dim, "key": "bench"})[0]
        setup_s = time.perf_counter() - t0
        times: dict[str, dict[str, list[float]]] = {
            m: {"online": [], "total": []} for m in ("on_demand", "pipelined")}
        plain, nbytes, rounds, agree, unqueued = [], [], [], 0, 0
        for q in range(args.queries):
            # query 0 records the plan (and runs on demand); then odd on demand, even pipelined
            mode = "pipelined" if _pipelined(q, args) else "on_demand"
            if q % 2 == 0:
                probe = unit(w[:, rng.integers(args.gallery)] + rng.normal(size=args.dim) * 0.05)
            else:
                probe = unit(rng.normal(size=args.dim))
            t1 = time.perf_counter()
            req, r0, r1 = cluster.client_job("splitface.servers.recognition.jobs:identify_query",
                                             probe, NAME_WORDS, checked_probe=args.dim,
                                             dim=args.dim, threshold=args.threshold,
                                             pipeline=mode == "pipelined" or q == 0,
                                             prefetch_offer=_pipelined(q + 1, args))
            name = decode_name(req.result(r0["opened"], r1["opened"]))
            assert r0["ok"] == r1["ok"] == 1, "a unit probe failed the range check"
            dt = time.perf_counter() - t1
            times[mode]["total"].append(dt)
            times[mode]["online"].append(dt - max(r0["prep_seconds"], r1["prep_seconds"]))
            if mode == "pipelined":
                unqueued += r0["prep_misses"] + r1["prep_misses"]
            nbytes.append(r0["bytes"] + r1["bytes"])
            rounds.append(r0["rounds"])
            t2 = time.perf_counter()
            enc = np.rint(probe * 2**F) / 2**F
            ref_idx, _ = plaintext_identify(np.rint(w * 2**F) / 2**F, enc, args.threshold)
            plain.append(time.perf_counter() - t2)
            agree += int(name == (bench_names(args.gallery)[ref_idx] if ref_idx >= 0 else None))
        s0, s1 = cluster.stats()
    result = {
        "gallery": args.gallery, "dim": args.dim, "queries": args.queries,
        "online_ms_p50": _ms(times["on_demand"]["online"]),
        "total_ms_p50": _ms(times["pipelined"]["total"] or times["on_demand"]["total"]),
        "online_ms_p50_pipelined": _ms(times["pipelined"]["online"]),
        "total_ms_p50_on_demand": _ms(times["on_demand"]["total"]),
        "plaintext_ms_p50": 1e3 * float(np.median(plain)),
        "bytes_per_query": int(np.median(nbytes)),
        "rounds_per_query": int(np.median(rounds)),
        "agreement": agree / args.queries,
        "peak_rss_mb": round(max(s0["peak_rss_mb"], s1["peak_rss_mb"]), 1),
        "setup_s": round(setup_s, 2), "gallery_open_s": round(prep_s, 2),
        "security": "malicious (SPDZ2k MACs, k=64, s=64), dealer preprocessing",
        "pipelined_unqueued_requests": unqueued,  # 0: every pipelined item was queued
        "preprocessing": ("on demand" if args.on_demand else
                          "online: on demand; total: pipelined within each query"),
    }
    if wan:
        result.update({"rtt_ms": args.rtt_ms, "mbit": args.mbit,
                       **measure_rtt(args.rtt_ms, args.mbit)})
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return result


def _pipelined(q: int, args: argparse.Namespace) -> bool:
    """Query q's mode: 0 records the plan (on demand), then odd on demand, even pipelined."""
    return q % 2 == 0 and q > 0 and not args.on_demand


def _ms(seconds: list[float]) -> float | None:
    return 1e3 * float(np.median(seconds)) if seconds else None


if __name__ == "__main__":
    main()
