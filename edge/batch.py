"""Operator tools on top of the pipeline and the client: LFW-style folder enrolment and
identification of every face over a frame source. Used by ``splitface-edge`` and ``make demo``."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splitface.edge.client import Outcome, ServerRefused, SplitfaceClient
from splitface.edge.pipeline.capture import CaptureOptions, Frame, FrameSource
from splitface.edge.pipeline.errors import PipelineError
from splitface.edge.pipeline.pipeline import Face, FacePipeline
from splitface.edge.pipeline.quality import LowQualityError

log = logging.getLogger("splitface.edge.batch")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class EnrolRecord:
    path: Path
    identity: str
    status: str  # enrolled | duplicate | no_face | low_quality | corrupt_input | refused:<code>
    reasons: tuple[str, ...] = ()  # low_quality: the measures below the enrolment bar


def lfw_folder(root: Path) -> list[tuple[str, Path]]:
    """(identity, image) pairs from ``ROOT/NAME/NAME_0001.jpg``-style folders."""
    pairs = []
    for d in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        for f in sorted(d.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                pairs.append((d.name, f))
    return pairs


def _request_id(identity: str, path: Path) -> str:
    """Stable per (identity, file content): re-running a batch never duplicates records."""
    h = hashlib.sha256(identity.encode() + b"\0" + path.read_bytes()).hexdigest()
    return "enr-" + h[:32]


def enroll_folder(client: SplitfaceClient, pipeline: FacePipeline, root: Path
                  ) -> list[EnrolRecord]:
    """Enrol every image of an LFW-style folder; bad images are reported, not fatal."""
    records = []
    for identity, path in lfw_folder(root):
        records.append(enroll_image(client, pipeline, identity, path))
    return records


def enroll_image(client: SplitfaceClient, pipeline: FacePipeline, identity: str,
                 path: Path) -> EnrolRecord:
    """Enrol the image's face if it passes the enrolment quality bar; say why not otherwise."""
    with FrameSource(CaptureOptions(source=str(path))) as src:
        frame = next(iter(src))
    if frame.error is not None:
        return EnrolRecord(path, identity, frame.error.status)
    try:
        face = pipeline.process(frame.image, purpose="enrol")
    except LowQualityError as exc:
        return EnrolRecord(path, identity, exc.status, exc.reasons)
    except PipelineError as exc:
        return EnrolRecord(path, identity, exc.status)
    try:
        out = client.enroll(identity, face.embedding, request_id=_request_id(identity, path))
    except ServerRefused as exc:
        return EnrolRecord(path, identity, f"refused:{exc.code}")
    return EnrolRecord(path, identity, out.status)


@dataclass
class IdentifiedFace:
    """One face of a frame and its identification (``outcome`` None: below the query bar,
    never sent to the servers)."""

    face: Face
    outcome: Outcome | None = None
    query_ms: float = 0.0

    @property
    def status(self) -> str:
        return self.outcome.status if self.outcome is not None else self.face.status

    def to_dict(self) -> dict[str, Any]:
        o = self.outcome
        return {**self.face.to_dict(), "status": self.status,
                "identity": o.identity if o is not None else None,
                "accepted": bool(o.accepted) if o is not None else None,
                "query_ms": round(self.query_ms, 2) if o is not None else None}


@dataclass
class FrameIdentification:
    """Every face of one frame, identified; ``status`` is the frame's (ok, no_face, ...)."""

    frame: Frame
    status: str
    faces: list[IdentifiedFace] = field(default_factory=list)
    edge_ms: float = 0.0  # detection + landmarks + alignment + embedding of all faces
    error: str = ""


def identify_source(client: SplitfaceClient, pipeline: FacePipeline, source: str | int,
                    max_frames: int | None = None) -> Iterator[FrameIdentification]:
    """Identify every face of every frame of a camera, video or image folder."""
    with FrameSource(CaptureOptions(source=source, max_frames=max_frames)) as src:
        for outcome in pipeline.run(src):
            if outcome.result is None:
                yield FrameIdentification(outcome.frame, outcome.status,
                                          error=str(outcome.error or ""))
                continue
            r = outcome.result
            edge_ms = r.detect_ms + sum(f.timings.total_ms - f.timings.detect_ms for f in r)
            faces = []
            for face in r:
                if not face.embedded:
                    faces.append(IdentifiedFace(face))
                    continue
                t0 = time.perf_counter()
                res = client.identify(face.embedding)
                faces.append(IdentifiedFace(face, res, (time.perf_counter() - t0) * 1000.0))
            yield FrameIdentification(outcome.frame, outcome.status, faces, edge_ms)
