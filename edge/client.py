"""The terminal's client for the two servers: enrol, identify, verify, status, admin.

Talks to both servers over CurveZMQ (each server's public key pinned), runs the
client-input protocol (``shared/client_protocol.py``) and reconstructs results. Only
``splitface.shared`` is imported: nothing server-side ships on a terminal. The two
servers must agree on every answer; a disagreement is reported, never papered over.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from splitface.shared import api, wire
from splitface.shared.card_binding import CardAuthRequest, RequestKind
from splitface.shared.client_protocol import ClientRequest, InputOfferError, OutputMismatchError
from splitface.shared.closing import Closing
from splitface.shared.names import decode_name
from splitface.shared.wire import Message, WireError

log = logging.getLogger("splitface.edge.client")

# A card signer gets (nonce_p0, nonce_p1, kind, identity, payload digest) and returns the
# signed authorisation (see edge/card/terminal.py: CardSession.authorize).
CardSigner = Callable[[bytes, bytes, RequestKind, str, bytes], CardAuthRequest]


class ServerUnavailable(ConnectionError):
    """A server did not answer in time (the request can be retried with the same id)."""


class ServerRefused(RuntimeError):
    """A server answered with an error; ``code`` is one of shared.api's error codes."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code, self.reason = code, reason


class ServersDisagree(RuntimeError):
    """The two servers answered differently: one is faulty or malicious."""


@dataclass(frozen=True)
class ServerEndpoint:
    endpoint: str
    public_key: bytes


@dataclass(frozen=True)
class ClientOptions:
    servers: tuple[ServerEndpoint, ServerEndpoint]
    public_key: bytes
    secret_key: bytes
    timeout_s: float = 30.0
    retries: int = 1
    max_message_bytes: int = 8 << 20


@dataclass
class Outcome:
    """A finished request: what the edge learned, and how long each step took."""

    request_id: str
    status: str
    identity: str | None = None
    accepted: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)


def new_request_id() -> str:
    return secrets.token_hex(12)


