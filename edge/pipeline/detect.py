"""BlazeFace through MediaPipe Tasks ``FaceDetector`` (the primary path), plus the factory.

MediaPipe Tasks only accepts the short-range model *with* TFLite metadata, which is why the
set-up extracts it from the mediapipe 0.10.21 wheel. ``create_detector`` picks this path or the
LiteRT-only one (:mod:`detect_litert`) by ``DetectorOptions.backend``.
"""

from __future__ import annotations

import cv2
import numpy as np

from splitface.edge.pipeline.detect_base import Detector, DetectorOptions
from splitface.edge.pipeline.errors import ModelMissingError, RuntimeUnavailableError
from splitface.edge.pipeline.types import Detection, Detections
from splitface.shared.closing import Closing


class MediaPipeFaceDetector(Closing):
    """MediaPipe Tasks FaceDetector in IMAGE mode; results converted to :class:`Detections`."""

    def __init__(self, options: DetectorOptions) -> None:
        try:
            from mediapipe.tasks.python import vision
            from mediapipe.tasks.python.core.base_options import BaseOptions
        except ImportError as exc:
            raise RuntimeUnavailableError("mediapipe is not installed; use backend='litert'") \
                from exc
        if not options.model_path.is_file():
            raise ModelMissingError(f"model not found: {options.model_path} (run `make models`)")
        self.options = options
        self._mp_image = _mp_image_factory()
        task_opts = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(options.model_path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=options.min_score,
            min_suppression_threshold=options.min_suppression_iou,
        )
        self._task = vision.FaceDetector.create_from_options(task_opts)

    @classmethod
    def from_options(cls, options: DetectorOptions) -> MediaPipeFaceDetector:
        return cls(options)

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        h, w = frame_bgr.shape[:2]
        rgb = np.ascontiguousarray(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        result = self._task.detect(self._mp_image(rgb))
        faces = []
        for det in result.detections:
            bb = det.bounding_box
            kps = np.array([[k.x * w, k.y * h] for k in det.keypoints], dtype=np.float32)
            score = det.categories[0].score if det.categories else 0.0
            faces.append(Detection((float(bb.origin_x), float(bb.origin_y), float(bb.width),
                                    float(bb.height)), float(score), kps))
        return Detections(faces, (w, h))

    def close(self) -> None:
        if self._task is not None:
            self._task.close()
            self._task = None


def _mp_image_factory():
    import mediapipe as mp

    def make(rgb: np.ndarray):
        return mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)

    return make


def create_detector(options: DetectorOptions) -> Detector:
    """The detector named by ``options.backend`` ("mediapipe" or "litert")."""
    if options.backend == "mediapipe":
        return MediaPipeFaceDetector(options)
    if options.backend == "litert":
        from splitface.edge.pipeline.detect_litert import LiteRTFaceDetector

        return LiteRTFaceDetector(options)
    raise ValueError(f"unknown detector backend {options.backend!r} (mediapipe|litert)")
