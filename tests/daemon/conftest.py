"""One real deployment for the daemon tests: dealer, P0, P1 on loopback, two people enrolled
from real photos through the pipeline and the client, trained under MPC; the simulated camera
is a video of held-out photos of them, nobody, and a person who was never enrolled."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from splitface.edge.client import SplitfaceClient
from splitface.edge.models.paths import VarLayout
from splitface.edge.pipeline.errors import PipelineError
from splitface.edge.pipeline.pipeline import FacePipeline
from splitface.edge.testdata import TestData, TestDataMissingError
from splitface.servers.deploy_local import LocalDeployment
from tests.daemon.harness import letterbox
from tests.services.conftest import client_for, free_base_port

ENROLLED = {"obama": 5, "biden": 4}
UNKNOWN = "astronaut"
FACE_FRAMES, GAP_FRAMES, FPS = 8, 8, 15.0
SERVER_TIMEOUT_S = 6.0


@dataclass
class Scene:
    """What the simulated camera shows, in order: (identity or None for unknown, frame)."""

    people: list[tuple[str | None, np.ndarray]]
    empty: np.ndarray  # a frame with nobody in it

    def segments(self, repeat: int = 1) -> list[tuple[np.ndarray, int]]:
        segs = []
        for _ in range(repeat):
            for _, frame in self.people:
                segs += [(frame, FACE_FRAMES), (self.empty, GAP_FRAMES)]
        return segs


@dataclass
class Deployed:
    dep: LocalDeployment
    scene: Scene
    root: Path

    def client(self, name: str = "edge-1", timeout: float = 20.0) -> SplitfaceClient:
        return client_for(self.dep, name, timeout=timeout)

    def edge_config(self, name: str = "edge-2") -> Path:
        return self.dep.root / name / "config.toml"

    def ensure_up(self) -> None:
        """Restart any daemon an earlier (failed) fault test left down or stopped."""
        for name in ("dealer", "p0", "p1"):
            proc = self.dep.procs.get(name)
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                continue
            if proc is not None:
                del self.dep.procs[name]
            self.dep.start((name,))
        with self.client() as c:
            self.dep.wait_ready(c)


def _frame(pipe: FacePipeline, path: Path) -> np.ndarray | None:
    frame = letterbox(cv2.imread(str(path)))
    try:
        pipe.process(frame)
    except PipelineError:
        return None
    return frame


def _pipeline_options():
    """The daemon's defaults (surveillance: full-range BlazeFace, face mesh, int8
    MobileFaceNet), built the way the daemon builds them from its config."""
    from splitface.edge.pipeline.settings import default_pipeline_options

    return default_pipeline_options()


@pytest.fixture(scope="package")
def deployed(tmp_path_factory) -> Deployed:
    layout = VarLayout.default()
    try:
        data = TestData.load(layout.testdata)
    except TestDataMissingError as exc:
        pytest.fail(str(exc))
    root = tmp_path_factory.mktemp("edged")
    dep = LocalDeployment.create(root / "dep", edges=2, base_port=free_base_port(),
                                 train={"epochs": 5, "batch_size": 32, "learning_rate": 1.0})
    # A transaction the terminal gave up on holds the servers for their request_timeout_s;
    # keep that short so the fault tests recover in seconds, not half a minute.
    for party in ("p0", "p1"):
        cfg = dep.root / party / "config.toml"
        cfg.write_text(cfg.read_text().replace("request_timeout_s = 30.0",
                                               f"request_timeout_s = {SERVER_TIMEOUT_S}"))
    opts = _pipeline_options()
    dep.start()
    try:
        people: list[tuple[str | None, np.ndarray]] = []
        with client_for(dep) as c, FacePipeline.from_options(opts) as pipe:
            dep.wait_ready(c)
            for name, n in ENROLLED.items():
                enrol, probes = data.enrol_probe(name, n_enrol=n)
                for im in enrol:
                    try:
                        face = pipe.process(cv2.imread(str(im.path)))
                    except PipelineError:
                        continue
                    assert c.enroll(name, face.embedding).status == "enrolled"
                probe = next(f for f in (_frame(pipe, p.path) for p in probes) if f is not None)
                people.append((name, probe))
            unknown = next(f for f in (_frame(pipe, p.path) for p in data.photos(UNKNOWN))
                           if f is not None)
            people.append((None, unknown))
            assert c.admin("train").status == "trained"
        empty_src = data.nofaces()[0].path
        empty = letterbox(cv2.imread(str(empty_src)))
        with FacePipeline.from_options(opts) as pipe:
            assert len(pipe.detect(empty)[0]) == 0, "the 'nobody' frame shows a face"
        yield Deployed(dep, Scene(people, empty), root)
    finally:
        dep.stop()
