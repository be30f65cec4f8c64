"""Pipeline over a simulated camera: bad frames give named errors and the stream goes on."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from splitface.edge.cli import main as cli_main
from splitface.edge.pipeline.capture import CaptureOptions, FrameSource, SourceOpenError
from splitface.edge.pipeline.detect import DetectorOptions
from splitface.edge.pipeline.errors import (
    BlankFrameError,
    CorruptInputError,
    ManyFacesError,
    NoFaceError,
)
from splitface.edge.pipeline.pipeline import FacePipeline, PipelineOptions
from tests.edge.conftest import read


def _fit(img: np.ndarray, w: int = 640, h: int = 480) -> np.ndarray:
    """Portrait photo -> 640x480 camera frame: the top 4:3 band (where the face is), resized."""
    band = img[: min(img.shape[0], img.shape[1] * 3 // 4)]
    return cv2.resize(band, (w, h), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module", params=["full", "short"])
def pipe(request, layout):
    """Both terminal kinds: full range with tiles (surveillance), short range (tap)."""
    opts = PipelineOptions(detector=DetectorOptions(range=request.param,
                                                    min_eye_px=20 if request.param == "full"
                                                    else 0))
    with FacePipeline.from_options(opts) as p:
        yield p


def test_video_camera_stream(pipe, testdata, tmp_path):
    photos = [im for im in testdata.photos("obama") if im.transform != "partial"]
    video = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    assert writer.isOpened()
    frames = [_fit(read(im.path)) for im in photos] + [np.zeros((480, 640, 3), np.uint8)]
    for f in frames:
        writer.write(f)
    writer.release()
    with FrameSource.from_options(CaptureOptions(source=str(video))) as src:
        assert src.kind == "video"
        outs = list(pipe.run(src))
    assert [o.status for o in outs] == ["ok"] * len(photos) + ["blank_frame"]
    E = np.stack([o.result.embedded[0].embedding for o in outs[:-1]])
    assert (E @ E.T).min() > 0.5  # one person throughout
    for o in outs[:-1]:
        face = o.result.faces[0]
        assert face.timings.total_ms > 0 and face.aligned.shape == (112, 112, 3)


def test_folder_with_bad_frames_continues(pipe, testdata, tmp_path):
    obama = testdata.photos("obama")[0].path
    (tmp_path / "01_good.jpg").write_bytes(obama.read_bytes())
    (tmp_path / "02_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cv2.imwrite(str(tmp_path / "03_black.png"), np.zeros((480, 640, 3), np.uint8))
    (tmp_path / "04_noface.png").write_bytes(testdata.nofaces()[0].path.read_bytes())
    (tmp_path / "05_good.jpg").write_bytes(obama.read_bytes())
    with FrameSource(CaptureOptions(source=str(tmp_path))) as src:
        outs = list(pipe.run(src))
    assert [o.status for o in outs] == ["ok", "corrupt_input", "blank_frame", "no_face", "ok"]
    np.testing.assert_allclose(outs[0].result.faces[0].embedding,
                               outs[4].result.faces[0].embedding, atol=1e-6)


def test_process_errors_are_named(pipe, testdata):
    with pytest.raises(BlankFrameError):
        pipe.process(np.zeros((480, 640, 3), np.uint8))
    with pytest.raises(CorruptInputError):
        pipe.process(np.zeros((480, 640, 3), np.float32))
    with pytest.raises(CorruptInputError):
        pipe.process(np.zeros((480, 640, 2), np.uint8))
    with pytest.raises(NoFaceError):
        pipe.process(read(testdata.nofaces()[0].path))
    r = pipe.process(read(testdata.photos("biden")[0].path))  # and the next frame works
    assert r.embedding.shape == (192,) and "embedding=" not in repr(r)
    assert str(r.embedding[0])[:6] not in repr(r) and str(r.embedding[0])[:6] not in str(
        r.to_dict())


def test_single_face_policy_rejects_groups(testdata):
    group = read(testdata.groups()[0].path)
    with FacePipeline(PipelineOptions(face_policy="single")) as strict, \
            pytest.raises(ManyFacesError):
        strict.process(group)
    with FacePipeline(PipelineOptions()) as lenient:
        face = lenient.process(group)
        faces = lenient.analyse(group)
    assert len(faces.embedded) == 3  # every face, and process() took the primary one
    assert face.detection.box == faces.faces[0].detection.box


def test_missing_source_is_named():
    with pytest.raises(SourceOpenError):
        FrameSource(CaptureOptions(source="/nonexistent/video.mp4"))


def test_cli_embed_lists_every_face_and_never_prints_embeddings(testdata, capsys, tmp_path):
    import json

    group = testdata.groups()[6]  # six people round a table
    out_img = tmp_path / "annotated.png"
    rc = cli_main(["embed", str(group.path), "--json", "--show-norms",
                   "--annotate", str(out_img)])
    (line,) = capsys.readouterr().out.strip().splitlines()
    rec = json.loads(line)
    assert rc == 0 and rec["status"] == "ok" and len(rec["faces"]) == len(group.faces)
    for f in rec["faces"]:
        assert "embedding" not in f and f["status"] == "ok"
        assert f["embedding_norm"] == pytest.approx(1.0, abs=1e-4)
        assert set(f["landmarks"]) == {"right_eye", "left_eye", "nose_tip", "mouth_right",
                                       "mouth_left"}
        assert {"eye_px", "yaw_deg", "sharpness", "presence"} <= set(f["quality"])
        assert set(f["timings"]) == {"detect_ms", "landmarks_ms", "align_ms", "embed_ms",
                                     "total_ms"}
    drawn, orig = cv2.imread(str(out_img)), read(group.path)
    assert drawn.shape == orig.shape
    changed = np.any(drawn != orig, axis=2)
    for f in rec["faces"]:  # each face's box outline is drawn
        x, y, w, h = (round(v) for v in f["box"])
        assert changed[y, x:x + w].mean() > 0.5
    assert cli_main(["embed", "/nonexistent"]) == 2
