"""Crash injection for tests: a daemon started with ``SPLITFACE_FAILPOINT=NAME`` dies at once
(``os._exit``, no clean-up, like a power cut) the first time it reaches ``hit(NAME)``.

Only crash tests set the variable; unset, ``hit`` is one dictionary lookup. The points sit
where a crash is hardest to recover from (between the two servers' commits).
"""

from __future__ import annotations

import os

ENV = "SPLITFACE_FAILPOINT"
EXIT_CODE = 70  # EX_SOFTWARE: shows in the test's logs as an injected crash


def hit(name: str) -> None:
    """Die here if this is the failpoint the process was started with."""
    if os.environ.get(ENV) == name:
        os._exit(EXIT_CODE)
