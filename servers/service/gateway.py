"""The edge-facing socket of a server: a CurveZMQ ROUTER with validation at the door.

Every inbound message is authenticated by ZAP (only allow-listed terminal keys get
through), size-limited by the socket, decoded by the wire format and checked by
``shared.api``; a bad message gets an ``error`` reply at once and never reaches the
protocol.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import zmq

from splitface.shared import api, wire
from splitface.shared.api import ApiError
from splitface.shared.wire import Message, WireError

log = logging.getLogger("splitface.server.gateway")


@dataclass
class Inbound:
    """One validated message from a terminal."""

    ident: bytes  # ROUTER routing id of the connection
    key: str  # the terminal's CURVE public key (Z85), as authenticated by ZAP
    name: str  # the terminal's name from the allow-list
    msg: Message
    offer: api.Offer | None = None
    received: float = field(default_factory=time.monotonic)


class EdgeGateway:
    """ROUTER socket bound on ``endpoint`` for the allow-listed terminals."""

    def __init__(self, context: zmq.Context, endpoint: str, *, public_key: bytes,
                 secret_key: bytes, terminal_names: dict[str, str], max_bytes: int) -> None:
        self._names = terminal_names  # z85 key -> terminal name
        self._max = max_bytes
        self.sock = context.socket(zmq.ROUTER)
        self.sock.zap_domain = b"edge"
        self.sock.curve_server = True
        self.sock.curve_publickey, self.sock.curve_secretkey = public_key, secret_key
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, wire.frame_limit(max_bytes))
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.bind(endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def reply(self, ident: bytes, msg: Message) -> bool:
        """Send a reply; a terminal that went away is logged, not fatal (False)."""
        try:
            self.sock.send_multipart([ident, b"", *wire.encode(msg)], copy=False,
                                     flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.info("could not reply to a terminal (%s)", exc.strerror)
            return False
        return True

    def receive(self, timeout_ms: int) -> Inbound | None:
        """The next valid message, or None; invalid ones are answered and dropped."""
        if not self.sock.poll(timeout_ms):
            return None
        frames = self.sock.recv_multipart(copy=False)
        if len(frames) < 3 or frames[1].bytes != b"":
            return None  # not a REQ envelope; nothing sensible to answer
        ident = frames[0].bytes
        key = frames[-1].get("User-Id")
        name = self._names.get(key, "")
        try:
            msg = wire.decode([f.buffer for f in frames[2:]],
                              expect=("offer", "submit", "status"), max_bytes=self._max)
            req = api.check_request_id(msg.meta.get("req"))
            inbound = Inbound(ident, key, name, msg)
            if msg.kind in ("offer", "status"):
                inbound.offer = api.parse_offer(msg) if msg.kind == "offer" else \
                    api.Offer(req, "status")
            return inbound
        except (WireError, ApiError) as exc:
            code = exc.code if isinstance(exc, ApiError) else api.BAD_REQUEST
            reason = exc.reason if isinstance(exc, ApiError) else str(exc)
            log.info("rejected a message from terminal %s: %s", name or key[:8], reason)
            self.reply(ident, api.error("", code, reason))
            return None

    def close(self) -> None:
        self.sock.close(linger=0)
