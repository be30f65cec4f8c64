"""sd_notify against a real AF_UNIX datagram socket, as systemd's manager would hold it."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from splitface.shared import sdnotify
from splitface.shared.sdnotify import Notifier, Watchdog


@contextlib.contextmanager
def notify_socket(path: str | bytes) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    try:
        yield sock
    finally:
        sock.close()


def _drain(sock: socket.socket) -> list[bytes]:
    sock.settimeout(0.0)
    out = []
    with contextlib.suppress(BlockingIOError):
        while True:
            out.append(sock.recv(4096))
    sock.settimeout(2.0)
    return out


@pytest.fixture
def path_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = str(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    with notify_socket(path) as sock:
        yield sock


def test_ready_status_stopping_watchdog_arrive(path_socket: socket.socket) -> None:
    assert sdnotify.ready()
    assert path_socket.recv(4096) == b"READY=1\n"
    assert sdnotify.status("loading model 2/3")
    assert path_socket.recv(4096) == b"STATUS=loading model 2/3\n"
    assert sdnotify.watchdog()
    assert path_socket.recv(4096) == b"WATCHDOG=1\n"
    assert sdnotify.extend_timeout(90)
    assert path_socket.recv(4096) == b"EXTEND_TIMEOUT_USEC=90000000\n"
    assert sdnotify.notify(ready=1, status="up")
    assert path_socket.recv(4096) == b"READY=1\nSTATUS=up\n"
    assert sdnotify.stopping()
    assert path_socket.recv(4096) == b"STOPPING=1\n"


def test_abstract_socket() -> None:
    name = f"splitface-test-{secrets.token_hex(6)}"
    with notify_socket(b"\0" + name.encode()) as sock:
        assert sdnotify.ready({"NOTIFY_SOCKET": f"@{name}"})
        assert sock.recv(4096) == b"READY=1\n"


def test_noop_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.ready()
    assert not sdnotify.watchdog()
    assert not Notifier.from_env().enabled
    assert not sdnotify.ready({"NOTIFY_SOCKET": "vsock:2:1234"})  # not spoken: treated as unset


def test_send_failure_is_reported_not_raised(tmp_path: Path) -> None:
    assert not sdnotify.ready({"NOTIFY_SOCKET": str(tmp_path / "gone")})


def test_multiline_field_is_refused(path_socket: socket.socket) -> None:
    with pytest.raises(ValueError, match="one line"):
        sdnotify.status("a\nREADY=1")
    assert _drain(path_socket) == []


def test_watchdog_interval() -> None:
    pid = str(os.getpid())
    assert sdnotify.watchdog_interval({}) == 0.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 20.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": pid}) == 0.5
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "1"}) == 0.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "junk"}) == 0.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "0"}) == 0.0


def test_watchdog_pings_at_half_interval_only_on_heartbeat(path_socket: socket.socket) -> None:
    now = [100.0]
    env = {"NOTIFY_SOCKET": os.environ["NOTIFY_SOCKET"], "WATCHDOG_USEC": "10000000"}
    dog = Watchdog.from_env(env, clock=lambda: now[0])
    assert dog.enabled and dog.interval_s == 10.0
    assert dog.heartbeat()  # first progress pings at once
    for _ in range(4):  # progress within half the interval: no extra pings
        now[0] += 1.0
        assert not dog.heartbeat()
    now[0] += 1.0  # 5 s since last ping = half of 10 s
    assert dog.heartbeat()
    assert _drain(path_socket) == [b"WATCHDOG=1\n", b"WATCHDOG=1\n"]
    now[0] += 60.0  # a stuck loop makes no heartbeat call: nothing is sent, however long
    assert _drain(path_socket) == []
    assert dog.heartbeat() and dog.pings == 3


def test_watchdog_stops_when_loop_spins_without_progress(path_socket: socket.socket) -> None:
    """A camera returning no frames: the loop still iterates, but pings stop after stall_s."""
    now = [0.0]
    env = {"NOTIFY_SOCKET": os.environ["NOTIFY_SOCKET"], "WATCHDOG_USEC": "4000000"}
    dog = Watchdog.from_env(env, stall_s=3.0, clock=lambda: now[0])
    assert dog.heartbeat()  # start-up grace: no frame yet, but within stall_s
    now[0] = 2.0
    dog.progress()  # first frame
    for t in (2.5, 4.0, 5.0, 6.0, 7.0, 8.0):  # loop iterates, frames fail from here on
        now[0] = t
        dog.heartbeat()
    # pings at 0.0, 2.5, 5.0 (every 2 s at most); from 6.0 on the last frame is > 3 s old
    assert dog.pings == 3
    now[0] = 20.0
    assert not dog.heartbeat()
    dog.progress()  # camera is back
    assert dog.heartbeat() and dog.pings == 4
    assert len(_drain(path_socket)) == 4


def test_watchdog_disabled_paths(path_socket: socket.socket) -> None:
    env = {"NOTIFY_SOCKET": os.environ["NOTIFY_SOCKET"]}
    assert not Watchdog.from_env(env).enabled  # no WatchdogSec=
    env["WATCHDOG_USEC"] = "1000000"
    assert not Watchdog.from_env(env, enabled=False).heartbeat()  # config watchdog.enabled=false
    assert _drain(path_socket) == []


def test_stuck_main_loop_stops_pings_in_real_time(path_socket: socket.socket) -> None:
    """A real loop with a 0.2 s watchdog: pings flow while it runs, stop while it hangs."""
    env = {"NOTIFY_SOCKET": os.environ["NOTIFY_SOCKET"], "WATCHDOG_USEC": "200000"}
    dog = Watchdog.from_env(env)
    hang = threading.Event()
    stop = threading.Event()

    def main_loop() -> None:
        while not stop.is_set():
            if hang.is_set():  # e.g. a camera read that never returns
                stop.wait()
                continue
            time.sleep(0.01)  # one frame of work
            dog.heartbeat()

    thread = threading.Thread(target=main_loop)
    thread.start()
    try:
        time.sleep(0.6)
        running = _drain(path_socket)
        hang.set()
        time.sleep(0.1)
        _drain(path_socket)  # a ping may have been in flight as the loop hung
        time.sleep(0.6)
        hung = _drain(path_socket)
    finally:
        stop.set()
        thread.join()
    assert len(running) >= 3 and set(running) == {b"WATCHDOG=1\n"}
    assert hung == []


def _recv_with_pid(sock: socket.socket, timeout: float) -> tuple[bytes, int]:
    """One datagram and the sender's pid from SCM_CREDENTIALS, as systemd checks for
    NotifyAccess=main."""
    sock.settimeout(timeout)
    data, ancdata, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(12))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            return data, int.from_bytes(payload[:4], sys.byteorder)
    return data, -1


def test_daemon_contract_as_systemd_sees_it(deployment, tmp_path: Path) -> None:
    """READY=1 from the main pid, pings while running, none once stuck, STOPPING=1 on SIGTERM."""
    import signal
    import subprocess

    path = str(tmp_path / "notify")
    with notify_socket(path) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "300000"}
        proc = subprocess.Popen([sys.executable, "-m", "tests.ops.notify_daemon",
                                 str(deployment.config_path("edge-1"))], env=env,
                                cwd=Path(__file__).resolve().parents[2])
        try:
            assert _recv_with_pid(sock, 20.0) == (b"READY=1\n", proc.pid)
            assert _recv_with_pid(sock, 2.0) == (b"STATUS=terminal edge-1 running\n", proc.pid)
            pings = [_recv_with_pid(sock, 1.0) for _ in range(3)]
            assert pings == [(b"WATCHDOG=1\n", proc.pid)] * 3
            proc.send_signal(signal.SIGUSR1)  # the main loop hangs
            time.sleep(0.2)
            _drain(sock)
            with pytest.raises(TimeoutError):  # > one full watchdog interval without a ping
                _recv_with_pid(sock, 0.6)
            proc.send_signal(signal.SIGTERM)
            assert _recv_with_pid(sock, 5.0) == (b"STOPPING=1\n", proc.pid)
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
            proc.wait()


def test_daemon_exits_ex_config_on_a_bad_config(tmp_path: Path) -> None:
    import subprocess

    bad = tmp_path / "config.toml"
    bad.write_text("terminal_id = 3\n")
    result = subprocess.run([sys.executable, "-m", "tests.ops.notify_daemon", str(bad)],
                            capture_output=True, text=True, timeout=30,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 78  # RestartPreventExitStatus=78 in the units
    assert f"{bad}: terminal_id: expected a string, got integer 3" in result.stderr
