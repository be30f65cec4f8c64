"""Faults in the field: a server killed mid-query and restarted, the camera unplugged and
plugged back. The daemon reports each as an event, keeps running and recovers by itself."""

from __future__ import annotations

import itertools
import os
import signal
import time

from tests.daemon.conftest import FPS, Deployed
from tests.daemon.harness import EdgedProcess, edge_config, free_port, write_video


def _blocked(d: EdgedProcess, since: float, gap: float) -> bool:
    """True once no watchdog ping came for ``gap`` seconds: the loop is inside a call."""
    last = max(d.pings(since=since), default=since)
    return time.monotonic() - last > gap


def test_server_killed_mid_query_then_restarted(deployed: Deployed, tmp_path) -> None:
    dep = deployed.dep
    deployed.ensure_up()
    video = write_video(tmp_path / "camera.avi", deployed.scene.segments(), FPS)
    publish = f"tcp://127.0.0.1:{free_port()}"
    cfg = edge_config(deployed.edge_config(), tmp_path / "edged.toml", source=str(video),
                      publish=publish, timeout_s=3.0)
    with EdgedProcess(cfg, publish, tmp_path) as d:
        d.wait_for("READY=1", lambda: d.has("READY"), 60)
        d.wait_event(lambda e: e["event"] == "identification", 30, what="first identification")
        # Freeze P1 so the next query is certainly in flight, wait until the daemon is inside
        # it (its pings stop), then kill P1 for good.
        os.kill(dep.procs["p1"].pid, signal.SIGSTOP)
        frozen = time.monotonic()
        d.wait_for("the daemon inside a query", lambda: _blocked(d, frozen, 1.6), 30)
        dep.kill("p1")
        n = len(d.events)
        down = d.wait_event(lambda e: e["event"] == "servers_unavailable", 15, after=n,
                            what="servers_unavailable")
        assert "track" in down  # the face that was being identified stays pending
        # Still running: frames go on (camera events, pings), probes keep failing on schedule.
        d.wait_event(lambda e: e["event"] == "servers_unavailable" and e["attempt"] >= 3, 30,
                     after=n, what="further back-off attempts")
        failures = [e for e in d.events[n:] if e["event"] == "servers_unavailable"]
        delays = [e["retry_in_s"] for e in failures]
        assert delays[-1] > delays[0]  # exponential back-off
        assert d.proc.poll() is None
        since = time.monotonic()
        d.poll(5.0)  # longer than one blocked retry (3 s) plus its back-off
        assert d.pings(since=since), "the loop must keep running while a server is down"
        # P1 comes back: recovery is reported and the next person is identified.
        dep.start(("p1",))
        m = len(d.events)
        restored = d.wait_event(lambda e: e["event"] == "servers_restored", 60, after=m,
                                what="servers_restored")
        assert restored["failed_attempts"] >= 3
        ok = d.wait_event(lambda e: e["event"] == "identification" and e["accepted"], 30,
                          after=m, what="identification after the restart")
        assert ok["identity"] in ("obama", "biden")
        assert d.terminate() == 0
    # No server ever saw half a query: every request either reached both or neither (the
    # client sends each message to both servers or fails); the daemon never exited.
    assert d.proc.returncode == 0


def test_camera_unplugged_and_plugged_back(deployed: Deployed, tmp_path) -> None:
    deployed.ensure_up()
    video = write_video(tmp_path / "camera.avi", deployed.scene.segments(), FPS)
    spare = tmp_path / "spare.avi"
    os.link(video, spare)
    publish = f"tcp://127.0.0.1:{free_port()}"
    cfg = edge_config(deployed.edge_config(), tmp_path / "edged.toml", source=str(video),
                      publish=publish)
    with EdgedProcess(cfg, publish, tmp_path) as d:
        d.wait_for("READY=1", lambda: d.has("READY"), 60)
        d.wait_event(lambda e: e["event"] == "identification", 30, what="first identification")
        video.unlink()  # unplugged: the stream ends and cannot be reopened
        gone = d.wait_event(lambda e: e["event"] == "camera_unavailable" and
                            "no such" in e["reason"], 30, what="camera_unavailable")
        n = len(d.events)
        d.wait_event(lambda e: e["event"] == "camera_unavailable", 10, after=n,
                     what="a retry")
        assert d.proc.poll() is None
        since = time.monotonic()
        d.poll(2.5)
        assert d.pings(since=since), "retrying the camera on schedule keeps the watchdog fed"
        os.link(spare, video)  # plugged back
        m = len(d.events)
        back = d.wait_event(lambda e: e["event"] == "camera_restored", 40, after=m,
                            what="camera_restored")
        assert back["down_s"] > 0 and back["failed_attempts"] >= 2
        d.wait_event(lambda e: e["event"] == "identification", 30, after=m,
                     what="identification after the camera came back")
        assert gone["attempt"] >= 1
        delays = [e["retry_in_s"] for e in d.events if e["event"] == "camera_unavailable"
                  and e["seq"] >= gone["seq"]]
        assert all(b >= a * 0.8 for a, b in itertools.pairwise(delays))
        assert d.terminate() == 0
