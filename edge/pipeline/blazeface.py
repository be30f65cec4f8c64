"""BlazeFace maths in numpy: SSD anchors, box/keypoint decoding, weighted non-max suppression.

Both MediaPipe face detectors share one head format (16 values per anchor: box centre offset,
box size, six keypoints; one logit) and differ only in input size and anchor grid. The values
below replicate MediaPipe's ``face_detection_short_range`` and ``face_detection_full_range``
graphs (SsdAnchorsCalculator + TensorsToDetectionsCalculator options).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_KEYPOINTS = 6


@dataclass(frozen=True)
class BlazeFaceSpec:
    """One BlazeFace variant: square input side, anchor strides, anchors per grid cell.

    ``min_score``: 0.5 for both. MediaPipe's full-range graph uses 0.6; every detection here is
    checked by the face mesh's presence score, and 0.5 finds 80 % instead of 73 % of faces
    6 px between the eyes (in model pixels) with no false positive on the face-free photos
    (bench_detect).
    """

    name: str
    input_size: int
    strides: tuple[int, ...]
    anchors_per_layer: int
    min_score: float


# Faces within ~2 m (a selfie or a door terminal): 128x128 input, 896 anchors.
SHORT_RANGE = BlazeFaceSpec("short", 128, (8, 16, 16, 16), 2, 0.5)
# Faces within ~5 m (a surveillance camera): 192x192 input, a 48x48 grid of 2304 anchors.
FULL_RANGE = BlazeFaceSpec("full", 192, (4,), 1, 0.5)
SPECS = {s.name: s for s in (SHORT_RANGE, FULL_RANGE)}


def ssd_anchors(spec: BlazeFaceSpec) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1], in the order the model emits its boxes.

    Consecutive layers with the same stride share one grid (their anchors are interleaved per
    cell), as in MediaPipe's SsdAnchorsCalculator with ``fixed_anchor_size``.
    """
    centres = []
    layer = 0
    strides = spec.strides
    while layer < len(strides):
        stride = strides[layer]
        repeats = 0
        while layer < len(strides) and strides[layer] == stride:
            repeats += spec.anchors_per_layer
            layer += 1
        n = int(np.ceil(spec.input_size / stride))
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, repeats, axis=0))
    return np.concatenate(centres).astype(np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """MediaPipe clips logits to +-100 before the sigmoid (score_clipping_thresh)."""
    return 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100.0, 100.0)))


def decode(raw: np.ndarray, anchors: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw regressors (N, 16) -> boxes (N, 4) as (x0, y0, x1, y1) and keypoints (N, 6, 2),
    both in model-input pixels (``reverse_output_order``: x before y; scale = input size)."""
    c = anchors * size
    cx = raw[:, 0] + c[:, 0]
    cy = raw[:, 1] + c[:, 1]
    bw, bh = raw[:, 2], raw[:, 3]
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    kps = raw[:, 4:4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) + c[:, None, :]
    return boxes, kps


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x0, y0, x1, y1) box against (N, 4) boxes."""
    ix0 = np.maximum(boxes[:, 0], box[0])
    iy0 = np.maximum(boxes[:, 1], box[1])
    ix1 = np.minimum(boxes[:, 2], box[2])
    iy1 = np.minimum(boxes[:, 3], box[3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    top = (box[2] - box[0]) * (box[3] - box[1])
    return inter / np.maximum(area + top - inter, 1e-12)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, kps: np.ndarray, iou_thr: float
                 ) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's WEIGHTED suppression: overlapping boxes are score-averaged, not dropped.

    ``boxes`` are (N, 4) as (x0, y0, x1, y1); returns (box, top score, keypoints), best first.
    """
    remaining = np.argsort(-scores, kind="stable")
    out = []
    while remaining.size:
        top = remaining[0]
        iou = box_iou(boxes[top], boxes[remaining])
        group = remaining[iou > iou_thr]
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        kp = (kps[group] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, float(scores[top]), kp))
        remaining = remaining[iou <= iou_thr]
    return out
