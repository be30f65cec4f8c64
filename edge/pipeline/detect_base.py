"""Options and the interface both BlazeFace paths implement (MediaPipe Tasks and bare LiteRT)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from splitface.edge.models.paths import VarLayout
from splitface.edge.pipeline.types import Detections


def _default_blazeface() -> Path:
    return VarLayout.default().blazeface_short


@dataclass(frozen=True)
class DetectorOptions:
    """BlazeFace short-range settings; the defaults match MediaPipe's face detector graph."""

    backend: str = "mediapipe"  # "mediapipe" | "litert"
    model_path: Path = field(default_factory=_default_blazeface)
    min_score: float = 0.5
    min_suppression_iou: float = 0.3
    num_threads: int = 1


class Detector(Protocol):
    """``detect(frame_bgr) -> Detections``; usable as a context manager that frees the model."""

    def detect(self, frame_bgr: np.ndarray) -> Detections: ...

    def close(self) -> None: ...

    def __enter__(self) -> Detector: ...

    def __exit__(self, *exc: object) -> None: ...
