"""Detection: recall on hand-marked group photos, no faces in face-free photos, the window
plan, the anchor decoder and typed results."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from splitface.edge.pipeline.blazeface import FULL_RANGE, SHORT_RANGE, ssd_anchors, weighted_nms
from splitface.edge.pipeline.detect import DetectorOptions, FaceDetector
from splitface.edge.pipeline.errors import NoFaceError
from splitface.edge.pipeline.types import Detection, Detections
from splitface.edge.pipeline.windows import BOX_PER_EYE, plan_windows, whole_frame
from tests.edge.conftest import read

# Measured on the 31 hand-marked faces of the 8 group photos (docs/MODELS.md): the terminal's
# detector (full range + tiles) finds all of them; short range on the whole frame found 18.
GROUP_FACES = 31


def matches(dets: Detections, centres) -> tuple[int, int]:
    """(marked faces found, detections that match no mark). A detection matches a mark when
    the mark lies within half a box side of the box centre."""
    found, used = 0, set()
    for cx, cy in centres:
        for k, d in enumerate(dets):
            x, y, w, h = d.box
            if k not in used and np.hypot(x + w / 2 - cx, y + h / 2 - cy) <= 0.5 * max(w, h):
                found += 1
                used.add(k)
                break
    return found, len(dets) - len(used)


@pytest.fixture(scope="module")
def short_whole(layout):
    with FaceDetector(DetectorOptions(range="short", model_path=layout.blazeface_short,
                                      min_eye_px=0)) as det:
        yield det


def test_every_marked_face_is_found_and_nothing_else(pipe, testdata, short_whole):
    groups = testdata.groups()
    assert sum(len(g.faces) for g in groups) == GROUP_FACES
    found = short_found = 0
    for g in groups:
        frame = read(g.path)
        dets = pipe.detector.detect(frame)
        n, extra = matches(dets, g.faces)
        assert extra == 0, (g.path.name, [d.box for d in dets])
        found += n
        short_found += matches(short_whole.detect(frame), g.faces)[0]
        for d in dets:  # every face is a face to the mesh as well
            assert pipe.landmarker.refine(frame, d).found, (g.path.name, d.box)
    assert found == GROUP_FACES, f"recall dropped: {found}/{GROUP_FACES}"
    assert short_found < found


def test_face_free_photos_give_no_face(pipe, testdata):
    nofaces = testdata.nofaces()
    assert len(nofaces) >= 5
    for im in nofaces:
        frame = read(im.path)
        for f in (frame, cv2.resize(frame, (1280, 720))):
            result = pipe.analyse(f)
            assert len(result.embedded) == 0, (im.path.name, [x.detection.box for x in result])
    dets = pipe.detector.detect(read(nofaces[0].path))
    assert isinstance(dets, Detections) and len(dets) == 0 and dets.status == "none"
    with pytest.raises(NoFaceError):
        dets.primary()


def test_whole_frame_only_when_it_reaches_far_enough():
    assert plan_windows(640, 480, 192, 6.0, 20.0) == [whole_frame(640, 480)]
    assert plan_windows(1920, 1080, 192, 6.0, 0.0) == [whole_frame(1920, 1080)]
    wins = plan_windows(1280, 720, 192, 6.0, 20.0)
    assert wins[0].level == 0 and len(wins) > 1
    assert min(w.side for w in wins) <= 192 * 20.0 / 6.0 + 1e-6


@pytest.mark.parametrize("size,min_eye", [((1280, 720), 20.0), ((4000, 3000), 12.0),
                                          ((1000, 3000), 16.0)])
def test_tiles_hold_every_small_face_whole(size, min_eye):
    """Any face the whole frame cannot see, of any size down to ``min_eye``, lies entirely
    inside a window fine enough to see it."""
    w, h = size
    reach, inp = 6.0, 192
    wins = plan_windows(w, h, inp, reach, min_eye)
    rng = np.random.default_rng(7)  # placement only
    top_reach = reach * wins[0].side / inp
    for eye in np.geomspace(min_eye, top_reach, 6):
        box = BOX_PER_EYE * eye
        for x, y in rng.uniform([0, 0], [w - box, h - box], size=(200, 2)):
            ok = [win for win in wins
                  if reach * win.side / inp <= eye + 1e-9
                  and win.x - 1e-6 <= x and x + box <= win.x + win.side + 1e-6
                  and win.y - 1e-6 <= y and y + box <= win.y + win.side + 1e-6]
            assert ok, (size, eye, x, y)


def test_anchor_layouts():
    a = ssd_anchors(SHORT_RANGE)
    assert a.shape == (896, 2) and (a > 0).all() and (a < 1).all()
    np.testing.assert_allclose(a[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[1], a[0])  # two anchors per stride-8 cell
    np.testing.assert_allclose(a[512], [0.5 / 8, 0.5 / 8])  # first stride-16 cell
    f = ssd_anchors(FULL_RANGE)
    assert f.shape == (2304, 2)
    np.testing.assert_allclose(f[:2], [[0.5 / 48, 0.5 / 48], [1.5 / 48, 0.5 / 48]])


def test_weighted_nms_averages_overlaps():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=float)
    scores = np.array([0.9, 0.3, 0.8])
    kps = np.zeros((3, 6, 2))
    kps[1] += 4.0
    out = weighted_nms(boxes, scores, kps, 0.3)
    assert len(out) == 2
    box, score, kp = out[0]
    assert score == pytest.approx(0.9)
    np.testing.assert_allclose(box, (0.9 * boxes[0] + 0.3 * boxes[1]) / 1.2)
    np.testing.assert_allclose(kp, np.full((6, 2), 0.3 * 4.0 / 1.2))


def test_detections_scale_with_the_frame(pipe, testdata):
    """Continuous coordinates: the same photo at half size gives half the box (within 2 %)."""
    frame = read(testdata.photos("obama")[0].path)
    a = pipe.detector.detect(frame).primary()
    half = cv2.resize(frame, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    b = pipe.detector.detect(half).primary()
    np.testing.assert_allclose(np.array(b.box) * 2, a.box, atol=0.02 * a.box[2])


def test_primary_prefers_large_central_face():
    kp = np.zeros((6, 2), np.float32)
    small_corner = Detection((0, 0, 40, 40), 0.99, kp)
    big_centre = Detection((270, 190, 100, 100), 0.6, kp)
    big_edge = Detection((530, 0, 110, 110), 0.9, kp)
    for order in itertools.permutations([small_corner, big_edge, big_centre]):
        dets = Detections(list(order), (640, 480))
        assert dets.primary() is big_centre and dets.status == "many"


def test_unknown_range_and_wrong_model_are_rejected(layout):
    with pytest.raises(ValueError, match="range"):
        FaceDetector(DetectorOptions(range="haar"))
    with pytest.raises(ValueError, match="anchor layout"):
        FaceDetector(DetectorOptions(range="full", model_path=layout.blazeface_short))
