"""``make demo``: the whole job on the bundled default data, end to end.

Generates keys, starts the dealer, P0 and P1 on loopback, enrols the default identities
from registry-supplied real photos (plus synthetic views) with the LFW-style batch tool,
trains both models under MPC, identifies probes from a simulated-camera video that
includes people who were never enrolled, prints a table and stops everything cleanly.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from splitface.edge.batch import enroll_folder, identify_source  # noqa: E402
from splitface.edge.client import ClientOptions, ServerEndpoint, SplitfaceClient  # noqa: E402
from splitface.edge.pipeline.errors import PipelineError  # noqa: E402
from splitface.edge.pipeline.pipeline import FacePipeline, PipelineOptions  # noqa: E402
from splitface.edge.testdata import TestData  # noqa: E402
from splitface.servers.deploy_local import LocalDeployment  # noqa: E402

WORK = ROOT / "var" / "demo"
ENROLLED = 6
UNKNOWN = 2


def detectable(pipeline: FacePipeline, path: Path) -> bool:
    """Whether the camera frame made from this image shows a face (probes must)."""
    try:
        pipeline.process(letterbox(cv2.imread(str(path))))
        return True
    except PipelineError:
        return False


def enrolable(pipeline: FacePipeline, path: Path) -> bool:
    """Whether the image passes the enrolment quality bar (a clear, near-frontal face)."""
    try:
        pipeline.process(cv2.imread(str(path)), purpose="enrol")
        return True
    except PipelineError:
        return False


def choose(data: TestData, pipeline: FacePipeline
           ) -> tuple[dict[str, list[Path]], dict[str, Path], list[Path]]:
    """Enrolment images and one held-out probe per enrolled identity; unknown probes.

    A held-out probe is a second real photo where there is one, else a synthetic view;
    it never appears in the enrolment set. People are chosen among those with at least four
    images that pass the enrolment quality bar (the cameraman's face is half hidden by his
    camera, so he is never one).
    """
    by_id = {k: v for k, v in data.by_identity().items()
             if sum(enrolable(pipeline, i.path) for i in v) >= 4}
    names = sorted(by_id, key=lambda n: (-sum(i.kind == "photo" for i in by_id[n]), n))
    enrolled = names[:ENROLLED]
    # Strangers must be strangers: the face-api group photos reuse their models (two crops are
    # already known to show one woman), so unknown people come from the other collections.
    shoots = {im.source for n in enrolled for im in by_id[n] if n.startswith("crowd")}
    unknown = [n for n in names[ENROLLED:]
               if not {im.source for im in by_id[n]} & shoots][:UNKNOWN]
    enrol, probes = {}, {}
    for n in enrolled:
        imgs = by_id[n]
        photos = [i for i in imgs if i.kind == "photo"]
        candidates = (photos[1:][::-1] if len(photos) > 1 else []) + \
            [i for i in imgs if i.kind == "view"][::-1]
        probe = next(i for i in candidates if detectable(pipeline, i.path))
        probes[n] = probe.path
        enrol[n] = [i.path for i in imgs if i is not probe]
    unknown_probes = [next(i.path for i in by_id[n] if detectable(pipeline, i.path))
                      for n in unknown]
    return enrol, probes, unknown_probes


def letterbox(img: np.ndarray, w: int = 640, h: int = 480) -> np.ndarray:
    s = min(w / img.shape[1], h / img.shape[0])
    r = cv2.resize(img, (int(img.shape[1] * s), int(img.shape[0] * s)))
    out = np.zeros((h, w, 3), np.uint8)
    y, x = (h - r.shape[0]) // 2, (w - r.shape[1]) // 2
    out[y:y + r.shape[0], x:x + r.shape[1]] = r
    return out


def main() -> int:
    t_start = time.perf_counter()
    data = TestData.load()
    with FacePipeline.from_options(PipelineOptions()) as pipeline:
        enrol, probes, unknown = choose(data, pipeline)
    shutil.rmtree(WORK, ignore_errors=True)
    lfw = WORK / "enrol"
    for name, paths in enrol.items():
        (lfw / name).mkdir(parents=True)
        for i, p in enumerate(paths, 1):
            shutil.copy(p, lfw / name / f"{name}_{i:04d}{p.suffix.lower()}")
    video = WORK / "camera.avi"
    truth = list(probes.items()) + [(None, p) for p in unknown]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (640, 480))
    for _, p in truth:
        writer.write(letterbox(cv2.imread(str(p))))
    writer.release()

    dep = LocalDeployment.create(WORK / "deployment", edges=1, base_port=7500,
                                 train={"epochs": 10, "batch_size": 32, "learning_rate": 1.0})
    print(f"deployment: keys and configs in {dep.root}")
    dep.start()
    pub, sec, k0, k1 = dep.edge_keys("edge-1")
    e0, e1 = dep.endpoints()
    opts = ClientOptions((ServerEndpoint(e0, k0), ServerEndpoint(e1, k1)), pub, sec,
                         timeout_s=60.0)
    ok = False
    try:
        with SplitfaceClient(opts) as client, \
                FacePipeline.from_options(PipelineOptions()) as pipeline:
            dep.wait_ready(client)
            print("dealer, P0 and P1 are up (CurveZMQ on loopback)")
            records = enroll_folder(client, pipeline, lfw)
            enrolled = sum(r.status in ("enrolled", "duplicate") for r in records)
            skipped = [r for r in records if r.status not in ("enrolled", "duplicate")]
            print(f"enrolled {enrolled} images of {len(enrol)} identities"
                  + (f" ({len(skipped)} skipped: {sorted({r.status for r in skipped})})"
                     if skipped else ""))
            trained = client.admin("train")
            print(f"trained templates + logistic regression under MPC in "
                  f"{trained.details['train_s']:.2f} s (model v{trained.details['model_version']})")
            rows = list(identify_source(client, pipeline, str(video)))
            print()
            print(f"{'frame':<10}{'truth':<14}{'result':<14}{'accept':<8}{'edge ms':>9}"
                  f"{'query ms':>9}")
            correct = rejected = 0
            for (who, _), row in zip(truth, rows, strict=True):
                # One person per probe frame: its first identified face.
                face = next((f for f in row.faces if f.outcome is not None), None)
                res = face.outcome.identity if face else row.status
                acc = face.outcome.accepted if face else False
                mpc = face.query_ms if face else 0.0
                print(f"{row.frame.name:<10}{who or '(unknown)':<14}{res or '-':<14}"
                      f"{acc!s:<8}{row.edge_ms:>9.1f}{mpc:>9.1f}")
                if who is None:
                    rejected += not acc
                else:
                    correct += acc and res == who
            print()
            ok = True
    finally:
        codes = dep.stop()
        print(f"stopped dealer, P0, P1 (exit codes {codes})")
    if not ok or any(codes.values()):
        print("demo failed", file=sys.stderr)
        return 1
    print(f"total {time.perf_counter() - t_start:.1f} s")
    print(f"demo ok: {len(enrol)} enrolled, {correct}/{len(probes)} probes correct, "
          f"{rejected}/{len(unknown)} unknowns rejected")
    return 0 if correct == len(probes) and rejected == len(unknown) else 2


if __name__ == "__main__":
    raise SystemExit(main())
