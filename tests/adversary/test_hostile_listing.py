"""Attacker review 3 (low): a malicious server's name listing must not crash the admin's
status command or write escape sequences to its terminal."""

import numpy as np
import pytest

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
