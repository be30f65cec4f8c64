"""The CurveZMQ link between the two servers (the only module that opens zmq sockets for MPC).

P0 binds a ROUTER, P1 connects a DEALER with a fixed routing id. Unlike a PAIR socket (whose
bound end keeps waiting on a dead connection and refuses the new one: "send failed:
Resource temporarily unavailable" for minutes after P1 restarted), a ROUTER hands the
routing id over to the newest connection (ROUTER_HANDOVER), so either server can restart
at any time and the link works again at the next resynchronisation. ZMTP heartbeats find
a dead connection within seconds; a send to a peer that is not connected fails at once
(ROUTER_MANDATORY, IMMEDIATE) instead of queueing stale messages for later.

A socket monitor counts connections lost or replaced (``generation``; the first connection
does not count): a reply awaited from a peer whose connection dropped or was replaced (it
restarted) never comes, so ``recv`` fails at once instead of waiting out its timeout, and
the coordinator starts a new session when the generation moved.
"""

from __future__ import annotations

import contextlib
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from splitface.shared import wire
from splitface.shared.closing import Closing
from splitface.shared.transport.base import ChannelStats, TransportError, TransportTimeout
from splitface.shared.wire import Message

PEER_ID = b"splitface-p1"
HEARTBEAT_MS = 1000  # ZMTP PING interval; a peer silent for HEARTBEAT_TIMEOUT_MS is gone
HEARTBEAT_TIMEOUT_MS = 4000
_LINK_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


def _heartbeats(sock: zmq.Socket) -> None:
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)


class ZmqChannel(Closing):
    """Encrypted, authenticated, ordered link to the peer server.

    The binding side is the CURVE server and must run a ZAP authenticator (see ``zap.py``)
    on its context that admits the peer's public key; the connecting side pins the
    server's public key, so both ends are authenticated.
    """

    def __init__(self, socket: zmq.Socket, *, routed: bool,
                 max_bytes: int = wire.DEFAULT_MAX_BYTES << 4,
                 default_timeout: float | None = 60.0) -> None:
        self._sock = socket
        self._routed = routed  # the ROUTER end: frames carry the peer's routing id
        self._max = max_bytes
        self._timeout = default_timeout
        self.stats = ChannelStats()
        self.generation = 0  # connections lost or replaced so far (see the module docstring)
        self._connected = False
        self._monitor = socket.get_monitor_socket(_LINK_EVENTS)

    @classmethod
    def bind(cls, context: zmq.Context, endpoint: str, *, public_key: bytes, secret_key: bytes,
             **kw: object) -> ZmqChannel:
        """Listen as CURVE server (P0); the context must have a ZAP authenticator running."""
        sock = context.socket(zmq.ROUTER)
        sock.zap_domain = str(kw.pop("zap_domain", "peer")).encode()
        sock.curve_server = True
        sock.curve_publickey, sock.curve_secretkey = public_key, secret_key
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to an absent peer fails at once
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted peer takes its id over
        sock.setsockopt(zmq.MAXMSGSIZE,
                        wire.frame_limit(kw.get("max_bytes", wire.DEFAULT_MAX_BYTES << 4)))
        sock.setsockopt(zmq.SNDTIMEO, 2_000)
        _heartbeats(sock)
        sock.bind(endpoint)
        return cls(sock, routed=True, **kw)

    @classmethod
    def connect(cls, context: zmq.Context, endpoint: str, *, public_key: bytes,
                secret_key: bytes, server_key: bytes, **kw: object) -> ZmqChannel:
        """Connect as CURVE client (P1) pinned to the peer's public key."""
        sock = context.socket(zmq.DEALER)
        sock.curve_publickey, sock.curve_secretkey = public_key, secret_key
        sock.curve_serverkey = server_key
        sock.setsockopt(zmq.ROUTING_ID, PEER_ID)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # never queue for a connection that is not up
        sock.setsockopt(zmq.SNDTIMEO, 2_000)
        sock.setsockopt(zmq.MAXMSGSIZE,
                        wire.frame_limit(kw.get("max_bytes", wire.DEFAULT_MAX_BYTES << 4)))
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        _heartbeats(sock)
        sock.connect(endpoint)
        return cls(sock, routed=False, **kw)

    @property
    def socket(self) -> zmq.Socket:
        """The underlying socket, for polling it together with others."""
        return self._sock

    @property
    def endpoint(self) -> str:
        """The endpoint the socket is bound to (resolves tcp://127.0.0.1:* to the real port)."""
        return self._sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def send(self, msg: Message) -> None:
        frames = wire.encode(msg)
        try:
            self._sock.send_multipart([PEER_ID, *frames] if self._routed else frames,
                                      copy=False)
        except zmq.ZMQError as exc:
            reason = "the other server is not connected" if exc.errno in (
                zmq.EHOSTUNREACH, zmq.EAGAIN) else str(exc)
            raise TransportError(f"send failed: {reason}") from exc
        self.stats.record_send(sum(len(f) for f in frames))

    def link_events(self) -> int:
        """Count the link events that happened since the last call; returns ``generation``."""
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)["event"]
            if event == zmq.EVENT_DISCONNECTED:
                self.generation += 1
                self._connected = False
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if self._connected:  # a new connection replaced one we did not see drop
                    self.generation += 1
                self._connected = True
        return self.generation

    def recv(self, expect: str | tuple[str, ...] | None = None,
             timeout: float | None = None) -> Message:
        timeout = self._timeout if timeout is None else timeout
        start = self.link_events()
        deadline = None if timeout is None else time.monotonic() + timeout
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = dict(poller.poll(None if left is None else int(left * 1000)))
            if self._sock in ready:
                break
            if self._monitor in ready and self.link_events() != start:
                raise TransportError("the other server's connection dropped or was replaced "
                                     "(a restart?)")
            if deadline is not None and time.monotonic() >= deadline:
                raise TransportTimeout(f"no message from peer within {timeout} s")
        try:
            frames = self._sock.recv_multipart(copy=False)
        except zmq.ZMQError as exc:
            raise TransportError(f"receive failed: {exc}") from exc
        if self._routed:
            if not frames or frames[0].bytes != PEER_ID:
                raise TransportError("a message from an unknown routing id on the peer link")
            frames = frames[1:]
        buffers = [f.buffer for f in frames]
        del frames  # decode frees each chunk of a large array as it copies it
        self.stats.bytes_received += sum(len(b) for b in buffers)
        self.stats.record_round()
        return wire.decode(buffers, expect=expect, max_bytes=self._max, consume=True)

    def close(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self._monitor.close(linger=0)
        self._sock.close(linger=0)