class SplitfaceClient(Closing):
    """Request/response with both servers; use as a context manager."""

    def __init__(self, options: ClientOptions, context: zmq.Context | None = None) -> None:
        self.opts = options
        self._own_ctx = context is None
        self.ctx = context or zmq.Context()
        self._socks: list[zmq.Socket | None] = [None, None]

    @classmethod
    def from_options(cls, options: ClientOptions) -> SplitfaceClient:
        return cls(options)

    def close(self) -> None:
        for i, s in enumerate(self._socks):
            if s is not None:
                s.close(linger=0)
                self._socks[i] = None
        if self._own_ctx:
            self.ctx.term()

    # ------------------------------------------------------------ transport
    def _sock(self, i: int) -> zmq.Socket:
        if self._socks[i] is None:
            srv = self.opts.servers[i]
            s = self.ctx.socket(zmq.REQ)
            s.curve_publickey, s.curve_secretkey = self.opts.public_key, self.opts.secret_key
            s.curve_serverkey = srv.public_key
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.MAXMSGSIZE, wire.frame_limit(self.opts.max_message_bytes))
            # a REQ socket with no connection blocks on send (a refused CURVE handshake
            # leaves none): give up at the request timeout, as for a missing reply
            s.setsockopt(zmq.SNDTIMEO, max(1, int(self.opts.timeout_s * 1000)))
            s.connect(srv.endpoint)
            self._socks[i] = s
        return self._socks[i]

    def _both(self, msgs: tuple[Message, Message], expect: tuple[str, ...]) -> list[Message]:
        """Send one message to each server and wait for both replies."""
        for i, m in enumerate(msgs):
            try:
                self._sock(i).send_multipart(wire.encode(m), copy=False)
            except zmq.Again:
                self._socks[i].close(linger=0)
                self._socks[i] = None
                raise ServerUnavailable(
                    f"server P{i} could not be reached within {self.opts.timeout_s:.0f} s "
                    "(not running, or it refuses this terminal's key)") from None
        replies: list[Message | None] = [None, None]
        deadline = time.monotonic() + self.opts.timeout_s
        poller = zmq.Poller()
        for i in (0, 1):
            poller.register(self._sock(i), zmq.POLLIN)
        while any(r is None for r in replies):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [i for i in (0, 1) if replies[i] is None]
                for i in missing:  # a REQ socket without its reply is stuck: rebuild it
                    self._socks[i].close(linger=0)
                    self._socks[i] = None
                raise ServerUnavailable(f"server P{missing[0]} did not answer within "
                                        f"{self.opts.timeout_s:.0f} s")
            for sock, _ in poller.poll(int(left * 1000)):
                i = 0 if sock is self._socks[0] else 1
                frames = sock.recv_multipart(copy=False)
                try:
                    replies[i] = wire.decode([f.buffer for f in frames],
                                             expect=(*expect, "error"),
                                             max_bytes=self.opts.max_message_bytes)
                except WireError as exc:
                    replies[i] = api.error("", api.BAD_REQUEST, f"malformed reply: {exc}")
        errors = [r for r in replies if r.kind == "error"]
        if errors:
            e = errors[0].meta
            raise ServerRefused(str(e.get("code", "error")), str(e.get("reason", "")))
        return replies  # type: ignore[return-value]

    # ------------------------------------------------------------ operations
    def status(self, names: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
        """Both servers' status; ``names`` (admin terminals) adds the lists of enrolled,
        revoked and modelled identities (raise max_message_bytes for large galleries)."""
        r = self._both((Message("status", {"req": new_request_id(), "names": names}),) * 2,
                       ("done",))
        out = []
        for i, m in enumerate(r):
            try:  # admins get the name lists as a frame (a header holds ~4,000 names)
                out.append({**m.meta, **api.unpack_listing(m.arrays)})
            except ValueError as exc:
                raise ServersDisagree(f"P{i} sent a malformed status: {exc}") from None
        return out[0], out[1]

    def _transact(self, offer: api.Offer, values: np.ndarray | None,
                  signer: CardSigner | None = None) -> tuple[list[Message], ClientRequest | None,
                                                             dict[str, float]]:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        meta = offer.to_meta()
        replies = self._both((Message("offer", meta),) * 2, ("offer", "done"))
        timings["offer_ms"] = 1e3 * (time.perf_counter() - t0)
        if replies[0].kind == "done" or replies[1].kind == "done":
            if replies[0].kind != replies[1].kind:
                raise ServersDisagree("one server finished the request, the other did not")
            return replies, None, timings
        req = ClientRequest(values if values is not None else np.zeros(0), offer.outputs())
        for r in replies:
            if r.meta.get("n") != req.n_total:
                raise ServersDisagree(f"server offered {r.meta.get('n')} inputs, need "
                                      f"{req.n_total}")
        t1 = time.perf_counter()
        masked = req.masked(replies[0].arrays, replies[1].arrays)
        sub = {"req": offer.request_id}
        if offer.card_id:
            if signer is None:
                raise ValueError("a card-bound request needs a card signer")
            n0, n1 = replies[0].meta.get("nonce"), replies[1].meta.get("nonce")
            if not isinstance(n0, bytes) or not isinstance(n1, bytes):
                raise ServersDisagree("a server issued no card nonce")
            kind = RequestKind.ENROLL if offer.op == "enroll" else RequestKind.VERIFY
            try:
                card = signer(n0, n1, kind, offer.identity,
                              api.card_payload_digest(offer.request_id, masked))
            except BaseException:
                # the servers are waiting for this submit: a card-less one is refused at
                # once, instead of holding both servers until their submit timeout
                with contextlib.suppress(ServerRefused, ServerUnavailable, ServersDisagree):
                    self._both((Message("submit", sub, [masked]),) * 2, ("result", "done"))
                raise
            sub["card"] = card.to_wire()
        timings["mask_ms"] = 1e3 * (time.perf_counter() - t1)
        t2 = time.perf_counter()
        out = self._both((Message("submit", sub, [masked]),) * 2, ("result", "done"))
        timings["compute_ms"] = 1e3 * (time.perf_counter() - t2)
        timings["total_ms"] = 1e3 * (time.perf_counter() - t0)
        return out, req, timings

    def _with_retries(self, fn: Callable[[], Outcome]) -> Outcome:
        """Retry a request whose failure may pass (a server or the dealer restarting, the
        pair resynchronising); enrolment reuses its request id, so a retry never doubles."""
        for attempt in range(self.opts.retries + 1):
            try:
                return fn()
            except (ServerUnavailable, ServerRefused) as exc:
                transient = isinstance(exc, ServerUnavailable) or exc.code in api.TRANSIENT
                if not transient or attempt == self.opts.retries:
                    raise
                log.info("%s; retrying (%d/%d)", exc, attempt + 1, self.opts.retries)
                time.sleep(min(2.0, 0.2 * 2 ** attempt))
        raise AssertionError("unreachable")

    def enroll(self, identity: str, embedding: np.ndarray, *, request_id: str | None = None,
               card_id: bytes = b"", signer: CardSigner | None = None,
               force: bool = False) -> Outcome:
        """Enrol one embedding for ``identity`` (idempotent for a given request id). A new
        sample of a trained identity must match its template (the servers check it under
        MPC) unless ``force``: an admin adding a sample that does not look alike."""
        emb = _check_embedding(embedding)
        rid = request_id or new_request_id()
        identity = api.normal_identity(identity)
        offer = api.Offer(rid, "enroll", emb.size, identity, card_id,
                          (("force", True),) if force else ())

        def run() -> Outcome:
            out, _, t = self._transact(offer, emb, signer)
            statuses = {m.meta.get("status") for m in out}
            if len(statuses) != 1:
                raise ServersDisagree(f"enrolment outcome differs: {statuses}")
            return Outcome(rid, statuses.pop(), identity=identity, timings_ms=t)

        return self._with_retries(run)

    def identify(self, embedding: np.ndarray) -> Outcome:
        """1:N identification: the matched name, or none. The servers never learn the
        result, and the reply carries nothing but that name (no list of identities)."""
        emb = _check_embedding(embedding)

        def run() -> Outcome:
            rid = new_request_id()
            out, req, t = self._transact(api.Offer(rid, "identify", emb.size), emb)
            try:
                name = decode_name(np.asarray(self._result(out, req), dtype=np.int64))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ServersDisagree(f"malformed identification result: {exc}") from None
            return Outcome(rid, "identified" if name else "unknown", identity=name,
                           accepted=name is not None, timings_ms=t)

        return self._with_retries(run)

    def verify(self, identity: str, embedding: np.ndarray, *, card_id: bytes = b"",
               signer: CardSigner | None = None) -> Outcome:
        """1:1 verification against a claimed identity (optionally card-bound)."""
        emb = _check_embedding(embedding)
        identity = api.normal_identity(identity)

        def run() -> Outcome:
            rid = new_request_id()
            out, req, t = self._transact(api.Offer(rid, "verify", emb.size, identity, card_id),
                                         emb, signer)
            (accept,) = self._result(out, req)
            if accept not in (0, 1):
                raise ServersDisagree(f"inconsistent verification bit {accept}")
            return Outcome(rid, "accepted" if accept else "rejected", identity=identity,
                           accepted=bool(accept), timings_ms=t)

        return self._with_retries(run)

    def admin(self, op: str, identity: str = "") -> Outcome:
        """train / revoke / reconcile (the terminal must be an admin on both servers)."""
        rid = new_request_id()
        out, _, t = self._transact(api.Offer(rid, op, 0, identity), None)
        if out[0].kind != "done" or out[1].kind != "done":
            raise ServersDisagree("admin operation did not finish on both servers")
        return Outcome(rid, str(out[0].meta.get("status")), details=dict(out[0].meta),
                       timings_ms=t)

    @staticmethod
    def _result(out: list[Message], req: ClientRequest | None) -> list[int]:
        if req is None or out[0].kind != "result" or out[1].kind != "result":
            raise ServersDisagree("expected a result from both servers")
        if len(out[0].arrays) != 1 or len(out[1].arrays) != 1:
            raise ServersDisagree("malformed result")
        try:
            return req.result(np.asarray(out[0].arrays[0]), np.asarray(out[1].arrays[0])).tolist()
        except OutputMismatchError as exc:
            raise ServersDisagree(str(exc)) from exc


def _check_embedding(e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, dtype=np.float64).ravel()
    if e.size == 0 or e.size > api.MAX_DIM or not np.all(np.isfinite(e)):
        raise ValueError("embedding must be a finite vector of 1..1024 values")
    n = float(np.linalg.norm(e))
    if not 0.5 < n < 2.0:
        raise ValueError(f"embedding must be L2-normalised (norm {n:.3f})")
    return e / n


__all__ = ["ClientOptions", "InputOfferError", "Outcome", "ServerEndpoint", "ServerRefused",
           "ServerUnavailable", "ServersDisagree", "SplitfaceClient"]


def client_options_from_config(cfg: Any, *, timeout_s: float | None = None) -> ClientOptions:
    """ClientOptions from an EdgeConfig (keys loaded and permission-checked)."""
    from splitface.shared import keys

    public, secret = keys.load_secret_key(cfg.secret_key_file)
    servers = (ServerEndpoint(cfg.servers.p0.endpoint,
                              keys.load_public_key(cfg.servers.p0.public_key_file)),
               ServerEndpoint(cfg.servers.p1.endpoint,
                              keys.load_public_key(cfg.servers.p1.public_key_file)))
    return ClientOptions(servers, public, secret,
                         timeout_s=timeout_s or cfg.servers.request_timeout_s,
                         retries=cfg.servers.retries,
                         max_message_bytes=cfg.servers.max_message_bytes)
