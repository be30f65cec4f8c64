"""MediaPipe face mesh (468 points) on LiteRT: precise keypoints for aligning small faces.

BlazeFace's six keypoints come from a 128/192-pixel view of the whole frame, a few pixels off
on small faces. Like MediaPipe's face-landmark graph, we cut a square ROI around each detection
(1.5x the box, turned so the eye line is horizontal), resize it to 192x192 and run the mesh,
which sees the face at full model resolution. Its face-presence score doubles as a check that
the ROI really holds an upright face: when it does not (a face turned sideways or upside down,
whose BlazeFace keypoints are then wrong), the ROI is tried at 90, 180 and 270 degrees and the
best orientation wins; if none holds a face, the detection gets no landmarks and is never
embedded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from splitface.edge.models.paths import VarLayout
from splitface.edge.pipeline.blazeface import sigmoid
from splitface.edge.pipeline.runtime import load_interpreter
from splitface.edge.pipeline.types import Detection
from splitface.edge.pipeline.warp import apply, square_roi_matrix, warp_similarity
from splitface.shared.closing import Closing

MESH_INPUT = 192
NUM_POINTS = 468
# Mesh indices (subject's right = image left on an upright, unmirrored face).
RIGHT_EYE = (33, 133, 159, 145)  # outer and inner corner, upper and lower lid
LEFT_EYE = (263, 362, 386, 374)
NOSE_TIP = 1
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
CHEEK_RIGHT, CHEEK_LEFT = 234, 454  # face contour at eye height, for yaw
FOREHEAD, CHIN = 10, 152  # for pitch
FIVE_POINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")
# The forehead sits behind the chin on a face looking straight at the camera: the median raw
# pitch of the real test photos, taken as zero (bench_detect.py "quality" reports it).
PITCH_ZERO_DEG = 10.0


@dataclass(frozen=True)
class LandmarkerOptions:
    """``min_presence``: mesh face score below which an orientation holds no face;
    ``roi_scale``: ROI side per detection box side (MediaPipe: 1.5); ``passes``: mesh runs,
    each re-centring the ROI on the previous landmarks (MediaPipe's tracking step)."""

    model_path: Path | None = None
    min_presence: float = 0.5
    roi_scale: float = 1.5
    passes: int = 1
    search_orientations: bool = True
    num_threads: int = 1

    def resolved_model(self) -> Path:
        return self.model_path or VarLayout.default().face_landmark


@dataclass(frozen=True)
class Landmarks:
    """Mesh points of one face in frame coordinates, or ``found`` False with no points.

    ``points``: (468, 3) x, y in frame pixels (continuous), z in the same pixel scale (smaller
    = nearer the camera). ``five``: eyes, nose tip and mouth corners (5, 2), the alignment
    points. ``orientation``: degrees the face was turned from the detector's guess (0, 90,
    180, 270). ``yaw_deg``/``pitch_deg``: head pose from the mesh's depth.
    """

    presence: float
    orientation: int = 0
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0

    @property
    def found(self) -> bool:
        return len(self.points) == NUM_POINTS

    @property
    def five(self) -> np.ndarray:
        if not self.found:
            return np.zeros((0, 2), np.float64)
        p = self.points[:, :2].astype(np.float64)
        return np.stack([p[list(RIGHT_EYE)].mean(0), p[list(LEFT_EYE)].mean(0), p[NOSE_TIP],
                         p[MOUTH_RIGHT], p[MOUTH_LEFT]])

    @property
    def eye_distance(self) -> float:
        f = self.five
        return float(np.linalg.norm(f[1] - f[0])) if len(f) else 0.0

    @property
    def roll_deg(self) -> float:
        """Eye-line angle in the frame (image y down): 0 upright, +-180 upside down."""
        f = self.five
        if not len(f):
            return 0.0
        d = f[1] - f[0]
        return float(np.degrees(np.arctan2(d[1], d[0])))


def _pose(roi_points: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch) in degrees from mesh points in the upright ROI (x right, y down, z away).

    Yaw: how far the line between the cheeks turns in depth; pitch: the forehead-chin line.
    Positive yaw = the face turns towards the image's left (its own right).
    """
    cr, cl = roi_points[CHEEK_RIGHT], roi_points[CHEEK_LEFT]
    yaw = math.degrees(math.atan2(cl[2] - cr[2], cl[0] - cr[0]))
    top, chin = roi_points[FOREHEAD], roi_points[CHIN]
    pitch = math.degrees(math.atan2(chin[2] - top[2], chin[1] - top[1])) - PITCH_ZERO_DEG
    return yaw, pitch


class FaceMesh(Closing):
    """``refine(frame, detection) -> Landmarks``; one 192x192 mesh run per orientation tried."""

    def __init__(self, options: LandmarkerOptions) -> None:
        if options.passes < 1:
            raise ValueError("landmark passes must be at least 1")
        self.options = options
        self._interp = load_interpreter(options.resolved_model(), options.num_threads)
        self._in = self._interp.get_input_details()[0]["index"]
        outs = self._interp.get_output_details()
        self._pts = next(o["index"] for o in outs if o["shape"][-1] == NUM_POINTS * 3)
        self._flag = next(o["index"] for o in outs if o["shape"][-1] == 1)

    @classmethod
    def from_options(cls, options: LandmarkerOptions) -> FaceMesh:
        return cls(options)

    def run(self, frame_bgr: np.ndarray, centre: tuple[float, float], side: float,
            angle: float) -> tuple[float, np.ndarray, np.ndarray]:
        """(presence, points in ROI pixels (468, 3), ROI matrix) for one square ROI."""
        m = square_roi_matrix(centre, side, angle, MESH_INPUT)
        roi = warp_similarity(frame_bgr, m, MESH_INPUT)
        x = roi[:, :, ::-1].astype(np.float32) * np.float32(1.0 / 255.0)  # RGB in [0, 1]
        self._interp.set_tensor(self._in, x[None])
        self._interp.invoke()
        pts = self._interp.get_tensor(self._pts).reshape(NUM_POINTS, 3).astype(np.float64)
        presence = float(sigmoid(self._interp.get_tensor(self._flag).reshape(1))[0])
        return presence, pts, m

    def refine(self, frame_bgr: np.ndarray, det: Detection) -> Landmarks:
        x, y, w, h = det.box
        centre = (x + w / 2.0, y + h / 2.0)
        side = max(w, h) * self.options.roi_scale
        kp = np.asarray(det.keypoints, dtype=np.float64)
        base = math.atan2(kp[1, 1] - kp[0, 1], kp[1, 0] - kp[0, 0])
        turns = (0, 180, 90, 270) if self.options.search_orientations else (0,)
        best: tuple[float, int, np.ndarray, np.ndarray] | None = None
        for turn in turns:
            presence, pts, m = self.run(frame_bgr, centre, side, base + math.radians(turn))
            if best is None or presence > best[0]:
                best = (presence, turn, pts, m)
            if presence >= self.options.min_presence:
                break
        assert best is not None
        presence, turn, pts, m = best
        if presence < self.options.min_presence:
            return Landmarks(presence, turn)
        for _ in range(self.options.passes - 1):
            frame_pts = self._to_frame(pts, m)
            f = Landmarks(presence, turn, frame_pts).five
            eyes = f[1] - f[0]
            angle = math.atan2(eyes[1], eyes[0])
            lo, hi = frame_pts[:, :2].min(0), frame_pts[:, :2].max(0)
            centre = tuple((lo + hi) / 2.0)
            side = float((hi - lo).max()) * self.options.roi_scale
            p2, pts2, m2 = self.run(frame_bgr, centre, side, angle)
            if p2 < self.options.min_presence:
                break
            presence, pts, m = p2, pts2, m2
        yaw, pitch = _pose(pts)
        return Landmarks(presence, turn, self._to_frame(pts, m), yaw, pitch)

    @staticmethod
    def _to_frame(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
        inv = cv2.invertAffineTransform(m)
        xy = apply(inv, pts[:, :2])
        z = pts[:, 2:3] * float(np.sqrt(abs(np.linalg.det(inv[:, :2]))))
        return np.hstack([xy, z]).astype(np.float32)

    def close(self) -> None:
        self._interp = None
