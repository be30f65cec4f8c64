"""BlazeFace short-range on the bare LiteRT interpreter with a numpy SSD-anchor decoder.

For terminals where the mediapipe wheel is unavailable (e.g. some ARM builds). It replicates
MediaPipe's face_detection_short_range graph: letterbox to 128x128 in [-1, 1], 896 SSD anchors
(strides 8, 16, 16, 16; fixed size), sigmoid scores, weighted non-max suppression, and the
letterbox removed from boxes and keypoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from splitface.edge.pipeline.detect_base import DetectorOptions
from splitface.edge.pipeline.runtime import load_interpreter
from splitface.edge.pipeline.types import Detection, Detections
from splitface.shared.closing import Closing

INPUT_SIZE = 128
NUM_KEYPOINTS = 6
_STRIDES = (8, 16, 16, 16)
_ANCHORS_PER_LAYER = 2  # aspect ratio 1.0 + interpolated scale, fixed_anchor_size


def ssd_anchors(input_size: int = INPUT_SIZE) -> np.ndarray:
    """Anchor centres (896, 2) in [0, 1], in the order the model emits its boxes."""
    centres = []
    layer = 0
    while layer < len(_STRIDES):
        stride = _STRIDES[layer]
        repeats = 0
        while layer < len(_STRIDES) and _STRIDES[layer] == stride:
            repeats += _ANCHORS_PER_LAYER
            layer += 1
        n = int(np.ceil(input_size / stride))
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, repeats, axis=0))
    return np.concatenate(centres).astype(np.float32)


@dataclass(frozen=True)
class Letterbox:
    """Scale and padding that fit a frame into the square model input (aspect kept)."""

    scale: float
    pad_x: float
    pad_y: float

    @classmethod
    def fit(cls, width: int, height: int, size: int = INPUT_SIZE) -> Letterbox:
        scale = size / max(width, height)
        return cls(scale, (size - width * scale) / 2.0, (size - height * scale) / 2.0)


def preprocess(frame_bgr: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, Letterbox]:
    """BGR uint8 frame -> (1, size, size, 3) float32 RGB in [-1, 1], zero-padded letterbox."""
    h, w = frame_bgr.shape[:2]
    lb = Letterbox.fit(w, h, size)
    m = np.array([[lb.scale, 0.0, lb.pad_x], [0.0, lb.scale, lb.pad_y]], dtype=np.float64)
    # Half-pixel centres, as MediaPipe's ImageToTensor warp does.
    m[:, 2] += 0.5 * lb.scale - 0.5
    # Warp first, then swap BGR->RGB on the 128x128 result: far cheaper than converting the frame.
    img = cv2.warpAffine(frame_bgr, m, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    x = img[:, :, ::-1].astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
    return x[None], lb


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, kps: np.ndarray, iou_thr: float
                 ) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's WEIGHTED suppression: overlapping boxes are score-averaged, not dropped.

    ``boxes`` are (N, 4) as (xmin, ymin, xmax, ymax); returns (box, top score, keypoints).
    """
    order = np.argsort(-scores)
    remaining = list(order)
    out = []
    while remaining:
        top = remaining[0]
        rest = np.array(remaining)
        b = boxes[rest]
        ix0 = np.maximum(b[:, 0], boxes[top, 0])
        iy0 = np.maximum(b[:, 1], boxes[top, 1])
        ix1 = np.minimum(b[:, 2], boxes[top, 2])
        iy1 = np.minimum(b[:, 3], boxes[top, 3])
        inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        top_area = (boxes[top, 2] - boxes[top, 0]) * (boxes[top, 3] - boxes[top, 1])
        iou = inter / np.maximum(area + top_area - inter, 1e-12)
        group = rest[iou > iou_thr]
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        kp = (kps[group] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, float(scores[top]), kp))
        keep = set(rest[iou <= iou_thr].tolist())
        remaining = [r for r in remaining if r in keep]
    return out


class LiteRTFaceDetector(Closing):
    """BlazeFace short-range on LiteRT with its own anchor decoder (no mediapipe needed)."""

    def __init__(self, options: DetectorOptions) -> None:
        self.options = options
        self._interp = load_interpreter(options.model_path, options.num_threads)
        self._in = self._interp.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self._interp.get_output_details()}
        self._reg = outs.get("regressors", self._interp.get_output_details()[0]["index"])
        self._cls = outs.get("classificators", self._interp.get_output_details()[1]["index"])
        self._anchors = ssd_anchors()

    @classmethod
    def from_options(cls, options: DetectorOptions) -> LiteRTFaceDetector:
        return cls(options)

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        h, w = frame_bgr.shape[:2]
        x, lb = preprocess(frame_bgr)
        self._interp.set_tensor(self._in, x)
        self._interp.invoke()
        raw = self._interp.get_tensor(self._reg)[0]
        logits = self._interp.get_tensor(self._cls)[0, :, 0].astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100.0, 100.0)))
        keep = np.nonzero(scores >= self.options.min_score)[0]
        if keep.size == 0:
            return Detections([], (w, h))
        raw, scores, anc = raw[keep], scores[keep], self._anchors[keep]
        # Decode in model-input pixels (reverse_output_order: x, y, w, h; scale 128).
        cx = raw[:, 0] + anc[:, 0] * INPUT_SIZE
        cy = raw[:, 1] + anc[:, 1] * INPUT_SIZE
        bw, bh = raw[:, 2], raw[:, 3]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        kps = raw[:, 4:4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) \
            + anc[:, None, :] * INPUT_SIZE
        faces = []
        for box, score, kp in weighted_nms(boxes, scores, kps, self.options.min_suppression_iou):
            # Undo the letterbox: model pixels -> frame pixels.
            # Boxes are clipped to the frame as MediaPipe does; keypoints are left as predicted.
            bx = np.clip((box[[0, 2]] - lb.pad_x) / lb.scale, 0, w)
            by = np.clip((box[[1, 3]] - lb.pad_y) / lb.scale, 0, h)
            kp_px = np.stack([(kp[:, 0] - lb.pad_x) / lb.scale,
                              (kp[:, 1] - lb.pad_y) / lb.scale], axis=1).astype(np.float32)
            faces.append(Detection((float(bx[0]), float(by[0]), float(bx[1] - bx[0]),
                                    float(by[1] - by[0])), score, kp_px))
        return Detections(faces, (w, h))

    def close(self) -> None:
        self._interp = None
