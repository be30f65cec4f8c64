"""Aligned 112x112 faces from the test photos: the calibration and the float-vs-int8 check set.

Faces go through the same detector, face mesh and alignment the terminal uses, so calibration
sees the input distribution the int8 model will see in service.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from splitface.edge.models.paths import VarLayout
from splitface.edge.pipeline.align import Aligner, AlignerOptions
from splitface.edge.pipeline.detect import DetectorOptions, FaceDetector
from splitface.edge.pipeline.landmarks import FaceMesh, LandmarkerOptions
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
    with FaceDetector(DetectorOptions(model_path=layout.blazeface_full)) as det, \
            FaceMesh(LandmarkerOptions(model_path=layout.face_landmark)) as mesh:
        for im in data.images:
            if im.kind not in kinds:
                continue
            frame = cv2.imread(str(im.path), cv2.IMREAD_COLOR)
            if frame is None:
                continue
            dets = det.detect(frame)
            if not len(dets):
                continue
            marks = mesh.refine(frame, dets.primary())
            if not marks.found:
                continue
            faces.append(aligner.align(frame, marks.five))
            ids.append(im.identity)
            files.append(str(im.path.relative_to(data.root)))
    return FaceSet(np.stack(faces), tuple(ids), tuple(files))


def to_model_input(faces_bgr: np.ndarray) -> np.ndarray:
    """(N,112,112,3) BGR uint8 -> float32 RGB (x-127.5)/128, MobileFaceNet's normalisation."""
    rgb = faces_bgr[..., ::-1].astype(np.float32)
    return (rgb - 127.5) / 128.0
