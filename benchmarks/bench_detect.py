"""Faces near and far: detection recall, alignment and identification against face size, speed.

Prints one JSON object (``--json``) with these sections, all on the real photos of
``var/testdata`` (registry sources in docs/MODELS.md):

* ``recall``: the 31 hand-marked faces of the 8 group photos and the 7 face-free photos (also
  stretched to 1280x720), for short range on the whole frame (the old path), full range on the
  whole frame, and full range with tiles (the terminal's default).
* ``reach``: share of faces found against their inter-eye distance (IED) in model-input
  pixels, per model; ``edge/pipeline/detect.REACH_PX`` comes from here.
* ``alignment``: real photos shrunk into 1280x720 face-free backgrounds; landmark error against
  the same photo at full size (BlazeFace keypoints vs face mesh), in % of the IED and in pixels
  of the 112x112 crop, and the embedding's cosine to the full-size one, per IED.
* ``identification``: the same scenes, identified against a gallery of the people's full-size
  enrolment embeddings (a quarter of the people are left out as unknowns). The decision is
  made in plaintext here: argmax cosine over normalised class-mean templates, accepted at the
  configured threshold, which is the function the servers compute under MPC.
* ``rotation``: photos turned 90/180/270 degrees: refused, or turned upright (cosine to upright).
* ``timing``: detect + landmarks + align + embed for one face in a 1280x720 frame (and 640x480),
  per path and per thread count (1 and 2), all interleaved frame by frame so they share the
  same minutes of a noisy machine.
* ``quality``: the measures on real photos and on each kind of synthetic view, and how many
  pass the enrolment bar: the calibration of ``edge/pipeline/quality.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_edge import machine
from splitface.edge.pipeline.align import umeyama_similarity
from splitface.edge.pipeline.detect import FaceDetector
from splitface.edge.pipeline.pipeline import Face, FacePipeline, PipelineOptions
from splitface.edge.pipeline.settings import default_pipeline_options
from splitface.edge.pipeline.warp import warp_similarity
from splitface.edge.testdata import TestData, TestImage, paste
from splitface.shared.config import IdentifyOptions

EYE_SIZES = (8, 10, 12, 14, 16, 20, 24, 32, 48)
FRAME = (1280, 720)
TEMPLATE_EYE = 35.24  # IED of the 112x112 ArcFace template, pixels
# The old alignment (BlazeFace eyes, nose, mouth centre -> 4-point ArcFace template).
BLAZE_TEMPLATE = np.array([[38.79, 52.20], [74.03, 52.00], [56.53, 72.24], [56.64, 92.78]])


def read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"cannot read {path}; run `make models`")
    return img


def paths(base: PipelineOptions) -> dict[str, PipelineOptions]:
    """The three detection set-ups compared throughout (same mesh, alignment and embedder)."""
    d = base.detector
    return {"short_whole": replace(base, detector=replace(d, range="short", min_eye_px=0,
                                                          model_path=None)),
            "full_whole": replace(base, detector=replace(d, min_eye_px=0)),
            "full_tiles": base}


def nearest(faces: list[Face], centre: np.ndarray, eye: float) -> Face | None:
    """The face whose box centre is closest to ``centre``, if within two IEDs of it."""
    best, dist = None, 2.0 * max(eye, 4.0)
    for f in faces:
        d = float(np.hypot(*(np.array(f.detection.center) - centre)))
        if d < dist:
            best, dist = f, d
    return best


# ---------------------------------------------------------------------------- recall

def recall(data: TestData, pipes: dict[str, FacePipeline]) -> dict:
    out = {}
    for name, pipe in pipes.items():
        found = extra = noface_fp = noface_dets = 0
        for g in data.groups():
            frame = read(g.path)
            faces = [f for f in pipe.analyse(frame).faces if f.landmarks.found]
            used: set[int] = set()
            for cx, cy in g.faces:
                for k, f in enumerate(faces):
                    x, y, w, h = f.detection.box
                    near = np.hypot(x + w / 2 - cx, y + h / 2 - cy) <= 0.5 * max(w, h)
                    if k not in used and near:
                        used.add(k)
                        found += 1
                        break
            extra += len(faces) - len(used)
        for im in data.nofaces():
            frame = read(im.path)
            for f in (frame, cv2.resize(frame, FRAME)):
                r = pipe.analyse(f)
                noface_dets += r.detections
                noface_fp += len(r.embedded)
        marked = sum(len(g.faces) for g in data.groups())
        out[name] = {"found": found, "marked": marked, "recall": round(found / marked, 3),
                     "false_positives_in_groups": extra,
                     "face_free_frames": 2 * len(data.nofaces()),
                     "face_free_detections": noface_dets,
                     "face_free_false_positives": noface_fp}
    return out


# ---------------------------------------------------------------------------- sources

def sources(data: TestData, pipe: FacePipeline, min_eye: float = 40.0) -> list[dict]:
    """Real single-person photos with a clear, near-frontal face of at least ``min_eye`` px:
    their full-size landmarks and embedding are the reference for every smaller copy."""
    out = []
    for im in data.photos():
        if im.transform == "partial":
            continue
        photo = read(im.path)
        dets = pipe.detector.detect(photo)
        if not len(dets):
            continue
        det = dets.primary()
        face = pipe.analyse_face(photo, det, "enrol")
        if not face.embedded or face.quality.eye_px < min_eye:
            continue
        out.append({"image": im, "photo": photo, "five": face.landmarks.five,
                    "blaze": np.asarray(det.keypoints, dtype=np.float64)[:4],
                    "eye": face.quality.eye_px, "embedding": face.embedding})
    return out


def scene(src: dict, eye: float, k: int, backgrounds: list[np.ndarray]
          ) -> tuple[np.ndarray, np.ndarray]:
    """The source photo shrunk so its IED is ``eye`` px, pasted into the k-th background."""
    rng = np.random.default_rng(k)  # placement only
    at = (float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.3, 0.7)))
    return paste(src["photo"], eye / src["eye"], FRAME, at, backgrounds[k % len(backgrounds)])


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def blaze_embedding(pipe: FacePipeline, frame: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """The old alignment (BlazeFace keypoints to the 4-point template), for comparison."""
    m = umeyama_similarity(kps[:4], BLAZE_TEMPLATE)
    return pipe.embedder.embed(warp_similarity(frame, m, 112))


# ---------------------------------------------------------------------------- alignment + id

def size_sweep(srcs: list[dict], pipe: FacePipeline, backgrounds: list[np.ndarray],
               threshold: float) -> tuple[list[dict], dict]:
    """Alignment error, cosine to full size and identification, per IED."""
    ids = sorted({s["image"].identity for s in srcs})
    unknown = set(ids[3::4])  # a quarter of the people are never enrolled
    gallery = [i for i in ids if i not in unknown]
    align_rows, ident = [], {}
    for eye in EYE_SIZES:
        errs_mesh, errs_blaze, cos_mesh, cos_blaze = [], [], [], []
        known_ok = known_n = unknown_ok = unknown_n = missed = 0
        for k, src in enumerate(srcs):
            frame, m = scene(src, eye, k, backgrounds)
            ref_five = apply(m, src["five"])
            ref_blaze = apply(m, src["blaze"])
            centre = ref_five.mean(0)
            r = pipe.analyse(frame)
            face = nearest(r.faces, centre, eye)
            who = src["image"].identity
            if who in unknown:
                unknown_n += 1
            else:
                known_n += 1
            if face is None or not face.landmarks.found:
                missed += 1
                unknown_ok += who in unknown
                continue
            errs_mesh.append(float(np.linalg.norm(face.landmarks.five - ref_five, axis=1).mean())
                             / eye)
            kp = np.asarray(face.detection.keypoints, dtype=np.float64)[:4]
            errs_blaze.append(float(np.linalg.norm(kp - ref_blaze, axis=1).mean()) / eye)
            if face.embedded:
                cos_mesh.append(float(face.embedding @ src["embedding"]))
                cos_blaze.append(float(blaze_embedding(pipe, frame, kp) @ src["embedding"]))
            # Identification: templates are the normalised means of each enrolled person's
            # full-size photos, without the probe's own photo where the person has another.
            if not face.embedded:
                unknown_ok += who in unknown
                continue
            temps = []
            for g in gallery:
                own = [s["embedding"] for s in srcs if s["image"].identity == g
                       and (s is not src or sum(t["image"].identity == g for t in srcs) == 1)]
                t = np.mean(own, axis=0)
                temps.append(t / np.linalg.norm(t))
            scores = np.stack(temps) @ face.embedding
            j = int(np.argmax(scores))
            accepted = bool(scores[j] >= threshold)
            if who in unknown:
                unknown_ok += not accepted
            else:
                known_ok += accepted and gallery[j] == who
        align_rows.append({
            "eye_px": eye, "faces": len(srcs), "missed": missed,
            "mesh_error_pct_ied": round(100 * float(np.mean(errs_mesh)), 1) if errs_mesh else None,
            "mesh_error_crop_px": round(TEMPLATE_EYE * float(np.mean(errs_mesh)), 2)
            if errs_mesh else None,
            "blazeface_error_pct_ied": round(100 * float(np.mean(errs_blaze)), 1)
            if errs_blaze else None,
            "blazeface_error_crop_px": round(TEMPLATE_EYE * float(np.mean(errs_blaze)), 2)
            if errs_blaze else None,
            "cos_to_full_size_mesh": round(float(np.mean(cos_mesh)), 3) if cos_mesh else None,
            "cos_to_full_size_blazeface": round(float(np.mean(cos_blaze)), 3)
            if cos_blaze else None,
        })
        n = known_n + unknown_n
        ident[eye] = {"known": known_n, "known_correct": known_ok, "unknown": unknown_n,
                      "unknown_rejected": unknown_ok,
                      "accuracy": round((known_ok + unknown_ok) / n, 3) if n else None}
    # The same decision on the full-size photos themselves: what the embedder and threshold
    # allow before any shrinking (a stranger who resembles someone is accepted at any size).
    full_ok = 0
    for src in srcs:
        who = src["image"].identity
        temps = []
        for g in gallery:
            own = [s["embedding"] for s in srcs if s["image"].identity == g
                   and (s is not src or sum(t["image"].identity == g for t in srcs) == 1)]
            t = np.mean(own, axis=0)
            temps.append(t / np.linalg.norm(t))
        scores = np.stack(temps) @ src["embedding"]
        j = int(np.argmax(scores))
        accepted = bool(scores[j] >= threshold)
        full_ok += (not accepted) if who in unknown else (accepted and gallery[j] == who)
    ident["full_size"] = {"probes": len(srcs), "correct": full_ok,
                          "accuracy": round(full_ok / len(srcs), 3)}
    big = [v for e, v in ident.items() if e != "full_size" and e >= 20]
    tot = sum(v["known"] + v["unknown"] for v in big)
    ok = sum(v["known_correct"] + v["unknown_rejected"] for v in big)
    summary = {
        "decision": "plaintext argmax cosine over normalised class-mean templates, accepted at "
                    f"threshold {threshold} (IdentifyOptions default): the function the "
                    "servers compute under MPC",
        "people": len(ids), "enrolled": len(gallery), "unknown": len(unknown),
        "by_eye_px": {str(e): v for e, v in ident.items()},
        "eye_px_20_or_more": {"probes": tot, "correct": ok,
                              "accuracy": round(ok / tot, 3) if tot else None,
                              "target": 0.95},
    }
    return align_rows, summary


# ---------------------------------------------------------------------------- reach

def reach(srcs: list[dict], layout_pipes: dict[str, FaceDetector],
          backgrounds: list[np.ndarray]) -> dict:
    out = {}
    for name, det in layout_pipes.items():
        size = det.spec.input_size
        rows = {}
        for model_eye in (3, 4, 5, 6, 7, 8, 10, 12):
            eye = model_eye * FRAME[0] / size
            hit = 0
            for k, src in enumerate(srcs):
                frame, m = scene(src, eye, k, backgrounds)
                centre = apply(m, src["five"]).mean(0)
                hit += any(np.hypot(*(np.array(d.center) - centre)) < 2 * eye
                           for d in det.detect(frame))
            rows[str(model_eye)] = round(hit / len(srcs), 3)
        out[name] = rows
    return out


# ---------------------------------------------------------------------------- rotation

def rotation(srcs: list[dict], pipe: FacePipeline) -> dict:
    out = {}
    for name, code in (("90", cv2.ROTATE_90_CLOCKWISE), ("180", cv2.ROTATE_180),
                       ("270", cv2.ROTATE_90_COUNTERCLOCKWISE)):
        detected = upright = refused = garbage = 0
        cos = []
        for src in srcs:
            r = pipe.analyse(cv2.rotate(src["photo"], code))
            if not len(r):
                continue
            detected += 1
            face = r.faces[0]
            if not face.embedded:
                refused += 1
                continue
            c = float(face.embedding @ src["embedding"])
            cos.append(c)
            upright += c >= 0.5
            garbage += c < 0.5
        out[name] = {"photos": len(srcs), "detected": detected, "refused": refused,
                     "turned_upright": upright, "embedded_wrong": garbage,
                     "cos_to_upright_mean": round(float(np.mean(cos)), 3) if cos else None}
    return out


# ---------------------------------------------------------------------------- timing

def timing(srcs: list[dict], opts: dict[str, PipelineOptions], backgrounds: list[np.ndarray],
           repeats: int, threads: tuple[int, ...]) -> dict:
    """Every path at every thread count, interleaved frame by frame (same minutes for all)."""
    pipes = {(name, t): FacePipeline.from_options(_threads(o, t))
             for t in threads for name, o in opts.items()}
    out: dict = {f"threads_{t}": {} for t in threads}
    try:
        for size in (FRAME, (640, 480)):
            frames = []
            for k, src in enumerate(srcs):
                # A face every path finds (short range needs ~1/14 of the frame between the
                # eyes): the comparison is of time, at equal work after detection.
                eye = 0.08 * size[0]
                frame, _ = paste(src["photo"], eye / src["eye"], size, (0.5, 0.45),
                                 backgrounds[k % len(backgrounds)])
                frames.append(frame)
            rows: dict = {key: defaultdict(list) for key in pipes}
            for p in pipes.values():
                p.analyse(frames[0])  # warm-up
            for _ in range(repeats):
                for frame in frames:
                    for key, p in pipes.items():
                        t0 = time.perf_counter()
                        r = p.analyse(frame)
                        wall = (time.perf_counter() - t0) * 1e3
                        if not r.embedded:
                            rows[key]["missed"].append(1.0)
                            continue
                        for k, v in r.embedded[0].timings.to_dict().items():
                            rows[key][k].append(v)
                        rows[key]["wall_ms"].append(wall)
            for t in threads:
                res = {}
                for name in opts:
                    r = rows[(name, t)]
                    res[name] = {f"{k}_p50": round(float(np.median(v)), 3)
                                 for k, v in r.items() if k != "missed"}
                    res[name]["frames"] = len(r["total_ms"])
                    res[name]["missed"] = len(r["missed"])
                base = res["short_whole"].get("total_ms_p50")
                for name in res:
                    if base and "total_ms_p50" in res[name]:
                        res[name]["ratio_to_short_whole"] = round(
                            res[name]["total_ms_p50"] / base, 2)
                out[f"threads_{t}"][f"{size[0]}x{size[1]}"] = res
    finally:
        for p in pipes.values():
            p.close()
    out["target_total_ms_p50"] = 10.0
    return out


def _threads(o: PipelineOptions, n: int) -> PipelineOptions:
    return replace(o, detector=replace(o.detector, num_threads=n),
                   landmarker=replace(o.landmarker, num_threads=n),
                   embedder=replace(o.embedder, num_threads=n))


# ---------------------------------------------------------------------------- quality

def quality(data: TestData, pipe: FacePipeline) -> dict:
    groups: dict[str, list] = defaultdict(list)
    for im in data.images:
        if im.kind not in ("photo", "view") or im.transform == "partial":
            continue
        frame = read(im.path)
        dets = pipe.detector.detect(frame)
        if not len(dets):
            continue
        face = pipe.analyse_face(frame, dets.primary(), "enrol")
        tag = _view_kind(im)
        groups[tag].append(face)
    out = {}
    for tag, faces in sorted(groups.items()):
        q = [f.quality for f in faces]
        reasons: dict[str, int] = defaultdict(int)
        for f in faces:
            for r in f.reasons:
                reasons[r] += 1

        def pct(vals: list[float]) -> list[float]:
            return [round(float(np.percentile(vals, p)), 2) for p in (0, 5, 50, 95, 100)]

        found = [x for x in q if x.presence >= 0.5]
        out[tag] = {"faces": len(faces), "enrol_pass": sum(f.embedded for f in faces),
                    "refusals": dict(reasons),
                    "eye_px": pct([x.eye_px for x in found]),
                    "yaw_deg": pct([x.yaw_deg for x in found]),
                    "pitch_deg": pct([x.pitch_deg for x in found]),
                    "roll_deg": pct([x.roll_deg for x in found]),
                    "sharpness": pct([x.sharpness for x in found]),
                    "brightness": pct([x.brightness for x in found]),
                    "clipped": pct([x.clipped for x in found]),
                    "presence": pct([x.presence for x in q])}
    return out


def _view_kind(im: TestImage) -> str:
    if im.kind == "photo":
        return "real_photo"
    for prefix in ("roll", "yaw", "scale", "dark", "bright", "blur", "jpeg", "mirror", "noise"):
        if im.transform.startswith(prefix):
            return f"view_{prefix}"
    return "view_other"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--repeats", type=int, default=3, help="timing passes over the frames")
    ap.add_argument("--threads", default="1,2",
                    help="interpreter threads to time, comma-separated (default 1,2)")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    data = TestData.load()
    base = default_pipeline_options()
    opts = paths(base)
    backgrounds = [read(im.path) for im in data.nofaces()]
    threshold = IdentifyOptions().threshold
    result: dict = {"note": "identification decided in plaintext with the servers' decision "
                            "function (see identification.decision)",
                    "frame": f"{FRAME[0]}x{FRAME[1]}", "machine": machine()}
    pipes = {n: FacePipeline.from_options(o) for n, o in opts.items()}
    try:
        main_pipe = pipes["full_tiles"]
        srcs = sources(data, main_pipe)
        result["sources"] = {"photos": len(srcs), "people": len({s["image"].identity
                                                                 for s in srcs})}
        if "recall" not in skip:
            result["recall"] = recall(data, pipes)
        if "reach" not in skip:
            result["reach"] = reach(srcs, {"full": pipes["full_whole"].detector,
                                           "short": pipes["short_whole"].detector},
                                    backgrounds)
        if "sizes" not in skip:
            result["alignment"], result["identification"] = size_sweep(
                srcs, main_pipe, backgrounds, threshold)
        if "rotation" not in skip:
            result["rotation"] = rotation(srcs, main_pipe)
        if "timing" not in skip:
            result["timing"] = timing(srcs[:16], opts, backgrounds, args.repeats,
                                      tuple(int(t) for t in args.threads.split(",")))
        if "quality" not in skip:
            result["quality"] = quality(data, main_pipe)
    finally:
        for p in pipes.values():
            p.close()
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
