"""Face embedders: MobileFaceNet (int8 or float, LiteRT) and dlib's CC0 ResNet.

Every embedder returns an L2-normalised float32 vector, so cosine similarity is a dot product
downstream (and in MPC). The int8 model keeps its input/output scale and zero point here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from splitface.edge.models.paths import VarLayout
from splitface.edge.pipeline.errors import ModelMissingError, RuntimeUnavailableError
from splitface.edge.pipeline.runtime import load_interpreter
from splitface.edge.pipeline.types import Detection
from splitface.shared.closing import Closing

EMBEDDER_KINDS = ("mobilefacenet-int8", "mobilefacenet-float", "dlib-resnet")
# MobileFaceNet's training normalisation (from the npm package's Kotlin code): RGB, (x-127.5)/128.
MFN_MEAN, MFN_STD = 127.5, 128.0


@dataclass(frozen=True)
class EmbedderOptions:
    """Which embedder; ``model_path`` overrides the file under ``var/models``."""

    kind: str = "mobilefacenet-int8"
    model_path: Path | None = None
    num_threads: int = 1


@dataclass(frozen=True)
class QuantParams:
    """Affine int8 quantisation of a tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int
    dtype: str

    def quantize(self, x: np.ndarray) -> np.ndarray:
        info = np.iinfo(self.dtype)
        q = np.round(x / self.scale) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - self.zero_point) * np.float32(self.scale)


def l2_normalise(v: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return (v / max(float(np.linalg.norm(v)), eps)).astype(np.float32)


class Embedder(Protocol):
    """``embed_face`` -> unit-norm float32 vector of ``dim`` entries."""

    kind: str
    dim: int

    def embed_face(self, frame_bgr: np.ndarray, detection: Detection,
                   aligned_bgr: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


def _param(detail: dict) -> QuantParams | None:
    if np.dtype(detail["dtype"]) == np.float32:
        return None
    scale, zp = detail["quantization"]
    return QuantParams(float(scale), int(zp), np.dtype(detail["dtype"]).name)


class MobileFaceNetEmbedder(Closing):
    """MobileFaceNet (192-d) on LiteRT; handles float and integer input/output tensors."""

    def __init__(self, options: EmbedderOptions) -> None:
        layout = VarLayout.default()
        default = layout.mobilefacenet_int8 if options.kind == "mobilefacenet-int8" \
            else layout.mobilefacenet_float
        self.kind = options.kind
        self.model_path = Path(options.model_path or default)
        self._interp = load_interpreter(self.model_path, options.num_threads)
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        if tuple(inp["shape"]) != (1, 112, 112, 3):
            raise ModelMissingError(f"{self.model_path}: expected input (1,112,112,3), "
                                    f"got {tuple(inp['shape'])}; rebuild with `make models`")
        self._in, self._out = inp["index"], out["index"]
        self.input_quant = _param(inp)
        self.output_quant = _param(out)
        self.dim = int(out["shape"][-1])

    @classmethod
    def from_options(cls, options: EmbedderOptions) -> MobileFaceNetEmbedder:
        return cls(options)

    def raw(self, aligned_bgr: np.ndarray) -> np.ndarray:
        """Un-normalised model output (float32) for one 112x112 BGR crop."""
        rgb = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2RGB).astype(np.float32)
        x = ((rgb - MFN_MEAN) / MFN_STD)[None]
        if self.input_quant is not None:
            x = self.input_quant.quantize(x)
        self._interp.set_tensor(self._in, x)
        self._interp.invoke()
        y = self._interp.get_tensor(self._out)[0]
        return self.output_quant.dequantize(y) if self.output_quant is not None \
            else y.astype(np.float32)

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        return l2_normalise(self.raw(aligned_bgr))

    def embed_face(self, frame_bgr: np.ndarray, detection: Detection,
                   aligned_bgr: np.ndarray) -> np.ndarray:
        return self.embed(aligned_bgr)

    def close(self) -> None:
        self._interp = None


class DlibResNetEmbedder(Closing):
    """dlib's 128-d ResNet (CC0 weights from ``face-recognition-models``), licence-clean choice.

    dlib aligns with its own 5-point predictor to a 150x150 chip, seeded with the BlazeFace box,
    so it ignores the ArcFace-aligned crop.
    """

    def __init__(self, options: EmbedderOptions) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise RuntimeUnavailableError("dlib-resnet needs `dlib-bin` (pip)") from exc
        # Locate the weights without importing face_recognition_models (its __init__ needs
        # pkg_resources, which new setuptools no longer ships).
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeUnavailableError("dlib-resnet needs `face-recognition-models` (pip)")
        weights = Path(next(iter(spec.submodule_search_locations))) / "models"
        self.kind = options.kind
        self.dim = 128
        self._dlib = dlib
        rec = Path(options.model_path or weights / "dlib_face_recognition_resnet_model_v1.dat")
        pose = weights / "shape_predictor_5_face_landmarks.dat"
        for p in (rec, pose):
            if not p.is_file():
                raise ModelMissingError(f"dlib model not found: {p}")
        self._pose = dlib.shape_predictor(str(pose))
        self._rec = dlib.face_recognition_model_v1(str(rec))

    @classmethod
    def from_options(cls, options: EmbedderOptions) -> DlibResNetEmbedder:
        return cls(options)

    def embed_face(self, frame_bgr: np.ndarray, detection: Detection,
                   aligned_bgr: np.ndarray) -> np.ndarray:
        x, y, w, h = detection.box
        rect = self._dlib.rectangle(round(x), round(y),
                                    round(x + w), round(y + h))
        rgb = np.ascontiguousarray(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        shape = self._pose(rgb, rect)
        chip = self._dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
        return l2_normalise(np.asarray(self._rec.compute_face_descriptor(chip)))

    def close(self) -> None:
        self._rec = None
        self._pose = None


def create_embedder(options: EmbedderOptions) -> Embedder:
    """The embedder named by ``options.kind`` (one of :data:`EMBEDDER_KINDS`)."""
    if options.kind in ("mobilefacenet-int8", "mobilefacenet-float"):
        return MobileFaceNetEmbedder(options)
    if options.kind == "dlib-resnet":
        return DlibResNetEmbedder(options)
    raise ValueError(f"unknown embedder kind {options.kind!r}; choose from {EMBEDDER_KINDS}")
