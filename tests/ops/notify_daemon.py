"""A minimal daemon following the unit contract, run by test_sdnotify as systemd would run it.

``python -m tests.ops.notify_daemon CONFIG`` loads an edge config (exit 78 = EX_CONFIG on a bad
one), sends READY=1, runs a main loop that heartbeats the watchdog, hangs for good on SIGUSR1
(the stuck camera), and sends STOPPING=1 and exits 0 on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from splitface.shared import sdnotify
from splitface.shared.config import ConfigError, load_edge_config


def main(argv: list[str]) -> int:
    try:
        config = load_edge_config(argv[0])
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return os.EX_CONFIG
    stop = threading.Event()
    stuck = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: stuck.set())
    dog = sdnotify.Watchdog.from_env(enabled=config.watchdog.enabled)
    sdnotify.ready()
    sdnotify.status(f"terminal {config.terminal_id} running")
    while not stop.is_set():
        if stuck.is_set():  # a read that never returns: no more heartbeats
            stop.wait()
            break
        time.sleep(0.01)  # one frame
        dog.heartbeat()
    sdnotify.stopping()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
