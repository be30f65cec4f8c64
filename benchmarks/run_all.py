"""``make bench``: run every benchmark and write benchmarks/RESULTS.md (machine and date).

Each benchmark runs as its own process and prints one JSON object; this script only
collects them. On target hardware (a Raspberry Pi) run ``make bench`` there: the edge
benchmark then measures the terminal (see firmware_notes/raspberry_pi.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAN = [
    ("identify", ["bench_identify.py", "--gallery", "100", "--queries", "20"]),
    ("identify", ["bench_identify.py", "--gallery", "1000", "--queries", "20"]),
    ("identify", ["bench_identify.py", "--gallery", "10000", "--queries", "10"]),
    ("identify", ["bench_identify.py", "--gallery", "100000", "--queries", "5"]),
    ("identify_wan", ["bench_identify.py", "--gallery", "100", "--queries", "10",
                      "--rtt-ms", "20", "--mbit", "100"]),
    ("identify_wan", ["bench_identify.py", "--gallery", "10000", "--queries", "6",
                      "--rtt-ms", "20", "--mbit", "100"]),
    ("service", ["bench_identify.py", "--service", "--gallery", "1000", "--terminals", "8",
                 "--queries", "10"]),
    ("service", ["bench_identify.py", "--service", "--gallery", "10000", "--terminals", "8",
                 "--queries", "5", "--templates-only"]),
    ("train", ["bench_train.py", "--identities", "10", "--per-identity", "100", "--epochs", "5"]),
    ("fss", ["bench_fss.py"]),
    ("channel", ["bench_channel.py"]),
    ("soak", ["bench_soak.py", "--aborts", "300", "--identities", "200", "--trainings", "6"]),
    ("edge", ["bench_edge.py"]),
    ("detect", ["bench_detect.py"]),
    ("card", ["bench_card.py"]),
    ("tap", ["bench_tap.py", "--taps", "10"]),
]
QUICK = {"100000": "10000"}
# Reference points measured by the team on this kind of machine (never dependencies).
REFERENCE = [
    "## Reference points (team measurements on this machine, same tasks)", "",
    "| task | MP-SPDZ semi-honest dealer | CrypTen | MP-SPDZ malicious SPDZ2k |",
    "|---|---|---|---|",
    "| identify N=10,000, D=128, total ms | 527 | 547 | — |",
    "| identify N=1,000, D=128, total ms | — | — | 50,000 |",
    "| train 1,000 x 128 x 10, 5 epochs, s | 9.9 | 10.4 | — |", ""]


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy as np

    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform()}


def calibrate() -> float:
    """Milliseconds for a fixed single-threaded numpy workload (GEMM and uint64 passes).

    Run before and after the benchmarks: on a shared host it says how loaded the machine
    was, so runs on different days can be compared by ratio.
    """
    import time

    import numpy as np

    from splitface.servers.mpc.threads import limit_blas_threads

    limit_blas_threads(1)
    a = np.arange(512 * 512, dtype=np.float64).reshape(512, 512) / 7.0
    u = np.arange(1 << 20, dtype=np.uint64)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(4):
            a @ a
            (u * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(7)
        times.append(time.perf_counter() - t0)
    return round(1e3 * float(np.median(times)), 1)


def run(args: list[str], timeout: int) -> dict | str:
    cmd = [sys.executable, str(HERE / args[0]), *args[1:], "--json"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout} s"
    if p.returncode != 0:
        return f"exit {p.returncode}: {p.stderr.strip().splitlines()[-1:] or ''}"
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else "no JSON printed"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="skip the N=100,000 gallery")
    ap.add_argument("--only", default="", help="comma-separated benchmark names")
    ap.add_argument("--timeout", type=int, default=1800)
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    results = []
    load = [calibrate()]
    for name, cmd in PLAN:
        if only and name not in only:
            continue
        if args.quick and any(c in QUICK for c in cmd):
            continue
        print(f"running {' '.join(cmd)} ...", flush=True)
        out = run(cmd, args.timeout)
        print(f"  -> {json.dumps(out)[:300]}", flush=True)
        results.append((name, cmd, out))
    load.append(calibrate())
    write_results(results, load)
    return 0


def targets(results: list[tuple[str, list[str], dict | str]]) -> list[str]:
    """The issues' targets next to what this run measured (met / not met)."""
    rows = []
    for name, _, r in results:
        if not isinstance(r, dict):
            continue
        if name == "identify" and r.get("gallery") == 10_000:
            rows += [("identify N=10,000 online ms", "<= 50", r["online_ms_p50"]),
                     ("identify N=10,000 total ms", "<= 100", r["total_ms_p50"]),
                     ("identify N=10,000 bytes/query", "<= 1,000,000", r["bytes_per_query"]),
                     ("identify N=10,000 rounds/query", "<= 24", r["rounds_per_query"]),
                     ("identify N=10,000 agreement", "1.0", r["agreement"])]
        if name == "identify" and r.get("gallery") == 100_000:
            rows += [("identify N=100,000 total ms", "<= 1500", r["total_ms_p50"]),
                     ("identify N=100,000 peak RSS MB (per server)", "< 2048",
                      r["peak_rss_mb"])]
        if name == "identify" and r.get("gallery") == 100:
            rows += [("identify N=100 online ms", "<= 5", r["online_ms_p50"]),
                     ("identify N=100 total ms", "<= 10", r["total_ms_p50"])]
        if name == "identify_wan":
            bound = {100: "<= 250", 10_000: "<= 600"}.get(r.get("gallery"))
            if bound:
                rows.append((f"identify N={r['gallery']:,}, WAN {r['rtt_ms']:.0f} ms RTT "
                             f"(relay measured {r['relay_rtt_ms']} ms), total ms", bound,
                             r["total_ms_p50"]))
        if name == "service" and "concurrent_per_s" in r:
            label, large = f"service N={r['gallery']:,}", r["gallery"] == 10_000
            if large:
                rows.append((f"{label}, one terminal, total ms", "<= 150",
                             r["single_total_ms_p50"]))
            rows += [(f"{label}, {r['terminals']} terminals, identifications/s",
                      ">= 10" if large else ">= 40", r["concurrent_per_s"]),
                     (f"{label}, {r['terminals']} terminals, p99 ms", "<= 1000",
                      r["concurrent_ms_p99"])]
            if not large:
                rows.append((f"{label}: server RSS growth over 3x the gallery share", "<= 1",
                             max(r["rss_mb"][p] - r["rss_start_mb"][p] for p in ("p0", "p1"))
                             / (3 * max(r["gallery_share_mb"], 1e-9))))
        if name == "train":
            rows.append(("training 1,000 x 128 x 10 x 5 epochs, s", "<= 2", r["train_s"]))
        if name == "fss":
            rows += [("numba DCF key generation, x over numpy", ">= 2", r["speedup_gen"]),
                     ("numba DCF evaluation, x over numpy", ">= 2", r["speedup_eval"]),
                     ("numba gallery product (one probe, N = 10,000), x over numpy", ">= 2",
                      r["speedup_gallery_probe"]),
                     ("numba gallery product (8 probes), x over numpy", ">= 2",
                      r["speedup_gallery_batch"])]
        if name == "soak":
            # A server's RSS after a training swings by ~25 MB from run to run (glibc hands
            # freed arenas back or not), so a leak shows as later peaks above earlier ones,
            # not as last minus first.
            rss = [max(s["rss_mb"]["p0"], s["rss_mb"]["p1"]) for s in r["after_training"]]
            half = len(rss) // 2
            rows += [("soak: dealer parts left pending after 300 aborted requests", "<= 4",
                      r["dealer_pending_max"]),
                     ("soak: server RSS, peak of the later trainings over the earlier, MB",
                      "<= 20", max(rss[half:]) - max(rss[:half] or rss))]
        if name == "edge" and "int8" in r:
            rows.append(("edge 640x480 detect+landmarks+align+embed ms (int8, full range)",
                         "<= 10", r["int8"]["total_ms_p50"]))
        if name == "detect" and "identification" in r:
            t = r["timing"]["threads_1"]["1280x720"]
            t2 = r["timing"].get("threads_2", {}).get("1280x720", {})
            rows += [("detect: recall on 31 hand-marked faces", "= 1.0",
                      r["recall"]["full_tiles"]["recall"]),
                     ("detect: false positives, face-free photos", "= 0",
                      r["recall"]["full_tiles"]["face_free_false_positives"]),
                     ("identification, eye distance >= 20 px", ">= 0.95",
                      r["identification"]["eye_px_20_or_more"]["accuracy"]),
                     ("1280x720 one face, ms (full range + tiles)", "<= 10",
                      t["full_tiles"]["total_ms_p50"]),
                     ("1280x720 one face, ms (full range, whole frame)", "<= 10",
                      t["full_whole"]["total_ms_p50"]),
                     ("1280x720 one face, ms (short range, whole frame)", "<= 10",
                      t["short_whole"]["total_ms_p50"])]
            rows += [(f"1280x720 one face, ms ({name.replace('_', ', ')}, 2 threads)", "<= 10",
                      v["total_ms_p50"]) for name, v in t2.items() if "total_ms_p50" in v]
    if not rows:
        return []

    def met(target: str, value: float) -> str:
        op, bound = target.split()[0], float(target.split()[-1].replace(",", ""))
        ok = {"<=": value <= bound, "<": value < bound, ">=": value >= bound}.get(
            op, value == bound)
        return "met" if ok else "not met"

    out = ["## Targets", "", "| target | bound | measured | |", "|---|---|---|---|"]
    for label, target, value in rows:
        bound = target if target.split()[0] in ("<=", "<", ">=", "=") else f"= {target}"
        shown = f"{value:.3f}" if abs(float(value)) < 2 else f"{value:,.1f}"  # ratios, counts
        out.append(f"| {label} | {target} | {shown} | {met(bound, float(value))} |")
    return [*out, ""]


