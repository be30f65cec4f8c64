"""The daemon's camera: every source ``camera.source`` allows, opened and re-opened on demand.

``edge/pipeline/capture.FrameSource`` covers files, folders and camera indexes for the batch
tools; the daemon also needs device paths (``/dev/video0``), stream URLs, image-file patterns
and FIFOs, a small capture buffer (a frame read after a slow server call must be fresh, not
two seconds old) and a clear end-of-stream, so it opens OpenCV itself. A read never raises for
one bad frame; a source that is gone raises :class:`CameraLost` and the loop re-opens it.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from splitface.edge.pipeline.capture import CaptureOptions, Frame, FrameSource, SourceOpenError
from splitface.edge.pipeline.errors import CorruptInputError, PipelineError
from splitface.shared.closing import Closing


class CameraUnavailable(PipelineError):
    """The source could not be opened (unplugged, missing file, unreachable stream)."""

    status = "camera_unavailable"


class CameraLost(PipelineError):
    """An open source stopped delivering: end of a file or stream, or repeated read failures."""

    status = "camera_lost"


@dataclass(frozen=True)
class CameraOptions:
    """``source`` as in the edge config; ``max_failed_reads`` consecutive failed reads = lost."""

    source: int | str
    width: int = 640
    height: int = 480
    fps: float = 15.0
    max_failed_reads: int = 5


def source_kind(source: int | str) -> str:
    """camera | device | stream | fifo | pattern | folder | image | video."""
    if isinstance(source, int) or source.isdigit():
        return "camera"
    if "://" in source:
        return "stream"
    if "%" in Path(source).name:
        return "pattern"
    p = Path(source)
    try:
        mode = p.stat().st_mode
    except OSError:
        return "video"  # missing now: opening will say so
    if stat.S_ISCHR(mode):
        return "device"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISDIR(mode):
        return "folder"
    if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"):
        return "image"
    return "video"


class Camera(Closing):
    """One open source; ``read()`` returns a :class:`Frame` or raises :class:`CameraLost`."""

    def __init__(self, options: CameraOptions) -> None:
        self.options = options
        self.kind = source_kind(options.source)
        self._cap: cv2.VideoCapture | None = None
        self._files: Iterator[Frame] | None = None
        self._source: FrameSource | None = None
        self._index = 0
        self._failed = 0
        src = options.source
        if self.kind in ("folder", "image"):
            try:
                self._source = FrameSource(CaptureOptions(source=str(src)))
            except SourceOpenError as exc:
                raise CameraUnavailable(str(exc)) from exc
            self._files = iter(self._source)
            return
        if self.kind == "camera":
            cap = cv2.VideoCapture(int(src))
        elif self.kind == "device":
            cap = cv2.VideoCapture(str(src), cv2.CAP_V4L2)
        elif self.kind == "pattern":
            cap = cv2.VideoCapture(str(src), cv2.CAP_IMAGES)
        else:
            if self.kind == "video" and not Path(src).exists():
                raise CameraUnavailable(f"no such video file: {src}")
            cap = cv2.VideoCapture(str(src))
        if not cap.isOpened():
            cap.release()
            raise CameraUnavailable(f"cannot open {self.kind} {src}")
        if self.live:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, options.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, options.height)
            cap.set(cv2.CAP_PROP_FPS, options.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # freshest frame after a slow server call
        self._cap = cap

    @classmethod
    def from_options(cls, options: CameraOptions) -> Camera:
        return cls(options)

    @property
    def live(self) -> bool:
        """A live source paces itself; files are paced to ``fps`` by the loop."""
        return self.kind in ("camera", "device", "stream", "fifo")

    @property
    def description(self) -> str:
        return f"{self.kind} {self.options.source}"

    def read(self) -> Frame:
        """The next frame (image or a per-frame error); CameraLost when the source is gone."""
        if self._files is not None:
            try:
                frame = next(self._files)
            except StopIteration:
                raise CameraLost(f"end of {self.description}") from None
            return self._count(frame)
        if self._cap is None:
            raise CameraLost("camera is closed")
        t0 = time.perf_counter()
        ok, img = self._cap.read()
        ms = (time.perf_counter() - t0) * 1000.0
        i = self._index
        self._index += 1
        if not ok or img is None:
            if not self.live:
                raise CameraLost(f"end of {self.description}")
            return self._count(Frame(i, f"{self.kind}:{i}",
                                     error=CorruptInputError("camera read failed")))
        return self._count(Frame(i, f"{self.kind}:{i}", image=np.asarray(img), decode_ms=ms))

    def _count(self, frame: Frame) -> Frame:
        if frame.ok:
            self._failed = 0
            return frame
        self._failed += 1
        if self._failed >= self.options.max_failed_reads:
            raise CameraLost(f"{self._failed} failed reads in a row from {self.description}: "
                             f"{frame.error}")
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        if self._source is not None:
            self._source.close()
            self._source = None
        self._files = None
