"""A server daemon's core: P0 leads, P1 follows, one transaction at a time.

Both servers receive every request from the terminal. P0 picks the next request and
announces it to P1 over the encrypted peer link (``begin``); P1 waits for the same
request from the same terminal key and acknowledges with its own view of the state
(record present? model version?). Both then run the same deterministic protocol, so
their preprocessing requests to the dealer pair up. Any failure aborts the transaction
on both sides, the peer link is resynchronised (``abort``/``resync``) and a fresh dealer
session starts; the terminal gets a clear error from each server and can retry with the
same request id.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from splitface.servers.cards.authorize import verify_card_authorization
from splitface.servers.cards.nonces import NonceStore
from splitface.servers.cards.registry import CardRegistry
from splitface.servers.mpc import client_io
from splitface.servers.mpc.errors import MacCheckError, ProtocolError
from splitface.servers.mpc.party import Party
from splitface.servers.mpc.prep.base import Preprocessing
from splitface.servers.mpc.prep.prefetch import PrefetchingPreprocessing
from splitface.servers.mpc.share import AuthShare
from splitface.servers.recognition import training
from splitface.servers.recognition.identify import Gallery, identify, verify
from splitface.servers.recognition.progress import TrainingProgress
from splitface.servers.service.gateway import EdgeGateway, Inbound
from splitface.servers.store import ShareStore, StoredShare, StoreError
from splitface.shared import api
from splitface.shared.api import ApiError
from splitface.shared.card_binding import (
    CardAuthRequest,
    CardBindingError,
    RequestKind,
)
from splitface.shared.fixedpoint import F
from splitface.shared.transport.base import Channel, TransportError
from splitface.shared.wire import Message, WireError

log = logging.getLogger("splitface.server")


@dataclass(frozen=True)
class NodeOptions:
    """Behaviour of a server node (from the server's config file)."""

    threshold: float = 0.5
    submit_timeout_s: float = 10.0
    peer_timeout_s: float = 10.0
    train_epochs: int = 5
    train_batch_size: int = 128
    train_learning_rate: float = 1.0
    admin_terminals: frozenset[str] = frozenset()


@dataclass
class Txn:
    """The request both servers are working on."""

    inbound: Inbound
    offer: api.Offer
    peer: dict[str, Any] = field(default_factory=dict)
    awaiting_reply: bool = True  # the terminal's REQ socket expects exactly one reply now

    @property
    def req(self) -> str:
        return self.offer.request_id


class PeerDown(RuntimeError):
    """The other server did not answer in time."""


def _offer_digest(inbound: Inbound) -> bytes:
    h = hashlib.sha256(inbound.key.encode())
    h.update(repr(sorted(inbound.msg.meta.items())).encode())
    return h.digest()


class ServerNode:
    """Runs one party's side of every transaction; see the module docstring."""

    def __init__(self, party_id: int, gateway: EdgeGateway, channel: Channel,
                 prep_factory: Callable[[str], Preprocessing], store: ShareStore,
                 cards: CardRegistry, nonces: NonceStore, options: NodeOptions,
                 heartbeat: Callable[[], object] = lambda: None) -> None:
        self.id = party_id
        self.heartbeat = heartbeat  # systemd watchdog: long operations call it as they progress
        self.gateway = gateway
        self.channel = channel
        self._prep_factory = prep_factory
        self.store = store
        self.cards = cards
        self.nonces = nonces
        self.opts = options
        self.party: Party | None = None
        self.peer_ok = False
        self._queue: collections.deque[Inbound] = collections.deque()
        self._submits: dict[tuple[str, str], Inbound] = {}
        self._gallery: tuple[str, int, Gallery] | None = None
        self.served = collections.Counter()
        self._last_resync = float("-inf")
        self._current: tuple[str, str] | None = None
        self.last_progress = time.monotonic()

    # ------------------------------------------------------------ sessions
    def _start_session(self, session: str) -> None:
        if self.party is not None:
            self.party.prep.close()
        prep = self._prep_factory(session)
        self.party = Party(self.id, self.channel, prep)
        self._check_mac_key(prep)
        self._gallery = None
        self.session = session
        self.peer_ok = True
        log.info("P%d: new MPC session %s", self.id, session[:8])

    def _check_mac_key(self, prep: Preprocessing) -> None:
        """Stored MACs are only valid under the MAC key they were made with."""
        fp = hashlib.sha256(b"alpha-share" + prep.mac_key_share().tobytes()).hexdigest()
        known = self.store.get_meta("mac_key_share_fingerprint")
        if known is None:
            self.store.set_meta("mac_key_share_fingerprint", fp)
        elif known != fp:
            raise ProtocolError("the dealer's MAC key changed: stored shares are unusable; "
                                "restore the dealer's state directory")

    def resync(self, timeout_s: float = 3.0) -> bool:
        """Bring the peer link to a clean state and start a new dealer session."""
        self._last_resync = time.monotonic()
        deadline = time.monotonic() + timeout_s
        try:
            if self.id == 0:
                token, session = os.urandom(8).hex(), os.urandom(12).hex()
                self.channel.send(Message("resync", {"token": token, "session": session}))
                while time.monotonic() < deadline:
                    msg = self._recv_any(deadline)
                    if msg.kind == "resync_ack" and msg.meta.get("token") == token:
                        self._start_session(session)
                        return True
            else:
                while time.monotonic() < deadline:
                    msg = self._recv_any(deadline)
                    if msg.kind == "resync":
                        session, token = msg.meta.get("session"), msg.meta.get("token")
                        if not isinstance(session, str) or len(session) != 24:
                            continue
                        self.channel.send(Message("resync_ack", {"token": token}))
                        self._start_session(session)
                        return True
        except (TransportError, WireError, ProtocolError) as exc:
            log.warning("P%d: resync failed: %s", self.id, exc)
        self.peer_ok = False
        return False

    def _recv_any(self, deadline: float) -> Message:
        return self.channel.recv(None, timeout=max(0.01, deadline - time.monotonic()))

    # ------------------------------------------------------------ main loop
    def step(self, poll_ms: int = 50) -> None:
        """One iteration of the event loop (the daemon calls this forever)."""
        self.last_progress = time.monotonic()
        peer_sock = getattr(self.channel, "socket", None)
        if self.id == 1 and peer_sock is not None:
            # wake on either a terminal's message or P0's "begin"
            poller = zmq.Poller()
            poller.register(self.gateway.sock, zmq.POLLIN)
            poller.register(peer_sock, zmq.POLLIN)
            poller.poll(poll_ms)
            poll_ms = 0
        self._pump(poll_ms)
        if self.id == 0:
            if not self.peer_ok:
                if time.monotonic() - self._last_resync > 2.0:
                    self.resync()
                if not self.peer_ok:
                    self._refuse_queue(api.PEER_UNAVAILABLE, "the other server is unreachable")
                    return
            if self._queue:
                self._lead(self._queue.popleft())
        else:
            self._follow_if_asked()
            self._expire_queue()

    def _pump(self, timeout_ms: int) -> None:
        """Receive terminal messages: status answered now, offers queued, submits kept."""
        inbound = self.gateway.receive(timeout_ms)
        while inbound is not None:
            if inbound.msg.kind == "status":
                self.gateway.reply(inbound.ident, self._status(inbound.offer.request_id))
            elif inbound.msg.kind == "submit":
                key = (inbound.key, inbound.msg.meta["req"])
                if key != self._current:
                    self.gateway.reply(inbound.ident, api.error(
                        key[1], api.ABORTED, "no such request in progress (timed out?)"))
                else:
                    self._submits[key] = inbound
            else:
                if len(self._queue) >= 1000:
                    self.gateway.reply(inbound.ident, api.error(inbound.offer.request_id,
                                                                api.BUSY, "queue full"))
                else:
                    self._queue.append(inbound)
            inbound = self.gateway.receive(0)
        if len(self._submits) > 1000:  # stale submits of abandoned requests
            for k in list(self._submits)[:500]:
                del self._submits[k]

    def _refuse_queue(self, code: str, reason: str) -> None:
        while self._queue:
            ib = self._queue.popleft()
            self.gateway.reply(ib.ident, api.error(ib.offer.request_id, code, reason))

    def _status(self, req: str) -> Message:
        version, meta, _ = self.store.models()
        return Message("done", {"req": req, "status": "ok", "party": self.id,
                                "identities": self.store.identities(),
                                "model_version": version,
                                "model_identities": meta.get("identities", []),
                                "records": len(self.store.record_ids()),
                                "digest": self.store.digest(), "peer_ok": self.peer_ok})

    def _view(self, txn: Txn) -> dict[str, Any]:
        version, _, _ = self.store.models()
        return {"has": self.store.has_enrolment(txn.req), "model_version": version,
                "digest": self.store.digest()}

    def _lead(self, inbound: Inbound) -> None:
        txn = Txn(inbound, inbound.offer)
        try:
            try:
                self._check_authorized(txn)
            except ApiError as exc:  # P1 must not wait for a request P0 will never start
                self.channel.send(Message("skip", {"req": txn.req, "key": inbound.key,
                                                   "code": exc.code, "reason": exc.reason}))
                raise
            self.channel.send(Message("begin", {"req": txn.req, "key": inbound.key,
                                                "offer": _offer_digest(inbound),
                                                **self._view(txn)}))
            ack = self.channel.recv(("begin_ack", "abort"), timeout=self.opts.peer_timeout_s)
            if ack.kind == "abort" or not ack.meta.get("ok"):
                raise ApiError(ack.meta.get("code", api.PEER_UNAVAILABLE),
                               f"the other server declined: {ack.meta.get('reason', 'abort')}")
            txn.peer = ack.meta
        except ApiError as exc:
            self.gateway.reply(inbound.ident, api.error(txn.req, exc.code, exc.reason))
            return
        except (TransportError, WireError) as exc:
            log.warning("P0: peer did not acknowledge request: %s", exc)
            self.gateway.reply(inbound.ident, api.error(txn.req, api.PEER_UNAVAILABLE,
                                                        "the other server did not answer"))
            self.peer_ok = False
            return
        self._run(txn)

    def _follow_if_asked(self) -> None:
        try:
            msg = self.channel.recv(None, timeout=0.0)
        except (TransportError, WireError):
            return
        if msg.kind == "resync":
            self.channel.send(Message("resync_ack", {"token": msg.meta.get("token")}))
            session = msg.meta.get("session")
            if isinstance(session, str) and len(session) == 24:
                self._start_session(session)
            return
        if msg.kind == "skip":
            self._drop_queued(msg.meta.get("req"), msg.meta.get("key"),
                              str(msg.meta.get("code", api.ABORTED)),
                              str(msg.meta.get("reason", "refused by P0")))
            return
        if msg.kind != "begin" or self.party is None:
            return  # stale abort or message from an aborted exchange
        req, key = msg.meta.get("req"), msg.meta.get("key")
        inbound = self._await_offer(req, key, msg.meta.get("offer"))
        if inbound is None:
            self.channel.send(Message("begin_ack", {"ok": False, "code": api.TIMEOUT,
                                                    "reason": "request not received by P1"}))
            return
        txn = Txn(inbound, inbound.offer, dict(msg.meta))
        try:
            self._check_authorized(txn)
        except ApiError as exc:
            self.channel.send(Message("begin_ack", {"ok": False, "code": exc.code,
                                                    "reason": exc.reason}))
            self.gateway.reply(inbound.ident, api.error(txn.req, exc.code, exc.reason))
            return
        self.channel.send(Message("begin_ack", {"ok": True, **self._view(txn)}))
        self._run(txn)

    def _drop_queued(self, req: Any, key: Any, code: str, reason: str) -> None:
        for i, ib in enumerate(self._queue):
            if ib.offer.request_id == req and ib.key == key:
                del self._queue[i]
                self.gateway.reply(ib.ident, api.error(req, code, reason))
                return

    def _expire_queue(self) -> None:
        """P1: requests P0 never started (it did not get them, or is down) are answered."""
        limit = time.monotonic() - self.opts.peer_timeout_s
        while self._queue and self._queue[0].received < limit:
            ib = self._queue.popleft()
            self.gateway.reply(ib.ident, api.error(ib.offer.request_id, api.PEER_UNAVAILABLE,
                                                   "the other server did not start this "
                                                   "request"))

    def _await_offer(self, req: Any, key: Any, digest: Any) -> Inbound | None:
        deadline = time.monotonic() + self.opts.peer_timeout_s
        while time.monotonic() < deadline:
            for i, ib in enumerate(self._queue):
                if ib.offer.request_id == req and ib.key == key:
                    del self._queue[i]
                    if _offer_digest(ib) != digest:
                        self.gateway.reply(ib.ident, api.error(req, api.BAD_REQUEST,
                                                               "the servers got different "
                                                               "requests"))
                        return None
                    return ib
            self._pump(20)
        return None

    def _check_authorized(self, txn: Txn) -> None:
        if txn.offer.op in api.ADMIN_OPS and txn.inbound.name not in self.opts.admin_terminals:
            raise ApiError(api.UNAUTHORIZED, f"terminal {txn.inbound.name!r} may not "
                                             f"{txn.offer.op}")

    # ------------------------------------------------------------ transactions
    def _run(self, txn: Txn) -> None:
        handler = {"enroll": self._enroll, "identify": self._identify, "verify": self._verify,
                   "train": self._train, "revoke": self._revoke,
                   "reconcile": self._reconcile}[txn.offer.op]
        t0 = time.perf_counter()
        self._current = (txn.inbound.key, txn.req)
        try:
            reply = handler(txn)
        except ApiError as exc:
            reply = api.error(txn.req, exc.code, exc.reason)
            self._abort_and_resync(str(exc), quiet=True)
        except MacCheckError as exc:
            log.error("P%d: MAC CHECK FAILED on request %s: %s — the other server or the "
                      "dealer is misbehaving", self.id, txn.req, exc)
            reply = api.error(txn.req, api.ABORTED, "integrity check failed; aborted")
            self._abort_and_resync(str(exc))
        except (ProtocolError, TransportError, WireError, StoreError) as exc:
            log.warning("P%d: request %s aborted: %s", self.id, txn.req, exc)
            reply = api.error(txn.req, api.ABORTED, f"aborted: {exc}")
            self._abort_and_resync(str(exc))
        finally:
            self._current = None
            self._submits.pop((txn.inbound.key, txn.req), None)
        self.served[txn.offer.op] += 1
        log.info("P%d: %s %s -> %s in %.0f ms", self.id, txn.offer.op, txn.req, reply.kind,
                 1e3 * (time.perf_counter() - t0))
        if txn.awaiting_reply:  # never answer twice: the terminal would read it as the
            self.gateway.reply(txn.inbound.ident, reply)  # reply to its next request

    def _abort_and_resync(self, reason: str, quiet: bool = False) -> None:
        with contextlib.suppress(TransportError):
            self.channel.send(Message("abort", {"reason": reason[:200]}))
        if not self.resync() and not quiet:
            log.warning("P%d: peer unreachable after abort", self.id)

    def _agree(self, name: str, value: Any) -> Any:
        """Exchange a small public value with the peer (one round); returns the peer's."""
        msg = self.party._exchange("agree", [], {"name": name, "v": value})
        if msg.meta.get("name") != name:
            raise ProtocolError(f"peer is at step {msg.meta.get('name')!r}, not {name!r}")
        return msg.meta.get("v")

    def _wait_submit(self, txn: Txn) -> Inbound:
        deadline = time.monotonic() + self.opts.submit_timeout_s
        key = (txn.inbound.key, txn.req)
        while key not in self._submits:
            if time.monotonic() > deadline:
                raise ApiError(api.TIMEOUT, "no submit from the terminal in time")
            self._pump(20)
        sub = self._submits.pop(key)
        if len(sub.msg.arrays) != 1:
            raise ApiError(api.BAD_REQUEST, "submit needs exactly one masked array")
        return sub

    def _offer_inputs(self, txn: Txn, extra: dict[str, Any] | None = None):
        triple, arrays = client_io.offer_input(self.party, txn.offer.inputs())
        meta = {"req": txn.req, "n": txn.offer.inputs(), **(extra or {})}
        self.gateway.reply(txn.inbound.ident, Message("offer", meta, arrays))
        txn.awaiting_reply = False
        sub = self._wait_submit(txn)
        txn.awaiting_reply = True
        txn.inbound = sub  # reply on the connection the submit came from
        # both servers must have received the same masked vector (checked in accept_input)
        x = client_io.accept_input(self.party, triple, np.asarray(sub.msg.arrays[0]))
        return x, sub

    def _card_check(self, txn: Txn, sub: Inbound, kind: RequestKind) -> None:
        """Both servers check the card signature and must both accept."""
        ok, reason = True, ""
        try:
            card_req = CardAuthRequest.from_wire(sub.msg.meta.get("card"))
            digest = api.card_payload_digest(txn.req, sub.msg.arrays[0])
            result = verify_card_authorization(card_req, server_index=self.id,
                                               nonces=self.nonces, registry=self.cards,
                                               kind=kind, payload_digest=digest)
            if result.ok and kind is RequestKind.VERIFY and \
                    result.identity_id != txn.offer.identity:
                ok, reason = False, "card is bound to a different identity"
            elif not result.ok:
                ok, reason = False, f"{result.reason.name.lower()}"
        except CardBindingError as exc:
            ok, reason = False, f"malformed card authorisation: {exc}"
        peer = self._agree("card", [ok, reason])
        if not ok or not (isinstance(peer, list) and peer and peer[0] is True):
            raise ApiError(api.CARD_REJECTED, reason or f"P{1 - self.id}: {peer[1]}")

    def _card_bound_inputs(self, txn: Txn, kind: RequestKind):
        """Offer inputs (with this server's card nonce when the request names a card), take
        the masked vector and, for a card-bound request, require both servers' card check."""
        extra = {"nonce": self.nonces.issue(txn.offer.card_id).nonce} if txn.offer.card_id \
            else {}
        x, sub = self._offer_inputs(txn, extra)
        if txn.offer.card_id:
            self._card_check(txn, sub, kind)
        return x, sub

    def _enroll(self, txn: Txn) -> Message:
        mine, theirs = self.store.has_enrolment(txn.req), bool(txn.peer.get("has"))
        if mine and theirs:
            return Message("done", {"req": txn.req, "status": "duplicate"})
        if mine:  # an orphan from a crash between the two commits: replace it
            self.store.delete_enrolments([txn.req])
        x, sub = self._card_bound_inputs(txn, RequestKind.ENROLL)
        try:
            self.store.add_enrolment(txn.req, txn.offer.identity,
                                     StoredShare(x.val, x.mac, F))
        except StoreError as exc:
            raise ApiError(api.REVOKED, str(exc)) from None
        if txn.offer.card_id:
            card = CardAuthRequest.from_wire(sub.msg.meta.get("card"))
            self.cards.bind(card.challenge.card_id, card.public_key, txn.offer.identity)
        self._agree("committed", True)
        return Message("done", {"req": txn.req, "status": "enrolled"})

    def _models(self, txn: Txn) -> tuple[int, dict, dict[str, StoredShare]]:
        version, meta, models = self.store.models()
        if version != txn.peer.get("model_version", version):
            raise ApiError(api.OUT_OF_SYNC, "the servers hold different model versions")
        if not version:
            raise ApiError(api.NO_MODEL, "no trained model: enrol identities and train first")
        return version, meta, models

    def _share(self, s: StoredShare) -> AuthShare:
        return AuthShare(self.party, s.val, s.mac, s.frac)

    def _identify(self, txn: Txn) -> Message:
        version, meta, models = self._models(txn)
        templates = models["templates"]
        if txn.offer.dim != templates.val.shape[2]:
            raise ApiError(api.WRONG_DIMENSION, f"model expects dim {templates.val.shape[2]}")
        if self._gallery is None or self._gallery[:2] != (self.session, version):
            key = f"{self.session}:{version}"
            self._gallery = (self.session, version, Gallery(self._share(templates).T, key))
        prep = self.party.prep
        prefetching = isinstance(prep, PrefetchingPreprocessing)
        if prefetching:
            prep.record()
        x, _ = self._offer_inputs(txn)
        probe, masks = client_io.split_inputs(x, txn.offer.dim, F)
        out = identify(self._gallery[2], probe, self.opts.threshold)
        opened = client_io.open_for_client(self.party, out.reshape(-1), masks)
        self.party.check()
        if prefetching:
            # identifications come in runs (surveillance): have the dealer prepare the
            # next one now; another request type discards it on both servers alike
            prep.expect(prep.stop_recording())
        return Message("result", {"req": txn.req, "model_version": version,
                                  "identities": meta["identities"]}, [opened])

    def _verify(self, txn: Txn) -> Message:
        version, meta, models = self._models(txn)
        names = meta["identities"]
        if txn.offer.identity not in names:
            raise ApiError(api.UNKNOWN_IDENTITY, f"{txn.offer.identity!r} is not enrolled")
        templates = self._share(models["templates"])
        if txn.offer.dim != templates.shape[1]:
            raise ApiError(api.WRONG_DIMENSION, f"model expects dim {templates.shape[1]}")
        if not txn.offer.card_id and self.cards.cards_of(txn.offer.identity):
            raise ApiError(api.CARD_REJECTED, f"{txn.offer.identity!r} is card-bound: present "
                                              "the card")
        x, _ = self._card_bound_inputs(txn, RequestKind.VERIFY)
        probe, masks = client_io.split_inputs(x, txn.offer.dim, F)
        accept = verify(templates[names.index(txn.offer.identity)], probe, self.opts.threshold)
        opened = client_io.open_for_client(self.party, accept, masks)
        self.party.check()
        return Message("result", {"req": txn.req, "model_version": version}, [opened])

    def _train(self, txn: Txn) -> Message:
        if txn.peer.get("digest") != self.store.digest():
            raise ApiError(api.OUT_OF_SYNC, "the servers hold different enrolments; reconcile")
        enrolments = self.store.enrolments()
        names = self.store.identities()
        if not names:
            raise ApiError(api.NO_MODEL, "nothing enrolled")
        dims = {e.share.val.shape[1] for e in enrolments}
        if len(dims) != 1:
            raise ApiError(api.WRONG_DIMENSION, f"enrolments have mixed dimensions {dims}")
        index = {n: i for i, n in enumerate(names)}
        labels = np.array([index[e.identity] for e in enrolments], dtype=np.int64)
        x = AuthShare(self.party, np.stack([e.share.val for e in enrolments], axis=1),
                      np.stack([e.share.mac for e in enrolments], axis=1), F)
        t0 = time.perf_counter()
        templates = training.train_templates(x, labels, len(names))
        models = {"templates": StoredShare(templates.val, templates.mac, templates.frac)}
        if len(names) >= 2:
            opts = training.SgdOptions(self.opts.train_epochs, self.opts.train_batch_size,
                                       self.opts.train_learning_rate)
            per_epoch = len(training.batches(len(labels), opts, 0))
            progress = TrainingProgress(opts.epochs, per_epoch, self.channel.stats,
                                        tick=self.heartbeat)
            try:
                lr = training.train_logistic(x, labels, len(names), opts, progress=progress)
            finally:
                progress.close()
            models["logistic_w"] = StoredShare(lr.w.val, lr.w.mac, lr.w.frac)
            models["logistic_b"] = StoredShare(lr.b.val, lr.b.mac, lr.b.frac)
        self.party.check()  # nothing is stored unless every opened value verified
        seconds = time.perf_counter() - t0
        version = self.store.put_models(models, {"identities": names, "records": len(labels),
                                                 "train_s": round(seconds, 3)})
        self._agree("trained", version)
        return Message("done", {"req": txn.req, "status": "trained", "model_version": version,
                                "identities": len(names), "records": len(labels),
                                "train_s": round(seconds, 3)})

    def _revoke(self, txn: Txn) -> Message:
        removed = self.store.revoke(txn.offer.identity)
        for card in self.cards.cards_of(txn.offer.identity):
            self.cards.unbind(card.card_id)
        self._agree("revoked", removed)
        return Message("done", {"req": txn.req, "status": "revoked", "records": removed})

    def _reconcile(self, txn: Txn) -> Message:
        mine = {rid for rid, _ in self.store.record_ids()}
        theirs = set(self._agree("records", sorted(mine)) or [])
        orphans = sorted(mine - theirs)  # useless without the other server's share
        removed = self.store.delete_enrolments(orphans)
        self._agree("reconciled", removed)
        return Message("done", {"req": txn.req, "status": "reconciled", "removed": removed,
                                "orphans": orphans})


def terminal_names(keys_by_name: dict[str, bytes]) -> dict[str, str]:
    """z85 key -> terminal name, for the gateway's logs and admin checks."""
    return {k.decode() if isinstance(k, bytes) else k: n for n, k in keys_by_name.items()}


__all__ = ["NodeOptions", "PeerDown", "ServerNode", "terminal_names"]
