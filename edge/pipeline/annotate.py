"""Pictures people look at: every face's box, landmarks, name (or "unknown") and quality.

``splitface-edge identify|embed --annotate OUT.jpg`` writes the frame with this drawn on it, so
an operator can see at a glance which faces were found, which were matched and why a face was
skipped. Drawing is on a copy; the input frame is not changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from splitface.edge.pipeline.pipeline import Face

MATCHED = (60, 200, 60)  # BGR
UNKNOWN = (40, 120, 255)
SKIPPED = (160, 160, 160)  # below the quality bar
FOUND = (230, 200, 40)  # embedded, not identified (``embed``)


@dataclass(frozen=True)
class FaceLabel:
    """What to write next to a face: a name, "unknown", or why it was skipped."""

    text: str
    colour: tuple[int, int, int]


def label_for(face: Face, identity: str | None = None, identified: bool = False) -> FaceLabel:
    """The usual label: the matched name, "unknown", or the quality reasons of a skipped face."""
    if not face.embedded:
        return FaceLabel("skipped: " + ", ".join(face.reasons), SKIPPED)
    if not identified:
        return FaceLabel("face", FOUND)
    return FaceLabel(identity, MATCHED) if identity else FaceLabel("unknown", UNKNOWN)


def draw_faces(frame_bgr: np.ndarray, faces: Sequence[Face],
               labels: Sequence[FaceLabel]) -> np.ndarray:
    """A copy of the frame with each face's box, five landmarks, label and quality line."""
    out = frame_bgr.copy()
    h, w = out.shape[:2]
    thick = max(1, round(max(w, h) / 640))
    font = 0.45 * thick
    for i, (face, label) in enumerate(zip(faces, labels, strict=True)):
        x, y, bw, bh = face.detection.box
        p0, p1 = (round(x), round(y)), (round(x + bw), round(y + bh))
        cv2.rectangle(out, p0, p1, label.colour, thick, cv2.LINE_AA)
        for px, py in face.landmarks.five:
            cv2.circle(out, (round(px - 0.5), round(py - 0.5)), thick + 1, label.colour, -1,
                       cv2.LINE_AA)
        q = face.quality
        lines = [f"#{i} {label.text}",
                 f"eyes {q.eye_px:.0f}px yaw {q.yaw_deg:+.0f} sharp {q.sharpness:.1f}"]
        step = 14 * thick
        top = p0[1] - 4 - step * (len(lines) - 1)  # above the box, or below it at the top
        y0 = top if top > step else p1[1] + step
        for k, text in enumerate(lines):
            org = (p0[0], y0 + k * step)
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick + 2,
                        cv2.LINE_AA)
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, font, label.colour, thick,
                        cv2.LINE_AA)
    return out


def write_annotated(path: str, frame_bgr: np.ndarray, faces: Sequence[Face],
                    labels: Sequence[FaceLabel]) -> None:
    """Draw and write; OSError when the file cannot be written."""
    if not cv2.imwrite(str(path), draw_faces(frame_bgr, faces, labels)):
        raise OSError(f"cannot write {path} (unknown image extension or unwritable folder)")
