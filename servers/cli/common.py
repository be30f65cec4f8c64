"""What every server-side daemon does at start and stop: logging, signals, sd_notify."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading

from splitface.shared.config_schema import ConfigError

EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus=78 stops restart loops
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: e.g. a port still held by another process; systemd retries


def listen_error_exit(what: str, exc: Exception) -> int:
    """A socket this daemon must listen on is taken (another process, or a previous run
    not yet gone): one clear line instead of a traceback, and an exit systemd retries."""
    print(f"cannot listen for {what}: {exc} (another process holds the address; "
          "retried on restart)", file=sys.stderr)
    return EXIT_TEMPFAIL


def setup_logging(level: str) -> None:
    # journald stamps every line itself; run by hand, a daemon's lines carry the time
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format=stamp + "%(levelname)s %(name)s: %(message)s")
    # `kill -USR1 PID` writes every thread's stack to the log: how to see where a daemon hangs
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)


def stop_event() -> threading.Event:
    """An event set by SIGTERM or SIGINT, for a clean shutdown of the main loop."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        logging.getLogger("splitface").info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def config_error_exit(exc: ConfigError | OSError | ValueError) -> int:
    print(f"configuration error: {exc}", file=sys.stderr)
    return EXIT_CONFIG
