"""Product code draws randomness only from the OS CSPRNG or an AES-CTR stream (shared/prg.py).

numpy's and Python's default generators are predictable from their outputs; even where a
value is public today (a batch order, a back-off jitter), a later change could make it
secret without anyone noticing the generator. So none of them appear in product code at all;
test-data builders are the one documented exception.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("edge", "servers", "shared")
# Builds the bundled test photos' synthetic views (never part of a request or a share).
ALLOWED = {"edge/models/testdata_build.py"}
FORBIDDEN = re.compile(r"\bnp\.random\.(?!Generator\b)|\bnumpy\.random\.\w+\(|"
                       r"^\s*import (numpy\.)?random\b|^\s*from (numpy )?random import|"
                       r"^\s*from numpy import random\b", re.MULTILINE)


def offending_lines(root: Path = ROOT) -> list[str]:
    found = []
    for pkg in PRODUCT:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel in ALLOWED:
                continue
            text = path.read_text(encoding="utf-8")
            for m in FORBIDDEN.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                found.append(f"{rel}:{line}: {text.splitlines()[line - 1].strip()}")
    return found


def test_product_code_uses_no_predictable_generator() -> None:
    assert offending_lines() == []


def test_the_scan_finds_a_default_generator(tmp_path) -> None:
    """The check itself can fail: planted generator uses are reported."""
    (tmp_path / "servers").mkdir()
    (tmp_path / "servers" / "leaky.py").write_text(
        "import numpy as np\nr = np.random.default_rng(1)\nimport random\n"
        "ok: np.random.Generator  # a type, not a draw\nfrom numpy import random\n",
        encoding="utf-8")
    assert offending_lines(tmp_path) == ["servers/leaky.py:2: r = np.random.default_rng(1)",
                                         "servers/leaky.py:3: import random",
                                         "servers/leaky.py:5: from numpy import random"]
