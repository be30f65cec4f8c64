"""Identification through the service users run: three daemons and the edge client.

The engine benchmark (bench_identify.py) runs worker jobs; this one enrols a gallery
through the real daemons (``LocalDeployment``: splitface-dealer, two splitface-server
processes, CurveZMQ, the stores), trains, and then identifies from the edge client:
first one terminal alone (latency), then ``--terminals`` terminals at once, each with its
own key (throughput, p50/p99). Half of the probes are noisy copies of enrolled faces, half
are strangers; agreement is against the plaintext answer. Each server's resident memory
is reported beside the size of its gallery share, and each daemon's CPU time per
identification under load (all three daemons and the terminals share this host's cores,
so throughput here is bounded by their sum; on separate machines, by the largest).

``--templates-only`` trains with ``train.logistic = false``: what a gallery of 10,000 or
more identities runs (the logistic model's work grows with identities x enrolments).

    python benchmarks/bench_service.py [--gallery 1000] [--terminals 8] [--queries 10]
                                       [--templates-only] [--json]
    (also: python benchmarks/bench_identify.py --service ...)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from splitface.servers.deploy_local import LocalDeployment, free_base_port

DIM = 128
THRESHOLD = 0.5


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _probes(rng: np.random.Generator, centres: np.ndarray, n: int
            ) -> list[tuple[np.ndarray, str | None]]:
    """(probe, expected name or None): even ones near an enrolled face, odd ones strangers."""
    out = []
    for k in range(n):
        if k % 2 == 0:
            i = int(rng.integers(len(centres)))
            out.append((unit(centres[i] + rng.normal(size=DIM) * 0.03), f"id-{i:06d}"))
        else:
            out.append((unit(rng.normal(size=DIM)), None))
    return out


def run(gallery: int, terminals: int, queries: int, logistic: bool = True) -> dict:
    rng = np.random.default_rng(3)  # benchmark data only
    centres = unit(rng.normal(size=(gallery, DIM)))
    out: dict = {"gallery": gallery, "dim": DIM, "terminals": terminals,
                 "queries_per_terminal": queries, "path": "daemons + edge client (CurveZMQ)"}
    with tempfile.TemporaryDirectory() as tmp:
        dep = LocalDeployment.create(
            Path(tmp) / "dep", edges=terminals, base_port=free_base_port(),
            threshold=THRESHOLD, train={"epochs": 1, "batch_size": 256, "learning_rate": 1.0,
                                        "logistic": "true" if logistic else "false"},
            limits={"per_second": 1000.0, "burst": 1000.0})
        dep.start()
        try:
            with dep.client("edge-1", timeout=900.0) as admin:
                dep.wait_ready(admin)
                out["rss_start_mb"] = dep.rss_mb()
                t0 = time.perf_counter()
                for i, c in enumerate(centres):
                    admin.enroll(f"id-{i:06d}", c)
                out["enrol_s"] = round(time.perf_counter() - t0, 1)
                t0 = time.perf_counter()
                out["models"] = admin.admin("train").details["models"]  # as the servers say
                out["train_s"] = round(time.perf_counter() - t0, 1)
                t0 = time.perf_counter()
                admin.identify(centres[0])  # the session opens its gallery once
                out["first_query_ms"] = round(1e3 * (time.perf_counter() - t0), 1)
                single, agree = [], 0
                probes = _probes(rng, centres, 2 * queries)
                for probe, want in probes:
                    t0 = time.perf_counter()
                    got = admin.identify(probe).identity
                    single.append(time.perf_counter() - t0)
                    agree += got == want
            out["single_total_ms_p50"] = round(1e3 * float(np.median(single)), 1)
            out["single_agreement"] = agree / len(probes)
            out.update(_concurrent(dep, rng, centres, terminals, queries))
            out["rss_mb"] = dep.rss_mb()
            # a gallery share: value and MAC, 16 bytes each, per element
            out["gallery_share_mb"] = round(gallery * DIM * 32 / 2**20, 1)
        finally:
            dep.stop()
    return out


def _concurrent(dep: LocalDeployment, rng: np.random.Generator, centres: np.ndarray,
                terminals: int, queries: int) -> dict:
    work = [_probes(rng, centres, queries) for _ in range(terminals)]
    lat: list[float] = []
    agree = [0]
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(terminals)

    def terminal(k: int) -> None:
        try:
            with dep.client(f"edge-{k + 1}", timeout=120.0) as c:
                start.wait()
                for probe, want in work[k]:
                    t0 = time.perf_counter()
                    got = c.identify(probe).identity
                    with lock:
                        lat.append(time.perf_counter() - t0)
                        agree[0] += got == want
        except Exception as exc:  # reported, not hidden
            with lock:
                errors.append(f"edge-{k + 1}: {exc}")

    threads = [threading.Thread(target=terminal, args=(k,)) for k in range(terminals)]
    cpu0 = dep.cpu_seconds()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = {n: c - cpu0[n] for n, c in dep.cpu_seconds().items()}
    ms = np.array(lat) * 1e3 if lat else np.zeros(1)
    return {"concurrent_per_s": round(len(lat) / wall, 1),
            "concurrent_ms_p50": round(float(np.median(ms)), 1),
            "concurrent_ms_p99": round(float(np.percentile(ms, 99)), 1),
            "concurrent_agreement": agree[0] / max(1, len(lat)),
            "concurrent_errors": errors[:5],
            # what one identification costs each daemon (all on this host's cores)
            "cpu_ms_per_identification": {n: round(1e3 * c / max(1, len(lat)), 1)
                                          for n, c in cpu.items()}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gallery", type=int, default=1000)
    ap.add_argument("--terminals", type=int, default=8)
    ap.add_argument("--queries", type=int, default=10, help="per terminal")
    ap.add_argument("--templates-only", action="store_true",
                    help="train.logistic = false (identification reads only the templates)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = run(args.gallery, args.terminals, args.queries, not args.templates_only)
    print(json.dumps(res) if args.json else json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
