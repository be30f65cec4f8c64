"""Preprocessing fetched from the dealer service over CurveZMQ (one server's client)."""

from __future__ import annotations

import threading
import time

import numpy as np
import zmq

from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.prep import material
from splitface.servers.mpc.prep.base import AuthPair, Preprocessing
from splitface.servers.mpc.prep.material import Request
from splitface.shared import wire
from splitface.shared.wire import Message


class DealerUnavailable(ProtocolError):
    """The dealer did not answer in time."""


class RemotePreprocessing(Preprocessing):
    """Fetches this party's parts from the dealer; requests are numbered per session."""

    def __init__(self, context: zmq.Context, endpoint: str, *, party: int, session: str,
                 public_key: bytes, secret_key: bytes, dealer_key: bytes,
                 timeout_s: float = 30.0, max_bytes: int = wire.DEFAULT_MAX_BYTES << 4) -> None:
        self.party, self.session = party, session
        self._ctx, self._endpoint = context, endpoint
        self._keys = (public_key, secret_key, dealer_key)
        self._timeout_ms = int(timeout_s * 1000)
        self._max = max_bytes
        self._seq = 0
        self._sock = self._connect()
        self._alpha: np.ndarray | None = None
        self._closing = threading.Event()

    def abort(self) -> None:
        """Make a fetch blocked on the dealer give up within 0.2 s (shutdown; thread-safe)."""
        self._closing.set()

    def _connect(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.REQ)
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = self._keys
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self._max)
        sock.connect(self._endpoint)
        return sock

    def _wait_reply(self) -> bool:
        """Poll in short slices so that a shutdown (``abort``) is noticed quickly."""
        deadline = time.monotonic() + self._timeout_ms / 1000
        while not self._closing.is_set() and time.monotonic() < deadline:
            if self._sock.poll(200):
                return True
        return False

    def _call(self, msg: Message, expect: str) -> Message:
        msg.meta["party"] = self.party
        self._sock.send_multipart(wire.encode(msg), copy=False)
        if not self._wait_reply():
            if self._closing.is_set():
                raise DealerUnavailable("preprocessing is shutting down")
            self._sock.close(linger=0)  # a REQ socket is stuck after a lost reply
            self._sock = self._connect()
            raise DealerUnavailable(f"dealer did not answer within {self._timeout_ms} ms")
        frames = self._sock.recv_multipart(copy=False)
        reply = wire.decode([f.buffer for f in frames], expect=(expect, "error"),
                            max_bytes=self._max)
        if reply.kind == "error":
            raise ProtocolError(f"dealer refused: {reply.meta.get('reason')}")
        return reply

    def mac_key_share(self) -> np.ndarray:
        if self._alpha is None:
            reply = self._call(Message("hello"), "alpha")
            if len(reply.arrays) != 1 or reply.arrays[0].shape != (2,) \
                    or reply.arrays[0].dtype != np.uint64:
                raise ProtocolError("dealer sent a malformed MAC key share")
            self._alpha = reply.arrays[0].copy()
        return self._alpha

    def _fetch(self, req: Request) -> list[AuthPair]:
        reply = self._call(Message("get", {"session": self.session, "seq": self._seq,
                                           "req": req.to_wire()}), "part")
        self._seq += 1
        if self.party == 0:
            seed = reply.meta.get("seed")
            if not isinstance(seed, bytes) or len(seed) != 16:
                raise ProtocolError("dealer sent no seed to party 0")
            return material.expand_p0(req, seed)
        return material.unpack_p1(req, [a for a in reply.arrays])

    def close(self) -> None:
        self._sock.close(linger=0)
