"""One frame source over a camera index, a video file or an image folder (OpenCV).

A bad frame must not stop the stream: each :class:`Frame` carries either an image or the named
error for that frame (a corrupt file in a folder, a dropped camera read), and iteration goes on.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from splitface.edge.pipeline.errors import CorruptInputError, ImageTooLargeError, PipelineError
from splitface.shared.closing import Closing

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm")


class SourceOpenError(PipelineError):
    """The camera, video or folder could not be opened at all."""

    status = "source_unavailable"


@dataclass(frozen=True)
class CaptureOptions:
    """Where frames come from. ``source``: camera index (int or "0"), video file, or folder."""

    source: str | int
    width: int | None = None  # camera only: requested resolution
    height: int | None = None
    max_frames: int | None = None
    max_pixels: int = 16_000_000  # larger images are downscaled at decode (bounded memory)


@dataclass(frozen=True)
class Frame:
    """One frame: ``image`` (BGR uint8) or ``error``; ``name`` says which file/frame it was."""

    index: int
    name: str
    image: np.ndarray | None = None
    error: PipelineError | None = None
    decode_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.image is not None


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) from a JPEG or PNG header without decoding; None otherwise."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return "png", int(w), int(h)
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return "jpeg", int(w), int(h)
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


_REDUCED = ((1, cv2.IMREAD_COLOR), (2, cv2.IMREAD_REDUCED_COLOR_2),
            (4, cv2.IMREAD_REDUCED_COLOR_4), (8, cv2.IMREAD_REDUCED_COLOR_8))


def decode_image_bytes(data: bytes, max_pixels: int = 16_000_000,
                       max_full_decode: int = 50_000_000) -> np.ndarray:
    """Bytes of an image file -> BGR uint8 of at most ``max_pixels``, with bounded memory.

    A large JPEG is decoded straight at 1/2, 1/4 or 1/8 size (libjpeg's DCT scaling, so the
    full-size image never exists in memory); other formats are decoded whole only up to
    ``max_full_decode`` pixels, then area-downscaled. Raises CorruptInputError for anything
    that is not an image and ImageTooLargeError beyond those bounds.
    """
    if not data:
        raise CorruptInputError("empty image data")
    size = image_size(data)
    flag = cv2.IMREAD_COLOR
    if size is not None:
        kind, w, h = size
        if w <= 0 or h <= 0:
            raise CorruptInputError(f"image header says {w}x{h}")
        if kind == "jpeg":
            fits = [(r, f) for r, f in _REDUCED if -(-w // r) * -(-h // r) <= max_pixels]
            if not fits:
                raise ImageTooLargeError(f"image too large: {w}x{h} is more than "
                                         f"{max_pixels} pixels even at 1/8 size")
            flag = fits[0][1]
        elif w * h > max_full_decode:
            raise ImageTooLargeError(f"image too large: {w}x{h} {kind} (more than "
                                     f"{max_full_decode} pixels; JPEG is decoded downscaled)")
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, flag)
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        raise CorruptInputError("not a decodable image")
    pixels = img.shape[0] * img.shape[1]
    if pixels > max_full_decode:
        raise ImageTooLargeError(f"image too large: {img.shape[1]}x{img.shape[0]}")
    if pixels > max_pixels:
        k = (max_pixels / pixels) ** 0.5
        img = cv2.resize(img, (max(1, int(img.shape[1] * k)), max(1, int(img.shape[0] * k))),
                         interpolation=cv2.INTER_AREA)
    return img


def as_bgr_frame(frame: np.ndarray) -> np.ndarray:
    """Validate an in-memory frame (HxWx3 uint8, or grey HxW) for the pipeline."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.size == 0:
        raise CorruptInputError("frame must be a non-empty uint8 numpy array")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise CorruptInputError(f"frame must be HxWx3 BGR, got shape {frame.shape}")
    return frame


class FrameSource(Closing):
    """Iterate frames from a camera, a video or an image folder; use as a context manager."""

    def __init__(self, options: CaptureOptions) -> None:
        self.options = options
        self._cap: cv2.VideoCapture | None = None
        self._files: list[Path] | None = None
        src = options.source
        if isinstance(src, int) or (isinstance(src, str) and src.isdigit()):
            self.kind = "camera"
            self._cap = cv2.VideoCapture(int(src))
            if options.width:
                self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, options.width)
            if options.height:
                self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, options.height)
        else:
            path = Path(src)
            if path.is_dir():
                self.kind = "folder"
                self._files = sorted(p for p in path.iterdir()
                                     if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                self.kind = "image"
                self._files = [path]
            elif path.is_file():
                self.kind = "video"
                self._cap = cv2.VideoCapture(str(path))
            else:
                raise SourceOpenError(f"no such camera, video or folder: {src}")
        if self._cap is not None and not self._cap.isOpened():
            self._cap.release()
            self._cap = None
            raise SourceOpenError(f"cannot open {self.kind} {src}")

    @classmethod
    def from_options(cls, options: CaptureOptions) -> FrameSource:
        return cls(options)

    def __iter__(self) -> Iterator[Frame]:
        limit = self.options.max_frames
        if self._files is not None:
            for i, path in enumerate(self._files):
                if limit is not None and i >= limit:
                    return
                yield self._read_file(i, path)
            return
        i = 0
        while self._cap is not None and (limit is None or i < limit):
            t0 = cv2.getTickCount()
            ok, img = self._cap.read()
            ms = (cv2.getTickCount() - t0) * 1000.0 / cv2.getTickFrequency()
            if not ok:
                if self.kind == "video":
                    return  # end of file
                yield Frame(i, f"{self.kind}:{i}", error=CorruptInputError("camera read failed"))
            else:
                yield Frame(i, f"{self.kind}:{i}", image=img, decode_ms=ms)
            i += 1

    def _read_file(self, i: int, path: Path) -> Frame:
        t0 = cv2.getTickCount()
        try:
            img = decode_image_bytes(path.read_bytes(), self.options.max_pixels)
        except (CorruptInputError, OSError) as exc:
            err = exc if isinstance(exc, CorruptInputError) else CorruptInputError(str(exc))
            return Frame(i, path.name, error=err)
        ms = (cv2.getTickCount() - t0) * 1000.0 / cv2.getTickFrequency()
        return Frame(i, path.name, image=img, decode_ms=ms)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
