"""Tap -> challenge -> signature -> server check latency through the real pcscd (loopback).

Starts its own pcscd with the vpcd driver (tests/card/pcscd.py), taps a virtual P-256
card (tests/card/virtual_card.py) ``--taps`` times, and prints one JSON object with
median / p95 per stage in milliseconds:

* ``detect``   card put down -> pcscd reports it (bounded by pcscd's 400 ms poll)
* ``read``     SCardConnect + SELECT + READ BINARY id + key
* ``nonces``   both servers issue a nonce
* ``sign``     INTERNAL AUTHENTICATE (+ edge-side signature check)
* ``check``    both servers' verify_card_authorization
* ``tap_to_verified`` read + nonces + sign + check (what a person waits after detection)
* ``apdu_rtt`` one SELECT round trip; with ``--no-quickack`` to show the delayed-ACK cost
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from splitface.edge.card import (
    CardTerminal,
    CommandAPDU,
    ConnectionOptions,
    ReaderFilter,
    ReaderMonitor,
    TerminalOptions,
)
from splitface.servers.cards import CardRegistry, NonceStore
from splitface.shared.card_binding import RequestKind, payload_digest
from tests.card.flow import Server, check_all
from tests.card.pcscd import start_pcscd
from tests.card.virtual_card import VirtualCardApplet, VpcdCard


def _stats(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(p95, 3),
        "min_ms": round(ms[0], 3),
    }


def run(taps: int, pin: bool, quickack: bool, apdus: int) -> dict:
    base = Path(tempfile.mkdtemp(prefix="bench-card-"))
    daemon = start_pcscd(base)
    stages: dict[str, list[float]] = {
        k: [] for k in ("detect", "read", "nonces", "sign", "check", "tap_to_verified", "apdu_rtt")
    }
    try:
        servers = [Server(i, NonceStore(), CardRegistry(base / f"p{i}.db")) for i in (0, 1)]
        applet = VirtualCardApplet(b"SF-BENCH", pin="123456" if pin else None)
        for s in servers:
            s.registry.bind(applet.card_id, applet.public_key, "bench-identity")
        reader = daemon.readers[0]
        opts = TerminalOptions(
            reader_name_contains=reader,
            tap_timeout_s=5.0,
            connection=ConnectionOptions(apdu_timeout_s=5.0),
        )
        payload = os.urandom(1024)
        with CardTerminal(opts, lambda _req: "123456") as term:
            for _ in range(taps):
                card = VpcdCard(applet, daemon.slot_port(0), quickack=quickack)
                t0 = time.perf_counter()
                card.insert()
                event = term.wait_for_card()
                t1 = time.perf_counter()
                with term.open(event) as session:
                    t2 = time.perf_counter()
                    n0 = servers[0].nonces.issue(session.identity.card_id).nonce
                    n1 = servers[1].nonces.issue(session.identity.card_id).nonce
                    t3 = time.perf_counter()
                    req = session.authorize(
                        n0, n1, RequestKind.VERIFY, "bench-identity", payload_digest(payload)
                    )
                    t4 = time.perf_counter()
                    results = check_all(servers, req, RequestKind.VERIFY, payload)
                    t5 = time.perf_counter()
                    assert all(r.ok for r in results), results
                    select = CommandAPDU(0x00, 0xA4, 0x04, 0x00, applet.aid, le=256)
                    for _ in range(apdus):
                        a = time.perf_counter()
                        session.client.channel.transmit(select)
                        stages["apdu_rtt"].append(time.perf_counter() - a)
                card.remove()
                with ReaderMonitor(ReaderFilter(reader)) as mon:
                    mon.wait_for_removal(reader, 5.0)
                for key, value in (
                    ("detect", t1 - t0),
                    ("read", t2 - t1),
                    ("nonces", t3 - t2),
                    ("sign", t4 - t3),
                    ("check", t5 - t4),
                    ("tap_to_verified", t5 - t1),
                ):
                    stages[key].append(value)
        for s in servers:
            s.registry.close()
    finally:
        daemon.stop()
    return {
        "benchmark": "card_tap",
        "taps": taps,
        "pin": pin,
        "quickack": quickack,
        "pcscd_isolated": daemon.isolated,
        "stages": {k: _stats(v) for k, v in stages.items() if v},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--taps", type=int, default=20)
    ap.add_argument("--apdus", type=int, default=20, help="SELECT round trips per tap")
    ap.add_argument("--pin", action="store_true", help="card asks for a PIN each tap")
    ap.add_argument("--no-quickack", action="store_true")
    ap.add_argument("--json", action="store_true", help="(default) print one JSON object")
    args = ap.parse_args()
    print(json.dumps(run(args.taps, args.pin, not args.no_quickack, args.apdus)))


if __name__ == "__main__":
    main()
