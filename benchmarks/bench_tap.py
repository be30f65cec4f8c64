"""Tap-to-verify latency end to end on loopback: card detected -> accept/reject on screen.

Everything real except the hardware: its own pcscd with the vpcd driver and a virtual
P-256 card (tests/card/), a LocalDeployment (dealer, P0, P1 daemons), the LiteRT
BlazeFace + int8 MobileFaceNet pipeline on real test photos, and ``TapFlow.verify_once``.
The card is enrolled with ``TapFlow.enroll_with_card`` and the servers trained first.

Prints one JSON object; per stage median / p95 / min in milliseconds:

* ``detect``           card put down -> pcscd reports it (pcscd polls vpcd every 400 ms)
* ``card_read``        SCardConnect + SELECT + READ BINARY card id, public key, holder EF
* ``capture_embed``    frame -> BlazeFace -> align -> MobileFaceNet (one frame with a face)
* ``card_sign``        INTERNAL AUTHENTICATE (+ the edge's own signature check)
* ``mpc_verify``       offers, masking, submit, both servers' card check, MPC 1:1, reply
* ``verify``           card_sign + mpc_verify (+ the presence re-SELECT)
* ``tap_to_result``    card detected -> TapResult (what a person waits after the beep)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2

from splitface.edge.card import CardTerminal, ConnectionOptions, TerminalOptions
from splitface.edge.pipeline.detect import DetectorOptions
from splitface.edge.pipeline.pipeline import FacePipeline, PipelineOptions
from splitface.edge.tap import TapFlow, TapOptions, TapStatus
from splitface.edge.testdata import TestData
from splitface.servers.deploy_local import LocalDeployment
from tests.card.pcscd import start_pcscd
from tests.card.virtual_card import VirtualCardApplet, VpcdCard
from tests.services.conftest import client_for, free_base_port

STAGES = {
    "detect": "wait_ms",
    "card_read": "card_read_ms",
    "capture_embed": "capture_embed_ms",
    "card_sign": "card_sign_ms",
    "mpc_verify": "mpc_verify_ms",
    "verify": "verify_ms",
    "tap_to_result": "total_ms",
}

# A tap terminal's pipeline: short-range BlazeFace on the whole frame (the face is close).
TAP_PIPELINE = PipelineOptions(detector=DetectorOptions(range="short", min_eye_px=0))


def _stats(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return {"median_ms": round(statistics.median(ms), 3), "p95_ms": round(p95, 3),
            "min_ms": round(ms[0], 3)}


def _read(path: Path):
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"cannot read test photo {path}; run `make models`")
    return img


def run(taps: int, impostor_every: int) -> dict:
    base = Path(tempfile.mkdtemp(prefix="bench-tap-"))
    td = TestData.load()
    enrol, probe = td.enrol_probe("obama", 3)
    probes = [_read(p.path) for p in probe if p.transform != "partial"][:5]
    impostor = _read(td.photos("biden")[0].path)
    daemon = start_pcscd(base / "pcscd")
    dep = LocalDeployment.create(base / "dep", edges=2, base_port=free_base_port(),
                                 train={"epochs": 5, "batch_size": 32, "learning_rate": 1.0})
    dep.start()
    samples: dict[str, list[float]] = {k: [] for k in STAGES}
    outcomes: dict[str, int] = {}
    wrong = 0
    try:
        reader = daemon.readers[0]
        opts = TerminalOptions(reader_name_contains=reader, tap_timeout_s=5.0,
                               connection=ConnectionOptions(apdu_timeout_s=5.0))
        queue: list = []
        with client_for(dep, timeout=30.0) as client, \
                FacePipeline(TAP_PIPELINE) as pipe, \
                CardTerminal(opts) as term, \
                TapFlow(client, pipe, term, lambda: queue.pop(0) if queue else None,
                        TapOptions(tap_timeout_s=5.0, max_frames=3)) as flow:
            dep.wait_ready(client)
            applet = VirtualCardApplet(b"SF-BENCH-TAP")
            with VpcdCard(applet, daemon.slot_port(0)):
                result = flow.enroll_with_card("obama", [_read(p.path) for p in enrol])
            if result.status is not TapStatus.ENROLLED:
                raise SystemExit(f"enrolment failed: {result}")
            client.enroll("biden", pipe.process(impostor).embedding)
            client.admin("train")
            term.wait_for_removal(reader, 5.0)
            for i in range(taps):
                is_impostor = impostor_every > 0 and i % impostor_every == impostor_every - 1
                queue[:] = [impostor if is_impostor else probes[i % len(probes)]]
                card = VpcdCard(applet, daemon.slot_port(0)).insert()
                result = flow.verify_once()
                card.remove()
                term.wait_for_removal(reader, 5.0)
                outcomes[result.status.value] = outcomes.get(result.status.value, 0) + 1
                expected = TapStatus.REJECTED if is_impostor else TapStatus.ACCEPTED
                wrong += result.status is not expected
                if result.status in (TapStatus.ACCEPTED, TapStatus.REJECTED):
                    for name, key in STAGES.items():
                        samples[name].append(result.timings_ms[key])
    finally:
        codes = dep.stop()
        daemon.stop()
    return {
        "benchmark": "tap_verify",
        "taps": taps,
        "outcomes": outcomes,
        "unexpected_outcomes": wrong,
        "pcscd_isolated": daemon.isolated,
        "daemons_exit": codes,
        "machine": platform.machine(),
        "note": "loopback, virtual card via vpcd; detect is pcscd's 400 ms poll of vpcd",
        "stages": {k: _stats(v) for k, v in samples.items() if v},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--taps", type=int, default=20)
    ap.add_argument("--impostor-every", type=int, default=5,
                    help="every Nth tap shows another person's face (0: never)")
    ap.add_argument("--json", action="store_true", help="(default) print one JSON object")
    args = ap.parse_args()
    print(json.dumps(run(args.taps, args.impostor_every)))


if __name__ == "__main__":
    main()
