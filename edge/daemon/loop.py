"""The daemon's main loop: start-up handshake with systemd, then surveillance or tap-to-verify.

Start-up: models are loaded by the caller; here the loop waits (with back-off, heartbeats and
``EXTEND_TIMEOUT_USEC`` so systemd keeps waiting) until both servers answer ``status``, then
says ``READY=1``. Every iteration heartbeats the systemd watchdog from this one thread, so a
read or a server call that hangs stops the pings and systemd restarts us; faults that *return*
(camera gone, server down, reader removed) are reported, backed off and retried instead, so a
terminal recovers on its own and never burns through ``StartLimitBurst`` while a cable is out.
SIGTERM sets ``stop``: the loop finishes its iteration, says ``STOPPING=1`` and returns 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from splitface.edge.client import ServerRefused, ServersDisagree, ServerUnavailable
from splitface.edge.daemon.camera import Camera, CameraLost, CameraUnavailable
from splitface.edge.daemon.events import EventPublisher
from splitface.edge.daemon.resilience import Backoff, BackoffOptions, FaultDomain
from splitface.edge.daemon.tracker import FaceTracker, Track, TrackerOptions
from splitface.edge.pipeline.errors import PipelineError
from splitface.edge.pipeline.types import Detection, Detections
from splitface.shared import api, sdnotify

log = logging.getLogger("splitface.edge.daemon")

# Refusals that describe the servers' state, not this request: retry after a back-off.
TRANSIENT_REFUSALS = frozenset({api.PEER_UNAVAILABLE, api.DEALER_UNAVAILABLE, api.OUT_OF_SYNC,
                                api.ABORTED, api.TIMEOUT, api.BUSY, api.NO_MODEL})


class Servers(Protocol):
    """What the loop needs from :class:`splitface.edge.client.SplitfaceClient`."""

    def identify(self, embedding: np.ndarray) -> Any: ...

    def status(self) -> tuple[dict[str, Any], dict[str, Any]]: ...


class FacePipelineLike(Protocol):
    """What the loop needs from :class:`splitface.edge.pipeline.pipeline.FacePipeline`."""

    def detect(self, frame_bgr: np.ndarray) -> tuple[Detections, float]: ...

    def analyse_face(self, frame_bgr: np.ndarray, det: Detection, purpose: str = "query",
                     detect_ms: float = 0.0) -> Any: ...


class TapVerifier(Protocol):
    """The tap-to-verify flow (``splitface.edge.tap.TapFlow``): never raises for expected
    failures; returns a result with ``status, accepted, identity, reason, timings_ms``."""

    def verify_once(self, tap_timeout_s: float) -> Any: ...


@dataclass(frozen=True)
class LoopOptions:
    terminal_id: str
    mode: str = "surveillance"
    tracking: TrackerOptions = field(default_factory=TrackerOptions)
    fps: float = 15.0  # pacing for file sources; live cameras pace themselves
    tap_timeout_s: float = 10.0
    health_interval_s: float = 60.0  # idle terminals still check the servers this often
    status_interval_s: float = 5.0
    backoff: BackoffOptions = field(default_factory=BackoffOptions)


@dataclass
class Counters:
    frames: int = 0
    frame_errors: int = 0
    faces: int = 0
    identified: int = 0
    unknown: int = 0
    failed: int = 0


class EdgeLoop:
    """One terminal's main loop over injected parts (built from the config by ``main``)."""

    def __init__(self, options: LoopOptions, *, events: EventPublisher, servers: Servers,
                 probe: Servers, open_camera: Callable[[], Camera] | None = None,
                 pipeline: FacePipelineLike | None = None, tap: TapVerifier | None = None,
                 watchdog: sdnotify.Watchdog | None = None,
                 notifier: sdnotify.Notifier | None = None,
                 stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self.events = events
        self.servers = servers
        self.probe = probe
        self.open_camera = open_camera
        self.pipeline = pipeline
        self.tap = tap
        self.dog = watchdog or sdnotify.Watchdog(0.0)
        self.notifier = notifier or sdnotify.Notifier()
        self.stop = stop or threading.Event()
        self.clock = clock
        self.counters = Counters()
        self.tracker = FaceTracker(options.tracking)
        self.camera: Camera | None = None

        def domain(name: str) -> FaultDomain:
            return FaultDomain(name, events.publish, Backoff(options.backoff, clock))

        self.camera_health = domain("camera")
        self.server_health = domain("servers")
        self.reader_health = domain("card_reader")
        self._last_status = float("-inf")
        self._last_server_ok = clock()
        self._next_frame_at = 0.0

    # ------------------------------------------------------------ lifecycle
    def run(self) -> int:
        """Start-up, READY, main loop until ``stop``, STOPPING. Returns the exit status (0)."""
        try:
            if not self.wait_for_servers():
                return 0
            self.notifier.notify(READY=1, STATUS=f"{self.options.mode}: running")
            self.events.publish("started", mode=self.options.mode)
            log.info("terminal %s ready (%s)", self.options.terminal_id, self.options.mode)
            step = self.step_tap if self.options.mode == "tap-to-verify" else self.step_surveillance
            while not self.stop.is_set():
                self.dog.heartbeat()
                step()
                self._status_line()
            return 0
        finally:
            self.notifier.notify(STOPPING=1, STATUS="stopping")
            self.events.publish("stopping", **vars(self.counters))
            self.close_camera()

    def wait_for_servers(self) -> bool:
        """Until both servers answer status (and P0's peer link is up); False if stopped."""
        while not self.stop.is_set():
            self.dog.heartbeat()
            if self.server_health.due:
                if self.check_servers():
                    return True
                wait = self.server_health.backoff.remaining()
                self.notifier.notify(STATUS=f"waiting for servers: {self.server_health.reason}",
                                     EXTEND_TIMEOUT_USEC=int((wait + 30.0) * 1e6))
                self.dog.progress()  # retrying on schedule is the loop doing its job
            self._sleep(self.server_health.backoff.remaining())
        return False

    def check_servers(self) -> bool:
        """One status probe; reports the transition either way."""
        try:
            s0, s1 = self.probe.status()
        except ServerUnavailable as exc:
            self.server_health.failed(str(exc))
            return False
        except ServerRefused as exc:
            self.server_health.failed(f"refused: {exc.code}: {exc.reason}")
            return False
        except ServersDisagree as exc:
            self.server_health.failed(f"servers disagree: {exc}")
            return False
        if s0.get("peer_ok") is False or s1.get("peer_ok") is False:
            self.server_health.failed("the servers' peer link is down")
            return False
        self._last_server_ok = self.clock()
        self.server_health.succeeded()
        return True

    def _sleep(self, seconds: float) -> None:
        """Interruptible by SIGTERM; short enough to keep the watchdog fed."""
        cap = self.dog.interval_s / 3 if self.dog.enabled else 1.0
        self.stop.wait(max(0.0, min(seconds, cap)))

    # ------------------------------------------------------------ surveillance
    def step_surveillance(self) -> None:
        """One frame: read, detect, track, identify stable tracks; faults back off."""
        self._maybe_check_servers()
        if self.camera is None and not self._open_camera():
            return
        assert self.camera is not None
        self._pace()
        try:
            frame = self.camera.read()
        except CameraLost as exc:
            self._camera_failed(str(exc))
            return
        self.counters.frames += 1
        if frame.image is None:
            self.counters.frame_errors += 1
            return
        self.dog.progress()
        try:
            dets, _ = self.pipeline.detect(frame.image)
            faces = list(dets)
        except PipelineError:  # blank / corrupt frame: nobody is visible in it
            faces = []
        self.counters.faces += len(faces)
        update = self.tracker.update((d.box, d) for d in faces)
        for t in update.ended:
            log.debug("track %d ended after %d frames", t.id, t.age)
        for track in self.tracker.pending():
            # While the servers are down, the next due retry is a real query for a waiting
            # face (a status probe can succeed while transactions still time out).
            if not self.server_health.due or self.stop.is_set():
                break
            self.identify_track(track, frame.image)

    def _pace(self) -> None:
        """File sources play at ``fps``; a loop that fell behind does not burst to catch up."""
        if self.camera is None or self.camera.live or self.options.fps <= 0:
            return
        now = self.clock()
        period = 1.0 / self.options.fps
        if self._next_frame_at > now:
            self.stop.wait(self._next_frame_at - now)
            now = self._next_frame_at
        self._next_frame_at = max(now, self._next_frame_at) + period

    def _open_camera(self) -> bool:
        if not self.camera_health.due:
            self._sleep(min(self.camera_health.backoff.remaining(), 0.2))
            return False
        self.dog.progress()  # a reopen attempt on schedule is progress, not a stall
        assert self.open_camera is not None
        try:
            self.camera = self.open_camera()
        except CameraUnavailable as exc:
            self.camera_health.failed(str(exc))
            return False
        self._next_frame_at = 0.0
        self.camera_health.succeeded(source=self.camera.description)
        log.info("camera open: %s", self.camera.description)
        return True

    def _camera_failed(self, reason: str) -> None:
        self.close_camera()
        for t in self.tracker.clear():
            log.debug("track %d dropped with the camera", t.id)
        self.camera_health.failed(reason)

    def close_camera(self) -> None:
        if self.camera is not None:
            self.camera.close()
            self.camera = None

    def _maybe_check_servers(self) -> None:
        """Down: probe when the back-off is due. Up but idle: probe every health interval."""
        if not self.server_health.healthy:
            if self.server_health.due and not self.tracker.pending():
                self.check_servers()
        elif self.clock() - self._last_server_ok > self.options.health_interval_s:
            self.check_servers()

    def identify_track(self, track: Track, image: np.ndarray) -> None:
        """Landmarks, quality and embedding of this track's face in this frame, then one
        identification per track. A face below the query quality bar (too small, not a clear
        face) is not sent: the track stays pending and the next frame tries again."""
        det: Detection = track.detection  # type: ignore[assignment]
        t0 = time.perf_counter()
        try:
            face = self.pipeline.analyse_face(image, det, "query")
        except PipelineError as exc:
            log.info("track %d: face not embeddable (%s); will try the next frame", track.id,
                     exc.status)
            return
        if not face.embedded:
            log.debug("track %d: below the query bar (%s); will try the next frame", track.id,
                      ", ".join(face.reasons))
            return
        embedding = face.embedding
        edge_ms = (time.perf_counter() - t0) * 1000.0
        q = face.quality
        base = {"track": track.id, "box": [round(float(v), 1) for v in det.box],
                "detector_score": round(float(det.score), 3),
                "quality": {"eye_px": round(q.eye_px, 1), "yaw_deg": round(q.yaw_deg, 1),
                            "roll_deg": round(q.roll_deg, 1), "presence": round(q.presence, 3),
                            "sharpness": round(q.sharpness, 3)}}
        try:
            outcome = self.servers.identify(embedding)
        except ServerUnavailable as exc:
            self.server_health.failed(str(exc), track=track.id)
            return  # the track stays pending and is identified when the servers are back
        except ServerRefused as exc:
            if exc.code in TRANSIENT_REFUSALS:
                self.server_health.failed(f"refused: {exc.code}: {exc.reason}", track=track.id)
                return
            self.tracker.mark_done(track)
            self.counters.failed += 1
            log.error("track %d: identification refused: %s", track.id, exc)
            self.events.publish("identification_failed", reason="refused", code=exc.code,
                                detail=exc.reason, **base)
            return
        except ServersDisagree as exc:
            self.tracker.mark_done(track)
            self.counters.failed += 1
            log.error("track %d: THE SERVERS DISAGREE: %s", track.id, exc)
            self.events.publish("identification_failed", reason="servers_disagree",
                                detail=str(exc), **base)
            return
        except ValueError as exc:  # embedding refused by the client's own checks
            self.tracker.mark_done(track)
            self.counters.failed += 1
            self.events.publish("identification_failed", reason="bad_embedding",
                                detail=str(exc), **base)
            return
        finally:
            del embedding, face
        self._last_server_ok = self.clock()
        self.server_health.succeeded()
        self.tracker.mark_done(track)
        if outcome.accepted:
            self.counters.identified += 1
        else:
            self.counters.unknown += 1
        mpc_ms = round(float(outcome.timings_ms.get("total_ms", 0.0)), 1)
        self.events.publish("identification", status=outcome.status,
                            accepted=bool(outcome.accepted), identity=outcome.identity,
                            request_id=outcome.request_id, edge_ms=round(edge_ms, 1),
                            mpc_ms=mpc_ms, **base)

    # ------------------------------------------------------------ tap-to-verify
    def step_tap(self) -> None:
        """One tap attempt (bounded wait); reader and server faults back off like the camera."""
        from splitface.edge.daemon.tapmode import handle_tap_result

        self._maybe_check_servers()
        if not self.reader_health.due:
            self._sleep(min(self.reader_health.backoff.remaining(), 0.5))
            self.dog.progress()
            return
        wait = self.options.tap_timeout_s
        if self.dog.enabled:  # the wait happens inside this iteration: keep pings flowing
            wait = min(wait, max(0.5, self.dog.interval_s / 3))
        assert self.tap is not None
        result = self.tap.verify_once(wait)
        self.dog.progress()
        handle_tap_result(self, result)

    # ------------------------------------------------------------ status
    def _status_line(self) -> None:
        now = self.clock()
        if now - self._last_status < self.options.status_interval_s:
            return
        self._last_status = now
        c = self.counters
        parts = [self.options.mode]
        if self.options.mode == "surveillance":
            parts.append(f"{c.frames} frames, {c.identified} identified, {c.unknown} unknown")
        for d in (self.camera_health, self.server_health, self.reader_health):
            if not d.healthy:
                parts.append(f"{d.name} DOWN ({d.reason})")
        self.notifier.notify(STATUS="; ".join(parts))
