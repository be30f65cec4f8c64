"""Edge pipeline latency per 640x480 frame on one core: decode, detect, landmarks, align, embed.

Prints one JSON object (``--json``): ``float`` and ``int8`` (MobileFaceNet behind the
surveillance terminal's detector: full-range BlazeFace, which reaches 20 px between the eyes on
a 640x480 frame without tiles, and the face mesh) and ``short_range`` (the same two embedders
behind a tap terminal's short-range BlazeFace), each with ``*_ms_p50`` medians of the primary
face; ``total_ms_p50`` = detect + landmarks + align + embed. Target: total <= 10 ms median on
one core. Frames are real test photos (var/testdata) cropped to 640x480 and JPEG-encoded, so
decode is measured on realistic camera-sized JPEGs. 1280x720 frames with tiles:
``bench_detect.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime

import cv2
import numpy as np

from splitface.edge.pipeline.capture import decode_image_bytes
from splitface.edge.pipeline.embed import EmbedderOptions
from splitface.edge.pipeline.errors import PipelineError
from splitface.edge.pipeline.pipeline import FacePipeline
from splitface.edge.pipeline.settings import default_pipeline_options
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
    opts = default_pipeline_options()
    opts = replace(opts, embedder=EmbedderOptions(kind=embedder, num_threads=1))
    if detector == "short":
        opts = replace(opts, detector=replace(opts.detector, range="short", min_eye_px=0,
                                              model_path=None))
    rows: dict[str, list[float]] = {k: [] for k in ("decode", "detect", "landmarks", "align",
                                                     "embed", "total")}
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
                rows["landmarks"].append(r.timings.landmarks_ms)
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
        "float": measure("full", "mobilefacenet-float", frames, args.repeats),
        "int8": measure("full", "mobilefacenet-int8", frames, args.repeats),
        "short_range": {
            "float": measure("short", "mobilefacenet-float", frames, args.repeats),
            "int8": measure("short", "mobilefacenet-int8", frames, args.repeats),
        },
        "target_total_ms_p50": 10.0,
        "machine": machine(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for name, r in (("full+float", result["float"]), ("full+int8", result["int8"]),
                        ("short+float", result["short_range"]["float"]),
                        ("short+int8", result["short_range"]["int8"])):
            print(f"{name:12s} decode {r['decode_ms_p50']:6.2f}  detect {r['detect_ms_p50']:6.2f}"
                  f"  landmarks {r['landmarks_ms_p50']:5.2f}  align {r['align_ms_p50']:5.2f}"
                  f"  embed {r['embed_ms_p50']:6.2f}  total {r['total_ms_p50']:6.2f} ms "
                  f"(p50, {r['frames']} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
