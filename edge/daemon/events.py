"""Recognition and fault events: one JSON line on stdout (journald) and on a ZeroMQ PUB socket.

Door controllers and displays subscribe to ``events.publish``; every message is two frames,
``[topic, json]``, so a subscriber can filter by topic (``identification``, ``verification``,
``camera_unavailable``...). An event carries what a door needs (identity, accept bit, track,
timings) and never an embedding, a share or a key: :func:`check_payload` refuses arrays, bytes
and long numeric lists, so a later edit cannot leak one by accident.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

import zmq

from splitface.shared.closing import Closing
from splitface.shared.config_schema import parse_endpoint

log = logging.getLogger("splitface.edge.daemon.events")

SCHEMA_VERSION = 1
MAX_NUMBERS = 8  # a box has 4; an embedding has 128..512


class UnsafeEventError(TypeError):
    """An event payload held something that must never leave the terminal (array, bytes)."""


def check_payload(value: Any, path: str = "event") -> None:
    """Allow only JSON scalars, short numeric lists and dicts with str keys (recursively)."""
    if value is None or isinstance(value, bool | int | float | str):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise UnsafeEventError(f"{path}: key {k!r} is not a string")
            check_payload(v, f"{path}.{k}")
        return
    if isinstance(value, list | tuple):
        if sum(isinstance(v, int | float) for v in value) > MAX_NUMBERS:
            raise UnsafeEventError(f"{path}: numeric list of {len(value)} values refused "
                                   "(an embedding must never be published)")
        for i, v in enumerate(value):
            check_payload(v, f"{path}[{i}]")
        return
    raise UnsafeEventError(f"{path}: {type(value).__name__} is not publishable")


@dataclass(frozen=True)
class EventsOptions:
    """``publish``: endpoint to bind ('' = stdout only); ``stdout``: also write JSON lines."""

    publish: str = ""
    terminal_id: str = ""
    stdout: bool = True
    socket_mode: int = 0o660  # ipc:// socket file: owner and group (consumers join the group)


class EventBindError(OSError):
    """The PUB endpoint could not be bound (address in use, missing folder, permission)."""


class EventPublisher(Closing):
    """Binds the PUB socket once; ``publish`` never raises on a slow or absent subscriber."""

    def __init__(self, options: EventsOptions, context: zmq.Context | None = None,
                 out: IO[str] | None = None) -> None:
        self.options = options
        self._own_ctx = context is None
        self.ctx = context or zmq.Context()
        self._out = out if out is not None else sys.stdout
        self._seq = 0
        self._sock: zmq.Socket | None = None
        if options.publish:
            try:
                self._sock = self._bind(options.publish)
            except (zmq.ZMQError, OSError) as exc:
                if self._own_ctx:
                    self.ctx.term()
                raise EventBindError(f"cannot bind events.publish {options.publish}: {exc}") \
                    from exc

    @classmethod
    def from_options(cls, options: EventsOptions) -> EventPublisher:
        return cls(options)

    def _bind(self, endpoint: str) -> zmq.Socket:
        sock = self.ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.LINGER, 200)
        sock.setsockopt(zmq.SNDHWM, 1000)  # a stalled subscriber loses events, never blocks us
        try:
            sock.bind(endpoint)
            ep = parse_endpoint(endpoint, bind=True)
            if ep.transport == "ipc":  # the socket file: group-readable for consumers only
                os.chmod(ep.path, self.options.socket_mode)
        except BaseException:
            sock.close(linger=0)
            raise
        return sock

    @property
    def sequence(self) -> int:
        return self._seq

    def publish(self, topic: str, **fields: Any) -> dict[str, Any]:
        """Send one event; returns the dict sent (for logging and tests)."""
        check_payload(fields)
        self._seq += 1
        event = {"v": SCHEMA_VERSION, "event": topic, "terminal": self.options.terminal_id,
                 "seq": self._seq, "ts": round(time.time(), 3), **fields}
        line = json.dumps(event, separators=(",", ":"), sort_keys=False)
        if self.options.stdout:
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except (OSError, ValueError) as exc:  # journald gone / stdout closed: keep going
                log.warning("event not written to stdout: %s", exc)
        if self._sock is not None:
            try:
                self._sock.send_multipart([topic.encode(), line.encode()], flags=zmq.NOBLOCK)
            except zmq.Again:
                log.warning("event %s dropped: subscriber queue full", topic)
            except zmq.ZMQError as exc:
                log.warning("event %s not published: %s", topic, exc)
        return event

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._own_ctx:
            self.ctx.term()
