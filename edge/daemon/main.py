"""``splitface-edged``: the edge terminal daemon (one per terminal, run by systemd).

Loads the edge config, the terminal's keys and the models, binds the event socket, then hands
over to :class:`~splitface.edge.daemon.loop.EdgeLoop`. Anything wrong with the configuration,
keys or model files exits with 78 (EX_CONFIG) and one clear message, which the unit's
``RestartPreventExitStatus=78`` turns into a stopped unit instead of a restart loop.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from splitface.edge.client import ClientOptions, ServerEndpoint, SplitfaceClient
from splitface.edge.daemon.camera import Camera, CameraOptions
from splitface.edge.daemon.events import EventBindError, EventPublisher, EventsOptions
from splitface.edge.daemon.loop import EdgeLoop, LoopOptions, TapVerifier
from splitface.edge.daemon.tapmode import CameraFrames
from splitface.edge.daemon.tracker import TrackerOptions
from splitface.shared import keys, sdnotify
from splitface.shared.config import ConfigError, EdgeConfig, load_edge_config

log = logging.getLogger("splitface.edge.daemon")

EX_CONFIG = 78  # sysexits.h: configuration error; systemd must not restart
EX_UNAVAILABLE = 69  # a resource is busy (e.g. the event address in use): a restart may help
PROBE_TIMEOUT_S = 3.0  # status probes while a server is down stay short


class StartupError(Exception):
    """A problem found before the loop starts; carries the exit status."""

    def __init__(self, message: str, code: int = EX_CONFIG) -> None:
        super().__init__(message)
        self.code = code


def pipeline_options(config: EdgeConfig, threads: int):
    """The pipeline every command builds from this config (models, model_dir, detection)."""
    from splitface.edge.pipeline.settings import pipeline_options_from_config

    return pipeline_options_from_config(config, threads)


def client_options(config: EdgeConfig, timeout_s: float | None = None) -> ClientOptions:
    """Keys and endpoints for :class:`SplitfaceClient`; KeyFileError names a bad file."""
    pub, sec = keys.load_secret_key(config.secret_key_file)
    s = config.servers
    links = (ServerEndpoint(s.p0.endpoint, keys.load_public_key(s.p0.public_key_file)),
             ServerEndpoint(s.p1.endpoint, keys.load_public_key(s.p1.public_key_file)))
    return ClientOptions(links, pub, sec, timeout_s=timeout_s or s.request_timeout_s,
                         retries=s.retries, max_message_bytes=s.max_message_bytes)


def camera_opener(config: EdgeConfig) -> Callable[[], Camera]:
    c = config.camera
    opts = CameraOptions(source=c.source, width=c.width, height=c.height, fps=c.fps)
    return lambda: Camera(opts)


def make_tap_flow(config: EdgeConfig, pipeline, client: SplitfaceClient,
                  open_camera: Callable[[], Camera]) -> tuple[TapVerifier, CameraFrames]:
    """The card flow (edge/tap.py) over the daemon's camera; a build without pyscard or
    edge/tap.py cannot run this mode, which is a configuration error here."""
    try:
        from splitface.edge.daemon.tapmode import build_card_flow
        frames = CameraFrames(open_camera)
        return build_card_flow(config, pipeline=pipeline, client=client, frames=frames), frames
    except ImportError as exc:
        raise StartupError(f"mode = \"tap-to-verify\" needs the card stack (pyscard, "
                           f"splitface.edge.tap), which this installation lacks: {exc}") from exc
    except ValueError as exc:
        raise StartupError(str(exc)) from exc


def _setup_logging(level: str) -> None:
    journald = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = "%(levelname)s %(name)s: %(message)s" if journald else \
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=fmt,
                        stream=sys.stderr, force=True)


@contextlib.contextmanager
def _signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT ask the loop to stop after its current iteration."""
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _check_state_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StartupError(f"state_dir {path}: {exc.strerror}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise StartupError(f"state_dir {path} is not writable by this user")


def run(config: EdgeConfig, *, threads: int = 1, stop: threading.Event | None = None) -> int:
    """Build every part from ``config`` and run the loop; StartupError for a bad set-up."""
    from splitface.edge.pipeline.errors import ModelMissingError, RuntimeUnavailableError
    from splitface.edge.pipeline.pipeline import FacePipeline
    from splitface.edge.pipeline.settings import detector_range

    stop = stop or threading.Event()
    _check_state_dir(config.state_dir)
    try:
        opts, probe_opts = client_options(config), client_options(
            config, min(config.servers.request_timeout_s, PROBE_TIMEOUT_S))
    except keys.KeyFileError as exc:
        raise StartupError(f"key file: {exc}") from exc
    dog = sdnotify.Watchdog.from_env(enabled=config.watchdog.enabled,
                                     stall_s=config.watchdog.frame_stall_s)
    worst = config.servers.request_timeout_s * 2  # offer + submit, each up to the timeout
    if dog.enabled and worst >= dog.interval_s:
        log.warning("servers.request_timeout_s=%.1f: one identification can block %.0f s, "
                    "longer than WatchdogSec=%.0f; a hung server will get the daemon restarted",
                    config.servers.request_timeout_s, worst, dog.interval_s)
    notifier = sdnotify.Notifier.from_env()
    notifier.notify(STATUS="loading models")
    try:
        pipeline = FacePipeline.from_options(pipeline_options(config, threads))
    except (ModelMissingError, RuntimeUnavailableError) as exc:
        raise StartupError(f"models (BlazeFace {detector_range(config.detection, config.mode)}"
                           f" range, face mesh, {config.models.embedder} in "
                           f"{config.models.model_dir}): {exc}") from exc
    ev_opts = EventsOptions(publish=config.events.publish, terminal_id=config.terminal_id)
    with contextlib.ExitStack() as stack:
        stack.enter_context(pipeline)
        try:
            events = stack.enter_context(EventPublisher(ev_opts))
        except EventBindError as exc:
            busy = getattr(exc.__cause__, "errno", None) == errno.EADDRINUSE
            raise StartupError(str(exc), EX_UNAVAILABLE if busy else EX_CONFIG) from exc
        client = stack.enter_context(SplitfaceClient(opts))
        probe = stack.enter_context(SplitfaceClient(probe_opts))
        open_camera = camera_opener(config)
        tap = frames = None
        if config.mode == "tap-to-verify":
            tap, frames = make_tap_flow(config, pipeline, client, open_camera)
            stack.callback(frames.close)
            stack.callback(tap.close)
        loop = EdgeLoop(
            LoopOptions(terminal_id=config.terminal_id, mode=config.mode,
                        tracking=TrackerOptions(stable_frames=config.tracking.stable_frames,
                                                lost_frames=config.tracking.lost_frames),
                        fps=config.camera.fps, tap_timeout_s=config.card.timeout_s),
            events=events, servers=client, probe=probe, open_camera=open_camera,
            pipeline=pipeline, tap=tap, watchdog=dog, notifier=notifier, stop=stop)
        if frames is not None:
            frames.health = loop.camera_health
        return loop.run()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="splitface-edged",
                                description="splitface edge terminal daemon")
    p.add_argument("--config", type=Path, required=True, help="the terminal's config.toml")
    p.add_argument("--threads", type=int, default=int(os.environ.get("SPLITFACE_THREADS", "1")),
                   help="inference threads for detector and embedder (default 1; "
                        "$SPLITFACE_THREADS)")
    p.add_argument("--check", action="store_true",
                   help="validate config, keys and models, then exit (0 = would start)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop = threading.Event()
    with _signals(stop):
        try:
            config = load_edge_config(args.config)
        except ConfigError as exc:
            print(f"splitface-edged: configuration error:\n{exc}", file=sys.stderr)
            return EX_CONFIG
        _setup_logging(config.log_level)
        if config.log_level != "debug":
            # TapFlow logs every tap at INFO, including each empty wait (several a second to
            # keep the watchdog fed); the daemon's events already record every real tap.
            logging.getLogger("splitface.edge.tap").setLevel(logging.WARNING)
        if args.threads < 1:
            print("splitface-edged: --threads must be at least 1", file=sys.stderr)
            return EX_CONFIG
        try:
            if args.check:
                return check(config, args.threads)
            return run(config, threads=args.threads, stop=stop)
        except StartupError as exc:
            print(f"splitface-edged: {exc}", file=sys.stderr)
            return exc.code


def check(config: EdgeConfig, threads: int) -> int:
    """``--check``: what ``run`` validates before it talks to anyone."""
    from splitface.edge.pipeline.errors import ModelMissingError, RuntimeUnavailableError
    from splitface.edge.pipeline.pipeline import FacePipeline

    try:
        client_options(config)
    except keys.KeyFileError as exc:
        raise StartupError(f"key file: {exc}") from exc
    try:
        FacePipeline.from_options(pipeline_options(config, threads)).close()
    except (ModelMissingError, RuntimeUnavailableError) as exc:
        raise StartupError(f"models: {exc}") from exc
    print(f"splitface-edged: {config.terminal_id}: config, keys and models OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
