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
from functools import cached_property
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
# Mesh face logit above which a view counts as upright without looking at it turned (real
# upright photos: 14..35, all but two hidden faces above 14; turned over or sideways: -7..7).
UPRIGHT_LOGIT = 12.0
# A turned view replaces the one BlazeFace's eye line gives only when clearly better: a small
# face's logits are noisy, and the real turned-over cases win by 7..35.
TURN_MARGIN = 4.0
# The forehead sits behind the chin on a face looking straight at the camera: the median raw
# pitch of the real test photos, taken as zero (bench_detect.py "quality" reports it).
PITCH_ZERO_DEG = 10.0


@dataclass(frozen=True)
class LandmarkerOptions:
    """``min_presence``: mesh face score below which an orientation holds no face;
    ``roi_scale``: ROI side per detection box side (MediaPipe: 1.5); ``agree``: landmarks
    that move less than this fraction of the inter-eye distance between two runs have
    converged; ``max_passes``: mesh runs at most, each on the ROI the previous run's landmarks
    give (MediaPipe's tracking step)."""

    model_path: Path | None = None
    min_presence: float = 0.5
    roi_scale: float = 1.5
    agree: float = 0.1
    max_passes: int = 4
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

    @cached_property
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


def _presence(logit: float) -> float:
    return float(sigmoid(np.array([logit]))[0])


def _moved(eyes: np.ndarray, marks: Landmarks) -> float:
    """How far the landmarks' eyes are from ``eyes`` (2, 2), in inter-eye distances."""
    return float(np.linalg.norm(marks.five[:2] - eyes, axis=1).mean()) / \
        max(marks.eye_distance, 1e-6)


