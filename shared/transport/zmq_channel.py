"""A CurveZMQ PAIR link between the two servers (the only module that opens zmq sockets for MPC)."""

from __future__ import annotations

import zmq

from splitface.shared import wire
from splitface.shared.closing import Closing
from splitface.shared.transport.base import ChannelStats, TransportError, TransportTimeout
from splitface.shared.wire import Message


class ZmqChannel(Closing):
    """Encrypted, authenticated, ordered link to the peer server over a zmq PAIR socket.

    The binding side is the CURVE server and must run a ZAP authenticator (see ``zap.py``)
    on its context that admits the peer's public key; the connecting side pins the
    server's public key, so both ends are authenticated.
    """

    def __init__(self, socket: zmq.Socket, *, max_bytes: int = wire.DEFAULT_MAX_BYTES << 4,
                 default_timeout: float | None = 60.0) -> None:
        self._sock = socket
        self._max = max_bytes
        self._timeout = default_timeout
        self.stats = ChannelStats()

    @classmethod
    def bind(cls, context: zmq.Context, endpoint: str, *, public_key: bytes, secret_key: bytes,
             **kw: object) -> ZmqChannel:
        """Listen as CURVE server; the context must have a ZAP authenticator running."""
        sock = context.socket(zmq.PAIR)
        sock.zap_domain = str(kw.pop("zap_domain", "peer")).encode()
        sock.curve_server = True
        sock.curve_publickey, sock.curve_secretkey = public_key, secret_key
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, kw.get("max_bytes", wire.DEFAULT_MAX_BYTES << 4))
        sock.setsockopt(zmq.SNDTIMEO, 2_000)  # never block long on an absent peer
        sock.bind(endpoint)
        return cls(sock, **kw)

    @classmethod
    def connect(cls, context: zmq.Context, endpoint: str, *, public_key: bytes,
                secret_key: bytes, server_key: bytes, **kw: object) -> ZmqChannel:
        """Connect as CURVE client pinned to the peer's public key."""
        sock = context.socket(zmq.PAIR)
        sock.curve_publickey, sock.curve_secretkey = public_key, secret_key
        sock.curve_serverkey = server_key
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, 2_000)
        sock.setsockopt(zmq.MAXMSGSIZE, kw.get("max_bytes", wire.DEFAULT_MAX_BYTES << 4))
        sock.connect(endpoint)
        return cls(sock, **kw)

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
            self._sock.send_multipart(frames, copy=False)
        except zmq.ZMQError as exc:
            raise TransportError(f"send failed: {exc}") from exc
        self.stats.record_send(sum(len(f) for f in frames))

    def recv(self, expect: str | tuple[str, ...] | None = None,
             timeout: float | None = None) -> Message:
        timeout = self._timeout if timeout is None else timeout
        if timeout is not None and not self._sock.poll(int(timeout * 1000)):
            raise TransportTimeout(f"no message from peer within {timeout} s")
        try:
            frames = self._sock.recv_multipart(copy=False)
        except zmq.ZMQError as exc:
            raise TransportError(f"receive failed: {exc}") from exc
        buffers = [f.buffer for f in frames]
        self.stats.bytes_received += sum(len(b) for b in buffers)
        self.stats.record_round()
        return wire.decode(buffers, expect=expect, max_bytes=self._max)

    def close(self) -> None:
        self._sock.close(linger=0)
