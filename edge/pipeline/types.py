"""Typed detection results (never ``None``, always a list), in continuous frame coordinates."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from splitface.edge.pipeline.errors import NoFaceError


@dataclass(frozen=True)
class Detection:
    """One face: pixel box (x, y, w, h), score, and BlazeFace's 6 keypoints (6, 2): right eye,
    left eye, nose tip, mouth centre, right and left ear tragion (the subject's right eye
    appears on the image's left)."""

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
        return {"box": [round(float(v), 1) for v in self.box],
                "score": round(float(self.score), 4)}


def centrality_rank(box: tuple[float, float, float, float], frame_size: tuple[int, int]
                    ) -> float:
    """Large and central beats small and off-centre: sqrt(area)/diagonal x (1 - offset)."""
    w, h = frame_size
    diag = max(float(np.hypot(w, h)), 1.0)
    x, y, bw, bh = box
    off = float(np.hypot(x + bw / 2.0 - w / 2.0, y + bh / 2.0 - h / 2.0)) / diag  # 0 .. 0.5
    return float(np.sqrt(max(bw, 0.0) * max(bh, 0.0))) / diag * (1.0 - off)


@dataclass(frozen=True)
class Detections:
    """All faces in one frame, plus the frame size needed to rank them."""

    faces: list[Detection] = field(default_factory=list)
    frame_size: tuple[int, int] = (0, 0)  # (width, height)

    def __len__(self) -> int:
        return len(self.faces)

    def __iter__(self) -> Iterator[Detection]:
        return iter(self.faces)

    @property
    def status(self) -> str:
        return "none" if not self.faces else ("one" if len(self.faces) == 1 else "many")

    def ranked(self) -> list[Detection]:
        """Faces ordered best-first: large and central beats small and off-centre."""
        return sorted(self.faces, key=lambda d: centrality_rank(d.box, self.frame_size),
                      reverse=True)

    def primary(self) -> Detection:
        """The largest / most central face; raises NoFaceError when there is none."""
        if not self.faces:
            raise NoFaceError("no face detected")
        return self.ranked()[0]
