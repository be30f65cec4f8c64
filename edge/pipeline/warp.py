"""Similarity warps of a frame region into a small square, without aliasing large faces.

``cv2.warpAffine`` samples bilinearly: shrinking a 600-pixel face into 112 pixels that way
reads 4 of every ~30 pixels and the crop changes with sub-pixel shifts. Here a strong
shrink first area-averages the region by an integer factor, then warps the rest. Matrices
map *continuous* coordinates (a W-pixel row spans [0, W]), which scale exactly when an image
is resized; the conversion to OpenCV's pixel-centre convention happens only in this module.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def _to_pixel_centres(m: np.ndarray) -> np.ndarray:
    """Continuous-coordinate matrix -> the pixel-centre matrix ``cv2.warpAffine`` expects."""
    out = m.astype(np.float64).copy()
    out[:, 2] = m[:, 2] + m[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return out


def warp_similarity(frame: np.ndarray, m: np.ndarray, size: int,
                    border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """Output ``size`` x ``size`` image with ``out(m @ p) = frame(p)``; black outside the frame.

    ``m`` is 2x3 (rotation, uniform scale, translation) in continuous coordinates.
    """
    m = np.asarray(m, dtype=np.float64)
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
    if scale < 0.5:
        k = math.floor(1.0 / scale + 1e-6)  # 7.99999 is a factor of 8
        inv = cv2.invertAffineTransform(m)
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], float)
        pts = corners @ inv.T
        h, w = frame.shape[:2]
        x0 = max(0, math.floor(pts[:, 0].min()) - k)
        y0 = max(0, math.floor(pts[:, 1].min()) - k)
        x1 = min(w, math.ceil(pts[:, 0].max()) + k)
        y1 = min(h, math.ceil(pts[:, 1].max()) + k)
        if x1 - x0 >= k and y1 - y0 >= k:
            # Whole k x k blocks only, so the shrink is an exact block average.
            x1 = x0 + (x1 - x0) // k * k
            y1 = y0 + (y1 - y0) // k * k
            small = cv2.resize(frame[y0:y1, x0:x1], ((x1 - x0) // k, (y1 - y0) // k),
                               interpolation=cv2.INTER_AREA)
            # frame point p = (k q + (x0, y0)) for a point q of the shrunk crop.
            pre = np.array([[k, 0.0, x0], [0.0, k, y0], [0, 0, 1]])
            m = m @ pre
            frame = small
    return cv2.warpAffine(frame, _to_pixel_centres(m), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=border, borderValue=(0, 0, 0))


def square_roi_matrix(centre: tuple[float, float], side: float, angle_rad: float,
                      size: int) -> np.ndarray:
    """2x3 map from the frame to a ``size`` square showing a ``side``-wide square around
    ``centre``; ``angle_rad`` is the direction (image coordinates, y down) that becomes the
    output's +x axis, e.g. a face's eye line from its right eye to its left eye."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    k = size / side
    # out = k * R(-angle) (p - centre) + size / 2
    rot = np.array([[c, s], [-s, c]]) * k
    t = np.array([size / 2.0, size / 2.0]) - rot @ np.asarray(centre, dtype=np.float64)
    return np.hstack([rot, t[:, None]])


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map (..., 2) points with a 2x3 matrix."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]
