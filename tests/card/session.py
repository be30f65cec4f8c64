"""One pcscd per pytest session, shared by every test folder that taps cards.

Two folders each starting their own daemon would stop each other's (``Pcscd.start``
stops a leftover test pcscd, and ``PCSCLITE_CSOCK_NAME`` is process-wide), so the
daemon lives on the pytest config (``config.stash``) and stops at session cleanup.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.card.pcscd import Pcscd, PcscdStartError, start_pcscd

PCSCD_KEY = pytest.StashKey[Pcscd]()


def session_pcscd(config: pytest.Config, base: Path) -> Pcscd:
    """The session's pcscd (started on first use); a start failure fails the test."""
    daemon = config.stash.get(PCSCD_KEY, None)
    if daemon is None:
        try:
            daemon = start_pcscd(base)
        except (PcscdStartError, OSError) as exc:
            pytest.fail(
                f"cannot start pcscd with the vpcd driver for the card tests: {exc}",
                pytrace=False,
            )
        config.stash[PCSCD_KEY] = daemon
        config.add_cleanup(daemon.stop)
    return daemon
