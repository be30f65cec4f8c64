"""Compare the int8 MobileFaceNet against the float one on real aligned faces.

The gate for shipping an int8 model: cosine(int8, float) per face, reported as mean and min,
overall and on the real (non-synthetic) photos.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from splitface.edge.pipeline.embed import EmbedderOptions, MobileFaceNetEmbedder


@dataclass(frozen=True)
class QualityReport:
    """int8-vs-float agreement and single-thread latency on this machine."""

    faces: int
    cos_mean: float
    cos_min: float
    cos_min_file: str
    photos_cos_mean: float
    photos_cos_min: float
    float_ms: float
    int8_ms: float

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _embed_all(emb: MobileFaceNetEmbedder, faces: np.ndarray) -> tuple[np.ndarray, float]:
    out = np.stack([emb.embed(f) for f in faces])
    reps = min(len(faces), 30)
    t0 = time.perf_counter()
    for f in faces[:reps]:
        emb.raw(f)
    return out, (time.perf_counter() - t0) * 1000.0 / max(reps, 1)


def compare(float_path: Path, int8_path: Path, faces: np.ndarray, files: tuple[str, ...]
            ) -> QualityReport:
    f_emb = MobileFaceNetEmbedder(EmbedderOptions("mobilefacenet-float", float_path))
    q_emb = MobileFaceNetEmbedder(EmbedderOptions("mobilefacenet-int8", int8_path))
    F, f_ms = _embed_all(f_emb, faces)
    Q, q_ms = _embed_all(q_emb, faces)
    cos = (F * Q).sum(1)
    photo = np.array([f.startswith("photos/") for f in files])
    pc = cos[photo] if photo.any() else cos
    worst = int(np.argmin(cos))
    return QualityReport(len(cos), float(cos.mean()), float(cos.min()), files[worst],
                         float(pc.mean()), float(pc.min()), f_ms, q_ms)
