"""Operator tools on top of the pipeline and the client: enrolment of many images (an
LFW-style folder, or files of one identity) and identification of every face over a frame
source. Used by ``splitface-edge`` and ``make demo``.

A batch of enrolments runs for minutes, and a server may restart meanwhile. Every image is
reported (enrolled, duplicate, why it was not), a bad image never stops the batch, and a
transient failure pauses the batch until the servers are back (edge/outage.py), then retries
the same request: its id is derived from the identity and the file's bytes, so a retry (or a
re-run of the whole batch) is answered ``duplicate`` for what was stored, never stored twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from splitface.edge.client import (
    Outcome,
    ServerRefused,
    ServersDisagree,
    ServerUnavailable,
    SplitfaceClient,
)
from splitface.edge.exit_codes import ExitCode, for_refusal
from splitface.edge.outage import Outage, OutageOptions
from splitface.edge.pipeline.capture import IMAGE_SUFFIXES, CaptureOptions, Frame, FrameSource
from splitface.edge.pipeline.errors import PipelineError
from splitface.edge.pipeline.pipeline import Face, FacePipeline
from splitface.edge.pipeline.quality import LowQualityError
from splitface.shared import api

log = logging.getLogger("splitface.edge.batch")
STORED = ("enrolled", "duplicate")


@dataclass
class EnrolRecord:
    """What happened to one image of a batch.

    ``status``: enrolled | duplicate (stored before, e.g. by an earlier run) | a pipeline
    status (no_face, low_quality, corrupt_input, many_faces, ...) | invalid_identity |
    refused:<code> (the servers said no) | failed:<code> (the servers stayed unavailable
    through the batch's patience) | skipped (not tried after that)."""

    path: Path
    identity: str
    status: str
    reasons: tuple[str, ...] = ()  # low_quality: the measures below the enrolment bar
    attempts: int = 0  # requests sent for it (a retry after an outage reuses the request id)

    @property
    def exit_code(self) -> ExitCode:
        if self.status in STORED:
            return ExitCode.OK
        kind, _, code = self.status.partition(":")
        if kind == "refused":
            return for_refusal(code)
        if kind in ("failed", "skipped"):
            return ExitCode.UNAVAILABLE
        return ExitCode.BAD_INPUT


def lfw_folder(root: Path) -> list[tuple[str, Path]]:
    """(identity, image) pairs from ``ROOT/NAME/NAME_0001.jpg``-style folders; the folder
    name is the identity as written (enrolment checks it)."""
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


@dataclass(frozen=True)
class _Ready:
    """An image that passed the edge's checks: what its enrolment request sends."""

    identity: str  # in normal form
    path: Path
    embedding: np.ndarray = field(repr=False)
    request_id: str


def _prepare(pipeline: FacePipeline, identity: str, path: Path) -> _Ready | EnrolRecord:
    """Check the name, read the image and embed its face; or the record saying why not."""
    try:
        name = api.normal_identity(identity)
    except api.ApiError as exc:
        return EnrolRecord(path, identity, "invalid_identity", (exc.reason,))
    try:
        with FrameSource(CaptureOptions(source=str(path), max_frames=1)) as src:
            frame = next(iter(src), None)
        if frame is None:
            return EnrolRecord(path, name, "corrupt_input", ("no frame",))
        if frame.error is not None:
            return EnrolRecord(path, name, frame.error.status, (str(frame.error),))
        face = pipeline.process(frame.image, purpose="enrol")
        rid = _request_id(name, path)
    except LowQualityError as exc:
        return EnrolRecord(path, name, exc.status, exc.reasons)
    except PipelineError as exc:
        return EnrolRecord(path, name, exc.status)
    except OSError as exc:  # the file went away or became unreadable meanwhile
        return EnrolRecord(path, name, "corrupt_input", (exc.strerror or str(exc),))
    return _Ready(name, path, face.embedding, rid)


def _send(client: SplitfaceClient, item: _Ready, outage: Outage, force: bool = False
          ) -> EnrolRecord:
    """Enrol ``item``, riding out outages with the same request id."""
    attempts = 0
    while True:
        attempts += 1
        try:
            out = client.enroll(item.identity, item.embedding, request_id=item.request_id,
                                force=force)
        except ServerRefused as exc:
            if exc.code not in api.TRANSIENT:
                outage.over()
                return EnrolRecord(item.path, item.identity, f"refused:{exc.code}",
                                   (exc.reason,), attempts)
            why, code = f"{exc.code}: {exc.reason}", exc.code
        except ServerUnavailable as exc:
            why, code = str(exc), "unavailable"
        except ServersDisagree as exc:
            outage.over()
            return EnrolRecord(item.path, item.identity, "failed:disagree", (str(exc),),
                               attempts)
        else:
            outage.over()
            return EnrolRecord(item.path, item.identity, out.status, (), attempts)
        if not outage.wait(why, str(item.path)):
            return EnrolRecord(item.path, item.identity, f"failed:{code}", (why,), attempts)


def enroll_many(client: SplitfaceClient, pipeline: FacePipeline,
                items: Iterable[tuple[str, Path]], options: OutageOptions | None = None,
                force: bool = False) -> Iterator[EnrolRecord]:
    """Enrol each (identity, image) in turn and yield its record as soon as it is known
    (``force``: add samples to a trained identity even if they do not match it).

    Once an outage outlasts ``options.patience_s`` the rest are still read and checked, but
    not sent: they are ``skipped``, and re-running the batch later enrols them."""
    outage = Outage(client, options)
    for identity, path in items:
        ready = _prepare(pipeline, identity, Path(path))
        if isinstance(ready, EnrolRecord):
            yield ready
        elif outage.exhausted:
            yield EnrolRecord(ready.path, ready.identity, "skipped",
                              ("not sent: the servers stayed unavailable",))
        else:
            yield _send(client, ready, outage, force)


def enroll_folder(client: SplitfaceClient, pipeline: FacePipeline, root: Path,
                  options: OutageOptions | None = None) -> list[EnrolRecord]:
    """Enrol every image of an LFW-style folder; bad images are reported, not fatal."""
    return list(enroll_many(client, pipeline, lfw_folder(root), options))


def enroll_image(client: SplitfaceClient, pipeline: FacePipeline, identity: str,
                 path: Path) -> EnrolRecord:
    """Enrol the image's face if it passes the enrolment quality bar; say why not otherwise."""
    return next(enroll_many(client, pipeline, [(identity, path)]))


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
