"""Identity names as the words of an identification result.

An identification returns the matched name itself, never an index into a list the
terminal would need to hold: the servers look the name up under MPC in a public table
(servers/recognition/identify.py) and the terminal decodes the opened words here.
"""

from __future__ import annotations

import numpy as np

NAME_BYTES = 128
NAME_WORDS = NAME_BYTES // 8  # little-endian 64-bit words of the zero-padded UTF-8 name


def encode_name(name: str) -> np.ndarray:
    """The NAME_WORDS int64 words of a name (UTF-8, 1..NAME_BYTES bytes, zero-padded)."""
    raw = name.encode()
    if not 0 < len(raw) <= NAME_BYTES or b"\0" in raw:
        raise ValueError(f"a name is 1..{NAME_BYTES} bytes of UTF-8 without NUL")
    return np.frombuffer(raw.ljust(NAME_BYTES, b"\0"), dtype="<i8").copy()


def decode_name(words: np.ndarray) -> str | None:
    """The name in an identification result; None for "no identity reached the threshold"."""
    w = np.asarray(words, dtype=np.int64)
    if w.shape != (NAME_WORDS,):
        raise ValueError(f"a name result has {NAME_WORDS} words, got shape {w.shape}")
    raw = w.astype("<i8").tobytes().rstrip(b"\0")
    return raw.decode("utf-8", errors="strict") if raw else None
