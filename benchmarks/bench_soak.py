"""Soak: aborted and abandoned requests against the real daemons, and repeated trainings.

Reports the dealer's uncollected parts (its ``stats``) and every daemon's resident memory
along the way: both must stay bounded under any request pattern (issue: the dealer used to
keep the parts of every aborted request until its cap, then refuse everything), and a
server's memory after training must come back to the level of its stored shares.

    python benchmarks/bench_soak.py [--aborts 300] [--identities 200] [--trainings 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from splitface.servers.deploy_local import LocalDeployment, free_base_port
from splitface.servers.mpc.prep.remote import DealerClient
from splitface.shared import keys, wire
from splitface.shared.wire import Message


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def snapshot(dep: LocalDeployment, dealer: DealerClient, settle_s: float = 3.0) -> dict:
    """Memory and the dealer's uncollected parts once the pair is idle. Both servers
    prefetch the next run's plan in dealer messages of several requests, so right after a
    request one of them may be a message ahead of the other for a moment; a part left
    behind for good is still there after ``settle_s``."""
    deadline = time.monotonic() + settle_s
    stats = dealer.stats()
    while stats.get("pending", 0) and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = dealer.stats()
    return {"rss_mb": dep.rss_mb(),
            "dealer_pending": stats.get("pending", 0),
            "dealer_pending_bytes": stats.get("pending_bytes", 0),
            "dealer_sessions": stats.get("sessions", 0)}


def dealer_client(dep: LocalDeployment, ctx: zmq.Context) -> DealerClient:
    kd = dep.root / "p0" / "keys"
    pub, sec = keys.load_secret_key(kd / "p0.key_secret")
    endpoint = f"tcp://127.0.0.1:{dep.base_port + 3}"
    return DealerClient(ctx, endpoint, party=0, public_key=pub, secret_key=sec,
                        dealer_key=keys.load_public_key(kd / "dealer.key"), timeout_s=10.0)


def abandon(dep: LocalDeployment, ctx: zmq.Context, k: int, how: str) -> None:
    """One request that never completes: an offer without submit, a malformed submit, or a
    client that leaves after its submit."""
    socks = dep.raw_sockets(ctx)
    req = f"soak-{how}-{k:08d}"
    for s in socks:
        s.send_multipart(wire.encode(Message("offer", {"req": req, "op": "identify",
                                                       "dim": 128})))
    if how != "abandon":
        replies = [wire.decode(s.recv_multipart()) if s.poll(5000) else None for s in socks]
        if all(r is not None and r.kind == "offer" for r in replies):
            bad = [np.zeros((2, 3), np.uint64)] if how == "malformed" else \
                [np.zeros((2, replies[0].meta["n"]), np.uint64)]
            for s in socks:
                s.send_multipart(wire.encode(Message("submit", {"req": req}, bad)))
    for s in socks:
        s.close(linger=0)


def run(aborts: int, identities: int, trainings: int) -> dict:
    rng = np.random.default_rng(5)  # benchmark data only
    out: dict = {"aborts": aborts, "identities": identities, "trainings": trainings}
    with tempfile.TemporaryDirectory() as tmp:
        dep = LocalDeployment.create(Path(tmp) / "dep", edges=1, base_port=free_base_port(),
                                     train={"epochs": 2, "batch_size": 64},
                                     # the soak abandons requests on purpose: a real terminal
                                     # doing so would be refused after 5 strikes an hour
                                     limits={"strikes_per_hour": 10000.0, "per_second": 1000.0,
                                             "burst": 1000.0})
        dep.start()
        ctx = zmq.Context()
        try:
            with dep.client(timeout=120.0) as c:
                dep.wait_ready(c)
                dealer = dealer_client(dep, ctx)
                out["start"] = snapshot(dep, dealer)
                centres = unit(rng.normal(size=(identities, 128)))
                t0 = time.perf_counter()
                for i, centre in enumerate(centres):
                    c.enroll(f"person-{i:05d}", unit(centre + rng.normal(size=128) * 0.05))
                out["enrol_s"] = round(time.perf_counter() - t0, 1)
                out["enrolled"] = snapshot(dep, dealer)
                runs = []
                for _ in range(trainings):
                    t0 = time.perf_counter()
                    c.admin("train")
                    train_s = time.perf_counter() - t0
                    time.sleep(2.0)  # the servers trim freed memory right after replying
                    runs.append({"train_s": round(train_s, 2),
                                 **snapshot(dep, dealer)})
                out["after_training"] = runs
                series = []
                hows = ("abandon", "malformed", "leave")
                for k in range(aborts):
                    abandon(dep, ctx, k, hows[k % 3])
                    if k % 10 == 9:
                        c.identify(centres[0])  # the pair still serves in between
                    if (k + 1) % max(1, aborts // 6) == 0:
                        series.append({"after": k + 1, **snapshot(dep, dealer)})
                out["aborts_series"] = series
                out["final_identify_ok"] = c.identify(centres[1]).identity == "person-00001"
            dealer.close()
        finally:
            ctx.destroy(linger=0)
            dep.stop()
    pend = [s["dealer_pending"] for s in out["aborts_series"]]
    out["dealer_pending_max"] = max(pend) if pend else 0
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aborts", type=int, default=300)
    ap.add_argument("--identities", type=int, default=200)
    ap.add_argument("--trainings", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = run(args.aborts, args.identities, args.trainings)
    print(json.dumps(res) if args.json else json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