def write_results(results: list[tuple[str, list[str], dict | str]], load: list[float]
                  ) -> None:
    m = machine()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Benchmark results", "",
             f"Written by `make bench` on {now}.", "",
             f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, "
             f"numpy {m['numpy']}; {m['platform']}.", "",
             "The machine is shared and noisy: compare ratios within one run, not across runs.",
             f"Host-load calibration (a fixed numpy workload, `run_all.calibrate`): "
             f"{load[0]} ms before, {load[-1]} ms after (lower: a quieter host). "
             "Earlier runs and what changed between them: `benchmarks/HISTORY.md`.", ""]
    ident = [r for n, _, r in results if n == "identify" and isinstance(r, dict)]
    if ident:
        lines += ["## Private identification (1:N), malicious security", "",
                  "| gallery N | dim | online ms p50 | total ms p50 | plaintext ms p50 | "
                  "bytes/query | rounds/query | agreement | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in ident:
            lines.append(f"| {r['gallery']:,} | {r['dim']} | {r['online_ms_p50']:.1f} | "
                         f"{r['total_ms_p50']:.1f} | {r['plaintext_ms_p50']:.2f} | "
                         f"{r['bytes_per_query']:,} | {r['rounds_per_query']} | "
                         f"{r['agreement']:.3f} | {r['peak_rss_mb']:.0f} |")
        lines += ["", "Each query's preprocessing is generated during that query. Online: "
                  "preprocessing fetched on demand, minus the time spent waiting for it. "
                  "Total: the query's wall time with its preprocessing pipelined (queued "
                  "when the query starts). Both modes' numbers are in the raw results.", ""]
    lines += targets(results)
    lines += REFERENCE
    lines += ["## Raw results", ""]
    for name, cmd, out in results:
        lines += [f"### {name}: `{' '.join(cmd)}`", "", "```json",
                  json.dumps(out, indent=2) if isinstance(out, dict) else str(out), "```", ""]
    (HERE / "RESULTS.md").write_text("\n".join(lines))
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    raise SystemExit(main())
