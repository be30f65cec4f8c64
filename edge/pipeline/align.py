"""Similarity-transform alignment of a face to the standard 112x112 ArcFace crop.

The face mesh gives both eye centres, the nose tip and both mouth corners: the five points of
the ArcFace/InsightFace template that MobileFaceNet's training crops were made with. We fit the
least-squares similarity (rotation, uniform scale, translation; Umeyama 1991) from them to the
template, so an upside-down or tilted face comes out upright, and warp with area-averaging
for large faces (:mod:`warp`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splitface.edge.pipeline.errors import PipelineError
from splitface.edge.pipeline.warp import warp_similarity

# ArcFace/InsightFace 112x112 template (continuous coordinates): eyes, nose tip, mouth corners.
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
) + 0.5  # the published template is in pixel-centre coordinates


class AlignmentError(PipelineError):
    """Keypoints are degenerate (coincident or non-finite); no similarity transform exists."""

    status = "alignment_failed"


def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix M minimising sum |s R src_i + t - dst_i|^2 (Umeyama, with reflection guard)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise AlignmentError(f"need matching (N>=2, 2) point sets, got {src.shape}, {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise AlignmentError("non-finite keypoints")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    var_s = (s_c**2).sum() / len(src)
    if var_s < 1e-9:
        raise AlignmentError("keypoints coincide")
    cov = d_c.T @ s_c / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(2)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[1, 1] = -1.0
    R = U @ D @ Vt
    scale = np.trace(np.diag(S) @ D) / var_s
    t = mu_d - scale * R @ mu_s
    return np.hstack([scale * R, t[:, None]])


@dataclass(frozen=True)
class AlignerOptions:
    """Output crop size; the template scales with it (112 is what MobileFaceNet expects)."""

    size: int = 112


class Aligner:
    """Warp a frame so the face's five points land on the 112x112 template."""

    def __init__(self, options: AlignerOptions) -> None:
        self.options = options
        self.template = ARCFACE_112 * (options.size / 112.0)

    @classmethod
    def from_options(cls, options: AlignerOptions) -> Aligner:
        return cls(options)

    def transform(self, five: np.ndarray) -> np.ndarray:
        """Frame -> crop matrix (continuous coordinates) for five points (5, 2)."""
        return umeyama_similarity(np.asarray(five, dtype=np.float64), self.template)

    def align(self, frame_bgr: np.ndarray, five: np.ndarray) -> np.ndarray:
        """Aligned ``size x size`` BGR uint8 crop."""
        return warp_similarity(frame_bgr, self.transform(five), self.options.size)