class FaceMesh(Closing):
    """``refine(frame, detection) -> Landmarks``; one 192x192 mesh run per orientation tried."""

    def __init__(self, options: LandmarkerOptions) -> None:
        if options.max_passes < 1:
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
        """(face logit, points in ROI pixels (468, 3), ROI matrix) for one square ROI."""
        m = square_roi_matrix(centre, side, angle, MESH_INPUT)
        roi = warp_similarity(frame_bgr, m, MESH_INPUT)
        x = cv2.cvtColor(roi, cv2.COLOR_BGR2RGB).astype(np.float32)
        x *= np.float32(1.0 / 255.0)  # RGB in [0, 1]
        self._interp.set_tensor(self._in, x[None])
        self._interp.invoke()
        pts = self._interp.get_tensor(self._pts).reshape(NUM_POINTS, 3).astype(np.float64)
        logit = float(self._interp.get_tensor(self._flag).reshape(-1)[0])
        return logit, pts, m

    def refine(self, frame_bgr: np.ndarray, det: Detection) -> Landmarks:
        """Landmarks of the face a detection points at, or ``found`` False.

        The mesh's face score saturates for a face upside down too, but its logit does not
        (real photos: 14..35 upright, -7..7 turned over or sideways), so orientation is
        decided on logits:

        1. ROI from the detection, turned by BlazeFace's eye line; unless that view is clearly
           upright, also turned by 180 degrees, and by 90/270 when neither holds a face.
        2. While the mesh's eyes move between runs (BlazeFace's keypoints are coarse on a small
           face and wrong on a rotated one), the mesh runs again on the ROI its own landmarks
           give: up to ``max_passes`` runs, until two agree within ``agree`` IEDs.
        3. A settled face that is still not clearly upright is looked at turned by 90, 180 and
           270 degrees once more; a better view is settled in its turn and wins.
        """
        x, y, w, h = det.box
        kp = np.asarray(det.keypoints, dtype=np.float64)
        base = math.atan2(kp[1, 1] - kp[0, 1], kp[1, 0] - kp[0, 0])
        view = ((x + w / 2.0, y + h / 2.0), max(w, h) * self.options.roi_scale, base)
        turns = (0, 180, 90, 270) if self.options.search_orientations else (0,)
        logit, turn, first = self._best_view(frame_bgr, view, turns, stop_at_180=True)
        if logit < self._min_logit:
            return Landmarks(_presence(logit), turn)
        logit, pts, marks = self._settle(frame_bgr, logit, first, kp[:2])
        if self.options.search_orientations and logit < UPRIGHT_LOGIT:
            c, side, angle = self._roi(marks)
            l2, t2, again = self._best_view(frame_bgr, (c, side, angle), (90, 180, 270))
            if l2 > logit + TURN_MARGIN:
                l2, pts2, marks2 = self._settle(frame_bgr, l2, again, None)
                if l2 > logit + TURN_MARGIN:
                    logit, pts, marks, turn = l2, pts2, marks2, (turn + t2) % 360
        yaw, pitch = _pose(pts)
        return Landmarks(_presence(logit), turn, marks.points, yaw, pitch)

    @property
    def _min_logit(self) -> float:
        p = self.options.min_presence
        return math.log(p / (1.0 - p))

    def _best_view(self, frame_bgr: np.ndarray, view: tuple, turns: tuple[int, ...],
                   stop_at_180: bool = False
                   ) -> tuple[float, int, tuple[np.ndarray, np.ndarray]]:
        """(logit, turn, (points, matrix)) of the best of the view turned by ``turns``."""
        centre, side, angle = view
        best: tuple[float, int, tuple[np.ndarray, np.ndarray]] | None = None
        for turn in turns:
            logit, pts, m = self.run(frame_bgr, centre, side, angle + math.radians(turn))
            margin = 0.0 if best is None or best[1] != turns[0] else TURN_MARGIN
            if best is None or logit > best[0] + margin:
                best = (logit, turn, (pts, m))
            if turn == turns[0] and logit >= UPRIGHT_LOGIT:
                break
            if stop_at_180 and turn == 180 and best[0] >= self._min_logit:
                break
        assert best is not None
        return best

    def _settle(self, frame_bgr: np.ndarray, logit: float,
                first: tuple[np.ndarray, np.ndarray], eyes: np.ndarray | None
                ) -> tuple[float, np.ndarray, Landmarks]:
        """Re-run the mesh on the ROI of its own landmarks until they stop moving; returns
        (logit, points in the last ROI, landmarks in the frame)."""
        pts, m = first
        marks = Landmarks(_presence(logit), 0, self._to_frame(pts, m))
        previous = eyes
        for _ in range(self.options.max_passes - 1):
            if previous is not None and _moved(previous, marks) <= self.options.agree:
                break
            logit2, pts2, m2 = self.run(frame_bgr, *self._roi(marks))
            if logit2 < self._min_logit:
                break  # the re-centred view is worse (e.g. a hand over the face): keep this one
            previous = marks.five[:2]
            logit, pts = logit2, pts2
            marks = Landmarks(_presence(logit), 0, self._to_frame(pts, m2))
        return logit, pts, marks

    def _roi(self, marks: Landmarks) -> tuple[tuple[float, float], float, float]:
        """(centre, side, angle) of the ROI that the landmarks of a face give."""
        f = marks.five
        eyes = f[1] - f[0]
        lo, hi = marks.points[:, :2].min(0), marks.points[:, :2].max(0)
        centre = (float(lo[0] + hi[0]) / 2.0, float(lo[1] + hi[1]) / 2.0)
        return centre, float((hi - lo).max()) * self.options.roi_scale, \
            math.atan2(eyes[1], eyes[0])

    @staticmethod
    def _to_frame(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
        inv = cv2.invertAffineTransform(m)
        xy = apply(inv, pts[:, :2])
        z = pts[:, 2:3] * float(np.sqrt(abs(np.linalg.det(inv[:, :2]))))
        return np.hstack([xy, z]).astype(np.float32)

    def close(self) -> None:
        self._interp = None
