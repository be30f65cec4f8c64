"""Shared fixtures: the built models and test photos (``make models``), loaded once."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from splitface.edge.models.paths import VarLayout
from splitface.edge.testdata import TestData, TestDataMissingError


@pytest.fixture(scope="session")
def layout() -> VarLayout:
    lay = VarLayout.default()
    missing = [p for p in (lay.blazeface_short, lay.blazeface_full, lay.face_landmark,
                           lay.mobilefacenet_float, lay.mobilefacenet_int8) if not p.is_file()]
    if missing:
        pytest.fail(f"edge models missing ({[p.name for p in missing]}); run `make models`")
    return lay


@pytest.fixture(scope="session")
def testdata(layout: VarLayout) -> TestData:
    try:
        return TestData.load(layout.testdata)
    except TestDataMissingError as exc:
        pytest.fail(str(exc))


def read(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return img


@pytest.fixture(scope="session")
def pipe(layout: VarLayout):
    """The terminal's default pipeline (full range + tiles, face mesh, int8 MobileFaceNet)."""
    from splitface.edge.pipeline.pipeline import FacePipeline
    from splitface.edge.pipeline.settings import default_pipeline_options

    with FacePipeline.from_options(default_pipeline_options()) as p:
        yield p


@pytest.fixture(scope="session")
def aligned(layout: VarLayout):
    """Every real photo and synthetic view, detected, landmarked and aligned to 112x112."""
    from splitface.edge.models.calibration import aligned_faces

    return aligned_faces(layout)
