"""BlazeFace (short or full range) on the LiteRT interpreter over the windows of a frame.

One detector path for every command and the daemon: the model runs on the whole frame and, when
``min_eye_px`` asks for faces smaller than the whole frame lets the model see, on overlapping
tiles (:mod:`windows`); detections from all windows are merged by MediaPipe's weighted
non-max suppression in frame coordinates. Geometry is in continuous pixel coordinates (the
frame spans [0, width] x [0, height]), which scale exactly when an image is resized.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from splitface.edge.models.paths import VarLayout
from splitface.edge.pipeline.blazeface import SPECS, decode, sigmoid, ssd_anchors, weighted_nms
from splitface.edge.pipeline.runtime import load_interpreter
from splitface.edge.pipeline.types import Detection, Detections
from splitface.edge.pipeline.windows import Window, plan_windows
from splitface.shared.closing import Closing

# IED in model-input pixels from which each model finds most faces. Measured on 30 real faces
# (benchmarks/bench_detect.py "reach"): full range finds 80 % at 6 px, 90 % at 8 px, all at
# 10 px; short range 90 % at 6 px, 97 % at 8 px. The full-range value sets the tile size: at
# 6 px a 1280x720 frame needs 7 windows for min_eye_px = 20 (8 px would need 11).
REACH_PX = {"full": 6.0, "short": 8.0}
# A tile detection this close (fraction of the window side) to an inner tile edge is a face
# cut by the edge; the neighbouring tile holds it whole.
EDGE_MARGIN = 0.02


def model_file(layout: VarLayout, detector_range: str) -> Path:
    """The BlazeFace file for ``range`` ("short" | "full") under a models folder."""
    if detector_range == "full":
        return layout.blazeface_full
    if detector_range == "short":
        return layout.blazeface_short
    raise ValueError(f"detector range must be 'short' or 'full', not {detector_range!r}")


@dataclass(frozen=True)
class DetectorOptions:
    """Which BlazeFace, how far down it must reach, and its thresholds.

    ``range``: "full" (faces to ~5 m, surveillance) or "short" (within ~2 m, tap terminals).
    ``min_eye_px``: smallest inter-eye distance (frame pixels) to find; tiles are added when
    the whole frame cannot reach it; 0 = whole frame only. ``min_score`` None = MediaPipe's.
    """

    range: str = "full"
    model_path: Path | None = None
    min_eye_px: float = 20.0
    min_score: float | None = None
    min_suppression_iou: float = 0.3
    num_threads: int = 1

    def resolved_model(self) -> Path:
        return self.model_path or model_file(VarLayout.default(), self.range)


@dataclass(frozen=True)
class _Input:
    """One window resized into the model input, and how to map model pixels back."""

    tensor: np.ndarray
    x0: float  # frame coordinate of the crop's left edge
    y0: float
    ox: int  # where the crop sits in the model input
    oy: int
    sx: float  # model pixels per frame pixel
    sy: float

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        out = np.empty_like(xy)
        out[..., 0] = self.x0 + (xy[..., 0] - self.ox) / self.sx
        out[..., 1] = self.y0 + (xy[..., 1] - self.oy) / self.sy
        return out


def window_input(frame_bgr: np.ndarray, win: Window, size: int) -> _Input:
    """Crop the window, shrink it (block-averaged, so small faces keep their detail instead of
    aliasing) and place it in a black ``size`` x ``size`` RGB tensor in [-1, 1], as MediaPipe's
    letterbox does."""
    h, w = frame_bgr.shape[:2]
    s = size / win.side
    x0, y0 = max(0, math.floor(win.x)), max(0, math.floor(win.y))
    x1, y1 = min(w, math.ceil(win.x + win.side)), min(h, math.ceil(win.y + win.side))
    crop = frame_bgr[y0:y1, x0:x1]
    # OpenCV's area resize is fast for exact halving only: average 2x2 blocks (trimming an odd
    # last pixel) while at least 2x too large, then finish with a bilinear step under 2x.
    k = 1
    while 2 * k * s <= 1.0 + 1e-6 and (x1 - x0) >= 4 * k and (y1 - y0) >= 4 * k:
        cw, ch = (x1 - x0) // (2 * k) * (2 * k), (y1 - y0) // (2 * k) * (2 * k)
        crop = cv2.resize(crop[:ch // k, :cw // k], (cw // (2 * k), ch // (2 * k)),
                          interpolation=cv2.INTER_AREA)
        x1, y1 = x0 + cw, y0 + ch
        k *= 2
    ox = min(max(0, round((x0 - win.x) * s)), size - 1)
    oy = min(max(0, round((y0 - win.y) * s)), size - 1)
    dw = max(1, min(round((x1 - x0) * s), size - ox))
    dh = max(1, min(round((y1 - y0) * s), size - oy))
    small = cv2.resize(crop, (dw, dh), interpolation=cv2.INTER_LINEAR)
    tensor = np.full((1, size, size, 3), -1.0, dtype=np.float32)
    view = tensor[0, oy:oy + dh, ox:ox + dw]
    view[...] = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    view *= np.float32(2.0 / 255.0)
    view -= np.float32(1.0)
    return _Input(tensor, float(x0), float(y0), ox, oy, dw / (x1 - x0), dh / (y1 - y0))


class FaceDetector(Closing):
    """BlazeFace on LiteRT with a numpy anchor decoder; ``detect`` covers the planned windows."""

    def __init__(self, options: DetectorOptions) -> None:
        if options.range not in SPECS:
            raise ValueError(f"detector range must be 'short' or 'full', not {options.range!r}")
        self.options = options
        self.spec = SPECS[options.range]
        self.min_score = options.min_score if options.min_score is not None \
            else self.spec.min_score
        self._interp = load_interpreter(options.resolved_model(), options.num_threads)
        self._in = self._interp.get_input_details()[0]["index"]
        outs = self._interp.get_output_details()
        self._reg = next(o["index"] for o in outs if o["shape"][-1] == 16)
        self._cls = next(o["index"] for o in outs if o["shape"][-1] == 1)
        self._anchors = ssd_anchors(self.spec)
        if len(self._anchors) != outs[0]["shape"][1]:
            raise ValueError(f"{options.resolved_model().name} does not match the "
                             f"{self.spec.name}-range anchor layout")

    @classmethod
    def from_options(cls, options: DetectorOptions) -> FaceDetector:
        return cls(options)

    @property
    def reach_px(self) -> float:
        return REACH_PX[self.spec.name]

    def windows(self, width: int, height: int) -> list[Window]:
        return plan_windows(width, height, self.spec.input_size, self.reach_px,
                            self.options.min_eye_px)

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        """Every face in the frame, best score first (typed empty result when none)."""
        h, w = frame_bgr.shape[:2]
        boxes, scores, kps = [], [], []
        for win in self.windows(w, h):
            b, s, k = self._run_window(frame_bgr, win)
            boxes.append(b)
            scores.append(s)
            kps.append(k)
        if not any(len(s) for s in scores):
            return Detections([], (w, h))
        merged = weighted_nms(np.concatenate(boxes), np.concatenate(scores),
                              np.concatenate(kps), self.options.min_suppression_iou)
        faces = []
        for box, score, kp in merged:
            x0, x1 = np.clip(box[[0, 2]], 0, w)
            y0, y1 = np.clip(box[[1, 3]], 0, h)
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            faces.append(Detection((float(x0), float(y0), float(x1 - x0), float(y1 - y0)),
                                   score, kp.astype(np.float32)))
        return Detections(faces, (w, h))

    def _run_window(self, frame_bgr: np.ndarray, win: Window
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        size = self.spec.input_size
        inp = window_input(frame_bgr, win, size)
        self._interp.set_tensor(self._in, inp.tensor)
        self._interp.invoke()
        scores = sigmoid(self._interp.get_tensor(self._cls)[0, :, 0])
        keep = np.nonzero(scores >= self.min_score)[0]
        empty = (np.zeros((0, 4)), np.zeros(0), np.zeros((0, 6, 2)))
        if keep.size == 0:
            return empty
        raw = self._interp.get_tensor(self._reg)[0][keep].astype(np.float64)
        boxes, kps = decode(raw, self._anchors[keep], size)
        boxes = inp.to_frame(boxes.reshape(-1, 2, 2)).reshape(-1, 4)
        kps = inp.to_frame(kps)
        scores = scores[keep]
        if win.level > 0:  # drop faces cut by an inner tile edge
            h, w = frame_bgr.shape[:2]
            m = EDGE_MARGIN * win.side
            left, top, right, bottom = win.inner_edges(w, h)
            cut = np.zeros(len(scores), dtype=bool)
            if left:
                cut |= boxes[:, 0] < win.x + m
            if top:
                cut |= boxes[:, 1] < win.y + m
            if right:
                cut |= boxes[:, 2] > win.x + win.side - m
            if bottom:
                cut |= boxes[:, 3] > win.y + win.side - m
            boxes, scores, kps = boxes[~cut], scores[~cut], kps[~cut]
        return boxes, scores, kps

    def close(self) -> None:
        self._interp = None
