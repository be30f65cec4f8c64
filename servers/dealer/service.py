"""The dealer as a network service: a CurveZMQ ROUTER that serves preprocessing requests.

Each server authenticates with its CURVE key; the key decides which party it is (a
server can never collect the other party's part). Requests are paired by (session,
sequence number) in :class:`DealerCore`. The MAC key alpha lives only here and in the
servers' additive shares of it.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import zmq

from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.prep.material import Request
from splitface.shared import wire
from splitface.shared.wire import Message, WireError

log = logging.getLogger("splitface.dealer")


def load_or_create_alpha(state_dir: Path) -> int:
    """The long-term MAC key, created once with mode 0600 (stored shares depend on it)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "mac_key.bin"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(8))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    data = path.read_bytes()
    if len(data) != 8:
        raise ValueError(f"{path} is corrupt (expected 8 bytes)")
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"{path} is readable by others; run chmod 600 {path}")
    return int.from_bytes(data, "little")


class DealerService:
    """Serves preprocessing to exactly two servers identified by their CURVE public keys."""

    def __init__(self, core: DealerCore, context: zmq.Context, endpoint: str, *,
                 public_key: bytes, secret_key: bytes, party_keys: dict[int, bytes],
                 max_bytes: int = wire.DEFAULT_MAX_BYTES) -> None:
        self.core = core
        self._parties = {bytes(k): p for p, k in party_keys.items()}
        self._max = max_bytes
        self._sock = context.socket(zmq.ROUTER)
        self._sock.curve_server = True
        self._sock.curve_publickey, self._sock.curve_secretkey = public_key, secret_key
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        self._sock.bind(endpoint)
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.served = 0

    def _reply(self, ident: bytes, msg: Message) -> None:
        self._sock.send_multipart([ident, b"", *wire.encode(msg)], copy=False)

    def handle(self, frames: list[zmq.Frame]) -> Message:
        """Answer one request (already authenticated by ZAP)."""
        user = frames[-1].get("User-Id").encode()
        party = self._parties.get(user)
        if party is None:
            raise ProtocolError("request from a key that is not one of the two servers")
        msg = wire.decode([f.buffer for f in frames[2:]], expect=("hello", "get", "forget"),
                          max_bytes=self._max)
        if msg.meta.get("party") != party:
            raise ProtocolError(f"key of party {party} claims to be party {msg.meta.get('party')}")
        if msg.kind == "hello":
            return Message("alpha", {}, [self.core.mac_key_share(party)])
        session = msg.meta.get("session")
        if not isinstance(session, str) or not 0 < len(session) <= 64:
            raise ProtocolError("bad session id")
        if msg.kind == "forget":
            self.core.forget_session(session)
            return Message("ok")
        seq = msg.meta.get("seq")
        if not isinstance(seq, int) or seq < 0:
            raise ProtocolError("bad sequence number")
        part = self.core.serve(session, party, seq, Request.from_wire(msg.meta.get("req")))
        self.served += 1
        if part.seed is not None:
            return Message("part", {"seed": part.seed})
        return Message("part", {}, [np.ascontiguousarray(a) for a in part.arrays])

    def serve(self, stop: threading.Event, poll_ms: int = 200) -> None:
        """Serve until ``stop`` is set; a bad request gets an error reply, never a crash."""
        while not stop.is_set():
            if not self._sock.poll(poll_ms):
                continue
            frames = self._sock.recv_multipart(copy=False)
            if len(frames) < 3:
                continue
            ident = frames[0].bytes
            try:
                reply = self.handle(frames)
            except (ProtocolError, WireError) as exc:
                log.warning("rejected dealer request: %s", exc)
                reply = Message("error", {"reason": str(exc)})
            self._reply(ident, reply)

    def close(self) -> None:
        self._sock.close(linger=0)
