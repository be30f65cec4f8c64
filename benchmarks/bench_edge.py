"""Edge pipeline latency per 640x480 frame on one core: decode, detect, align, embed.

Prints one JSON object (``--json``): ``float`` and ``int8`` (MobileFaceNet with the MediaPipe
Tasks detector) and ``detector_litert`` (the same two embedders behind the LiteRT-only
detector), each with ``*_ms_p50`` medians; ``total_ms_p50`` = detect + align + embed.
Target: total <= 10 ms median on one core. Frames are real test photos (var/testdata) cropped
to 640x480 and JPEG-encoded, so decode is measured on realistic camera-sized JPEGs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime

import cv2
import numpy as np

from splitface.edge.pipeline.capture import decode_image_bytes
from splitface.edge.pipeline.detect_base import DetectorOptions
from splitface.edge.pipeline.embed import EmbedderOptions
from splitface.edge.pipeline.errors import PipelineError
from splitface.edge.pipeline.pipeline import FacePipeline, PipelineOptions
from splitface.edge.testdata import TestData


def camera_frames(limit: int) -> list[bytes]:
    """JPEG bytes of 640x480 frames: the top 4:3 band of each real photo and view."""
    data = TestData.load()
    frames = []
    for im in data.photos(kinds=("photo", "view")):
        img = cv2.imread(str(im.path), cv2.IMREAD_COLOR)
        band = img[: min(img.shape[0], img.shape[1] * 3 // 4)]
        frame = cv2.resize(band, (640, 480), interpolation=cv2.INTER_AREA)
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
        if len(frames) >= limit:
            break
    return frames


def measure(detector: str, embedder: str, frames: list[bytes], repeats: int) -> dict:
    opts = PipelineOptions(detector=DetectorOptions(backend=detector, num_threads=1),
                           embedder=EmbedderOptions(kind=embedder, num_threads=1))
    rows: dict[str, list[float]] = {k: [] for k in ("decode", "detect", "align", "embed", "total")}
    skipped = 0
    with FacePipeline.from_options(opts) as pipe:
        pipe.process(decode_image_bytes(frames[0]))  # warm-up (allocations, delegate set-up)
        for _ in range(repeats):
            for jpg in frames:
                t0 = time.perf_counter()
                img = decode_image_bytes(jpg)
                decode = (time.perf_counter() - t0) * 1000.0
                try:
                    r = pipe.process(img)
                except PipelineError:
                    skipped += 1
                    continue
                rows["decode"].append(decode)
                rows["detect"].append(r.timings.detect_ms)
                rows["align"].append(r.timings.align_ms)
                rows["embed"].append(r.timings.embed_ms)
                rows["total"].append(r.timings.total_ms)
    out = {f"{k}_ms_p50": round(float(np.median(v)), 3) for k, v in rows.items()}
    out["total_ms_p90"] = round(float(np.percentile(rows["total"], 90)), 3)
    out.update({"frames": len(rows["total"]), "skipped_frames": skipped})
    return out


def machine() -> dict:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh
                          if ln.startswith(("model name", "Model"))), model)
    except OSError:
        pass
    return {"cpu": model, "machine": platform.machine(), "cores_visible": os.cpu_count(),
            "threads": 1, "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    frames = camera_frames(args.frames)
    result = {
        "float": measure("mediapipe", "mobilefacenet-float", frames, args.repeats),
        "int8": measure("mediapipe", "mobilefacenet-int8", frames, args.repeats),
        "detector_litert": {
            "float": measure("litert", "mobilefacenet-float", frames, args.repeats),
            "int8": measure("litert", "mobilefacenet-int8", frames, args.repeats),
        },
        "target_total_ms_p50": 10.0,
        "machine": machine(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for name, r in (("float", result["float"]), ("int8", result["int8"]),
                        ("litert+float", result["detector_litert"]["float"]),
                        ("litert+int8", result["detector_litert"]["int8"])):
            print(f"{name:14s} decode {r['decode_ms_p50']:6.2f}  detect {r['detect_ms_p50']:6.2f}"
                  f"  align {r['align_ms_p50']:5.2f}  embed {r['embed_ms_p50']:6.2f}"
                  f"  total {r['total_ms_p50']:6.2f} ms (p50, {r['frames']} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
