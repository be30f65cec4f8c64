"""Where to run the detector: the whole frame, plus overlapping tiles when faces can be small.

BlazeFace sees a square window resized to its input (192 px for full range). A face is found
reliably only when its inter-eye distance (IED) in the model input reaches the model's
*reach* (about 6 px full range, measured in ``benchmarks/bench_detect.py``). On the whole
frame that means IED >= reach * frame side / input; smaller faces need finer windows. The
plan is a pyramid: each level halves the window side (at most) until the finest level reaches
``min_eye_px``; windows of a level overlap by the largest face the coarser level can miss, so
every face lies whole inside some window of the level that can see it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Box side (BlazeFace's box) per inter-eye distance: ~2.2 on frontal faces; 2.6 leaves room
# for turned heads, so an overlap of this many IEDs holds a whole face.
BOX_PER_EYE = 2.6


@dataclass(frozen=True)
class Window:
    """A square region of the frame in continuous pixel coordinates (may extend past the
    frame edges, which are padded black). ``level`` 0 is the whole frame."""

    x: float
    y: float
    side: float
    level: int = 0

    def inner_edges(self, width: int, height: int) -> tuple[bool, bool, bool, bool]:
        """Which of the left, top, right, bottom edges cut through the frame (not its border)."""
        return (self.x > 0.5, self.y > 0.5, self.x + self.side < width - 0.5,
                self.y + self.side < height - 0.5)


def whole_frame(width: int, height: int) -> Window:
    """The letterbox window: the frame centred in a square of its longest side."""
    side = float(max(width, height))
    return Window((width - side) / 2.0, (height - side) / 2.0, side, 0)


def _axis_starts(length: float, side: float, overlap: float) -> list[float]:
    """Evenly spread window starts covering [0, length] with at least ``overlap`` shared."""
    if side >= length:
        return [(length - side) / 2.0]
    n = math.ceil((length - overlap) / (side - overlap))
    step = (length - side) / (n - 1) if n > 1 else 0.0
    return [i * step for i in range(n)]


def plan_windows(width: int, height: int, input_size: int, reach_px: float,
                 min_eye_px: float) -> list[Window]:
    """Whole frame first, then tile levels down to the side that reaches ``min_eye_px``.

    ``reach_px``: the IED (model-input pixels) the model finds reliably. ``min_eye_px`` <= 0
    means the whole frame only.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    top = whole_frame(width, height)
    windows = [top]
    if min_eye_px <= 0:
        return windows
    finest = input_size * min_eye_px / reach_px  # window side that reaches min_eye_px
    if finest >= top.side:
        return windows
    levels = math.ceil(math.log2(top.side / finest))
    factor = (top.side / finest) ** (1.0 / levels)  # <= 2: each level halves at most
    coarser = top.side
    for level in range(1, levels + 1):
        side = top.side / factor**level
        # The coarser level misses faces with IED below its reach: those must fit an overlap.
        overlap = min(BOX_PER_EYE * reach_px * coarser / input_size, side / 2.0)
        for y in _axis_starts(height, side, overlap):
            for x in _axis_starts(width, side, overlap):
                windows.append(Window(x, y, side, level))
        coarser = side
    return windows
