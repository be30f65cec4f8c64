"""The daemon's parts on their own: tracker, back-off, event guard and socket, camera loss,
and the tap-to-verify loop over a scripted TapFlow stand-in (the card path itself runs
against pcscd + vpcd in tests/card_e2e)."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest
import zmq

from splitface.edge.daemon.camera import Camera, CameraLost, CameraOptions, CameraUnavailable
from splitface.edge.daemon.events import EventPublisher, EventsOptions, UnsafeEventError
from splitface.edge.daemon.loop import EdgeLoop, LoopOptions
from splitface.edge.daemon.resilience import Backoff, BackoffOptions, FaultDomain
from splitface.edge.daemon.tapmode import CameraFrames
from splitface.edge.daemon.tracker import FaceTracker, TrackerOptions, TrackState, iou
from splitface.shared.sdnotify import Watchdog


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


# ---------------------------------------------------------------- tracker
def _run(tracker: FaceTracker, frames: list[list[tuple[float, float, float, float]]]):
    became, ended = [], []
    for boxes in frames:
        u = tracker.update((b, b) for b in boxes)
        became += [t.id for t in u.became_stable]
        ended += [t.id for t in u.ended]
        for t in tracker.pending():
            tracker.mark_done(t)
    return became, ended


def test_track_becomes_stable_once_and_is_not_requeried() -> None:
    tr = FaceTracker(TrackerOptions(stable_frames=3, lost_frames=2))
    walk = [[(100 + 5 * i, 100, 80, 80)] for i in range(20)]  # one face drifting right
    became, ended = _run(tr, walk)
    assert became == [1] and ended == []
    assert tr.tracks[0].state is TrackState.DONE and tr.tracks[0].age == 20


def test_short_occlusion_keeps_the_track_long_absence_ends_it() -> None:
    tr = FaceTracker(TrackerOptions(stable_frames=2, lost_frames=3))
    face = [(100, 100, 80, 80)]
    became, ended = _run(tr, [face] * 3 + [[]] * 3 + [face] * 3)  # gap == lost_frames
    assert became == [1] and ended == []
    became, ended = _run(tr, [[]] * 4 + [face] * 3)  # gap > lost_frames: a new track
    assert ended == [1] and became == [2]


def test_two_faces_two_tracks_and_flicker_is_not_stable() -> None:
    tr = FaceTracker(TrackerOptions(stable_frames=3, lost_frames=5))
    a, b = (50, 50, 60, 60), (400, 60, 70, 70)
    became, _ = _run(tr, [[a, b], [a, b], [a], [a, b], [a, b], [a, b]])
    # a: stable at frame 3; b: its run restarts after the miss, stable three frames later
    assert became == [1, 2]
    assert iou(a, b) == 0.0 and iou(a, a) == pytest.approx(1.0)


def test_fast_movement_matches_on_centre_distance() -> None:
    tr = FaceTracker(TrackerOptions(stable_frames=2, lost_frames=2))
    a, moved, far = (100, 100, 100, 100), (133, 133, 100, 100), (300, 100, 100, 100)
    assert iou(a, moved) < 0.3  # too far for IoU, close enough by centre (47 px < 50)
    became, _ = _run(tr, [[a], [moved]])
    assert became == [1] and len(tr.tracks) == 1
    _run(tr, [[far]])  # a jump of three face widths is somebody else
    assert sorted(t.id for t in tr.tracks) == [1, 2]


# ---------------------------------------------------------------- back-off
def test_backoff_grows_caps_and_resets() -> None:
    clock = FakeClock()
    b = Backoff(BackoffOptions(initial_s=1.0, max_s=8.0, jitter=0.0), clock)
    assert [b.failed() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert not b.due
    clock.t += 8.0
    assert b.due
    b.succeeded()
    assert b.failed() == 1.0


def test_jitter_stays_in_bounds() -> None:
    b = Backoff(BackoffOptions(initial_s=10.0, max_s=10.0, jitter=0.2), FakeClock())
    delays = [b.failed() for _ in range(200)]
    assert min(delays) >= 8.0 and max(delays) <= 12.0 and len(set(delays)) > 10


def test_fault_domain_reports_each_failure_and_one_recovery() -> None:
    sent: list[tuple[str, dict]] = []
    clock = FakeClock()
    d = FaultDomain("camera", lambda topic, **f: sent.append((topic, f)),
                    Backoff(BackoffOptions(jitter=0.0), clock))
    assert d.healthy and not d.succeeded()
    d.failed("unplugged")
    clock.t += 0.5
    d.failed("still unplugged")
    clock.t += 1.0
    assert d.succeeded(source="video x")
    assert [t for t, _ in sent] == ["camera_unavailable", "camera_unavailable", "camera_restored"]
    assert sent[1][1]["attempt"] == 2 and sent[1][1]["down_s"] == 0.5
    assert sent[2][1] == {"down_s": 1.5, "failed_attempts": 2, "source": "video x"}
    assert d.healthy and d.backoff.failures == 0


# ---------------------------------------------------------------- events
def test_events_refuse_embeddings_and_bytes() -> None:
    out = io.StringIO()
    with EventPublisher(EventsOptions(terminal_id="t1"), out=out) as ev:
        ev.publish("identification", identity="alice", box=[1.0, 2.0, 3.0, 4.0])
        for bad in ({"embedding": np.ones(128, np.float32)},
                    {"embedding": [0.1] * 128}, {"share": b"\x00" * 16},
                    {"nested": {"v": list(range(64))}}):
            with pytest.raises(UnsafeEventError):
                ev.publish("identification", **bad)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(lines) == 1 and lines[0]["identity"] == "alice" and lines[0]["terminal"] == "t1"


def test_ipc_event_socket_is_group_only_and_delivers(tmp_path) -> None:
    path = tmp_path / "events"
    ctx = zmq.Context()
    try:
        with EventPublisher(EventsOptions(publish=f"ipc://{path}", stdout=False),
                            context=ctx) as ev:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.SUBSCRIBE, b"camera_")
            sub.connect(f"ipc://{path}")
            got = None
            for _ in range(50):  # PUB/SUB: the subscription needs a moment to arrive
                ev.publish("identification", identity="x")
                ev.publish("camera_unavailable", reason="unplugged")
                if sub.poll(100):
                    got = sub.recv_multipart()
                    break
            sub.close(linger=0)
        assert got is not None and got[0] == b"camera_unavailable"
        assert json.loads(got[1])["reason"] == "unplugged"
    finally:
        ctx.term()


# ---------------------------------------------------------------- camera
def _folder(tmp_path, n: int = 8):
    d = tmp_path / "frames"
    d.mkdir()
    img = np.full((48, 64, 3), 120, np.uint8)
    for i in range(n):
        cv2.imwrite(str(d / f"{i:04d}.png"), img)
    return d


def test_folder_camera_unplugged_mid_stream(tmp_path) -> None:
    d = _folder(tmp_path)
    cam = Camera(CameraOptions(source=str(d), max_failed_reads=3))
    assert cam.kind == "folder" and not cam.live
    assert cam.read().ok
    shutil.rmtree(d)  # the device goes away under a running stream
    with pytest.raises(CameraLost, match="3 failed reads"):
        for _ in range(3):
            assert not cam.read().ok
    cam.close()
    with pytest.raises(CameraUnavailable):
        Camera(CameraOptions(source=str(d)))


def test_pattern_and_missing_sources(tmp_path) -> None:
    d = _folder(tmp_path, 3)
    with Camera(CameraOptions(source=str(d / "%04d.png"))) as cam:
        assert cam.kind == "pattern"
        assert sum(cam.read().ok for _ in range(3)) == 3
        with pytest.raises(CameraLost, match="end of"):
            cam.read()
    with pytest.raises(CameraUnavailable):
        Camera(CameraOptions(source=str(tmp_path / "nope.avi")))


def test_tap_frames_never_end_on_a_dead_camera(tmp_path) -> None:
    d = _folder(tmp_path, 2)
    frames = CameraFrames(lambda: Camera(CameraOptions(source=str(d))), retry_s=0.0)
    assert frames().ok and frames().ok
    shutil.rmtree(d)
    for _ in range(4):  # end of stream, then the source is gone: error frames, never None
        f = frames()
        assert f is not None and not f.ok and f.error.status == "camera_unavailable"
    frames.close()


# ---------------------------------------------------------------- tap-to-verify loop
@dataclass
class FakeTapResult:
    status: str
    accepted: bool = False
    identity: str = ""
    reason: str = ""
    request_id: str = ""
    timings_ms: dict = field(default_factory=dict)


class ScriptedTap:
    """Stands in for edge/tap.TapFlow: returns the scripted results, then stops the loop."""

    def __init__(self, results: list[FakeTapResult], stop: threading.Event) -> None:
        self.results, self.stop, self.waits = list(results), stop, []

    def verify_once(self, tap_timeout_s: float) -> FakeTapResult:
        self.waits.append(tap_timeout_s)
        if len(self.results) == 1:
            self.stop.set()
        return self.results.pop(0)


class UpServers:
    def status(self):
        return {"peer_ok": True}, {}

    def identify(self, embedding):  # pragma: no cover - not used in tap mode
        raise AssertionError("tap mode never identifies")


def test_tap_mode_loop_events_and_reader_backoff() -> None:
    stop = threading.Event()
    script = [
        FakeTapResult("no_card"),
        FakeTapResult("accepted", True, "alice", request_id="r1",
                      timings_ms={"total_ms": 812.5}),
        FakeTapResult("reader_error", reason="reader unplugged"),
        FakeTapResult("reader_error", reason="reader unplugged"),
        FakeTapResult("rejected", False, "alice", reason="face does not match the card"),
        FakeTapResult("server_unavailable", reason="P1 did not answer"),
        FakeTapResult("card_removed", reason="card removed before the request completed"),
    ]
    tap = ScriptedTap(script, stop)
    out = io.StringIO()
    with EventPublisher(EventsOptions(terminal_id="door-1"), out=out) as ev:
        loop = EdgeLoop(LoopOptions(terminal_id="door-1", mode="tap-to-verify",
                                    tap_timeout_s=7.0,
                                    backoff=BackoffOptions(initial_s=0.01, max_s=0.02)),
                        events=ev, servers=UpServers(), probe=UpServers(), tap=tap, stop=stop)
        assert loop.run() == 0
    events = [json.loads(x) for x in out.getvalue().splitlines()]
    names = [e["event"] for e in events]
    assert names == ["started", "verification", "card_reader_unavailable",
                     "card_reader_unavailable", "card_reader_restored", "verification",
                     "servers_unavailable", "verification_failed", "stopping"]
    ok, no = events[1], events[5]
    assert (ok["accepted"], ok["identity"], ok["timings_ms"]) == (True, "alice",
                                                                   {"total_ms": 812.5})
    assert (no["accepted"], no["status"]) == (False, "rejected")
    assert events[3]["attempt"] == 2 and events[3]["retry_in_s"] >= events[2]["retry_in_s"]
    assert tap.waits == [7.0] * len(script)  # no watchdog here: the configured tap wait
    assert events[-1]["identified"] == 1 and events[-1]["unknown"] == 1


class FlakyServers(UpServers):
    """Status fails ``down`` times (the servers are still booting), then answers."""

    def __init__(self, down: int) -> None:
        self.down, self.calls = down, 0

    def status(self):
        from splitface.edge.client import ServerUnavailable

        self.calls += 1
        if self.calls <= self.down:
            raise ServerUnavailable("server P0 did not answer within 3 s")
        return super().status()


class Notes:
    enabled = True

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def notify(self, **fields) -> bool:
        self.sent.append(fields)
        return True


def test_ready_only_after_the_servers_answer_on_the_backoff_schedule() -> None:
    stop = threading.Event()
    probe, notes, out = FlakyServers(down=3), Notes(), io.StringIO()
    with EventPublisher(EventsOptions(), out=out) as ev:
        loop = EdgeLoop(LoopOptions(terminal_id="t", mode="tap-to-verify",
                                    backoff=BackoffOptions(initial_s=0.05, jitter=0.0)),
                        events=ev, servers=probe, probe=probe, notifier=notes, stop=stop,
                        tap=ScriptedTap([FakeTapResult("no_card")], stop),
                        # sleeps are sliced to a third of this, far below the back-off
                        watchdog=Watchdog(0.06, notes))
        t0 = time.monotonic()
        assert loop.run() == 0
        elapsed = time.monotonic() - t0
    assert elapsed >= 0.3  # 0.05 + 0.1 + 0.2 s of back-off before the probe that works
    assert probe.calls == 4  # one probe per due retry, not one per sleep slice
    assert sum(n == {"WATCHDOG": 1} for n in notes.sent) >= 5  # fed while waiting
    ready = next(i for i, n in enumerate(notes.sent) if n.get("READY") == 1)
    waiting = [n for n in notes.sent[:ready] if "EXTEND_TIMEOUT_USEC" in n]
    assert len(waiting) == 3 and all(n["STATUS"].startswith("waiting for servers") for n in
                                     waiting)
    assert notes.sent[-1] == {"STOPPING": 1, "STATUS": "stopping"}
    names = [json.loads(x)["event"] for x in out.getvalue().splitlines()]
    assert names[:5] == ["servers_unavailable"] * 3 + ["servers_restored", "started"]


def test_a_dealer_outage_is_retried_not_a_failed_identification() -> None:
    """dealer_unavailable says the servers' state, like peer_unavailable: the face stays
    pending and is identified once the dealer is back (it used to be marked failed)."""
    from splitface.edge.daemon.loop import TRANSIENT_REFUSALS
    from splitface.shared import api

    assert {api.PEER_UNAVAILABLE, api.DEALER_UNAVAILABLE, api.ABORTED, api.TIMEOUT,
            api.BUSY} <= TRANSIENT_REFUSALS
    assert not {api.BAD_PROBE, api.UNAUTHORIZED, api.BAD_REQUEST} & TRANSIENT_REFUSALS
