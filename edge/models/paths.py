"""Where fetched and built artefacts live (``var/`` under the repository, or ``$SPLITFACE_VAR``).

One function resolves the root so tests, the CLI and the build agree without global state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_var_dir() -> Path:
    """``$SPLITFACE_VAR`` if set, else ``<repo>/var`` (the editable install keeps us in-tree)."""
    env = os.environ.get("SPLITFACE_VAR")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "var"


@dataclass(frozen=True)
class VarLayout:
    """The file layout under ``var/`` that the build writes and the pipeline reads."""

    root: Path

    @classmethod
    def default(cls) -> VarLayout:
        return cls(default_var_dir())

    @property
    def cache(self) -> Path:
        return self.root / "cache" / "registry"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def testdata(self) -> Path:
        return self.root / "testdata"

    @property
    def manifest(self) -> Path:
        return self.models / "manifest.sha256"

    @property
    def blazeface_short(self) -> Path:
        return self.models / "face_detection_short_range.tflite"

    @property
    def blazeface_full(self) -> Path:
        return self.models / "face_detection_full_range_sparse.tflite"

    @property
    def face_landmark(self) -> Path:
        """MediaPipe's 468-point face mesh (192x192 input), used to refine keypoints."""
        return self.models / "face_landmark.tflite"

    @property
    def mobilefacenet_raw(self) -> Path:
        return self.models / "mobilefacenet_npm_b2.tflite"

    @property
    def mobilefacenet_float(self) -> Path:
        return self.models / "mobilefacenet_float.tflite"

    @property
    def mobilefacenet_quant_src(self) -> Path:
        """Float model with PReLUs split into fused-ReLU conv pairs: the quantizer's input."""
        return self.models / "mobilefacenet_float_split.tflite"

    @property
    def mobilefacenet_int8(self) -> Path:
        return self.models / "mobilefacenet_int8.tflite"

    @property
    def model_card_json(self) -> Path:
        return self.models / "mobilefacenet_int8.card.json"
