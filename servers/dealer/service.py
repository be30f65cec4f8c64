"""The dealer as a network service: a CurveZMQ ROUTER that serves preprocessing requests.

Each server authenticates with its CURVE key (ZAP allow-list); the key decides which party
it is, and a request claiming another party id is refused. The session rules that keep a
malicious server from collecting the other's part live in :class:`DealerCore`. Every
malformed message or refused request gets an ``error`` reply; nothing a server sends can
stop the service. The MAC keys live only in the dealer's key ring (``state_dir``) and in
the servers' additive shares of them.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.prep import material
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.prep.keyring import KeyRing
from splitface.servers.mpc.prep.material import Request
from splitface.shared import wire
from splitface.shared.wire import Message, WireError

log = logging.getLogger("splitface.dealer")

KINDS = ("epoch", "key", "open", "get", "forget", "rotate", "confirm", "stats")


def load_keyring(state_dir: Path) -> KeyRing:
    """The dealer's persistent key ring (``state_dir/keyring.json``, mode 0600)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    return KeyRing(state_dir / "keyring.json")


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
        self._sock.setsockopt(zmq.MAXMSGSIZE, wire.frame_limit(max_bytes))
        self._sock.bind(endpoint)
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.served = 0
        self.refused = 0

    def _reply(self, ident: bytes, msg: Message) -> None:
        try:
            frames = wire.encode(msg)
        except WireError as exc:  # a reply the wire cannot carry costs the request only
            log.error("could not encode a reply: %s", exc)
            frames = wire.encode(Message("error", {"reason": f"reply too large: {exc}",
                                                   "nonce": msg.meta.get("nonce")}))
        try:
            self._sock.send_multipart([ident, b"", *frames], copy=False,
                                      flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the server went away; it will retry
            log.info("could not reply to a server (%s)", exc.strerror)

    def handle(self, user: bytes, msg: Message) -> Message:
        """Answer one decoded request from the CURVE key ``user`` (authenticated by ZAP)."""
        party = self._parties.get(user)
        if party is None:
            raise ProtocolError("request from a key that is not one of the two servers")
        if msg.meta.get("party") != party:
            raise ProtocolError(f"key of party {party} claims to be party {msg.meta.get('party')}")
        meta = msg.meta
        if msg.kind == "epoch":
            return Message("epoch", {"current": self.core.epoch})
        if msg.kind == "key":
            epoch = _int(meta, "epoch")
            return Message("key", {"epoch": epoch}, [self.core.mac_key_share(party, epoch)])
        if msg.kind == "rotate":
            epoch = _int(meta, "epoch")
            current = self.core.request_rotation(party, epoch)
            if current > epoch:
                log.warning("MAC key epoch %d ended at both servers' request; current epoch "
                            "%d", epoch, current)
            else:
                log.warning("P%d asks to end MAC key epoch %d; waiting for the other server",
                            party, epoch)
            return Message("epoch", {"current": current})
        if msg.kind == "confirm":
            self.core.keys.confirm(party, _int(meta, "epoch"))
            return Message("ok")
        if msg.kind == "stats":
            return Message("stats", {"stats": self.core.stats()})
        session = meta.get("session")
        if not isinstance(session, str) or not 8 <= len(session) <= 64:
            raise ProtocolError("bad session id")
        if msg.kind == "forget":
            self.core.forget_session(session)
            return Message("ok")
        if msg.kind == "open":
            ready = self.core.register(session, party, _int(meta, "epoch"))
            return Message("session", {"ready": ready})
        seq = _int(meta, "seq")
        wire_reqs = meta.get("reqs")
        if not isinstance(wire_reqs, list) or not 1 <= len(wire_reqs) <= material.MAX_BATCH:
            raise ProtocolError(f"a request message carries 1 to {material.MAX_BATCH} "
                                "requests")
        reqs = [Request.from_wire(r) for r in wire_reqs]
        material.check_batch(reqs)
        seeds, arrays = [], []
        try:
            for i, req in enumerate(reqs):  # each in order, under the session's rules
                part = self.core.serve(session, party, seq + i, req)
                self.served += 1
                seeds.append(part.seed)
                arrays += [np.ascontiguousarray(a) for a in part.arrays]
        except Exception:
            if seeds:  # earlier items were served: the numbering moved on without the
                self.core.forget_session(session)  # server's knowing; end the session
            raise
        out: dict[str, Any] = {"seq": seq}
        if party == 0:
            out["seeds"] = seeds
        return Message("part", out, arrays)

    def serve(self, stop: threading.Event, poll_ms: int = 200) -> None:
        """Serve until ``stop`` is set; a bad request gets an error reply, never a crash."""
        while not stop.is_set():
            if not self._sock.poll(poll_ms):
                continue
            frames = self._sock.recv_multipart(copy=False)
            if len(frames) < 3 or frames[1].bytes != b"":
                continue  # not a REQ envelope: nothing sensible to answer
            ident = frames[0].bytes
            nonce = None
            try:
                msg = wire.decode([f.buffer for f in frames[2:]], expect=KINDS,
                                  max_bytes=self._max)
                n = msg.meta.get("nonce")
                nonce = n if isinstance(n, int) and not isinstance(n, bool) else None
                reply = self.handle(frames[-1].get("User-Id").encode(), msg)
            except (ProtocolError, WireError, ValueError, TypeError, OverflowError) as exc:
                self.refused += 1
                log.warning("refused a dealer request: %s", exc)
                reply = Message("error", {"reason": str(exc)[:300]})
            except MemoryError:
                self.refused += 1
                log.error("out of memory serving a request; refused")
                reply = Message("error", {"reason": "the dealer is out of memory"})
            except Exception as exc:  # a bug must cost one request, never the service
                self.refused += 1
                log.exception("internal error serving a dealer request")
                reply = Message("error", {"reason": f"internal error: {type(exc).__name__}"})
            reply.meta["nonce"] = nonce
            self._reply(ident, reply)

    def close(self) -> None:
        self._sock.close(linger=0)


def _int(meta: dict[str, Any], key: str) -> int:
    v = meta.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 62:
        raise ProtocolError(f"{key} must be a non-negative integer")
    return v
