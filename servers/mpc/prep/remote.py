"""The dealer service's client side: key epochs, session registration, preprocessing parts.

One REQ socket per client (CurveZMQ, the dealer's key pinned). Every request names this
server's party id (the dealer checks it against the CURVE key) and every reply echoes what
it answers, so a reply can never be taken for another request's.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.prep import material
from splitface.servers.mpc.prep.base import Preprocessing
from splitface.servers.mpc.prep.material import Item, Request
from splitface.shared import wire
from splitface.shared.wire import Message, WireError

CONNECT_GRACE_S = 3.0  # a request waits this long for a connection before the dealer is down


class DealerUnavailable(ProtocolError):
    """The dealer did not answer in time (or this client is shutting down)."""


class DealerRefused(ProtocolError):
    """The dealer answered with an error (unknown session, key epoch, malformed request)."""


class DealerClient:
    """Request/reply with the dealer; ``abort()`` makes a blocked call give up within 0.2 s."""

    def __init__(self, context: zmq.Context, endpoint: str, *, party: int, public_key: bytes,
                 secret_key: bytes, dealer_key: bytes, timeout_s: float = 30.0,
                 max_bytes: int = wire.DEFAULT_MAX_BYTES << 4) -> None:
        self.party = party
        self._ctx, self._endpoint = context, endpoint
        self._keys = (public_key, secret_key, dealer_key)
        self.timeout_s = timeout_s
        self._max = max_bytes
        self._sock = self._connect()
        self._closing = threading.Event()
        self._nonce = 0

    def _connect(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.REQ)
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = self._keys
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, wire.frame_limit(self._max))
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        # a dealer that restarts drops the connection: the request in flight is lost, so
        # the wait for its reply ends at once instead of at the timeout; a dealer that is
        # down leaves no connection at all, so a request gives up after CONNECT_GRACE_S
        # (it used to wait the whole timeout, and terminals timed out first)
        self._monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        self._connected = False
        self._poller = zmq.Poller()  # made once per socket, not per request
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        sock.connect(self._endpoint)
        return sock

    def abort(self) -> None:
        """Thread-safe: a call waiting for the dealer gives up (shutdown)."""
        self._closing.set()

    def _drain_monitor(self) -> bool:
        """Follow the connection's state; True if it dropped since the last look."""
        dropped = False
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)["event"]
            if event == zmq.EVENT_CONNECTED:
                self._connected = True
            elif event == zmq.EVENT_DISCONNECTED:
                self._connected, dropped = False, True
        return dropped

    def _wait_reply(self, timeout_s: float) -> bool:
        start = time.monotonic()
        deadline = start + timeout_s
        while not self._closing.is_set() and time.monotonic() < deadline:
            ready = dict(self._poller.poll(200))
            if self._sock in ready:
                return True
            if self._monitor in ready and self._drain_monitor():
                raise DealerUnavailable("the connection to the dealer dropped (did it "
                                        "restart?); the request was lost")
            if not self._connected and time.monotonic() - start > CONNECT_GRACE_S:
                raise DealerUnavailable(f"no connection to the dealer at {self._endpoint} "
                                        f"within {CONNECT_GRACE_S:.0f} s (is it running?)")
        return False

    def call(self, kind: str, meta: dict[str, Any] | None = None, expect: str = "ok",
             timeout_s: float | None = None) -> Message:
        """One request; raises DealerUnavailable (no answer) or DealerRefused (error reply)."""
        self._nonce += 1
        msg = Message(kind, {**(meta or {}), "party": self.party, "nonce": self._nonce})
        self._drain_monitor()  # a drop before this request does not concern it
        try:
            self._sock.send_multipart(wire.encode(msg), copy=False)
        except zmq.ZMQError as exc:
            self._reset()
            raise DealerUnavailable(f"the dealer could not be reached: {exc}") from None
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            answered = self._wait_reply(timeout)
        except DealerUnavailable:
            self._reset()
            raise
        if not answered:
            self._reset()  # a REQ socket is stuck after a lost reply
            if self._closing.is_set():
                raise DealerUnavailable("preprocessing is shutting down")
            raise DealerUnavailable(f"the dealer did not answer within {timeout:.0f} s")
        buffers = [f.buffer for f in self._sock.recv_multipart(copy=False)]
        try:  # decode frees each chunk of a large part as it copies it
            reply = wire.decode(buffers, expect=(expect, "error"), max_bytes=self._max,
                                consume=True)
        except WireError as exc:
            raise ProtocolError(f"malformed reply from the dealer: {exc}") from None
        if reply.meta.get("nonce") != self._nonce:
            self._reset()
            raise ProtocolError("the dealer's reply answers another request")
        if reply.kind == "error":
            raise DealerRefused(f"the dealer refused: {reply.meta.get('reason')}")
        return reply

    def _reset(self) -> None:
        self._close_socket()
        self._sock = self._connect()

    def _close_socket(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self._monitor.close(linger=0)
        self._sock.close(linger=0)

    # ------------------------------------------------------------ key epochs
    def current_epoch(self, timeout_s: float | None = None) -> int:
        reply = self.call("epoch", expect="epoch", timeout_s=timeout_s)
        e = reply.meta.get("current")
        if not isinstance(e, int) or e < 1:
            raise ProtocolError("the dealer sent a malformed key epoch")
        return e

    def key_share(self, epoch: int) -> np.ndarray:
        reply = self.call("key", {"epoch": epoch}, expect="key")
        if reply.meta.get("epoch") != epoch or len(reply.arrays) != 1 \
                or reply.arrays[0].shape != (2,) or reply.arrays[0].dtype != np.uint64:
            raise ProtocolError("the dealer sent a malformed MAC key share")
        return reply.arrays[0].copy()

    def rotate(self, epoch: int) -> int:
        """Ask to end key ``epoch`` (after a failed MAC check, or a planned rotation); it
        ends once both servers asked. Returns the dealer's current epoch."""
        reply = self.call("rotate", {"epoch": epoch}, expect="epoch")
        e = reply.meta.get("current")
        if not isinstance(e, int) or e < epoch:
            raise ProtocolError("the dealer sent a malformed key epoch")
        return e

    def confirm(self, epoch: int) -> None:
        """This server's stored shares are all under ``epoch`` or later."""
        self.call("confirm", {"epoch": epoch})

    def stats(self) -> dict[str, Any]:
        return dict(self.call("stats", expect="stats").meta.get("stats", {}))

    def close(self) -> None:
        self._close_socket()


class RemotePreprocessing(Preprocessing):
    """This party's parts of one dealer session; requests are numbered per session."""

    def __init__(self, client: DealerClient, *, session: str, epoch: int) -> None:
        self.client, self.party = client, client.party
        self.session, self.epoch = session, epoch
        self._seq = 0
        self._alpha: dict[int, np.ndarray] = {}

    def abort(self) -> None:
        self.client.abort()

    def open(self, timeout_s: float | None = None) -> None:
        """Register the session; returns once the other server has registered it too."""
        deadline = time.monotonic() + (self.client.timeout_s if timeout_s is None else timeout_s)
        while True:
            reply = self.client.call("open", {"session": self.session, "epoch": self.epoch},
                                     expect="session")
            if reply.meta.get("ready") is True:
                return
            if time.monotonic() > deadline:
                raise DealerUnavailable("the other server did not register the dealer session")
            time.sleep(0.02)

    def mac_key_share(self, epoch: int | None = None) -> np.ndarray:
        e = self.epoch if epoch is None else epoch
        if e not in self._alpha:
            self._alpha[e] = self.client.key_share(e)
        return self._alpha[e]

    def _fetch(self, req: Request) -> Item:
        return self._fetch_many([req])[0]

    def _fetch_many(self, reqs: Sequence[Request]) -> list[Item]:
        """Requests seq .. seq + len - 1 in ONE message each way (a round trip through the
        dealer costs ~0.2 ms of CPU over its three processes: an N = 100 identification
        made 17 of them per server)."""
        material.check_batch(reqs)
        reply = self.client.call("get", {"session": self.session, "seq": self._seq,
                                         "reqs": [r.to_wire() for r in reqs]}, expect="part")
        seeds = reply.meta.get("seeds") if self.party == 0 else [None] * len(reqs)
        if reply.meta.get("seq") != self._seq or not isinstance(seeds, list) \
                or len(seeds) != len(reqs):
            raise ProtocolError("the dealer answered another request")
        counts = [material.part_arrays(r, self.party) for r in reqs]
        if sum(counts) != len(reply.arrays):
            raise ProtocolError("dealer sent the wrong number of arrays")
        self._seq += len(reqs)
        items, start = [], 0
        for req, seed, n in zip(reqs, seeds, counts, strict=True):
            arrays = list(reply.arrays[start:start + n])
            start += n
            if self.party == 1:
                items.append(material.item_p1(req, arrays))
            elif not isinstance(seed, bytes) or len(seed) != 16:
                raise ProtocolError("dealer sent no seed to party 0")
            else:
                items.append(material.item_p0(req, seed, arrays))
        return items

    def close(self) -> None:
        """Drop the session at the dealer (best effort) and release the socket."""
        with contextlib.suppress(ProtocolError):
            self.client.call("forget", {"session": self.session}, timeout_s=1.0)
        self.client.close()
