"""Operator tools on top of the pipeline and the client: LFW-style folder enrolment and
identification over a frame source. Used by ``splitface-edge`` and ``make demo``."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from splitface.edge.client import Outcome, ServerRefused, SplitfaceClient
from splitface.edge.pipeline.capture import CaptureOptions, FrameSource
from splitface.edge.pipeline.errors import PipelineError
from splitface.edge.pipeline.pipeline import FacePipeline

log = logging.getLogger("splitface.edge.batch")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class EnrolRecord:
    path: Path
    identity: str
    status: str  # enrolled | duplicate | no_face | corrupt_input | refused:<code> ...


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
    with FrameSource(CaptureOptions(source=str(path))) as src:
        frame = next(iter(src))
    if frame.error is not None:
        return EnrolRecord(path, identity, frame.error.status)
    try:
        face = pipeline.process(frame.image)
    except PipelineError as exc:
        return EnrolRecord(path, identity, exc.status)
    try:
        out = client.enroll(identity, face.embedding, request_id=_request_id(identity, path))
    except ServerRefused as exc:
        return EnrolRecord(path, identity, f"refused:{exc.code}")
    return EnrolRecord(path, identity, out.status)


@dataclass
class FrameIdentification:
    frame: str
    status: str  # identified | unknown | no_face | ...
    outcome: Outcome | None
    edge_ms: float


def identify_source(client: SplitfaceClient, pipeline: FacePipeline, source: str | int,
                    max_frames: int | None = None) -> Iterator[FrameIdentification]:
    """Identify the primary face of every frame of a camera, video or image folder."""
    with FrameSource(CaptureOptions(source=source, max_frames=max_frames)) as src:
        for outcome in pipeline.run(src):
            name = outcome.frame.name
            if outcome.result is None:
                yield FrameIdentification(name, outcome.status, None, 0.0)
                continue
            res = client.identify(outcome.result.embedding)
            yield FrameIdentification(name, res.status, res, outcome.result.timings.total_ms)
