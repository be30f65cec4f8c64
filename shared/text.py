"""Text from another party, made safe for a terminal (no heavy imports: the edge CLI's tables
use it before anything else is loaded)."""

from __future__ import annotations


def escaped(text: str) -> str:
    """``text`` with every character that is not printable written as its escape
    (``\\n``, ``\\x1b``): one line, and nothing a terminal would act on."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)
