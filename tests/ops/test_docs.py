"""docs/DEPLOY.md stays in step with the code it documents."""

from __future__ import annotations

import re

from splitface.edge.exit_codes import markdown_table
from splitface.shared.config import reference
from tests.ops.units import REPO

DOC = REPO / "docs" / "DEPLOY.md"


def test_config_reference_is_current() -> None:
    text = DOC.read_text()
    match = re.search(r"<!-- BEGIN CONFIG REFERENCE -->\n(.*)<!-- END CONFIG REFERENCE -->",
                      text, re.S)
    assert match, "docs/DEPLOY.md lost its config reference markers"
    assert match.group(1) == reference(), (
        "config reference is stale: regenerate it from `python -m splitface.shared.config`")


def test_documented_commands_exist() -> None:
    """Every `splitface-keys SUBCOMMAND` the guide uses is a real subcommand."""
    from splitface.shared.cli_keys import _parser

    actions = [a for a in _parser()._actions if a.dest == "command"]
    known = set(actions[0].choices)
    used = set(re.findall(r"splitface-keys ([a-z-]+)", DOC.read_text()))
    assert used and used <= known, used - known


def test_exit_code_table_is_current() -> None:
    """The table operators script against is the one the code uses."""
    match = re.search(r"<!-- BEGIN EXIT CODES -->\n(.*)<!-- END EXIT CODES -->", DOC.read_text(),
                      re.S)
    assert match, "docs/DEPLOY.md lost its exit-code table markers"
    assert match.group(1) == markdown_table(), (
        "exit-code table is stale: paste `splitface.edge.exit_codes.markdown_table()`")


def test_documented_edge_commands_exist() -> None:
    """Every `splitface-edge SUBCOMMAND` the guide and the README use is a real one."""
    from splitface.edge.cli import build_parser

    actions = [a for a in build_parser()._actions if a.dest == "command"]
    known = set(actions[0].choices)
    used = set(re.findall(r"splitface-edge ([a-z-]+)",
                          DOC.read_text() + (REPO / "README.md").read_text()))
    assert used and used <= known, used - known
