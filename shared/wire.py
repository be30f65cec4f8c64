"""Wire format: a msgpack header frame followed by raw, zero-copy numpy frames.

Every message is ``[header, array_0, array_1, ...]``. The header is a msgpack map with
``v`` (format version), ``kind`` (message type), ``arrays`` (dtype and shape of each array)
and free-form metadata under ``meta``. An array of more than CHUNK_BYTES travels as
consecutive frames of exactly CHUNK_BYTES and a last one with the rest: CurveZMQ encrypts
each frame through two freshly allocated buffers of its size, and at 13 MB (one probe's
tournament keys at N = 10,000) those were page-faulted and zeroed anew for every message;
chunks reuse cache-sized heap blocks (send and receive 25-31 -> 18-19 ms CPU for 13 MB,
benchmarks/HISTORY.md). Everything is validated on receipt: unknown versions, kinds,
dtypes, frames that do not split the arrays exactly so, and oversized messages are
rejected with :class:`WireError` before any array is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

VERSION = 1
DEFAULT_MAX_BYTES = 64 << 20
MAX_HEADER_BYTES = 64 << 10
MAX_ARRAYS = 64
CHUNK_BYTES = 256 << 10  # frame size of large arrays: fits L2, reused by the allocator
# No frame this format sends is larger (headers <= MAX_HEADER_BYTES, arrays in CHUNK_BYTES
# frames, plus CurveZMQ's ~33 bytes a frame). libzmq applies ZMQ_MAXMSGSIZE to each frame,
# not to a whole message, and holds all of a message's frames before the receiver sees it:
# with the message limit as frame limit a peer could push one 1 GiB frame on the peer link.
FRAME_LIMIT = CHUNK_BYTES + 4096


def frame_limit(max_bytes: int) -> int:
    """ZMQ_MAXMSGSIZE for a socket whose messages may total ``max_bytes``: a peer that sends
    a bigger frame than any honest encoder makes is disconnected by libzmq."""
    return min(max_bytes, FRAME_LIMIT)
_DTYPES = {"u8": np.uint8, "u64": np.uint64, "i64": np.int64, "f32": np.float32,
           "f64": np.float64}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


class WireError(ValueError):
    """A message that does not follow the wire format; the peer gets this reason back."""


@dataclass
class Message:
    """A decoded message: its kind, metadata and arrays."""

    kind: str
    meta: dict[str, Any] = field(default_factory=dict)
    arrays: list[np.ndarray] = field(default_factory=list)


def encode(msg: Message) -> list[bytes | memoryview]:
    """Serialise to frames; arrays are sent as their raw little-endian buffers."""
    if len(msg.arrays) > MAX_ARRAYS:
        raise WireError(f"too many arrays ({len(msg.arrays)} > {MAX_ARRAYS})")
    specs, frames = [], []
    for a in msg.arrays:
        a = np.ascontiguousarray(a)
        name = _NAMES.get(a.dtype)
        if name is None:
            raise WireError(f"dtype {a.dtype} cannot be sent")
        specs.append([name, list(a.shape)])
        raw = memoryview(a.reshape(-1)).cast("B")  # (0, n) arrays too
        frames.extend(raw[i:i + CHUNK_BYTES] for i in range(0, max(1, len(raw)), CHUNK_BYTES))
    header = msgpack.packb({"v": VERSION, "kind": msg.kind, "meta": msg.meta, "arrays": specs},
                           use_bin_type=True)
    return [header, *frames]


def decode(frames: Sequence[bytes | memoryview], *, expect: str | Sequence[str] | None = None,
           max_bytes: int = DEFAULT_MAX_BYTES, consume: bool = False) -> Message:
    """Validate and deserialise frames; raise :class:`WireError` with the reason on any defect.

    ``consume=True`` (``frames`` a list the caller holds nothing else of): each chunk frame is
    dropped from the list once copied into its array, so a receiver holds a large message
    about once while reassembling it, not twice (a 205 MB opening at N = 100,000)."""
    if not frames:
        raise WireError("empty message")
    total = sum(len(f) for f in frames)
    if total > max_bytes:
        raise WireError(f"message of {total} bytes exceeds the limit of {max_bytes}")
    if len(frames[0]) > MAX_HEADER_BYTES:
        raise WireError("header too large")
    try:
        header = msgpack.unpackb(bytes(frames[0]), raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise WireError(f"header is not valid msgpack: {exc.__class__.__name__}") from None
    if not isinstance(header, dict) or set(header) != {"v", "kind", "meta", "arrays"}:
        raise WireError("header must be a map with exactly v, kind, meta, arrays")
    if header["v"] != VERSION:
        raise WireError(f"unsupported wire version {header['v']!r} (this end speaks {VERSION})")
    kind = header["kind"]
    if not isinstance(kind, str):
        raise WireError("kind must be a string")
    if expect is not None:
        allowed = (expect,) if isinstance(expect, str) else tuple(expect)
        if kind not in allowed:
            raise WireError(f"unexpected message kind {kind!r}, expected one of {allowed}")
    meta, specs = header["meta"], header["arrays"]
    if not isinstance(meta, dict) or not isinstance(specs, list):
        raise WireError("meta must be a map and arrays a list")
    if len(specs) > MAX_ARRAYS:
        raise WireError(f"too many arrays ({len(specs)} > {MAX_ARRAYS})")
    layout, at = [], 1  # (dtype, shape, first frame, frame count, bytes) per array
    for i, spec in enumerate(specs):
        if (not isinstance(spec, list) or len(spec) != 2 or not isinstance(spec[0], str)
                or spec[0] not in _DTYPES or not isinstance(spec[1], list) or len(spec[1]) > 8
                or not all(type(d) is int and 0 <= d < 1 << 31 for d in spec[1])):
            raise WireError(f"array {i}: bad dtype/shape spec")
        dtype = np.dtype(_DTYPES[spec[0]])
        shape = tuple(spec[1])
        expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow to 0
        count = max(1, -(-expected // CHUNK_BYTES))
        if at + count > len(frames):
            raise WireError(f"header lists {len(specs)} arrays but {len(frames) - 1} frames "
                            "arrived")
        got = [len(f) for f in frames[at:at + count]]
        if sum(got) != expected or any(n != CHUNK_BYTES for n in got[:-1]):
            raise WireError(f"array {i}: shape {shape} needs {expected} bytes in frames of "
                            f"{CHUNK_BYTES}, got {got[:4]}{'...' if len(got) > 4 else ''}")
        layout.append((dtype, shape, at, count, expected))
        at += count
    if at != len(frames):
        raise WireError(f"header lists {len(specs)} arrays but {len(frames) - 1} frames arrived")
    arrays = []
    for i, (dtype, shape, first, count, nbytes) in enumerate(layout):
        try:
            arrays.append(_array(frames, first, count, nbytes, dtype, consume).reshape(shape))
        except (ValueError, TypeError) as exc:  # belt and braces: never an uncaught error
            raise WireError(f"array {i}: {exc}") from None
    return Message(kind, meta, arrays)


def _array(frames: Sequence[bytes | memoryview], first: int, count: int, nbytes: int,
           dtype: np.dtype, consume: bool) -> np.ndarray:
    """One array from its frames: the frame itself when it is one (zero-copy), else the
    frames copied into one new buffer (sizes were validated against the header), read-only
    like a frame from the in-process channel, so that no receiver comes to rely on writing
    into what it received. ``consume``: each copied frame leaves ``frames`` at once."""
    if count == 1:
        return np.frombuffer(frames[first], dtype=dtype)
    out = np.empty(nbytes, dtype=np.uint8)
    at = 0
    for i in range(first, first + count):
        n = len(frames[i])
        out[at:at + n] = np.frombuffer(frames[i], dtype=np.uint8)
        at += n
        if consume:
            frames[i] = None  # type: ignore[index]  # its ZeroMQ message is freed now
    out.setflags(write=False)
    return out.view(dtype)
