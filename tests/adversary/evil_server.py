"""A malicious server: the real daemon running modified code (a tampered opening on cue).

Run as ``python -m tests.adversary.evil_server --party 1 --config ...``. While the file
named by ``$SPLITFACE_EVIL_FLAG`` exists, the next value this server opens is shifted by
one (its share only: no MAC fix, it does not know alpha) and the file is removed, so the
test decides which request is attacked.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from splitface.servers.cli import server
from splitface.servers.mpc import party as party_module
from splitface.shared import ring

_open = party_module.Party.open


def _evil_open(self, *pairs, **kw):
    flag = os.environ.get("SPLITFACE_EVIL_FLAG")
    if flag and Path(flag).exists():
        Path(flag).unlink()
        val, mac = pairs[0]
        val = ring.add(val, ring.from_pyint(1, val.shape[1:]))
        pairs = ((val, mac), *pairs[1:])
    return _open(self, *pairs, **kw)


party_module.Party.open = _evil_open

if __name__ == "__main__":
    sys.exit(server.main())
