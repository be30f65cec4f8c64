"""Typed detection results shared by both BlazeFace paths (never ``None``, always a list)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from splitface.edge.pipeline.errors import NoFaceError

# BlazeFace keypoint order (subject's right eye appears on the image's left).
KEYPOINT_NAMES = (
    "right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion",
)


@dataclass(frozen=True)
class Detection:
    """One face: pixel box (x, y, w, h), score, and 6 keypoints in pixels, shape (6, 2)."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray

    @property
    def area(self) -> float:
        return max(self.box[2], 0.0) * max(self.box[3], 0.0)

    @property
    def center(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return x + w / 2.0, y + h / 2.0

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "keypoints": {n: [round(float(x), 2), round(float(y), 2)]
                          for n, (x, y) in zip(KEYPOINT_NAMES, self.keypoints, strict=True)},
        }


@dataclass(frozen=True)
class Detections:
    """All faces in one frame, plus the frame size needed to rank them."""

    faces: list[Detection] = field(default_factory=list)
    frame_size: tuple[int, int] = (0, 0)  # (width, height)

    def __len__(self) -> int:
        return len(self.faces)

    def __iter__(self):
        return iter(self.faces)

    @property
    def status(self) -> str:
        return "none" if not self.faces else ("one" if len(self.faces) == 1 else "many")

    def ranked(self) -> list[Detection]:
        """Faces ordered best-first: large and central beats small and off-centre."""
        w, h = self.frame_size
        diag = max(float(np.hypot(w, h)), 1.0)

        def key(d: Detection) -> float:
            cx, cy = d.center
            off = float(np.hypot(cx - w / 2.0, cy - h / 2.0)) / diag  # 0 (centre) .. 0.5
            return np.sqrt(d.area) / diag * (1.0 - off)

        return sorted(self.faces, key=key, reverse=True)

    def primary(self) -> Detection:
        """The largest / most central face; raises NoFaceError when there is none."""
        if not self.faces:
            raise NoFaceError("no face detected")
        return self.ranked()[0]
