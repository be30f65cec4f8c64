"""The human-readable tables of ``splitface-edge``: a header and aligned columns.

Rows are printed as they come, since a batch can run for minutes and the operator should see
progress, so column widths are fixed up front from what the command knows (file names,
identities, the statuses it can print). A longer value pushes the rest of its row right but
never runs into its neighbour: columns stay at least two spaces apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from splitface.shared.text import escaped

GAP = "  "


def shown(text: object) -> str:
    """``text`` on one line: a newline or other control character in a file or folder name
    is printed escaped (``\\n``), never raw, so one row stays one line."""
    return escaped(str(text))


@dataclass(frozen=True)
class Column:
    """``width`` is a minimum; the title's own width always fits. ``right`` aligns numbers."""

    title: str
    width: int = 0
    right: bool = False

    def fit(self, values: Iterable[object]) -> Column:
        """This column, wide enough for every one of ``values``."""
        widest = max((len(shown(v)) for v in values), default=0)
        return Column(self.title, max(self.width, widest), self.right)


class TextTable:
    """Formats a header and rows; the last column is not padded (no trailing blanks)."""

    def __init__(self, columns: list[Column]) -> None:
        self.columns = columns

    def header(self) -> str:
        return self._line([c.title for c in self.columns])

    def row(self, *values: object) -> str:
        if len(values) != len(self.columns):
            raise ValueError(f"{len(values)} values for {len(self.columns)} columns")
        last = len(values) - 1  # an empty last cell stays blank: no trailing "-"
        return self._line(["" if i == last and v in (None, "") else "-" if v in (None, "")
                           else shown(v) for i, v in enumerate(values)])

    def _line(self, cells: list[str]) -> str:
        out: list[str] = []
        last = len(self.columns) - 1
        for i, (col, text) in enumerate(zip(self.columns, cells, strict=True)):
            width = max(col.width, len(col.title))
            if i == last and not col.right:
                out.append(text)
            else:
                out.append(text.rjust(width) if col.right else text.ljust(width))
        return GAP.join(out).rstrip()
