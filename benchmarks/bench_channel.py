"""The peer channel's own round-trip time: ping-pong through the real CurveZMQ link.

P0's ROUTER and P1's DEALER (``ZmqChannel``, CURVE keys, ZAP allow-list, the wire codec)
in one process on loopback; P0 echoes every message from a thread, P1 times the
exchanges (P1's DEALER queues until the link is up; P0's ROUTER can only answer). A
protocol round is one such exchange plus local work, so this tells rounds and local work
apart: an
identification with R rounds cannot take less than R times the round trip printed here.

    python benchmarks/bench_channel.py [--rounds 500] [--json]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time

import numpy as np
import zmq

from splitface.shared.transport.zap import start_authenticator
from splitface.shared.transport.zmq_channel import ZmqChannel
from splitface.shared.wire import Message

SIZES = (0, 16 * 16, 16 * 1024, 16 * 64 * 1024)  # bytes of uint64 payload per message


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(rounds: int) -> dict:
    ctx = zmq.Context()
    p0_pub, p0_sec = zmq.curve_keypair()
    p1_pub, p1_sec = zmq.curve_keypair()
    auth = start_authenticator(ctx, {"peer": [p1_pub]})
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    p0 = ZmqChannel.bind(ctx, endpoint, public_key=p0_pub, secret_key=p0_sec,
                         default_timeout=10.0)
    p1 = ZmqChannel.connect(ctx, endpoint, public_key=p1_pub, secret_key=p1_sec,
                            server_key=p0_pub, default_timeout=10.0)
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            try:
                msg = p0.recv(None, timeout=0.2)
            except Exception:  # timeout while idle, or the channel closing at the end
                continue
            p0.send(msg)

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    out: dict = {"rounds": rounds}
    try:
        p1.send(Message("ping", {}, [np.zeros(1, np.uint64)]))  # connect and warm
        p1.recv("ping", timeout=10.0)
        for size in SIZES:
            arrays = [np.zeros(size // 8, np.uint64)] if size else []
            times = []
            for _ in range(rounds if size < 1 << 20 else max(10, rounds // 20)):
                t0 = time.perf_counter()
                p1.send(Message("ping", {"n": size}, arrays))
                p1.recv("ping", timeout=10.0)
                times.append(time.perf_counter() - t0)
            ms = np.array(times) * 1e3
            out[f"rtt_ms_{size}B"] = {"p50": round(float(np.median(ms)), 3),
                                     "p99": round(float(np.percentile(ms, 99)), 3)}
    finally:
        stop.set()
        t.join(2)
        p0.close()
        p1.close()
        auth.stop()
        ctx.destroy(linger=0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=500)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = measure(args.rounds)
    print(json.dumps(res) if args.json else json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
