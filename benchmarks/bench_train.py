"""Secure training benchmark: one-vs-rest logistic regression by SGD on shares.

Synthetic enrolments (unit-norm Gaussian clusters, one per identity) are input through
the client protocol; dealer, P0 and P1 run as processes on loopback. The trained
weights are opened *for evaluation only* and scored on a held-out split next to the
same SGD run in float64. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from splitface.servers.loopback_cluster import LoopbackCluster
from splitface.servers.recognition import training


def clusters(identities: int, per: int, dim: int, spread: float, seed: int):
    rng = np.random.default_rng(seed)  # synthetic benchmark data, not key material
    centres = rng.normal(size=(identities, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(identities), per)
    x = centres[labels] + rng.normal(size=(labels.size, dim)) * spread
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--identities", type=int, default=10)
    ap.add_argument("--per-identity", type=int, default=100)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1.0)
    ap.add_argument("--spread", type=float, default=0.12,
                    help="per-coordinate noise around each identity's centre")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    x, y = clusters(args.identities, args.per_identity, args.dim, args.spread, args.seed)
    xt, yt = _held_out(args, x.shape[1])
    opts = training.SgdOptions(args.epochs, args.batch, args.lr)
    t0 = time.perf_counter()
    wp, bp = training.train_logistic_plain(x, y, args.identities, opts)
    plain_s = time.perf_counter() - t0
    with LoopbackCluster() as cluster:
        cluster.input_chunks(x, "splitface.servers.recognition.jobs:gallery_chunk")
        r0, r1 = cluster.run("splitface.servers.recognition.jobs:train_run", {
            "dim": args.dim, "labels": y.tolist(), "classes": args.identities,
            "epochs": args.epochs, "batch_size": args.batch, "learning_rate": args.lr,
            "reveal_for_evaluation": True})
    acc_mpc = float(np.mean(np.argmax(xt @ r0["w"] + r0["b"], 1) == yt))
    acc_plain = float(np.mean(np.argmax(xt @ wp + bp, 1) == yt))
    result = {
        "samples": int(y.size), "identities": args.identities, "dim": args.dim,
        "epochs": args.epochs, "batch": args.batch,
        "train_s": round(max(r0["train_s"], r1["train_s"]), 3),
        "plaintext_s": round(plain_s, 4),
        "templates_s": round(max(r0["templates_s"], r1["templates_s"]), 3),
        "accuracy_mpc": acc_mpc, "accuracy_plain": acc_plain,
        "max_weight_diff": float(np.abs(r0["w"] - wp).max()),
        "bytes": int(r0["bytes"] + r1["bytes"]), "rounds": int(r0["rounds"]),
        "prep_wait_s": round(max(r0["prep_s"], r1["prep_s"]), 3),
        "security": "malicious (SPDZ2k MACs, k=64, s=64), dealer preprocessing",
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return result


def _held_out(args: argparse.Namespace, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A held-out split around the same identity centres (different noise draws)."""
    rng = np.random.default_rng(args.seed)
    centres = rng.normal(size=(args.identities, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise_rng = np.random.default_rng(args.seed + 1000)
    labels = np.repeat(np.arange(args.identities), max(2, args.per_identity // 4))
    x = centres[labels] + noise_rng.normal(size=(labels.size, dim)) * args.spread
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


if __name__ == "__main__":
    main()
