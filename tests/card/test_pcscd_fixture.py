"""The pcscd launcher fails loudly (never skips) when it cannot start."""

from __future__ import annotations

import pytest

from tests.card import pcscd as launcher


def test_missing_pcscd_binary_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(launcher, "PCSCD", str(tmp_path / "no-pcscd"))
    daemon = launcher.Pcscd(tmp_path, 40000, isolated=True)
    with pytest.raises(launcher.PcscdStartError, match="install_system_deps"):
        daemon.start()


def test_free_port_pair_is_free():
    import socket

    port = launcher._free_port_pair()
    for p in (port, port + 1):
        with socket.socket() as s:
            s.bind(("0.0.0.0", p))


def test_leftover_marker_for_a_foreign_process_is_left_alone(tmp_path, monkeypatch):
    import os

    marker = tmp_path / "marker.pid"
    marker.write_text(f"{os.getpid()}\n")  # our own pytest process: not a test pcscd
    monkeypatch.setattr(launcher, "PIDFILE", marker)
    launcher.kill_leftover()  # must not signal us
    assert not marker.exists()


def test_a_live_sessions_daemon_is_not_a_leftover(tmp_path, monkeypatch):
    """Two test sessions on one machine: starting ours must not stop theirs."""
    import subprocess
    import sys

    sleep = [sys.executable, "-c", "import time; time.sleep(30)"]
    owner = subprocess.Popen(sleep)  # the other pytest session
    daemon = subprocess.Popen([*sleep, f"{launcher.TAG}-pcscd"])  # looks like its pcscd
    try:
        monkeypatch.setattr(launcher, "PIDFILE", tmp_path / f"{launcher.TAG}.pid")
        record = tmp_path / f"{launcher.TAG}.{owner.pid}.pid"
        record.write_text(f"{daemon.pid}\n")
        launcher.kill_leftover()
        assert record.exists() and daemon.poll() is None
        owner.kill()
        owner.wait()
        launcher.kill_leftover()  # owner gone: its daemon is a leftover now
        assert not record.exists() and daemon.wait(5) is not None
    finally:
        for p in (owner, daemon):
            if p.poll() is None:
                p.kill()
                p.wait()
