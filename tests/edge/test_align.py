"""Alignment: the similarity fit is exact on exact data and lands real keypoints on template."""

from __future__ import annotations

import numpy as np
import pytest

from splitface.edge.pipeline.align import (
    ARCFACE_112,
    AlignmentError,
    umeyama_similarity,
)
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


def test_real_faces_land_on_template(pipe, testdata):
    """The mesh's five points of every real near-frontal photo fit the template within a few
    pixels (faces and expressions differ from the template's average, but not by much)."""
    worst = []
    for im in testdata.photos():
        frame = read(im.path)
        dets = pipe.detector.detect(frame)
        marks = pipe.landmarker.refine(frame, dets.primary())
        if not marks.found or abs(marks.yaw_deg) > 25:  # occluded (cameraman) or turned away
            continue
        M = pipe.aligner.transform(marks.five)
        pts = marks.five @ M[:, :2].T + M[:, 2]
        worst.append(float(np.abs(pts - pipe.aligner.template).max()))
        assert worst[-1] < 12.0, im.path.name
        crop = pipe.aligner.align(frame, marks.five)
        assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    # Measured on 32 photos: median 6.0 px, worst 11.0 px (a laughing face in a group photo).
    assert len(worst) >= 25 and float(np.median(worst)) < 7.0


def test_large_faces_are_area_averaged_not_aliased():
    """A fine stripe pattern shrunk 8x must come out as its mean grey, not as stripes."""
    from splitface.edge.pipeline.warp import warp_similarity

    frame = np.zeros((896, 896, 3), np.uint8)
    frame[:, ::2] = 255  # one-pixel vertical stripes
    crop = warp_similarity(frame, np.array([[0.125, 0, 0], [0, 0.125, 0]]), 112)
    assert abs(float(crop[8:-8, 8:-8].mean()) - 127.5) < 3 and float(crop[8:-8, 8:-8].std()) < 3
