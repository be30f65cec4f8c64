"""Start and stop a real ``pcscd --foreground`` with the vpcd driver for the card tests.

Isolation: pcsc-lite 1.9 fixes the daemon socket at /run/pcscd/pcscd.comm. When we
can (root, util-linux ``unshare``), pcscd runs in a private mount namespace with a
temporary directory bind-mounted on /run/pcscd, and the client reaches it through
``PCSCLITE_CSOCK_NAME``; so a system pcscd, or another checkout's tests, never clash
with ours. Otherwise we fall back to the shared socket and refuse to start if any
pcscd already owns it. vpcd listens on a port from our own reader.conf (``DEVICENAME
/dev/null:<port>``, one port per slot: port, port+1), chosen free at start.

A leftover instance from an earlier, killed test run is recognised by the pid file
we write and by our config path on its command line, and only that one is stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PCSCD = "/usr/sbin/pcscd"
VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
RUN_DIR = Path("/run/pcscd")
TAG = "splitface-vpcd-test"
PIDFILE = Path(tempfile.gettempdir()) / f"{TAG}.pid"
READER_NAME = "Splitface Test VPCD"
SLOTS = 2


class PcscdStartError(RuntimeError):
    """pcscd (or the vpcd driver) could not be started; the message says why."""


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("0.0.0.0", 0))
            port = a.getsockname()[1]
            if port + 1 > 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("0.0.0.0", port + 1))
                except OSError:
                    continue
            return port
    raise PcscdStartError("no two consecutive free TCP ports for vpcd")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _terminate(pid: int, timeout_s: float = 5.0) -> None:
    """SIGTERM and wait (pcscd refuses to restart while the old one lingers)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _pid_alive(pid) and "pcscd" in _cmdline(pid):
        time.sleep(0.02)
    if _pid_alive(pid) and "pcscd" in _cmdline(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _own_pidfile() -> Path:
    """This process's record of the pcscd it started (one file per owning process, so
    concurrent test sessions on one machine never take each other's daemon for a leftover)."""
    return PIDFILE.parent / f"{PIDFILE.stem}.{os.getpid()}.pid"


def kill_leftover() -> None:
    """Stop a test pcscd that an earlier, interrupted run of ours left behind.

    A record whose owning process is still alive (another test session) is left alone.
    """
    records = [PIDFILE, *PIDFILE.parent.glob(f"{PIDFILE.stem}.*.pid")]
    for record in records:
        try:
            pid = int(record.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        owner = record.stem.rsplit(".", 1)[-1] if record != PIDFILE else ""
        if owner.isdigit() and int(owner) != os.getpid() and _pid_alive(int(owner)):
            continue  # a live session's daemon, not a leftover
        if _pid_alive(pid) and TAG in _cmdline(pid) and "pcscd" in _cmdline(pid):
            _terminate(pid)
        record.unlink(missing_ok=True)


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return probe.returncode == 0


@dataclass
class Pcscd:
    """A running test pcscd; ``stop()`` sends SIGTERM and waits."""

    base: Path
    port: int
    isolated: bool
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.base / "pcscd.log"

    @property
    def conf_dir(self) -> Path:
        return self.base / "conf"

    @property
    def run_dir(self) -> Path:
        return self.base / "run"

    @property
    def socket_path(self) -> Path:
        return (self.run_dir / "pcscd.comm") if self.isolated else RUN_DIR / "pcscd.comm"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def readers(self) -> list[str]:
        return [f"{READER_NAME} 00 {slot:02d}" for slot in range(SLOTS)]

    def slot_port(self, slot: int) -> int:
        return self.port + slot

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no pcscd log)"

    def write_config(self, present: bool = True) -> None:
        conf = self.conf_dir / "vpcd"
        if not present:
            conf.unlink(missing_ok=True)
            return
        conf.write_text(
            f'FRIENDLYNAME "{READER_NAME}"\n'
            f"DEVICENAME   /dev/null:{self.port}\n"
            f"LIBPATH      {VPCD_DRIVER}\n"
            f"CHANNELID    {self.port}\n"
        )

    def rescan(self) -> None:
        """Ask pcscd to re-read its reader.conf (readers appear / disappear)."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGUSR1)

    def start(self, ready_timeout_s: float = 10.0) -> Pcscd:
        for path, what in (
            (PCSCD, "pcscd (Debian package pcscd)"),
            (VPCD_DRIVER, "vpcd driver (Debian package vsmartcard-vpcd)"),
        ):
            if not Path(path).exists():
                raise PcscdStartError(
                    f"{what} not found at {path}; run scripts/install_system_deps.sh"
                )
        kill_leftover()
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        self.write_config()
        daemon = [PCSCD, "--foreground", "--debug", "--config", str(self.conf_dir)]
        if self.isolated:
            RUN_DIR.mkdir(parents=True, exist_ok=True)
            script = 'mount --bind "$1" /run/pcscd && shift && exec "$@"'
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
                script,
                "sh",
                str(self.base / "run"),
                *daemon,
            ]
        else:
            if self.socket_path.exists():
                raise PcscdStartError(
                    f"another pcscd owns {self.socket_path} and this machine cannot isolate a "
                    "test pcscd (needs root and unshare); stop it or run the tests as root"
                )
            argv = daemon
        log = self.log_path.open("ab")
        log_start = log.tell()
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        _own_pidfile().write_text(f"{self.process.pid}\n")
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise PcscdStartError(f"pcscd exited at start-up:\n{self.log_tail()}")
            ready = b"daemon ready" in self.log_path.read_bytes()[log_start:]
            if ready and self.socket_path.exists():
                return self
            time.sleep(0.01)
        self.stop()
        raise PcscdStartError(f"pcscd not ready after {ready_timeout_s} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process is None:
            return
        proc, self.process = self.process, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        _own_pidfile().unlink(missing_ok=True)


def start_pcscd(base: Path) -> Pcscd:
    """Start an isolated pcscd when possible; set PCSCLITE_CSOCK_NAME for this process."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    isolated = _can_unshare()
    daemon = Pcscd(base / f"{TAG}-{os.getpid()}", _free_port_pair(), isolated)
    daemon.base.mkdir(exist_ok=True)
    os.environ["PCSCLITE_CSOCK_NAME"] = str(daemon.socket_path)
    return daemon.start()

