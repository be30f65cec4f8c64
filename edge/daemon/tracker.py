"""Face tracks across frames, so one person in front of the camera costs one MPC query.

A detection joins the track it overlaps most (IoU, or failing that a centre within half a face
width); unmatched detections start new tracks. A track asks to be identified once it has been
seen in ``stable_frames`` consecutive frames; it ends after ``lost_frames`` frames without a
match, so the same person walking away and coming back is a new track and is identified again.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

Box = tuple[float, float, float, float]  # x, y, w, h in pixels


class TrackState(Enum):
    TENTATIVE = "tentative"  # seen, not yet stable
    PENDING = "pending"  # stable, waiting for an identification (or its retry)
    DONE = "done"  # identified (or answered "unknown"): never queried again


@dataclass(frozen=True)
class TrackerOptions:
    stable_frames: int = 3
    lost_frames: int = 10
    min_iou: float = 0.3
    max_centre_shift: float = 0.5  # fraction of the face width a centre may move per frame


@dataclass
class Track:
    """One face over time. ``detection`` is the latest matched detection (any object)."""

    id: int
    box: Box
    detection: object = None
    hits: int = 1  # consecutive frames matched
    misses: int = 0  # consecutive frames not matched
    age: int = 1  # frames since the track started
    state: TrackState = TrackState.TENTATIVE
    seen_now: bool = True

    @property
    def wants_identification(self) -> bool:
        """Stable, seen in this frame (so its detection is current) and not yet answered."""
        return self.state is TrackState.PENDING and self.seen_now


@dataclass
class TrackUpdate:
    """What one frame changed: tracks that became stable and tracks that ended."""

    became_stable: list[Track] = field(default_factory=list)
    ended: list[Track] = field(default_factory=list)


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def _centre_close(a: Box, b: Box, frac: float) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    dx = (ax + aw / 2) - (bx + bw / 2)
    dy = (ay + ah / 2) - (by + bh / 2)
    limit = frac * max(aw, bw, 1.0)
    return dx * dx + dy * dy <= limit * limit


class FaceTracker:
    """Greedy frame-to-frame association; cheap enough for every frame on a Pi."""

    def __init__(self, options: TrackerOptions) -> None:
        self.options = options
        self._ids = itertools.count(1)
        self._tracks: list[Track] = []

    @classmethod
    def from_options(cls, options: TrackerOptions) -> FaceTracker:
        return cls(options)

    @property
    def tracks(self) -> list[Track]:
        return list(self._tracks)

    def update(self, detections: Iterable[tuple[Box, object]]) -> TrackUpdate:
        """Feed one frame's (box, detection) pairs; an empty frame is a miss for every track."""
        dets = [(tuple(float(v) for v in box), det) for box, det in detections]
        out = TrackUpdate()
        pairs = sorted(((iou(t.box, box), ti, di) for ti, t in enumerate(self._tracks)
                        for di, (box, _) in enumerate(dets)), reverse=True)
        matched_t: dict[int, int] = {}
        used_d: set[int] = set()
        for score, ti, di in pairs:
            if score < self.options.min_iou:
                break
            if ti not in matched_t and di not in used_d:
                matched_t[ti] = di
                used_d.add(di)
        # Fast movement: fall back to centre distance for what IoU left unmatched.
        for ti, t in enumerate(self._tracks):
            if ti in matched_t:
                continue
            for di, (box, _) in enumerate(dets):
                if di not in used_d and _centre_close(t.box, box, self.options.max_centre_shift):
                    matched_t[ti] = di
                    used_d.add(di)
                    break
        kept: list[Track] = []
        for ti, t in enumerate(self._tracks):
            t.age += 1
            if ti in matched_t:
                t.box, t.detection = dets[matched_t[ti]]
                t.hits += 1
                t.misses = 0
                t.seen_now = True
            else:
                t.hits = 0
                t.misses += 1
                t.seen_now = False
                if t.misses > self.options.lost_frames:
                    out.ended.append(t)
                    continue
            kept.append(t)
            self._promote(t, out)
        for di, (box, det) in enumerate(dets):
            if di not in used_d:
                t = Track(next(self._ids), box, det)
                kept.append(t)
                self._promote(t, out)
        self._tracks = kept
        return out

    def _promote(self, t: Track, out: TrackUpdate) -> None:
        if t.state is TrackState.TENTATIVE and t.hits >= self.options.stable_frames:
            t.state = TrackState.PENDING
            out.became_stable.append(t)

    def pending(self) -> list[Track]:
        """Stable tracks seen in the latest frame that still need an answer, largest first."""
        todo = [t for t in self._tracks if t.wants_identification]
        return sorted(todo, key=lambda t: t.box[2] * t.box[3], reverse=True)

    def mark_done(self, track: Track) -> None:
        track.state = TrackState.DONE

    def clear(self) -> list[Track]:
        """End every track (the camera went away: nobody can be assumed still there)."""
        ended, self._tracks = self._tracks, []
        return ended
