"""A daemon whose listening address is taken exits with one clear line, not a traceback.

A port can be held by another process (or by a previous run still closing): the daemon
says which address it could not listen on and exits with EX_TEMPFAIL (75), which systemd
retries (78, a configuration error, it does not).
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from splitface.servers.deploy_local import LocalDeployment
from tests.services.conftest import free_base_port


def _endpoint(dep: LocalDeployment, name: str, key: str) -> tuple[str, int]:
    text = (dep.root / name / "config.toml").read_text()
    host, port = re.search(rf'^{key} = "tcp://([^:]+):(\d+)"', text, re.M).groups()
    return host, int(port)


@pytest.mark.parametrize(("name", "key", "what"), [
    ("p1", "listen_edge", "terminals on"),
    ("p0", "listen_peer", "the other server on"),
    ("dealer", "listen", "the servers on"),
])
def test_a_taken_port_is_a_clear_retryable_exit(tmp_path, name, key, what):
    dep = LocalDeployment.create(tmp_path / "dep", edges=1, base_port=free_base_port())
    holder = socket.socket()
    holder.bind(_endpoint(dep, name, key))
    holder.listen()
    try:
        dep.start((name,))
        proc = dep.procs[name]
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.returncode == 75
        log = dep.logs[name].read_text()
        assert f"cannot listen for {what}" in log and "Address already in use" in log
        assert "Traceback" not in log
    finally:
        dep.stop()
        holder.close()


def test_deployment_ports_are_drawn_below_the_ephemeral_range():
    # a port of the ephemeral range, free when drawn, was once handed to a bench run's own
    # outgoing connection before P1 bound it: P1 exited and P0 waited for it for 10 minutes
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(20):
        assert free_base_port() + 12 <= low
