"""Run ``splitface-edged`` as systemd would: a real process, a NOTIFY_SOCKET bound here, a
simulated camera made from the real test photos, real servers on loopback, a SUB socket on the
daemon's event stream."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import zmq

from splitface.edge.models.paths import VarLayout
from splitface.shared.config import load_edge_config, write_config


def letterbox(img: np.ndarray, w: int = 640, h: int = 480) -> np.ndarray:
    s = min(w / img.shape[1], h / img.shape[0])
    r = cv2.resize(img, (int(img.shape[1] * s), int(img.shape[0] * s)))
    out = np.full((h, w, 3), 40, np.uint8)
    y, x = (h - r.shape[0]) // 2, (w - r.shape[1]) // 2
    out[y:y + r.shape[0], x:x + r.shape[1]] = r
    return out


def write_video(path: Path, segments: Iterable[tuple[np.ndarray, int]], fps: float) -> Path:
    """MJPG AVI: each (frame, count) repeated ``count`` times."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.avi")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    assert writer.isOpened()
    for frame, n in segments:
        for _ in range(n):
            writer.write(frame)
    writer.release()
    tmp.replace(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def edge_config(src: Path, out: Path, *, source: str, publish: str, timeout_s: float = 5.0,
                stable: int = 3, lost: int = 4, fps: float = 15.0, stall_s: float = 10.0,
                mode: str = "surveillance") -> Path:
    """A copy of a generated edge config pointed at this machine's models and a test camera."""
    c = load_edge_config(src, check_files=False)
    c = dataclasses.replace(
        c, mode=mode, state_dir=out.parent / f"{out.stem}-state", log_level="debug",
        servers=dataclasses.replace(c.servers, request_timeout_s=timeout_s, retries=0),
        camera=dataclasses.replace(c.camera, source=source, fps=fps),
        models=dataclasses.replace(c.models, model_dir=VarLayout.default().models),
        events=dataclasses.replace(c.events, publish=publish),
        tracking=dataclasses.replace(c.tracking, stable_frames=stable, lost_frames=lost),
        watchdog=dataclasses.replace(c.watchdog, frame_stall_s=stall_s))
    return write_config(c, out)


@dataclass
class Notification:
    at: float
    fields: dict[str, str]


@dataclass
class EdgedProcess:
    """The daemon under test; collects sd_notify datagrams and published events."""

    config: Path
    publish: str
    workdir: Path
    watchdog_usec: int = 2_000_000
    proc: subprocess.Popen | None = None
    notes: list[Notification] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)

    def start(self) -> EdgedProcess:
        self.notify_path = str(self.workdir / f"notify-{free_port()}")
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(self.notify_path)
        self._notify.setblocking(False)
        self._ctx = zmq.Context()
        self._sub = self._ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.connect(self.publish)
        env = {**os.environ, "NOTIFY_SOCKET": self.notify_path,
               "WATCHDOG_USEC": str(self.watchdog_usec), "PYTHONUNBUFFERED": "1"}
        env.pop("WATCHDOG_PID", None)
        self.stdout = self.workdir / "edged.stdout"
        self.stderr = self.workdir / "edged.stderr"
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "splitface.edge.daemon.main", "--config",
                 str(self.config)], stdout=out, stderr=err, env=env)
        return self

    # ------------------------------------------------------------ collection
    def poll(self, seconds: float = 0.0) -> None:
        """Drain notifications and events for up to ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            with contextlib.suppress(BlockingIOError):
                while True:
                    raw = self._notify.recv(4096).decode()
                    fields = dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)
                    self.notes.append(Notification(time.monotonic(), fields))
            while self._sub.poll(0):
                topic, body = self._sub.recv_multipart()
                ev = json.loads(body)
                assert ev["event"] == topic.decode()
                self.events.append(ev)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._sub.poll(int(min(left, 0.05) * 1000))

    def wait_for(self, what: str, pred: Callable[[], object], timeout: float) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0.05)
            got = pred()
            if got:
                return got
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) waiting for "
                                     f"{what}:\n{self.log_tail()}")
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; events: "
                             f"{[e['event'] for e in self.events][-30:]}\n{self.log_tail()}")

    def wait_event(self, pred: Callable[[dict], bool], timeout: float, after: int = 0,
                   what: str = "event") -> dict:
        def found() -> dict | None:
            return next((e for e in self.events[after:] if pred(e)), None)
        return self.wait_for(what, found, timeout)  # type: ignore[return-value]

    def pings(self, since: float = 0.0) -> list[float]:
        return [n.at for n in self.notes if n.fields.get("WATCHDOG") == "1" and n.at >= since]

    def has(self, key: str, value: str = "1") -> bool:
        return any(n.fields.get(key) == value for n in self.notes)

    def log_tail(self, n: int = 3000) -> str:
        return self.stderr.read_text(errors="replace")[-n:] if self.stderr.exists() else ""

    # ------------------------------------------------------------ shutdown
    def terminate(self, timeout: float = 20.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon ignored SIGTERM:\n{self.log_tail()}") from None
        self.poll(0.3)
        return code

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._sub.close(linger=0)
        self._ctx.term()
        self._notify.close()
        with contextlib.suppress(OSError):
            os.unlink(self.notify_path)

    def __enter__(self) -> EdgedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
