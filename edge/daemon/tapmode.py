"""Tap-to-verify mode: turn one ``TapFlow.verify_once`` result into events and fault states.

The seam is :class:`splitface.edge.daemon.loop.TapVerifier`: anything with ``verify_once
(tap_timeout_s) -> result`` where the result has ``status, accepted, identity, reason,
timings_ms`` and expected failures come back as a status, never as an exception. Statuses are
sorted into: a finished verification (``accepted`` set), nobody tapped, the reader gone (back
off and retry, like an unplugged camera), the servers gone, and anything else (one
``verification_failed`` event, then the next tap).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from splitface.edge.daemon.camera import Camera, CameraLost, CameraUnavailable
from splitface.edge.pipeline.capture import Frame

if TYPE_CHECKING:
    from splitface.edge.daemon.loop import EdgeLoop
    from splitface.edge.daemon.resilience import FaultDomain

log = logging.getLogger("splitface.edge.daemon")

# TapStatus values (edge/tap.py), as plain strings so a fake flow in a test needs no card stack.
IDLE = frozenset({"no_card"})
READER_DOWN = frozenset({"reader_error"})
SERVERS_DOWN = frozenset({"server_unavailable"})
FINISHED = frozenset({"accepted", "rejected"})


def handle_tap_result(loop: EdgeLoop, result: Any) -> None:
    """Publish what happened and update the reader/server fault domains."""
    status = str(getattr(result, "status", "error"))
    reason = str(getattr(result, "reason", "") or status)
    if status in READER_DOWN:
        loop.reader_health.failed(reason, status=status)
        return
    loop.reader_health.succeeded()
    if status in IDLE:
        return
    if status in SERVERS_DOWN:
        loop.server_health.failed(reason)
        return
    timings = {str(k): round(float(v), 1)
               for k, v in (getattr(result, "timings_ms", None) or {}).items()}
    accepted = bool(getattr(result, "accepted", False))
    if status not in FINISHED:
        log.info("tap: %s (%s)", status, reason)
        loop.counters.failed += 1
        loop.events.publish("verification_failed", status=status, reason=reason,
                            timings_ms=timings)
        return
    loop.server_health.succeeded()
    if accepted:
        loop.counters.identified += 1
    else:
        loop.counters.unknown += 1
    loop.events.publish("verification", status=status, accepted=accepted,
                        identity=getattr(result, "identity", None) or None,
                        request_id=getattr(result, "request_id", "") or None,
                        reason=reason if not accepted else "", timings_ms=timings)


class CameraFrames:
    """TapFlow's frame provider over the daemon's camera: opened when a tap needs a face,
    re-opened after a failure (at most once per ``retry_s``), never ``None`` (TapFlow treats
    ``None`` as the end of all frames), so a dead camera shows up as error frames."""

    def __init__(self, open_camera: Callable[[], Camera], retry_s: float = 1.0) -> None:
        self.open_camera = open_camera
        self.retry_s = retry_s
        self.health: FaultDomain | None = None  # the loop's camera domain, once it exists
        self._camera: Camera | None = None
        self._failed_at = float("-inf")
        self._n = 0

    def __call__(self) -> Frame:
        self._n += 1
        if self._camera is None:
            if time.monotonic() - self._failed_at < self.retry_s:
                return Frame(self._n, "camera", error=CameraUnavailable("camera unavailable"))
            try:
                self._camera = self.open_camera()
            except CameraUnavailable as exc:
                return self._failed(exc)
            if self.health is not None:
                self.health.succeeded(source=self._camera.description)
        try:
            return self._camera.read()
        except CameraLost as exc:
            self.close()
            return self._failed(exc)

    def _failed(self, exc: Exception) -> Frame:
        self._failed_at = time.monotonic()
        if self.health is not None:
            self.health.failed(str(exc))
        return Frame(self._n, "camera", error=CameraUnavailable(str(exc)))

    def close(self) -> None:
        if self._camera is not None:
            self._camera.close()
            self._camera = None


class ReaderTapFlow:
    """``verify_once`` over a CardTerminal + TapFlow that are (re)built on demand: pcscd not
    running yet, the reader unplugged or pcscd restarted all come back as ``reader_error``
    results, and the next attempt starts from a fresh PC/SC context."""

    def __init__(self, build: Callable[[], tuple[Any, Any]]) -> None:
        self.build = build  # -> (TapFlow, CardTerminal)
        self._flow: Any = None
        self._terminal: Any = None

    def verify_once(self, tap_timeout_s: float) -> Any:
        from splitface.edge.card import CardError
        from splitface.edge.tap import TapResult, TapStatus

        if self._flow is None:
            try:
                self._flow, self._terminal = self.build()
            except (CardError, OSError) as exc:
                return TapResult(TapStatus.READER_ERROR, reason=f"card reader: {exc}")
        result = self._flow.verify_once(tap_timeout_s)
        if result.status == TapStatus.READER_ERROR:
            self.close()
        return result

    def close(self) -> None:
        if self._flow is not None:
            self._flow.__exit__(None, None, None)
            self._flow = None
        if self._terminal is not None:
            self._terminal.close()
            self._terminal = None


def build_card_flow(config: Any, *, pipeline: Any, client: Any,
                    frames: CameraFrames) -> ReaderTapFlow:
    """The real card path for ``mode = "tap-to-verify"`` (edge/tap.py + edge/card/);
    ValueError when the configured PIN variable is missing (a configuration error)."""
    from splitface.edge.card import CardTerminal
    from splitface.edge.card.terminal import TerminalOptions
    from splitface.edge.tap import TapFlow, TapOptions

    pin_env = config.card.pin_env
    pin_value = os.environ.get(pin_env, "") if pin_env else ""
    if pin_env and not pin_value:
        raise ValueError(f"card.pin_env names ${pin_env}, which is not set (see the unit's "
                         "EnvironmentFile=)")

    def pin(_request: object) -> str:
        return pin_value

    def build() -> tuple[Any, Any]:
        terminal = CardTerminal.from_options(
            TerminalOptions(reader_name_contains=config.card.reader,
                            tap_timeout_s=config.card.timeout_s),
            pin_provider=pin if pin_env else None)
        flow = TapFlow.from_options(TapOptions(tap_timeout_s=config.card.timeout_s),
                                    client=client, pipeline=pipeline, terminal=terminal,
                                    frames=frames)
        return flow, terminal

    return ReaderTapFlow(build)
