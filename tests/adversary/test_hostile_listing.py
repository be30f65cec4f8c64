"""Attacker review 3 (low): a malicious server's name listing must not crash the admin's
status command or write escape sequences to its terminal."""

import numpy as np
import pytest

from splitface.edge.cli_admin import admin_text, status_report
from splitface.shared import api


def test_deep_nesting_is_a_valueerror_not_a_recursionerror():
    # a malicious server: the admin's `status --names` dies with a RecursionError traceback
    # instead of the ServersDisagree the client maps ValueError to
    frame = np.frombuffer(b"[" * 100_000 + b"]" * 100_000, np.uint8)
    with pytest.raises(ValueError):
        api.unpack_listing([frame])


def test_names_that_no_store_can_hold_are_refused():
    # names are printed verbatim by cli_admin.status_report: terminal escape sequences
    # from a malicious server reach the admin's terminal
    frame = api.pack_listing({"identities": ["\x1b]0;owned\x07\x1b[2J", "a\nFAKE: consistent"]})
    with pytest.raises(ValueError):
        api.unpack_listing([frame])


def _status(**extra):
    base = {"party": 0, "peer_ok": True, "records": 3, "identities_count": 2,
            "model_version": 4, "key_epoch": 1, "digest": "d0",
            "prefetch": {"hits": 1, "misses": 0, "queued": 0}}
    return {**base, **extra}


def _printable(text: str) -> list[str]:
    return [c for c in text if not (c.isprintable() or c == "\n")]


def test_a_servers_prefetch_counters_cannot_write_escape_sequences():
    """Attacker review 8 (low): the status text printed each server's prefetch counters
    verbatim. A malicious P1 out of step with P0 hid the real "NOT CONSISTENT" behind a
    fake "consistent" line (SGR 8 conceals what follows) and wrote the clipboard (OSC 52)."""
    evil = {"hits": "\x1b[0m\nconsistent\x1b[8m", "misses": "\x1b]52;c;ZWNobyBvd25lZA==\x07",
            "queued": -5}
    rec, text, _ = status_report(_status(), _status(prefetch=evil, model_version=3,
                                                    digest="d1"))
    assert "NOT CONSISTENT" in text
    assert not _printable(text), "control characters reach the admin's terminal"
    assert "consistent" not in text.splitlines()
    assert rec["prefetch"][1] == {"hits": None, "misses": None, "queued": None}


def test_an_admin_commands_details_cannot_write_escape_sequences():
    """Attacker review 8 (low): `admin train` etc. printed P0's reply details verbatim."""
    text = admin_text("\x1b[2Jtrained", {"model_version": 3, "\x1b]0;t\x07": "x\x1b[8m",
                                         "models": ["templates\x07"]})
    assert not _printable(text)
    assert text.startswith("\\x1b[2Jtrained: ")
