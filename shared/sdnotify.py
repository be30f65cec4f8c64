"""sd_notify without systemd-python: one AF_UNIX datagram per message to ``$NOTIFY_SOCKET``.

Units run with ``Type=notify`` + ``WatchdogSec=``: the daemon says ``READY=1`` once it can
serve, ``STOPPING=1`` when it shuts down, and ``WATCHDOG=1`` while its main loop makes
progress. Everything is a no-op when ``$NOTIFY_SOCKET`` is unset (not under systemd), so the
same code runs in tests, in a terminal and in a unit.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger("splitface.sdnotify")


def _address(env: Mapping[str, str]) -> str | bytes:
    """``$NOTIFY_SOCKET`` as a connect address: ``@name`` is Linux's abstract namespace."""
    raw = env.get("NOTIFY_SOCKET", "")
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    return ""  # unset, or a transport we do not speak (vsock:): behave as if unset


def _format(fields: Mapping[str, object]) -> bytes:
    lines = []
    for key, value in fields.items():
        text = str(value)
        if "\n" in text:
            raise ValueError(f"sd_notify field {key} must be one line")
        lines.append(f"{key.upper()}={text}")
    return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class Notifier:
    """Sends sd_notify messages to one socket address ('' = disabled)."""

    address: str | bytes = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        return cls(_address(os.environ if env is None else env))

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, **fields: object) -> bool:
        """Send ``KEY=value`` lines (keys upper-cased); True if a datagram was sent.

        A send failure (systemd gone, socket full) is logged and reported as False rather than
        raised: losing one notification must never take the service down.
        """
        if not self.address:
            return False
        message = _format(fields)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message)
        except OSError as exc:
            log.warning("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True


def notify(env: Mapping[str, str] | None = None, **fields: object) -> bool:
    """Send arbitrary sd_notify fields, e.g. ``notify(STATUS="loading", EXTEND_TIMEOUT_USEC=…)``."""
    return Notifier.from_env(env).notify(**fields)


def ready(env: Mapping[str, str] | None = None) -> bool:
    """Startup finished: systemd marks the unit active (Type=notify)."""
    return notify(env, READY=1)


def stopping(env: Mapping[str, str] | None = None) -> bool:
    """Shutdown began: systemd stops expecting watchdog pings."""
    return notify(env, STOPPING=1)


def watchdog(env: Mapping[str, str] | None = None) -> bool:
    """One watchdog ping; prefer :class:`Watchdog`, which pings only on progress."""
    return notify(env, WATCHDOG=1)


def status(text: str, env: Mapping[str, str] | None = None) -> bool:
    """Free-form status line shown by ``systemctl status``."""
    return notify(env, STATUS=text)


def extend_timeout(seconds: float, env: Mapping[str, str] | None = None) -> bool:
    """Ask for more start-up (or stop) time, e.g. while loading models or preprocessing."""
    return notify(env, EXTEND_TIMEOUT_USEC=int(seconds * 1_000_000))


def watchdog_interval(env: Mapping[str, str] | None = None) -> float:
    """systemd's watchdog timeout in seconds for this process; 0.0 when none is requested.

    Reads ``$WATCHDOG_USEC``; honours ``$WATCHDOG_PID`` (set when the variable was meant for
    another process, e.g. after a fork) by returning 0.0 if it is not our pid.
    """
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return 0.0
    pid = env.get("WATCHDOG_PID", "")
    if pid:
        try:
            if int(pid) != os.getpid():
                return 0.0
        except ValueError:
            return 0.0
    return usec / 1_000_000 if usec > 0 else 0.0


@dataclass
class Watchdog:
    """Pings systemd's watchdog from the main loop, and only while the loop makes progress.

    Call :meth:`heartbeat` once per main-loop iteration; a ping goes out when half the interval
    has passed since the last one. There is deliberately no timer thread: if the loop hangs in
    a camera read or a server call, heartbeats stop, pings stop, and systemd restarts us.

    A loop that keeps spinning without doing its job (a camera that returns no frames) is caught
    with ``stall_s``: the loop calls :meth:`progress` when real work happened (a frame decoded),
    and heartbeats ping only if that was at most ``stall_s`` ago. With ``stall_s == 0`` every
    heartbeat counts as progress.
    """

    interval_s: float
    notifier: Notifier = field(default_factory=Notifier)
    clock: Callable[[], float] = time.monotonic
    stall_s: float = 0.0
    _last_ping: float = field(default=float("-inf"), init=False, repr=False)
    _last_progress: float = field(default=0.0, init=False, repr=False)
    _pings: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._last_progress = self.clock()  # start-up gets one stall_s of grace

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, enabled: bool = True,
                 stall_s: float = 0.0, clock: Callable[[], float] = time.monotonic) -> Watchdog:
        """The watchdog systemd asked for (``WatchdogSec=``); disabled when none or not wanted."""
        interval = watchdog_interval(env) if enabled else 0.0
        notifier = Notifier.from_env(env) if interval else Notifier()
        return cls(interval, notifier, clock, stall_s)

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0 and self.notifier.enabled

    @property
    def pings(self) -> int:
        """Pings sent so far (for tests and the status line)."""
        return self._pings

    def progress(self) -> None:
        """The loop did real work (only needed with ``stall_s``)."""
        self._last_progress = self.clock()

    def heartbeat(self) -> bool:
        """Once per loop iteration; pings if due and the loop is not stalled. True if pinged."""
        if not self.enabled:
            return False
        now = self.clock()
        if self.stall_s > 0 and now - self._last_progress > self.stall_s:
            return False
        if now - self._last_ping < self.interval_s / 2:
            return False
        if self.notifier.notify(WATCHDOG=1):
            self._last_ping = now
            self._pings += 1
            return True
        return False
