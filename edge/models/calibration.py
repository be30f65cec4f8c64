"""Aligned 112x112 faces from the test photos: the calibration and the float-vs-int8 check set.

Faces go through the same LiteRT BlazeFace + alignment the terminal uses, so calibration sees
the input distribution the int8 model will see in service.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from splitface.edge.models.paths import VarLayout
from splitface.edge.pipeline.align import Aligner, AlignerOptions
from splitface.edge.pipeline.detect_base import DetectorOptions
from splitface.edge.pipeline.detect_litert import LiteRTFaceDetector
from splitface.edge.testdata import TestData


@dataclass(frozen=True)
class FaceSet:
    """Aligned BGR faces (N, 112, 112, 3) uint8 with their identity and file of origin."""

    faces: np.ndarray
    identities: tuple[str, ...]
    files: tuple[str, ...]


def aligned_faces(layout: VarLayout, kinds: tuple[str, ...] = ("photo", "view")) -> FaceSet:
    data = TestData.load(layout.testdata)
    aligner = Aligner(AlignerOptions())
    faces, ids, files = [], [], []
    with LiteRTFaceDetector(DetectorOptions(backend="litert",
                                            model_path=layout.blazeface_short)) as det:
        for im in data.images:
            if im.kind not in kinds:
                continue
            frame = cv2.imread(str(im.path), cv2.IMREAD_COLOR)
            if frame is None:
                continue
            dets = det.detect(frame)
            if not len(dets):
                continue
            faces.append(aligner.align(frame, dets.primary().keypoints))
            ids.append(im.identity)
            files.append(str(im.path.relative_to(data.root)))
    return FaceSet(np.stack(faces), tuple(ids), tuple(files))


def to_model_input(faces_bgr: np.ndarray) -> np.ndarray:
    """(N,112,112,3) BGR uint8 -> float32 RGB (x-127.5)/128, MobileFaceNet's normalisation."""
    rgb = faces_bgr[..., ::-1].astype(np.float32)
    return (rgb - 127.5) / 128.0
