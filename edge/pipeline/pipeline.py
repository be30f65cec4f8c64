"""The edge pipeline the terminal calls: frame -> primary face -> aligned crop -> embedding.

``FacePipeline.process`` raises a named :class:`PipelineError` for a bad frame (corrupt,
blank, no face, many faces) and keeps no state between frames, so the next frame is processed
as if nothing happened. ``FacePipeline.run`` applies it to a :class:`FrameSource` and yields
one outcome per frame, error or not. Embeddings are never logged or printed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from splitface.edge.pipeline.align import Aligner, AlignerOptions
from splitface.edge.pipeline.capture import Frame, as_bgr_frame
from splitface.edge.pipeline.detect import create_detector
from splitface.edge.pipeline.detect_base import DetectorOptions
from splitface.edge.pipeline.embed import EmbedderOptions, create_embedder
from splitface.edge.pipeline.errors import BlankFrameError, ManyFacesError, PipelineError
from splitface.edge.pipeline.types import Detection, Detections
from splitface.shared.closing import Closing


@dataclass(frozen=True)
class PipelineOptions:
    """All stage options. ``face_policy``: "primary" picks the largest/most central face;
    "single" refuses frames with more than one face (an access terminal's usual rule)."""

    detector: DetectorOptions = field(default_factory=DetectorOptions)
    embedder: EmbedderOptions = field(default_factory=EmbedderOptions)
    aligner: AlignerOptions = field(default_factory=AlignerOptions)
    face_policy: str = "primary"
    blank_std: float = 2.0  # grey-level std below which a frame counts as blank


@dataclass(frozen=True)
class StageTimings:
    """Milliseconds per stage for one frame; ``total_ms`` = detect + align + embed."""

    detect_ms: float
    align_ms: float
    embed_ms: float

    @property
    def total_ms(self) -> float:
        return self.detect_ms + self.align_ms + self.embed_ms

    def to_dict(self) -> dict:
        return {k: round(v, 3) for k, v in (("detect_ms", self.detect_ms),
                                            ("align_ms", self.align_ms),
                                            ("embed_ms", self.embed_ms),
                                            ("total_ms", self.total_ms))}


@dataclass(frozen=True)
class FaceResult:
    """One processed frame: all detections, the chosen face, its crop and unit embedding."""

    detections: Detections
    face: Detection
    aligned: np.ndarray  # 112x112 BGR uint8
    embedding: np.ndarray  # float32, L2-normalised; never log it
    embedder: str
    timings: StageTimings

    def __repr__(self) -> str:  # keep embeddings out of logs and tracebacks
        return (f"FaceResult(faces={len(self.detections)}, score={self.face.score:.3f}, "
                f"embedder={self.embedder!r}, dim={self.embedding.shape[0]})")


@dataclass(frozen=True)
class FrameOutcome:
    """What happened to one frame of a stream: a result or a named error, never both."""

    frame: Frame
    result: FaceResult | None = None
    error: PipelineError | None = None

    @property
    def status(self) -> str:
        return "ok" if self.result is not None else (self.error.status if self.error else "error")


class FacePipeline(Closing):
    """Detector + aligner + embedder, loaded once; ``close()`` (or ``with``) frees the models."""

    def __init__(self, options: PipelineOptions) -> None:
        if options.face_policy not in ("primary", "single"):
            raise ValueError(f"face_policy must be 'primary' or 'single', "
                             f"not {options.face_policy!r}")
        self.options = options
        self.detector = create_detector(options.detector)
        try:
            self.aligner = Aligner(options.aligner)
            self.embedder = create_embedder(options.embedder)
        except BaseException:
            self.detector.close()
            raise

    @classmethod
    def from_options(cls, options: PipelineOptions) -> FacePipeline:
        return cls(options)

    def detect(self, frame_bgr: np.ndarray) -> tuple[Detections, float]:
        frame = as_bgr_frame(frame_bgr)
        # A strided sample is enough to tell a covered lens from a scene, at ~1/64 of the cost.
        spread = float(frame[::8, ::8].std())
        if spread < self.options.blank_std:
            raise BlankFrameError(f"frame is blank (grey-level std {spread:.2f})")
        t0 = time.perf_counter()
        dets = self.detector.detect(frame)
        return dets, (time.perf_counter() - t0) * 1000.0

    def process(self, frame_bgr: np.ndarray) -> FaceResult:
        """Raises CorruptInputError, BlankFrameError, NoFaceError or ManyFacesError."""
        frame = as_bgr_frame(frame_bgr)
        dets, detect_ms = self.detect(frame)
        if self.options.face_policy == "single" and len(dets) > 1:
            raise ManyFacesError(f"{len(dets)} faces in frame; exactly one required")
        face = dets.primary()  # NoFaceError when empty
        t1 = time.perf_counter()
        aligned = self.aligner.align(frame, face.keypoints)
        t2 = time.perf_counter()
        emb = self.embedder.embed_face(frame, face, aligned)
        t3 = time.perf_counter()
        timings = StageTimings(detect_ms, (t2 - t1) * 1000.0, (t3 - t2) * 1000.0)
        return FaceResult(dets, face, aligned, emb, self.options.embedder.kind, timings)

    def run(self, frames: Iterable[Frame]) -> Iterator[FrameOutcome]:
        """One outcome per frame; a failing frame never stops the stream."""
        for fr in frames:
            if fr.error is not None:
                yield FrameOutcome(fr, error=fr.error)
                continue
            try:
                yield FrameOutcome(fr, result=self.process(fr.image))
            except PipelineError as exc:
                yield FrameOutcome(fr, error=exc)

    def close(self) -> None:
        self.embedder.close()
        self.detector.close()
