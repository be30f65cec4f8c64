"""The numba kernels against their numpy references (A/B): DCF keys and the gallery product.

The dealer generates, and each server evaluates, one DCF key per comparison; an
identification over N = 10,000 identities needs about N keys on 16 bits with 4 outputs.
Each identification also multiplies the probe's rows by the 128 x N gallery mod 2^128
(servers/mpc/ring_kernels.py against ring.matmul), one probe (2 rows) or a batch of 8 (16).
Runs both implementations alternately in the same minutes and reports the ratios, which
are the condition for numba being a dependency at all (>= 2x).

    python benchmarks/bench_fss.py [--keys 10000] [--bits 28] [--width 4] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from splitface.servers.mpc import ring_kernels
from splitface.servers.mpc.fss import dcf, kernels
from splitface.shared import ring


def _rand(shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    return np.frombuffer(os.urandom(8 * n), dtype=np.uint64).reshape(shape).copy()


def run(keys: int, bits: int, width: int, repeat: int) -> dict:
    if not kernels.DCF:
        raise SystemExit("numba is not installed or this processor lacks AES-NI: nothing "
                         "to compare")
    alpha = _rand((keys,)) >> np.uint64(64 - bits)
    beta, roots = _rand((2, keys, width)), _rand((2, keys, 2))
    x = _rand((keys, 1)) >> np.uint64(64 - bits)
    dcf.gen(alpha[:8], beta[:, :8], bits, roots[:, :8], compiled=True)  # compile once
    times: dict[str, list[float]] = {k: [] for k in
                                     ("gen_numba", "gen_numpy", "eval_numba", "eval_numpy")}
    for _ in range(repeat):
        for compiled, tag in ((True, "numba"), (False, "numpy")):
            t0 = time.perf_counter()
            k = dcf.gen(alpha, beta, bits, roots, compiled=compiled)
            times[f"gen_{tag}"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            dcf.eval_dcf(0, bits, roots[0], k.cw_s, k.cw_t, k.cw_v, k.cw_out, x,
                         compiled=compiled)
            times[f"eval_{tag}"].append(time.perf_counter() - t0)
    # the reference at its best: the gallery's float64 limb split made once, not per query
    gallery = _rand((2, 128, keys))
    split = ring.stack_limbs(gallery)
    ring_kernels.matmul(_rand((2, 5, 128)), gallery[:, :, :8])  # compile once
    for rows in (2, 16):
        probe = _rand((2, rows, 128))
        times[f"gallery{rows}_numba"], times[f"gallery{rows}_numpy"] = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            ring_kernels.matmul(probe, gallery, compiled=True)
            times[f"gallery{rows}_numba"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ring.matmul_limbs(probe, split)
            times[f"gallery{rows}_numpy"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {"keys": keys, "bits": bits, "width": width, "repeat": repeat,
            "ms": {k: round(v, 1) for k, v in med.items()},
            "speedup_gen": round(med["gen_numpy"] / med["gen_numba"], 2),
            "speedup_eval": round(med["eval_numpy"] / med["eval_numba"], 2),
            "speedup_gallery_probe": round(med["gallery2_numpy"] / med["gallery2_numba"], 2),
            "speedup_gallery_batch": round(med["gallery16_numpy"] / med["gallery16_numba"],
                                           2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--bits", type=int, default=16)
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = run(args.keys, args.bits, args.width, args.repeat)
    if args.json:
        print(json.dumps(res))
    else:
        ms = res["ms"]
        print(f"DCF {res['keys']} keys, {res['bits']} bits, {res['width']} outputs: "
              f"gen {ms['gen_numba']} ms (numba) vs {ms['gen_numpy']} ms (numpy) = "
              f"{res['speedup_gen']}x; eval {ms['eval_numba']} vs {ms['eval_numpy']} ms = "
              f"{res['speedup_eval']}x; gallery product {ms['gallery2_numba']} vs "
              f"{ms['gallery2_numpy']} ms = {res['speedup_gallery_probe']}x (one probe), "
              f"{ms['gallery16_numba']} vs {ms['gallery16_numpy']} ms = "
              f"{res['speedup_gallery_batch']}x (8 probes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
