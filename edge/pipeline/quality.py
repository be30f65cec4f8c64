"""Face image quality, in the spirit of ISO/IEC 29794-5: measured per face, gated per purpose.

Measures: inter-eye distance in frame pixels, roll (eye line in the frame), yaw and pitch (from
the mesh's depth), sharpness and exposure of the aligned crop, the detector's score and the
mesh's face-presence score. Two bars: *enrol* (a template must be a good capture: a refused
image says why) and *query* (identification reports quality and only skips faces too small or
too unsure to be worth a query). The thresholds are calibrated on the real photos and views of
``var/testdata`` by ``benchmarks/bench_detect.py``; docs/MODELS.md gives the numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from splitface.edge.pipeline.errors import PipelineError

# Face region of the 112x112 ArcFace crop used for sharpness and exposure: brows to chin,
# cheek to cheek (little hair or background).
_ROWS, _COLS = slice(36, 104), slice(24, 88)


class LowQualityError(PipelineError):
    """The face is below the quality bar for this purpose; ``reasons`` says which measures."""

    status = "low_quality"

    def __init__(self, message: str, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reasons = reasons


@dataclass(frozen=True)
class QualityBar:
    """Thresholds of one purpose; a measure outside its bound is a reason to refuse."""

    min_eye_px: float
    max_abs_roll_deg: float
    max_abs_yaw_deg: float
    max_abs_pitch_deg: float
    min_sharpness: float
    min_brightness: float
    max_brightness: float
    max_clipped: float
    min_detection_score: float
    min_presence: float


# Enrolment (calibrated on the 37 real photos of var/testdata and their synthetic views; the
# numbers are in docs/MODELS.md): ISO/IEC 19794-5 asks >= 90 px between the eyes for a passport
# photo, our 112-pixel crop holds ~35 px, so 32 px keeps the template at (nearly) full
# resolution. Pose: the real photos span yaw -44..32 and pitch -24..23 degrees; +-30 keeps
# near-frontal captures. Roll: in-plane tilt is undone by the alignment, so only sideways or
# upside-down photos (beyond 60 degrees) are refused. Sharpness: real photos >= 0.67, blur
# sigma=2 views 0.24..1.0. Brightness: real photos 61..187, gamma-2.2 darkened views down to 15.
ENROL = QualityBar(min_eye_px=32.0, max_abs_roll_deg=60.0, max_abs_yaw_deg=30.0,
                   max_abs_pitch_deg=30.0, min_sharpness=0.4, min_brightness=45.0,
                   max_brightness=220.0, max_clipped=0.25, min_detection_score=0.6,
                   min_presence=0.8)
# Queries: faces are turned upright from the landmarks, so roll is not gated; the size floor is
# where identification falls apart (bench_detect: accuracy against inter-eye distance).
QUERY = QualityBar(min_eye_px=12.0, max_abs_roll_deg=180.0, max_abs_yaw_deg=60.0,
                   max_abs_pitch_deg=60.0, min_sharpness=0.0, min_brightness=0.0,
                   max_brightness=255.0, max_clipped=1.0, min_detection_score=0.0,
                   min_presence=0.5)


@dataclass(frozen=True)
class QualityOptions:
    """The bars the pipeline applies: ``enrol`` for enrolment, ``query`` for identification."""

    enrol: QualityBar = field(default_factory=lambda: ENROL)
    query: QualityBar = field(default_factory=lambda: QUERY)

    def bar(self, purpose: str) -> QualityBar:
        if purpose == "enrol":
            return self.enrol
        if purpose == "query":
            return self.query
        raise ValueError(f"purpose must be 'enrol' or 'query', not {purpose!r}")


@dataclass(frozen=True)
class Quality:
    """Measured quality of one face. ``sharpness``: Laplacian std over grey-level std of the
    crop's face region (scale-free: darker is not blurrier); ``brightness``: its mean grey
    level; ``clipped``: share of its pixels at 0-3 or 252-255."""

    eye_px: float
    roll_deg: float
    yaw_deg: float
    pitch_deg: float
    sharpness: float
    brightness: float
    clipped: float
    detection_score: float
    presence: float
    orientation: int = 0

    def failures(self, bar: QualityBar) -> tuple[str, ...]:
        """Names of the measures outside ``bar`` (empty: the face passes)."""
        out = []
        if self.presence < bar.min_presence:
            out.append("not_a_clear_face")
        if self.eye_px < bar.min_eye_px:
            out.append("too_small")
        if abs(self.roll_deg) > bar.max_abs_roll_deg:
            out.append("not_upright")
        if abs(self.yaw_deg) > bar.max_abs_yaw_deg:
            out.append("turned_sideways")
        if abs(self.pitch_deg) > bar.max_abs_pitch_deg:
            out.append("tilted_up_or_down")
        if self.sharpness < bar.min_sharpness:
            out.append("blurred")
        if self.brightness < bar.min_brightness:
            out.append("too_dark")
        if self.brightness > bar.max_brightness:
            out.append("too_bright")
        if self.clipped > bar.max_clipped:
            out.append("over_or_under_exposed")
        if self.detection_score < bar.min_detection_score:
            out.append("low_detection_score")
        return tuple(out)

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def crop_measures(aligned_bgr: np.ndarray) -> tuple[float, float, float]:
    """(sharpness, brightness, clipped) of an aligned 112x112 crop's face region."""
    grey = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY)
    scale = aligned_bgr.shape[0] / 112.0
    rows = slice(round(_ROWS.start * scale), round(_ROWS.stop * scale))
    cols = slice(round(_COLS.start * scale), round(_COLS.stop * scale))
    face = grey[rows, cols]
    lap = cv2.Laplacian(face.astype(np.float32), cv2.CV_32F, ksize=3)
    sharpness = float(lap.std()) / (float(face.std()) + 4.0)
    clipped = float(((face <= 3) | (face >= 252)).mean())
    return sharpness, float(face.mean()), clipped
