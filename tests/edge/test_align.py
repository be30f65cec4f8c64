"""Alignment: the similarity fit is exact on exact data and lands real keypoints on template."""

from __future__ import annotations

import numpy as np
import pytest

from splitface.edge.pipeline.align import (
    ARCFACE_112,
    Aligner,
    AlignerOptions,
    AlignmentError,
    umeyama_similarity,
)
from splitface.edge.pipeline.detect_base import DetectorOptions
from splitface.edge.pipeline.detect_litert import LiteRTFaceDetector
from tests.edge.conftest import read


@pytest.mark.parametrize("angle,scale,shift", [(0.0, 1.0, (0, 0)), (0.3, 2.5, (40, -7)),
                                               (-1.2, 0.4, (-100, 55))])
def test_umeyama_recovers_similarity(angle, scale, shift):
    c, s = np.cos(angle), np.sin(angle)
    M = np.array([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]])
    src = np.array([[10, 20], [50, 22], [31, 48], [30, 70.0]])
    dst = src @ M[:, :2].T + M[:, 2]
    np.testing.assert_allclose(umeyama_similarity(src, dst), M, atol=1e-9)


def test_umeyama_never_reflects():
    src = np.array([[0, 0], [1, 0], [0, 1.0]])
    dst = src * np.array([-1, 1])  # a mirror image: best *similarity* is not a reflection
    M = umeyama_similarity(src, dst)
    assert np.linalg.det(M[:, :2]) > 0


@pytest.mark.parametrize("pts", [np.zeros((4, 2)), np.full((4, 2), np.nan), np.zeros((1, 2))])
def test_degenerate_keypoints_raise(pts):
    with pytest.raises(AlignmentError):
        umeyama_similarity(pts, ARCFACE_112[: len(pts)])


def test_real_faces_land_on_template(layout, testdata):
    aligner = Aligner.from_options(AlignerOptions())
    with LiteRTFaceDetector(DetectorOptions(backend="litert",
                                            model_path=layout.blazeface_short)) as det:
        for im in testdata.photos():
            if im.transform == "partial":
                continue
            frame = read(im.path)
            face = det.detect(frame).primary()
            M = aligner.transform(face.keypoints)
            pts = face.keypoints[:4] @ M[:, :2].T + M[:, 2]
            # BlazeFace geometry differs a little from the ArcFace 5-point template.
            assert np.abs(pts - ARCFACE_112).max() < 8.0, im.path.name
            crop = aligner.align(frame, face.keypoints)
            assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
