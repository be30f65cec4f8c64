"""splitface-edged as a real process: READY, watchdog, one event per stable track, SIGTERM."""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time

import numpy as np

from tests.daemon.conftest import FACE_FRAMES, FPS, GAP_FRAMES, Deployed
from tests.daemon.harness import EdgedProcess, edge_config, free_port, write_video


def _identifications(events: list[dict]) -> list[dict]:
    return [e for e in events if e["event"] == "identification"]


def test_surveillance_identifies_each_track_once(deployed: Deployed, tmp_path) -> None:
    scene = deployed.scene
    video = write_video(tmp_path / "camera.avi", scene.segments(), FPS)
    publish = f"tcp://127.0.0.1:{free_port()}"
    cfg = edge_config(deployed.edge_config(), tmp_path / "edged.toml", source=str(video),
                      publish=publish)
    with EdgedProcess(cfg, publish, tmp_path) as d:
        d.wait_for("READY=1", lambda: d.has("READY"), 60)
        ready_at = next(n.at for n in d.notes if n.fields.get("READY"))
        # One pass of the video = one camera_unavailable (end of stream) event.
        d.wait_event(lambda e: e["event"] == "camera_unavailable", 60, what="end of video")
        first_pass = _identifications(d.events)
        truth = [who for who, _ in scene.people]
        assert [e["identity"] for e in first_pass] == truth, first_pass
        assert [e["accepted"] for e in first_pass] == [w is not None for w in truth]
        assert len({e["track"] for e in first_pass}) == len(truth)  # one query per track
        assert all(e["status"] == ("identified" if w else "unknown")
                   for e, w in zip(first_pass, truth))
        # The stream comes back (the file is re-opened) and the people are identified again.
        d.wait_event(lambda e: e["event"] == "camera_restored", 10, what="camera reopened")
        n = len(d.events)
        d.wait_event(lambda e: e["event"] == "identification" and e["identity"] == truth[0],
                     30, after=n, what="re-identification after the loop")
        # Watchdog: pings kept coming at about WatchdogSec/2 while healthy.
        pings = d.pings(since=ready_at)
        assert len(pings) >= 3, d.notes
        assert max(b - a for a, b in itertools.pairwise(pings)) < 2.0  # WatchdogSec
        status = [n.fields["STATUS"] for n in d.notes if "STATUS" in n.fields]
        assert any(s.startswith("surveillance; ") and " identified" in s for s in status), status
        assert d.terminate() == 0
        assert d.has("STOPPING")
        assert d.events[-1]["event"] == "stopping"
    # Events also went to stdout (journald), one JSON object a line, and nothing in any event
    # looks like an embedding.
    lines = [json.loads(x) for x in d.stdout.read_text().splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    assert {e["event"] for e in lines} >= {"started", "identification", "stopping"}
    for e in lines:
        for v in e.values():
            assert not (isinstance(v, list) and len(v) > 8), e


def test_surveillance_identifies_every_face_in_a_frame(deployed: Deployed, tmp_path) -> None:
    """Two enrolled people side by side: two tracks, each identified once, with its quality."""
    (a, fa), (b, fb) = [p for p in deployed.scene.people if p[0] is not None][:2]
    pair = np.ascontiguousarray(np.hstack([fa[:, 160:480], fb[:, 160:480]]))
    video = write_video(tmp_path / "pair.avi",
                        [(pair, FACE_FRAMES), (deployed.scene.empty, GAP_FRAMES)], FPS)
    publish = f"tcp://127.0.0.1:{free_port()}"
    cfg = edge_config(deployed.edge_config(), tmp_path / "edged.toml", source=str(video),
                      publish=publish)
    with EdgedProcess(cfg, publish, tmp_path) as d:
        d.wait_for("READY=1", lambda: d.has("READY"), 60)
        d.wait_event(lambda e: e["event"] == "camera_unavailable", 60, what="end of video")
        found = _identifications(d.events)
        assert d.terminate() == 0
    assert sorted(e["identity"] for e in found) == sorted([a, b]), found
    assert len({e["track"] for e in found}) == 2 and all(e["accepted"] for e in found)
    for e in found:
        assert e["quality"]["eye_px"] >= 12 and e["quality"]["presence"] >= 0.5


def test_watchdog_stops_while_a_server_hangs(deployed: Deployed, tmp_path) -> None:
    """P1 frozen (SIGSTOP on the server, not the daemon): the identification blocks the main
    loop for request_timeout_s, pings stop; P1 thawed, pings resume and the next one works."""
    scene = deployed.scene
    video = write_video(tmp_path / "camera.avi", scene.segments(), FPS)
    publish = f"tcp://127.0.0.1:{free_port()}"
    cfg = edge_config(deployed.edge_config(), tmp_path / "edged.toml", source=str(video),
                      publish=publish, timeout_s=6.0)
    deployed.ensure_up()
    p1 = deployed.dep.procs["p1"]
    with EdgedProcess(cfg, publish, tmp_path) as d:
        d.wait_for("READY=1", lambda: d.has("READY"), 60)
        d.wait_event(lambda e: e["event"] == "identification", 30, what="first identification")
        os.kill(p1.pid, signal.SIGSTOP)
        try:
            stopped_at = time.monotonic()
            d.wait_event(lambda e: e["event"] == "servers_unavailable", 30,
                         what="identification timing out")
            gaps = [b - a for a, b in itertools.pairwise(d.pings(since=stopped_at - 2))]
            assert gaps and max(gaps) > 4.0, gaps  # no ping while the call was blocked
        finally:
            os.kill(p1.pid, signal.SIGCONT)
        n = len(d.events)
        d.wait_event(lambda e: e["event"] == "servers_restored", 60, after=n,
                     what="servers restored")
        d.wait_event(lambda e: e["event"] == "identification", 30, after=n,
                     what="identification after the hang")
        resumed = time.monotonic()
        d.poll(2.5)
        assert len(d.pings(since=resumed)) >= 1
        assert d.terminate() == 0


def test_watchdog_stops_while_the_camera_read_hangs(deployed: Deployed, tmp_path) -> None:
    """A FIFO camera that stops delivering (writer open, no data): the read blocks inside
    OpenCV, no pings go out, so systemd would restart the daemon. SIGTERM during the hang is
    honoured as soon as the read returns."""
    video = write_video(tmp_path / "camera.avi", deployed.scene.segments(), FPS)
    data = video.read_bytes()
    fifo = tmp_path / "camera.fifo"
    os.mkfifo(fifo)
    publish = f"tcp://127.0.0.1:{free_port()}"
    cfg = edge_config(deployed.edge_config(), tmp_path / "edged.toml", source=str(fifo),
                      publish=publish)
    stalled = threading.Event()
    release = threading.Event()

    def camera() -> None:  # 2 s of video at about real time, then silence until released
        fd = os.open(fifo, os.O_WRONLY)
        try:
            step = len(data) // 100
            for i in range(0, len(data) // 2, step):
                os.write(fd, data[i:i + step])
                time.sleep(0.04)
            stalled.set()
            release.wait(60)
        finally:
            os.close(fd)

    writer = threading.Thread(target=camera, daemon=True)
    with EdgedProcess(cfg, publish, tmp_path) as d:
        d.wait_for("READY=1", lambda: d.has("READY"), 60)
        writer.start()
        d.wait_event(lambda e: e["event"] == "camera_restored" or e["event"] == "identification",
                     30, what="frames from the FIFO")
        assert stalled.wait(30)
        d.poll(0.5)
        hung_at = time.monotonic()
        d.poll(4.0)
        assert d.pings(since=hung_at) == [], "pings must stop while the main loop is stuck"
        assert d.proc.poll() is None
        d.proc.send_signal(signal.SIGTERM)
        d.poll(0.5)
        assert d.proc.poll() is None  # still inside the read
        release.set()  # the camera's writer goes away: the read returns, the loop sees stop
        assert d.proc.wait(20) == 0
        d.poll(0.3)
        assert d.has("STOPPING")
    writer.join(5)


def test_boot_during_a_server_outage_waits_and_stops_cleanly(deployed: Deployed,
                                                             tmp_path) -> None:
    """No READY while neither server answers; systemd is asked to keep waiting
    (EXTEND_TIMEOUT_USEC); SIGTERM while waiting still ends with STOPPING and 0."""
    video = write_video(tmp_path / "camera.avi", deployed.scene.segments(), FPS)
    publish = f"tcp://127.0.0.1:{free_port()}"
    cfg = edge_config(deployed.edge_config(), tmp_path / "edged.toml", source=str(video),
                      publish=publish, timeout_s=1.0)
    text = cfg.read_text()
    for port in deployed.dep.endpoints():  # nobody listens on the new ports
        text = text.replace(f'"{port}"', f'"tcp://127.0.0.1:{free_port()}"')
    cfg.write_text(text)
    with EdgedProcess(cfg, publish, tmp_path) as d:
        d.wait_for("a waiting STATUS", lambda: any(
            n.fields.get("STATUS", "").startswith("waiting for servers") for n in d.notes), 30)
        d.wait_for("a second attempt", lambda: sum(
            "EXTEND_TIMEOUT_USEC" in n.fields for n in d.notes) >= 2, 30)
        assert not d.has("READY")
        assert d.terminate() == 0
        assert d.has("STOPPING") and not d.has("READY")
    lines = [json.loads(x) for x in d.stdout.read_text().splitlines()]
    assert [e["event"] for e in lines][:2] == ["servers_unavailable", "servers_unavailable"]
    assert lines[-1]["event"] == "stopping"
