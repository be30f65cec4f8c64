"""The edge pipeline: frame -> every face -> mesh landmarks -> quality -> aligned crop -> embedding.

``FacePipeline.analyse`` returns every face of a frame with its box, landmarks, quality and
(when it passes the purpose's quality bar) its unit embedding; ``process`` does the same for
the one face a single-person flow wants (enrolment, verification, a tap), raising a named
:class:`PipelineError` when there is none or it is below the bar. Nothing is kept between
frames. Embeddings are never logged or printed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from splitface.edge.pipeline.align import Aligner, AlignerOptions
from splitface.edge.pipeline.capture import Frame, as_bgr_frame
from splitface.edge.pipeline.detect import DetectorOptions, FaceDetector
from splitface.edge.pipeline.embed import EmbedderOptions, create_embedder
from splitface.edge.pipeline.errors import BlankFrameError, ManyFacesError, PipelineError
from splitface.edge.pipeline.landmarks import (
    FIVE_POINT_NAMES,
    FaceMesh,
    LandmarkerOptions,
    Landmarks,
)
from splitface.edge.pipeline.quality import LowQualityError, Quality, QualityOptions, crop_measures
from splitface.edge.pipeline.types import Detection, Detections
from splitface.shared.closing import Closing


@dataclass(frozen=True)
class PipelineOptions:
    """All stage options. ``face_policy`` (for ``process``): "primary" takes the largest and
    most central face; "single" refuses frames with more than one face. ``max_faces`` bounds
    the work per frame (largest faces first)."""

    detector: DetectorOptions = field(default_factory=DetectorOptions)
    landmarker: LandmarkerOptions = field(default_factory=LandmarkerOptions)
    embedder: EmbedderOptions = field(default_factory=EmbedderOptions)
    aligner: AlignerOptions = field(default_factory=AlignerOptions)
    quality: QualityOptions = field(default_factory=QualityOptions)
    face_policy: str = "primary"
    max_faces: int = 32
    blank_std: float = 2.0  # grey-level std below which a frame counts as blank


@dataclass(frozen=True)
class StageTimings:
    """Milliseconds per stage for one face; ``total_ms`` = detect + landmarks + align + embed."""

    detect_ms: float
    landmarks_ms: float = 0.0
    align_ms: float = 0.0
    embed_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.detect_ms + self.landmarks_ms + self.align_ms + self.embed_ms

    def to_dict(self) -> dict:
        return {k: round(v, 3) for k, v in (("detect_ms", self.detect_ms),
                                            ("landmarks_ms", self.landmarks_ms),
                                            ("align_ms", self.align_ms),
                                            ("embed_ms", self.embed_ms),
                                            ("total_ms", self.total_ms))}


_NO_CROP = np.zeros((0, 0, 3), np.uint8)
_NO_EMBEDDING = np.zeros(0, np.float32)


@dataclass(frozen=True)
class Face:
    """One face of a frame: where it is, how good it is, and its embedding if it passed.

    ``reasons`` lists the quality measures below the purpose's bar; ``embedding`` is empty
    (shape (0,)) unless the face passed and was embedded. Never log the embedding.
    """

    detection: Detection
    landmarks: Landmarks
    quality: Quality
    purpose: str
    reasons: tuple[str, ...]
    timings: StageTimings
    aligned: np.ndarray = field(default_factory=lambda: _NO_CROP)  # 112x112 BGR uint8
    embedding: np.ndarray = field(default_factory=lambda: _NO_EMBEDDING)
    embedder: str = ""

    @property
    def embedded(self) -> bool:
        return self.embedding.size > 0

    @property
    def status(self) -> str:
        return "ok" if self.embedded else "low_quality"

    def to_dict(self) -> dict:
        """Box, landmarks, quality and status: what a person or a door controller may see."""
        out = {**self.detection.to_dict(), "status": self.status,
               "quality": self.quality.to_dict()}
        if self.reasons:
            out["reasons"] = list(self.reasons)
        if self.landmarks.found:
            out["landmarks"] = {n: [round(float(x), 1), round(float(y), 1)]
                                for n, (x, y) in zip(FIVE_POINT_NAMES, self.landmarks.five,
                                                     strict=True)}
        return out

    def __repr__(self) -> str:  # keep embeddings out of logs and tracebacks
        return (f"Face(box={self.detection.to_dict()['box']}, status={self.status!r}, "
                f"eye_px={self.quality.eye_px:.1f}, embedder={self.embedder!r}, "
                f"dim={self.embedding.shape[0]})")


@dataclass(frozen=True)
class FrameFaces:
    """Every face found in one frame, best-ranked (large, central) first."""

    faces: list[Face]
    frame_size: tuple[int, int]
    detect_ms: float
    detections: int  # faces the detector found (``faces`` holds at most max_faces of them)

    def __len__(self) -> int:
        return len(self.faces)

    def __iter__(self) -> Iterator[Face]:
        return iter(self.faces)

    @property
    def embedded(self) -> list[Face]:
        return [f for f in self.faces if f.embedded]


@dataclass(frozen=True)
class FrameOutcome:
    """What happened to one frame of a stream: its faces, or a named error, never both."""

    frame: Frame
    result: FrameFaces | None = None
    error: PipelineError | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return self.error.status
        return "ok" if self.result is not None and len(self.result) else "no_face"


class FacePipeline(Closing):
    """Detector + face mesh + aligner + embedder, loaded once; ``close()`` frees the models."""

    def __init__(self, options: PipelineOptions) -> None:
        if options.face_policy not in ("primary", "single"):
            raise ValueError(f"face_policy must be 'primary' or 'single', "
                             f"not {options.face_policy!r}")
        self.options = options
        self.aligner = Aligner(options.aligner)
        self.detector = FaceDetector(options.detector)
        self.landmarker: FaceMesh | None = None
        try:
            self.landmarker = FaceMesh(options.landmarker)
            self.embedder = create_embedder(options.embedder)
        except BaseException:
            self.detector.close()
            if self.landmarker is not None:
                self.landmarker.close()
            raise

    @classmethod
    def from_options(cls, options: PipelineOptions) -> FacePipeline:
        return cls(options)

    def detect(self, frame_bgr: np.ndarray) -> tuple[Detections, float]:
        """All detections and the milliseconds it took; BlankFrameError for a covered lens."""
        frame = as_bgr_frame(frame_bgr)
        # Every 8th pixel is enough to tell a covered lens from a scene, at ~1/64 of the cost.
        h, w = frame.shape[:2]
        sample = cv2.resize(frame, (max(1, w // 8), max(1, h // 8)),
                            interpolation=cv2.INTER_NEAREST)
        spread = float(cv2.meanStdDev(sample.reshape(-1, 1))[1][0, 0])
        if spread < self.options.blank_std:
            raise BlankFrameError(f"frame is blank (grey-level std {spread:.2f})")
        t0 = time.perf_counter()
        dets = self.detector.detect(frame)
        return dets, (time.perf_counter() - t0) * 1000.0

    def analyse_face(self, frame_bgr: np.ndarray, det: Detection, purpose: str = "query",
                     detect_ms: float = 0.0) -> Face:
        """Landmarks, quality, crop and (if it passes ``purpose``'s bar) the embedding."""
        bar = self.options.quality.bar(purpose)
        assert self.landmarker is not None
        t0 = time.perf_counter()
        lm = self.landmarker.refine(frame_bgr, det)
        t1 = time.perf_counter()
        if not lm.found:
            kp = np.asarray(det.keypoints, dtype=np.float64)
            # No landmarks: only the detector's eye distance and scores are measured.
            q = Quality(float(np.linalg.norm(kp[1] - kp[0])), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                        float(det.score), lm.presence, lm.orientation)
            return Face(det, lm, q, purpose, ("not_a_clear_face",),
                        StageTimings(detect_ms, (t1 - t0) * 1e3))
        aligned = self.aligner.align(frame_bgr, lm.five)
        t2 = time.perf_counter()
        sharpness, brightness, clipped = crop_measures(aligned)
        q = Quality(lm.eye_distance, lm.roll_deg, lm.yaw_deg, lm.pitch_deg, sharpness,
                    brightness, clipped, float(det.score), lm.presence, lm.orientation)
        reasons = q.failures(bar)
        if reasons:
            return Face(det, lm, q, purpose, reasons,
                        StageTimings(detect_ms, (t1 - t0) * 1e3, (t2 - t1) * 1e3), aligned)
        t3 = time.perf_counter()
        emb = self.embedder.embed_face(frame_bgr, det, aligned)
        t4 = time.perf_counter()
        timings = StageTimings(detect_ms, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t4 - t3) * 1e3)
        return Face(det, lm, q, purpose, (), timings, aligned, emb, self.options.embedder.kind)

    def analyse(self, frame_bgr: np.ndarray, purpose: str = "query") -> FrameFaces:
        """Every face (up to ``max_faces``, best-ranked first); CorruptInputError or
        BlankFrameError for a bad frame, an empty result for a frame without faces."""
        frame = as_bgr_frame(frame_bgr)
        dets, detect_ms = self.detect(frame)
        ranked = dets.ranked()
        faces = [self.analyse_face(frame, d, purpose, detect_ms)
                 for d in ranked[: self.options.max_faces]]
        return FrameFaces(faces, dets.frame_size, detect_ms, len(dets))

    def process(self, frame_bgr: np.ndarray, purpose: str = "query") -> Face:
        """The one face a single-person flow wants, embedded. Raises CorruptInputError,
        BlankFrameError, NoFaceError, ManyFacesError or LowQualityError (with reasons)."""
        frame = as_bgr_frame(frame_bgr)
        dets, detect_ms = self.detect(frame)
        if self.options.face_policy == "single" and len(dets) > 1:
            raise ManyFacesError(f"{len(dets)} faces in frame; exactly one required")
        face = self.analyse_face(frame, dets.primary(), purpose, detect_ms)
        if not face.embedded:
            raise LowQualityError(f"face below the {purpose} quality bar: "
                                  f"{', '.join(face.reasons)}", face.reasons)
        return face

    def run(self, frames: Iterable[Frame], purpose: str = "query") -> Iterator[FrameOutcome]:
        """One outcome per frame with every face; a failing frame never stops the stream."""
        for fr in frames:
            if fr.error is not None:
                yield FrameOutcome(fr, error=fr.error)
                continue
            try:
                yield FrameOutcome(fr, result=self.analyse(fr.image, purpose))
            except PipelineError as exc:
                yield FrameOutcome(fr, error=exc)

    def close(self) -> None:
        self.embedder.close()
        if self.landmarker is not None:
            self.landmarker.close()
        self.detector.close()
