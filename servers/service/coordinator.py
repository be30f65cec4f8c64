"""A server daemon's transaction coordinator: P0 leads, P1 follows, one transaction at a time.

Both servers receive every request from the terminal. P0 picks the next request (or, for
identifications, a batch of the waiting ones) and announces it to P1 over the encrypted
peer link (``begin``); P1 waits for the same requests from the same terminal keys, admits
each by its own rules and acknowledges with its own view of the state (record present?
model version?). Both then run the same deterministic protocol
(handlers.py), so their dealer requests pair up. Any failure aborts the transaction on
both sides, the peer link is resynchronised and a fresh dealer session starts; the
terminal gets a clear error from each server and can retry with the same request id.

Sessions and MAC keys (docs/PROTOCOL.md): a session id is derived from a fresh nonce of
each server and both must register it with the dealer. A failed MAC check retires the
key epoch durably before anything else; at the next session start the servers see that
their shares are under a retired (or otherwise old) epoch and re-authenticate them under
the dealer's current key (rekey.py) before serving anything again.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from splitface.servers.cards.nonces import NonceStore
from splitface.servers.cards.registry import CardRegistry
from splitface.servers.mpc.errors import MacCheckError, ProtocolError
from splitface.servers.mpc.party import Party
from splitface.servers.mpc.prep.base import NONCE_BYTES, Preprocessing, session_id
from splitface.servers.mpc.prep.material import Request
from splitface.servers.mpc.prep.prefetch import PrefetchingPreprocessing
from splitface.servers.mpc.prep.remote import DealerClient, DealerRefused, DealerUnavailable
from splitface.servers.recognition.identify import Gallery, NameTable, batch_limit
from splitface.servers.service.admission import AuditLog, RateLimiter
from splitface.servers.service.gateway import EdgeGateway, Inbound
from splitface.servers.service.handlers import Handlers, NodeOptions, Txn, check_authorized
from splitface.servers.service.memory import release_free_memory, trim_heap
from splitface.servers.service.plans import identify_plan
from splitface.servers.service.rekey import rekey_store
from splitface.servers.store import ModelState, ShareStore, StoreError, plan_models
from splitface.shared import api
from splitface.shared.api import ApiError
from splitface.shared.transport.base import Channel, TransportError
from splitface.shared.wire import Message, WireError

log = logging.getLogger("splitface.server")

PrepFactory = Callable[[str, int], Preprocessing]  # (session id, key epoch) -> preprocessing
MAX_BLOB = 64 << 20  # largest public byte string exchanged with the peer (record lists)
MAX_QUEUED = 4  # requests one terminal may have waiting: one terminal cannot fill the queue
OFFER_TWIN_S = 2.0  # P1 waits this long for the twin of an offer P0 started
MAX_REKEY_FAILURES = 2  # failed re-keying checks per old epoch before an operator must act
HEAVY_OPS = ("train", "reconcile")  # requests after which freed memory goes back to the OS
# (free heap pages at once; the full garbage collection, 71 ms after training on 1,000
# identities, which the identification a terminal sent right after a training paid on both
# servers, once no request has run for RELEASE_QUIET_S, or RELEASE_LATEST_S after the run)
RELEASE_QUIET_S = 0.5
RELEASE_LATEST_S = 5.0
# the run whose material is fetched after a run of each kind (terminals identify again, an
# admin enrols a list, a new model is identified with)
PREFETCH_AFTER = {"identify": "identify", "enroll": "enroll", "train": "identify"}
DEALER_PROBE_S = 1.5  # how long a dealer known to be down is waited for at each retry
GATHER_S = 0.03  # how long P0 waits to fill a batch the dealer prepared material for


@dataclass(frozen=True)
class KeyState:
    """What a server tells its peer about its stored shares' MAC key at session start."""

    epoch: int  # the epoch every stored MAC is valid under
    staged: int  # epoch of staged re-keyed shares, 0 if none
    retired: int  # newest epoch this server saw fail a MAC check
    count: int  # stored tensors (0: nothing to re-key)

    @classmethod
    def of(cls, store: ShareStore) -> KeyState:
        return cls(store.key_epoch(), store.staged_epoch(), store.retired_epoch(),
                   store.tensor_count())

    @classmethod
    def from_meta(cls, meta: Any) -> KeyState:
        if not isinstance(meta, dict):
            raise ProtocolError("peer sent no key state")
        try:
            vals = [meta[k] for k in ("epoch", "staged", "retired", "count")]
        except KeyError:
            raise ProtocolError("peer's key state is incomplete") from None
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 62
                   for v in vals):
            raise ProtocolError("peer's key state is malformed")
        return cls(*vals)

    def to_meta(self) -> dict[str, int]:
        return {"epoch": self.epoch, "staged": self.staged, "retired": self.retired,
                "count": self.count}


@dataclass(frozen=True)
class SessionPlan:
    """What a new session does first, decided alike by both servers from both key states."""

    epoch: int  # the key epoch the session runs under
    switch_staged: bool = False  # switch to our staged re-keyed shares (the peer already has)
    adopt: int = 0  # an empty store takes this epoch
    rotate: bool = False  # the epoch is retired but still the dealer's current: end it first


def plan_session(mine: KeyState, peer: KeyState, current: int) -> SessionPlan:
    """The session both servers enter, given their key states and the dealer's epoch.

    A server whose staged shares match the peer's epoch switches to them (the peer switched
    before a crash); stores that hold shares must agree on their epoch; a retired epoch is
    never used for a normal session; an epoch older than the dealer's current one means the
    session first re-keys (``epoch`` < ``current``).
    """
    switch = bool(mine.staged and peer.epoch == mine.staged and mine.epoch != mine.staged)
    if switch:
        mine = KeyState(mine.staged, 0, mine.retired, mine.count)
    if peer.staged and mine.epoch == peer.staged and peer.epoch != peer.staged:
        peer = KeyState(peer.staged, 0, peer.retired, peer.count)  # it switches on its side
    if not mine.count and not peer.count:
        epoch = current
    elif not mine.count or not peer.count:
        epoch = mine.epoch if mine.count else peer.epoch
    elif mine.epoch != peer.epoch:
        raise ProtocolError(f"the servers hold shares under key epochs {mine.epoch} and "
                            f"{peer.epoch}: restore both from the same point")
    else:
        epoch = mine.epoch
    if epoch > current:
        raise ProtocolError(f"stored shares are under key epoch {epoch} but the dealer's "
                            f"newest is {current}: restore the dealer's state directory")
    adopt = epoch if not mine.count else 0
    retired = max(mine.retired, peer.retired)
    if not mine.count and not peer.count and epoch <= retired:
        return SessionPlan(epoch, switch, adopt, rotate=True)
    if epoch <= retired and epoch == current:
        return SessionPlan(epoch, switch, adopt, rotate=True)
    if not mine.count and not peer.count:
        return SessionPlan(current, switch, current)
    return SessionPlan(epoch, switch, adopt)


def _offer_digest(inbound: Inbound) -> bytes:
    h = hashlib.sha256(inbound.key.encode())
    h.update(repr(sorted(inbound.msg.meta.items())).encode())
    return h.digest()


class Coordinator:
    """Runs one party's side of every transaction; see the module docstring."""

    def __init__(self, party_id: int, gateway: EdgeGateway, channel: Channel,
                 prep_factory: PrepFactory, dealer: DealerClient, store: ShareStore,
                 cards: CardRegistry, nonces: NonceStore, options: NodeOptions,
                 heartbeat: Callable[[], object] = lambda: None) -> None:
        self.id = party_id
        self.heartbeat = heartbeat  # systemd watchdog: long operations call it as they progress
        self.gateway = gateway
        self.channel = channel
        self._prep_factory = prep_factory
        self.dealer = dealer
        self.store = store
        self.cards = cards
        self.nonces = nonces
        self.opts = options
        self.handlers = Handlers(self)
        self.rate = RateLimiter(options.rate)
        self.audit = AuditLog(options.audit_path, party_id)
        self._refused: collections.OrderedDict[tuple[str, str], tuple[str, str]] = \
            collections.OrderedDict()  # P1: refusals P0 sent before the offer arrived here
        self._names: tuple[int, NameTable] | None = None
        self.party: Party | None = None
        self.session = ""
        self.peer_ok = False
        self._queue: collections.deque[Inbound] = collections.deque()
        self._submits: dict[tuple[str, str], Inbound] = {}
        self._gallery: tuple[str, int, Gallery] | None = None
        self.served: collections.Counter[str] = collections.Counter()
        self._last_resync = float("-inf")
        self._resync_wanted = False
        self._dealer_down = ""  # why the dealer did not answer the last resync, if it did not
        self._link_gen = -1  # the peer link's generation when the session started
        self._current: set[tuple[str, str]] = set()  # requests whose submits are awaited
        self._release_since: float | None = None  # a heavy run's garbage awaits a quiet moment
        self._last_run_end = float("-inf")
        # the dealer requests of this session's last enrolment (the next one asks for the
        # same; an identification's are computed: plans.py), and the identification batch
        # size both servers prefetched for (P0 then runs exactly that many)
        self.enrol_plan: list[Request] = []
        self._prefetched_batch = 0
        # the session whose gallery opening at its start was considered (at most once per
        # session), and the versions whose opening failed
        self._warmed = ""
        self._warm_failed: set[int] = set()
        self.last_progress = time.monotonic()

    # ------------------------------------------------------------ sessions and keys
    def _close_party(self) -> None:
        if self.party is not None:
            with contextlib.suppress(Exception):
                self.party.prep.close()
            self.party = None
        self._gallery = None

    def _open_party(self, session: str, epoch: int) -> Party:
        self._close_party()
        prep = self._prep_factory(session, epoch)
        try:
            prep.open(timeout_s=min(self.opts.peer_timeout_s, 5.0))
            party = Party(self.id, self.channel, prep)
            self._check_mac_key(epoch, party)
        except BaseException:
            with contextlib.suppress(Exception):
                prep.close()
            raise
        self.party, self.session = party, session
        self.enrol_plan, self._prefetched_batch = [], 0
        return party

    def _check_mac_key(self, epoch: int, party: Party) -> None:
        """The dealer must hand out the same alpha share for an epoch after a restart."""
        fp = hashlib.sha256(b"alpha-share" + party.alpha.tobytes()).hexdigest()
        key = f"alpha_fp:{epoch}"
        known = self.store.get_meta(key)
        if known is None:
            self.store.set_meta(key, fp)
        elif known != fp:
            raise ProtocolError(f"the dealer's MAC key share for epoch {epoch} changed: stored "
                                "shares are unusable; restore the dealer's state directory")

    def retire_key(self, epoch: int, reason: str) -> None:
        """A MAC check failed under ``epoch``: never use it again (durably, first), and have
        the dealer move to a new key; stored shares are re-keyed at the next session."""
        self.store.retire_epoch(epoch)
        log.error("P%d: MAC key epoch %d RETIRED after a failed MAC check (%s); the other "
                  "server or the dealer is misbehaving", self.id, epoch, reason)
        try:
            self.dealer.rotate(epoch)
        except (DealerUnavailable, DealerRefused) as exc:
            log.warning("P%d: dealer not told yet (%s); retried at the next session", self.id,
                        exc)

    def end_epoch(self, epoch: int, wait_s: float = 3.0) -> int:
        """Ask the dealer to end ``epoch`` and wait until it did (it needs both servers to
        ask; the other server asks at the same point of the same session plan)."""
        deadline = time.monotonic() + wait_s
        current = self.dealer.rotate(epoch)
        while current <= epoch:
            if time.monotonic() > deadline:
                raise ProtocolError(f"the other server did not ask to end key epoch {epoch}")
            time.sleep(0.05)
            current = self.dealer.current_epoch()
        return current

    def request_resync(self) -> None:
        """Start a new session after the current request (e.g. after a key rotation)."""
        self._resync_wanted = True

    def resync(self, timeout_s: float = 3.0) -> bool:
        """Bring the peer link to a clean state and start a new dealer session, re-keying
        stored shares first when their key epoch is retired or old."""
        self._resync_wanted = False
        try:
            return self._resync(timeout_s)
        finally:  # the next attempt is counted from the end of this one
            self._last_resync = time.monotonic()

    def _resync(self, timeout_s: float) -> bool:
        for _ in range(3):  # a re-key is followed by a fresh session at the new epoch
            try:
                again = self._handshake(timeout_s)
                self._dealer_down = ""
            except (DealerUnavailable, DealerRefused) as exc:
                if not self._dealer_down:
                    log.warning("P%d: the dealer is unavailable: %s", self.id, exc)
                self._dealer_down = str(exc)[:200]
                self._close_party()
                self.peer_ok = False
                return False
            except (TransportError, WireError, ProtocolError, StoreError) as exc:
                log.warning("P%d: resync failed: %s", self.id, exc)
                self._close_party()
                self.peer_ok = False
                return False
            if again is None:
                self._close_party()
                self.peer_ok = False
                return False
            if not again:
                self.peer_ok = True
                self._link_gen = self._link_generation()
                log.info("P%d: new MPC session %s at key epoch %d", self.id, self.session[:8],
                         self.party.epoch if self.party else 0)
                return True
        self.peer_ok = False
        return False

    def _link_generation(self) -> int:
        """Connections made or lost on the peer link so far (-1 for links that do not say)."""
        events = getattr(self.channel, "link_events", None)
        return events() if events is not None else -1

    def _handshake(self, timeout_s: float) -> bool | None:
        """P0's side of one resync exchange (resync, ack, go) and what follows; None: the
        peer did not answer, False: a normal session is open, True: shares were re-keyed,
        resync again."""
        deadline = time.monotonic() + timeout_s
        nonce = os.urandom(NONCE_BYTES)
        # a dealer known to be down is probed briefly, so terminals hear why within seconds
        current = self.dealer.current_epoch(timeout_s=DEALER_PROBE_S if self._dealer_down
                                            else None)
        mine = KeyState.of(self.store)
        token = os.urandom(8).hex()
        models = self.store.model_state()
        self.channel.send(Message("resync", {"token": token, "n": nonce,
                                             "state": mine.to_meta(),
                                             "models": models.to_meta()}))
        while True:
            if time.monotonic() > deadline:
                return None
            msg = self._recv_any(deadline)
            if msg.kind == "resync_ack" and msg.meta.get("token") == token:
                break
        self.channel.send(Message("resync_go", {"token": token}))
        return self._enter(msg, nonce, mine, current, models)

    def _answer_resync(self, msg: Message, timeout_s: float = 3.0) -> None:
        """P1's side: answer the newest resync, wait for P0's go, then enter the session.

        Stale resyncs (P0 gave up on them while this server was frozen or busy) are skipped,
        so a restart or a stall never leaves P1 registering sessions P0 has abandoned.
        """
        while True:
            try:
                newer = self.channel.recv(None, timeout=0.0)
            except (TransportError, WireError):
                break
            if newer.kind == "resync":
                msg = newer
        self._last_resync = time.monotonic()
        nonce = os.urandom(NONCE_BYTES)
        current = self.dealer.current_epoch()
        mine = KeyState.of(self.store)
        token = msg.meta.get("token")
        models = self.store.model_state()
        self.channel.send(Message("resync_ack", {"token": token, "n": nonce,
                                                 "state": mine.to_meta(),
                                                 "models": models.to_meta()}))
        deadline = time.monotonic() + timeout_s
        while True:
            if time.monotonic() > deadline:
                raise ProtocolError("the other server did not confirm the new session")
            got = self._recv_any(deadline)
            if got.kind == "resync_go" and got.meta.get("token") == token:
                break
            if got.kind == "resync":  # P0 started over: answer that one instead
                return self._answer_resync(got, timeout_s)
        self._close_party()
        again = self._enter(msg, nonce, mine, current, models)
        self.peer_ok = not again  # after a re-key P0 starts the next session

    def _enter(self, msg: Message, nonce: bytes, mine: KeyState, current: int,
               models: ModelState) -> bool:
        """Open the session the handshake agreed on; True if shares were re-keyed instead
        (the caller then starts a fresh session at the new epoch)."""
        peer_nonce = msg.meta.get("n")
        if not isinstance(peer_nonce, bytes) or len(peer_nonce) != NONCE_BYTES:
            raise ProtocolError("peer sent a malformed session nonce")
        peer = KeyState.from_meta(msg.meta.get("state"))
        try:
            peer_models = ModelState.from_meta(msg.meta.get("models"))
        except ValueError as exc:
            raise ProtocolError(f"peer's model state: {exc}") from None
        self._heal_models(models, peer_models)
        session = session_id(*((nonce, peer_nonce) if self.id == 0 else (peer_nonce, nonce)))
        plan = plan_session(mine, peer, current)
        if plan.switch_staged:
            self.store.commit_rekey(mine.staged)
            log.warning("P%d: switched to re-keyed shares (epoch %d) after a restart", self.id,
                        mine.staged)
        if plan.adopt and self.store.key_epoch() != plan.adopt:
            self.store.adopt_key_epoch(plan.adopt)
        if plan.rotate:
            current = self.end_epoch(plan.epoch)
            if not mine.count and not peer.count:
                self.store.adopt_key_epoch(current)
                plan = SessionPlan(current)
        if plan.epoch == current:
            self._open_party(session, current)
            return False
        failures = self.store.rekey_failures(plan.epoch)
        if failures >= MAX_REKEY_FAILURES:
            raise ProtocolError(
                f"re-keying from key epoch {plan.epoch} failed {failures} times: a malicious "
                "server may be probing the old key; stopped. See docs/DEPLOY.md, 'After a "
                "failed MAC check'")
        party = self._open_party(session, plan.epoch)
        log.warning("P%d: re-keying stored shares from key epoch %d to %d", self.id,
                    plan.epoch, current)
        try:
            rekey_store(party, self.store, current, self.agree, self.agree_blob,
                        tick=self.heartbeat)
        except BaseException:
            if party.mac_failed:
                n = self.store.note_rekey_failure(plan.epoch)
                log.error("P%d: the MAC check of re-keying from epoch %d failed (%d of %d "
                          "allowed)", self.id, plan.epoch, n, MAX_REKEY_FAILURES)
            raise
        finally:
            self._close_party()
        with contextlib.suppress(DealerUnavailable, DealerRefused):
            self.dealer.confirm(current)
        return True

    def _heal_models(self, mine: ModelState, peer: ModelState) -> None:
        """Bring the model versions together after a crash between the two commits (both
        servers decide alike from both states: store.plan_models)."""
        plan = plan_models(mine, peer)
        if plan.commit:
            self.store.commit_models(plan.commit)
            log.warning("P%d: committed model version %d, which the other server committed "
                        "before a crash", self.id, plan.commit)
        if plan.roll_back_to is not None:
            self.store.roll_back_models(plan.roll_back_to)
            log.warning("P%d: model versions differed (%d here, %d on the other server): "
                        "rolled back to version %d, the newest both hold%s", self.id,
                        mine.current, peer.current, plan.roll_back_to,
                        "" if plan.roll_back_to else " (none: train again)")
        if plan.discard_staged:
            self.store.discard_staged_models()

    def _recv_any(self, deadline: float) -> Message:
        return self.channel.recv(None, timeout=max(0.01, deadline - time.monotonic()))

    # ------------------------------------------------------------ peer exchange
    def agree(self, name: str, value: Any) -> Any:
        """Exchange a small public value with the peer (one round); returns the peer's."""
        msg = self.party._exchange("agree", [], {"name": name, "v": value})
        if msg.meta.get("name") != name:
            raise ProtocolError(f"peer is at step {msg.meta.get('name')!r}, not {name!r}")
        return msg.meta.get("v")

    def agree_blob(self, name: str, data: bytes) -> bytes:
        """Exchange a public byte string of any size up to MAX_BLOB (sent as an array
        frame, not in the size-capped header)."""
        if len(data) > MAX_BLOB:
            raise ProtocolError(f"{name}: {len(data)} bytes exceed the exchange limit")
        msg = self.party._exchange("blob", [np.frombuffer(data, dtype=np.uint8)],
                                   {"name": name})
        if msg.meta.get("name") != name or len(msg.arrays) != 1 \
                or msg.arrays[0].dtype != np.uint8 or msg.arrays[0].ndim != 1 \
                or msg.arrays[0].size > MAX_BLOB:
            raise ProtocolError(f"peer sent a malformed {name!r}")
        return msg.arrays[0].tobytes()

    def agree_json(self, name: str, value: Any) -> Any:
        raw = self.agree_blob(name, json.dumps(value, separators=(",", ":")).encode())
        try:
            return json.loads(raw.decode())
        except (UnicodeDecodeError, ValueError):
            raise ProtocolError(f"peer sent a malformed {name!r}") from None

    def name_table(self, version: int, names: list[str]) -> NameTable:
        """The public name table of a model version (built once per version)."""
        if self._names is None or self._names[0] != version:
            self._names = (version, NameTable(names))
        return self._names[1]

    def gallery(self, version: int, build: Callable[[], Gallery]) -> Gallery:
        """The opened gallery of this session and model version (built once per session)."""
        if self._gallery is None or self._gallery[:2] != (self.session, version):
            self._gallery = None
            t0 = time.perf_counter()
            self._gallery = (self.session, version, build())
            release_free_memory()  # the build's temporaries (loaded templates, masks) are gone
            log.info("P%d: opened the gallery of model version %d (%d identities) in %.1f s",
                     self.id, version, self._gallery[2].size, time.perf_counter() - t0)
        return self._gallery[2]

    # ------------------------------------------------------------ main loop
    def step(self, poll_ms: int = 50) -> None:
        """One iteration of the event loop (the daemon calls this forever); an unexpected
        error costs the peer link (resynchronised next), never the daemon."""
        try:
            self._step(poll_ms)
        except Exception:
            log.exception("P%d: unexpected error in the event loop; resynchronising", self.id)
            self._close_party()
            self.peer_ok = False

    def _step(self, poll_ms: int) -> None:
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
        self._release_when_quiet()
        if self.id == 0:
            if self.peer_ok and self._link_generation() != self._link_gen:
                self.peer_ok = False  # P1 reconnected or dropped: its session is gone
                self._last_resync = float("-inf")
            if self._resync_wanted:
                self.resync()
            if not self.peer_ok:
                if self._dealer_down:  # known down: answer waiting terminals before probing
                    self._refuse_queue(*self._link_down())
                if time.monotonic() - self._last_resync > 2.0:
                    self.resync()
                if not self.peer_ok:
                    self._refuse_queue(*self._link_down())
                    return
            self._lead_warm()
            if self._queue and self.peer_ok:
                self._lead(self._queue.popleft())
        else:
            self._follow_if_asked()
            self._expire_queue()

    def _release_when_quiet(self) -> None:
        """Give a heavy run's freed memory back to the OS when no terminal is waiting and
        none has been served for RELEASE_QUIET_S, or at the latest RELEASE_LATEST_S after
        the run, so that a request arriving just after a training does not wait for it."""
        if self._release_since is None:
            return
        now = time.monotonic()
        quiet = not self._queue and now - self._last_run_end >= RELEASE_QUIET_S
        if quiet or now - self._release_since >= RELEASE_LATEST_S:
            self._release_since = None
            release_free_memory()

    def _pump(self, timeout_ms: int) -> None:
        """Receive terminal messages: status answered now, offers queued, submits kept."""
        inbound = self.gateway.receive(timeout_ms)
        while inbound is not None:
            if inbound.msg.kind == "status":
                self.gateway.reply(inbound.ident, self._status(inbound))
            elif inbound.msg.kind == "submit":
                key = (inbound.key, inbound.msg.meta["req"])
                if key not in self._current:
                    self.gateway.reply(inbound.ident, api.error(
                        key[1], api.ABORTED, "no such request in progress (timed out?)"))
                else:
                    self._submits[key] = inbound
            else:
                try:  # both servers refuse a non-admin's admin request at once, alike
                    check_authorized(self.opts, Txn(inbound, inbound.offer))
                except ApiError as exc:
                    self._refuse(inbound, exc.code, exc.reason)
                else:
                    refused = self._refused.pop((inbound.key, inbound.offer.request_id), None)
                    if refused is not None:  # P0 refused it before it reached this server
                        self._refuse(inbound, *refused, decided_by="peer")
                    elif len(self._queue) >= 1000:
                        self.gateway.reply(inbound.ident, api.error(
                            inbound.offer.request_id, api.BUSY, "queue full"))
                    else:
                        self._drop_superseded(inbound)
                        self._evict_oldest_of(inbound.key)
                        self._queue.append(inbound)
            inbound = self.gateway.receive(0)
        if len(self._submits) > 1000:  # stale submits of abandoned requests
            for k in list(self._submits)[:500]:
                del self._submits[k]

    def _drop_superseded(self, inbound: Inbound) -> None:
        """A terminal's retry (same key, same request id) replaces the copy of an earlier
        attempt still queued: the terminal gave up on that attempt and closed its socket
        (a restarted server receives such copies late, from the reconnect), so following
        it would answer nobody and leave the retry waiting behind it."""
        for i, ib in enumerate(self._queue):
            if ib.key == inbound.key and ib.offer.request_id == inbound.offer.request_id:
                del self._queue[i]
                self.gateway.reply(ib.ident, api.error(ib.offer.request_id, api.ABORTED,
                                                       "superseded by its retry"))
                return

    def _evict_oldest_of(self, key: str) -> None:
        """Keep at most MAX_QUEUED - 1 waiting requests of one terminal before queueing its
        next: the oldest goes (a terminal with a request socket has one outstanding request;
        older ones were abandoned by a timeout or a restart), so one terminal can neither
        fill the queue nor leave stale offers that the other server no longer holds."""
        mine = [i for i, ib in enumerate(self._queue) if ib.key == key]
        if len(mine) < MAX_QUEUED:
            return
        old = self._queue[mine[0]]
        del self._queue[mine[0]]
        self.gateway.reply(old.ident, api.error(old.offer.request_id, api.ABORTED,
                                                "superseded by this terminal's newer requests"))

    def _refuse(self, inbound: Inbound, code: str, reason: str, decided_by: str = "self"
                ) -> None:
        """A per-request refusal: the terminal is told, the audit log keeps it."""
        op = inbound.offer.op if inbound.offer is not None else inbound.msg.kind
        self.audit.refusal(inbound.name or inbound.key[:8], op, inbound.offer.request_id
                           if inbound.offer is not None else "", code, reason, decided_by)
        self.gateway.reply(inbound.ident, api.error(
            inbound.offer.request_id if inbound.offer is not None else "", code, reason))

    def _link_down(self) -> tuple[str, str]:
        """Why no request can run now, naming the part that failed and a next step."""
        if self._dealer_down:
            return (api.DEALER_UNAVAILABLE,
                    f"the dealer does not answer P{self.id} ({self._dealer_down}): check that "
                    "splitface-dealer is running and reachable; retrying")
        other = 1 - self.id
        return (api.PEER_UNAVAILABLE,
                f"P{other} is not reachable over the peer link: check that splitface-server "
                f"--party {other} is running and that P1 can reach P0's peer port; retrying")

    def _refuse_queue(self, code: str, reason: str) -> None:
        """Answer every waiting terminal; P0 also tells P1 (when the peer link still works,
        e.g. only the dealer is down), which otherwise held its copy for its peer timeout
        and the terminal timed out waiting for P1's answer."""
        while self._queue:
            ib = self._queue.popleft()
            if self.id == 0:
                self._tell_peer_refused(ib, code, reason)
            self.gateway.reply(ib.ident, api.error(ib.offer.request_id, code, reason))

    def _tell_peer_refused(self, inbound: Inbound, code: str, reason: str) -> None:
        """P0: P1 answers the terminal's copy of a request P0 refused (``_peer_refused``)
        at once, instead of holding it; a peer link that is down just loses the word."""
        with contextlib.suppress(TransportError):
            self.channel.send(Message("refuse", {"req": inbound.offer.request_id,
                                                 "key": inbound.key, "code": code,
                                                 "reason": reason}))

    def _status(self, inbound: Inbound) -> Message:
        """Readiness for any terminal; the store's contents and activity (record count,
        digest, model version, name counts) only for admin terminals, and the name lists
        too when the admin asks for them (``names``: megabytes at 100,000 identities)."""
        body = {"req": inbound.msg.meta.get("req", ""), "status": "ok", "party": self.id,
                "peer_ok": self.peer_ok}
        if inbound.name not in self.opts.admin_terminals:
            return Message("done", body)
        version, meta = self.store.model_meta()
        lists = {"identities": self.store.identities(),
                 "revoked": self.store.revoked_identities(),
                 "model_identities": meta.get("identities", [])}
        body.update({"model_version": version, "records": self.store.active_records(),
                     "digest": self.store.digest(), "key_epoch": self.store.key_epoch(),
                     **{f"{k}_count": len(v) for k, v in lists.items()}})
        prep = self.party.prep if self.party is not None else None
        if isinstance(prep, PrefetchingPreprocessing):  # this session's: did prefetching pay?
            body["prefetch"] = {"hits": prep.hits, "misses": prep.misses,
                                "queued": prep.queued()}
        if inbound.msg.meta.get("names") is not True:
            return Message("done", body)
        return Message("done", body, [api.pack_listing(lists)])  # names: never in a header

    def _view(self, txn: Txn) -> dict[str, Any]:
        version, _ = self.store.model_meta()
        return {"has": self.store.has_enrolment(txn.req), "model_version": version,
                "digest": self.store.digest()}

    # ------------------------------------------------------------ session start
    def _lead_warm(self) -> None:
        """P0, once a session is up: both servers open the current model's gallery now,
        so the first identification after a restart or a resync does not wait for it
        (6-10 s at N = 100,000). Without a usable model nothing is opened. Considered once
        per session: a model trained later opens its gallery in its training."""
        if self._warmed == self.session:
            return
        self._warmed = self.session
        version = self.handlers.warmable()
        if not version or version in self._warm_failed:
            return
        try:
            self.channel.send(Message("warm", {"sid": self.session, "version": version}))
            ack = self.channel.recv(("warm_ack", "abort"),
                                    timeout=min(self.opts.peer_timeout_s, OFFER_TWIN_S + 2.0))
        except (TransportError, WireError) as exc:
            # not again for this version (e.g. a peer of another release that ignores
            # "warm" would otherwise cost a resync every time): its first request opens it
            log.warning("P0: the other server did not answer the gallery opening: %s", exc)
            self._warm_failed.add(version)
            self.peer_ok = False
            return
        if ack.kind == "warm_ack" and ack.meta.get("ok") is True:
            self._warm(version)

    def _follow_warm(self, meta: dict) -> None:
        """P1: open the gallery P0 names, if it is this server's current model, in this
        session, and the session's first opening (a malicious P0 must not make it open
        galleries over and over, or an old version)."""
        version = meta.get("version")
        ok = (self.party is not None and meta.get("sid") == self.session
              and self._warmed != self.session and type(version) is int and version > 0
              and version == self.handlers.warmable() and version not in self._warm_failed)
        self.channel.send(Message("warm_ack", {"ok": ok}))
        if ok:
            self._warm(version)

    def _warm(self, version: int) -> None:
        """Both servers, in step: open and MAC-check the gallery, then prefetch the first
        identification's material (most sessions start with one); a failure costs the
        session (as a failed request would) and this version is not opened early again."""
        self._warmed = self.session
        try:
            self.handlers.warm(version)
        except Exception as exc:  # the session's first request then opens it, as before
            self._warm_failed.add(version)
            _, reason = self._failed(exc, f"opening the gallery of model version {version}")
            self._abort_and_resync(reason)
            return
        self._prefetch_next("identify", ())

    def _take_batch(self, first: Inbound) -> tuple[list[Inbound], int]:
        """``first`` and, for an identification, other waiting identifications (up to
        ``batch_max``): they share one MPC run's rounds (docs/PROTOCOL.md, "Batches").
        After a prefetch for a batch of k, up to k are taken, waiting up to GATHER_S for
        the terminals just answered to send their next requests; returns them and the
        run's rows: k where fewer came, so that the run pads to the prefetched material
        (a smaller batch would wait for all of it to be generated and discarded first)."""
        want, self._prefetched_batch = self._prefetched_batch, 0
        cap = self._batch_cap()
        limit = min(want or cap, cap)
        batch = [first]
        if first.offer.op != "identify" or limit <= 1:
            return batch, 1
        seen = {(first.key, first.offer.request_id)}
        deadline = time.monotonic() + GATHER_S
        while True:
            for ib in list(self._queue):
                if len(batch) >= limit:
                    break
                item = (ib.key, ib.offer.request_id)
                if ib.offer.op == "identify" and item not in seen:
                    self._queue.remove(ib)
                    batch.append(ib)
                    seen.add(item)
            if len(batch) >= want or time.monotonic() >= deadline:
                return batch, max(len(batch), min(want, cap))
            self._pump(2)

    def _batch_cap(self) -> int:
        """``batch_max``, or fewer where a batch's keys would not fit in memory at this
        gallery size (identify.batch_limit; the same on both servers)."""
        _, meta = self.store.model_meta()
        return batch_limit(len(meta.get("identities", ())), self.opts.batch_max)

    def _admitted(self, inbound: Inbound) -> bool:
        """P0's own rate limit; a refusal is answered here and told to P1."""
        refusal = self.rate.admit(inbound.name or inbound.key, inbound.offer.op,
                                  inbound.offer.identity)
        if refusal is None:
            return True
        self._tell_peer_refused(inbound, api.RATE_LIMITED, refusal)
        self._refuse(inbound, api.RATE_LIMITED, refusal)
        return False

    def _lead(self, first: Inbound) -> None:
        batch, rows = self._take_batch(first)
        txns = [Txn(ib, ib.offer) for ib in batch if self._admitted(ib)]
        if not txns:
            return
        head = txns[0]
        try:
            self.channel.send(Message("begin", {
                "req": head.req, "key": head.inbound.key, "sid": self.session,
                "offer": _offer_digest(head.inbound),
                "more": [[t.req, t.inbound.key, _offer_digest(t.inbound)] for t in txns[1:]],
                "rows": rows, **self._view(head)}))
            # P1 answers within its wait for the offers' twins (OFFER_TWIN_S)
            ack = self.channel.recv(("begin_ack", "abort"),
                                    timeout=min(self.opts.peer_timeout_s, OFFER_TWIN_S + 2.0))
            if ack.meta.get("resync"):
                self.peer_ok = False  # the next step starts a new session
            if ack.kind == "abort" or not ack.meta.get("ok"):
                raise ApiError(_peer_code(ack.meta.get("code", api.PEER_UNAVAILABLE)),
                               "the other server declined: "
                               f"{api.printable(ack.meta.get('reason', 'abort'), 300)}")
            if ack.meta.get("sid") != self.session:
                self.peer_ok = False
                raise ApiError(api.PEER_UNAVAILABLE, "the other server is in another session")
            txns = self._drop_declined(txns, ack.meta.get("declined"))
            if not txns:  # every item was declined and answered (only a peer that
                return    # says ok while declining everything gets here)
        except ApiError as exc:
            for t in txns:
                self.gateway.reply(t.inbound.ident, api.error(t.req, exc.code, exc.reason))
            return
        except (TransportError, WireError) as exc:
            log.warning("P0: peer did not acknowledge request: %s", exc)
            for t in txns:
                self.gateway.reply(t.inbound.ident, api.error(
                    t.req, api.PEER_UNAVAILABLE, "the other server did not answer"))
            self.peer_ok = False
            return
        for t in txns:
            t.peer = ack.meta
        self._run(txns, rows)

    def _drop_declined(self, txns: list[Txn], declined: Any) -> list[Txn]:
        """The batch items P1 declined (its own limits, an offer it never got) are answered
        here with P1's reason; the rest run. A malformed list declines the whole batch."""
        if declined is None:
            declined = []
        if not isinstance(declined, list) or not all(
                isinstance(d, list) and len(d) == 3 and isinstance(d[0], int)
                and 0 <= d[0] < len(txns) for d in declined):
            raise ApiError(api.PEER_UNAVAILABLE, "the other server sent a malformed answer")
        out = {i: (_peer_code(code), api.printable(reason, 300)) for i, code, reason in declined}
        for i, (code, reason) in out.items():
            self.gateway.reply(txns[i].inbound.ident, api.error(
                txns[i].req, code, f"the other server declined: {reason}"))
        return [t for i, t in enumerate(txns) if i not in out]

    def _follow_if_asked(self) -> None:
        try:
            msg = self.channel.recv(None, timeout=0.0)
        except (TransportError, WireError):
            return
        if msg.kind == "resync":
            try:
                self._answer_resync(msg)
            except (TransportError, WireError, ProtocolError, StoreError) as exc:
                log.warning("P1: resync failed: %s", exc)
                self._close_party()
                self.peer_ok = False
            return
        if msg.kind == "refuse":
            self._peer_refused(msg.meta)
            return
        if msg.kind == "warm":
            self._follow_warm(msg.meta)
            return
        if msg.kind == "prefetch":
            self._follow_prefetch(msg.meta)
            return
        if msg.kind != "begin":
            return  # stale abort or message from an aborted exchange
        if self.party is None or msg.meta.get("sid") != self.session:
            # e.g. this server restarted and P0 has not noticed: say so at once, so that P0
            # resynchronises now instead of waiting out its peer timeout
            self.channel.send(Message("begin_ack", {"ok": False, "code": api.PEER_UNAVAILABLE,
                                                    "resync": True,
                                                    "reason": "P1 is not in P0's session"}))
            for i, ib in enumerate(self._queue):  # the terminal hears it from both now
                if ib.offer.request_id == msg.meta.get("req") and ib.key == msg.meta.get("key"):
                    del self._queue[i]
                    self.gateway.reply(ib.ident, api.error(
                        ib.offer.request_id, api.PEER_UNAVAILABLE,
                        "the servers are starting a new session; retry"))
                    break
            return
        cap = self._batch_cap()
        items = _begin_items(msg.meta, cap)
        rows = _begin_rows(msg.meta, items, cap)
        if items is None or rows is None:
            self.channel.send(Message("begin_ack", {"ok": False, "code": api.BAD_REQUEST,
                                                    "reason": "malformed or oversized batch"}))
            return
        deadline = time.monotonic() + min(self.opts.peer_timeout_s, OFFER_TWIN_S)
        txns: list[Txn] = []
        declined: list[list] = []
        for i, (req, key, digest) in enumerate(items):
            inbound = self._await_offer(req, key, digest, deadline)
            try:
                if inbound is None:
                    raise ApiError(api.TIMEOUT, "request not received by P1")
                txn = Txn(inbound, inbound.offer, dict(msg.meta))
                if rows > 1 and txn.offer.op != "identify":  # padding rows too
                    raise ApiError(api.BAD_REQUEST, "only identifications run in batches")
                check_authorized(self.opts, txn)
                # P1's own limits: a malicious P0 must not lift them by starting anything
                refusal = self.rate.admit(inbound.name or inbound.key, inbound.offer.op,
                                          inbound.offer.identity)
                if refusal is not None:
                    raise ApiError(api.RATE_LIMITED, refusal)
            except ApiError as exc:
                declined.append([i, exc.code, exc.reason])
                if inbound is not None:
                    self._refuse(inbound, exc.code, exc.reason)
                continue
            txns.append(txn)
        if not txns:
            _, code, reason = declined[0]
            self.channel.send(Message("begin_ack", {"ok": False, "code": code,
                                                    "reason": reason}))
            return
        self.channel.send(Message("begin_ack", {"ok": True, "sid": self.session,
                                                "declined": declined,
                                                **self._view(txns[0])}))
        self._run(txns, rows)

    def _peer_refused(self, meta: dict) -> None:
        """P0 refused a request: answer the terminal here too, now or when it arrives."""
        req, key = meta.get("req"), meta.get("key")
        code = _peer_code(meta.get("code", api.ABORTED))
        reason = api.printable(meta.get("reason"), 300)
        for i, ib in enumerate(self._queue):
            if ib.offer.request_id == req and ib.key == key:
                del self._queue[i]
                self._refuse(ib, code, reason, decided_by="peer")
                return
        if isinstance(req, str) and isinstance(key, str):
            self._refused[(key, req)] = (code, reason)
            while len(self._refused) > 1000:
                self._refused.popitem(last=False)

    def _expire_queue(self) -> None:
        """P1: requests P0 never started (it did not get them, or is down) are answered."""
        limit = time.monotonic() - self.opts.peer_timeout_s
        while self._queue and self._queue[0].received < limit:
            ib = self._queue.popleft()
            self.gateway.reply(ib.ident, api.error(ib.offer.request_id, api.PEER_UNAVAILABLE,
                                                   "the other server did not start this "
                                                   "request"))

    def _await_offer(self, req: Any, key: Any, digest: Any, deadline: float | None = None
                     ) -> Inbound | None:
        """P1: the terminal's offer P0 started, which the terminal sent to both servers at
        once; waiting for it longer than OFFER_TWIN_S only holds every other terminal up."""
        if deadline is None:
            deadline = time.monotonic() + min(self.opts.peer_timeout_s, OFFER_TWIN_S)
        while True:
            for i, ib in enumerate(self._queue):
                if ib.offer.request_id == req and ib.key == key:
                    del self._queue[i]
                    if _offer_digest(ib) != digest:
                        self.gateway.reply(ib.ident, api.error(req, api.BAD_REQUEST,
                                                               "the servers got different "
                                                               "requests"))
                        return None
                    return ib
            if time.monotonic() >= deadline:
                return None
            self._pump(20)

    def await_retry(self, txn: Txn) -> Inbound | None:
        """The terminal's next copy of ``txn``'s offer (same key, request id and content),
        within OFFER_TWIN_S: the copy being served came from a connection the terminal
        closed before its answer (it timed out and retried, e.g. across a restart)."""
        return self._await_offer(txn.req, txn.inbound.key, _offer_digest(txn.inbound))

    def wait_submits(self, txns: list[Txn]) -> list[Inbound | None]:
        """Each request's submit, or None for a terminal that sent none in time (a strike:
        both servers held every other terminal's request for it)."""
        deadline = time.monotonic() + max(
            self.opts.card_submit_timeout_s if t.offer.card_id else self.opts.submit_timeout_s
            for t in txns)
        keys = [(t.inbound.key, t.req) for t in txns]
        while any(k not in self._submits for k in keys) and time.monotonic() <= deadline:
            self._pump(20)
        subs = [self._submits.pop(k, None) for k in keys]
        for t, sub in zip(txns, subs, strict=True):
            if sub is None:
                self.rate.strike(t.inbound.name or t.inbound.key, "offer abandoned")
        return subs

    # ------------------------------------------------------------ transactions
    def _run(self, txns: list[Txn], rows: int = 1) -> None:
        """Run one request, or a batch of identifications (in ``rows`` rows: the rest are
        padding, handlers.identify), and answer each terminal; an error of the run as a
        whole answers every request in it."""
        t0 = time.perf_counter()
        self._current = {(t.inbound.key, t.req) for t in txns}
        failure: tuple[str, str] | None = None
        replies: list[Message] = []
        try:
            replies = self.handlers.dispatch(txns, rows)
        except ApiError as exc:
            failure = (exc.code, exc.reason)
            for t in txns:
                self.audit.refusal(t.inbound.name or t.inbound.key[:8], t.offer.op, t.req,
                                   exc.code, exc.reason)
            self._abort_and_resync(str(exc), quiet=True)
        except Exception as exc:  # a bug must cost one run, never the daemon
            failure = self._failed(exc, f"request {txns[0].req}")
            # the peer passes this on to its terminals: what ours are told, no more
            self._abort_and_resync(failure[1])
        finally:
            self._current = set()
            for t in txns:
                self._submits.pop((t.inbound.key, t.req), None)
        if failure is not None:
            replies = [api.error(t.req, *failure) for t in txns]
        ms = 1e3 * (time.perf_counter() - t0)
        for t, reply in zip(txns, replies, strict=True):
            self.served[t.offer.op] += 1
            log.info("P%d: %s %s -> %s in %.0f ms%s%s", self.id, t.offer.op, t.req,
                     reply.kind, ms, f" (batch of {len(txns)})" if len(txns) > 1 else "",
                     f" (+{rows - len(txns)} padding rows)" if rows > len(txns) else "")
            if t.awaiting_reply:  # never answer twice: the terminal would read it as the
                self.gateway.reply(t.inbound.ident, reply)  # reply to its next request
        self._last_run_end = time.monotonic()
        if txns[0].offer.op in HEAVY_OPS:  # hundreds of MB of buffers just became garbage:
            trim_heap()  # the free pages go back now, the rest with the garbage collection
            if self._release_since is None:
                self._release_since = self._last_run_end
        after = PREFETCH_AFTER.get(txns[0].offer.op)
        if after is not None and failure is None:
            self._prefetch_next(after, [t.inbound.key for t in txns]
                                if after == txns[0].offer.op else ())

    def _failed(self, exc: Exception, what: str) -> tuple[str, str]:
        """What a run (a request, or the session-start opening) that raised ``exc`` tells
        its terminals, as (code, reason); a failed MAC check retires the key epoch, and a
        dealer that did not answer is probed briefly by the resync that follows."""
        if not isinstance(exc, (ProtocolError, TransportError, WireError, StoreError)):
            log.exception("P%d: internal error on %s", self.id, what)
            if self.party is not None and self.party.mac_failed:
                self.retire_key(self.party.epoch, str(exc))
            return api.ABORTED, f"internal error ({type(exc).__name__}); aborted"
        failed = isinstance(exc, MacCheckError) or (self.party is not None
                                                     and self.party.mac_failed)
        if failed and self.party is not None:
            self.retire_key(self.party.epoch, str(exc))
            return api.ABORTED, "integrity check failed; aborted"
        if isinstance(exc, (DealerUnavailable, DealerRefused)):
            log.warning("P%d: %s: the dealer failed: %s", self.id, what, exc)
            if isinstance(exc, DealerUnavailable):  # the resync that follows probes it briefly
                self._dealer_down = str(exc)[:200]
            return api.DEALER_UNAVAILABLE, f"the dealer failed during the request ({exc}); retry"
        if isinstance(exc, TransportError):
            log.warning("P%d: %s: the peer link failed: %s", self.id, what, exc)
            return api.PEER_UNAVAILABLE, f"the peer link to P{1 - self.id} failed ({exc}); retry"
        log.warning("P%d: %s aborted: %s", self.id, what, exc)
        return api.ABORTED, f"aborted: {exc}"

    def _prefetch_next(self, op: str, answered: Collection[str]) -> None:
        """After an identification or enrolment run, have the dealer prepare the next one's
        material while the terminals send their next requests (both come in runs: terminals
        identify again, an admin enrols a list).

        Both servers must ask the dealer for the same things in the same order, so P0
        names the next run (its op, and for identifications the batch size: those waiting
        now, which it will then run together) and P1 follows it when the message comes
        (:meth:`_follow_prefetch`). A wrong guess costs only the discarded material
        (prefetch.py). ``answered``: the keys of the terminals the run just answered.
        """
        prep = self.party.prep if self.party is not None else None
        if self.id != 0 or not isinstance(prep, PrefetchingPreprocessing):
            return
        k = 1
        if op == "identify":
            self._pump(0)  # requests that came in during the run count as waiting
            k = max(1, min(self._batch_cap(), _next_batch(self._queue, answered)))
        try:
            self.channel.send(Message("prefetch", {"op": op, "k": k, "sid": self.session}))
        except TransportError:
            return
        self._queue_plan(prep, op, k)

    def _follow_prefetch(self, meta: dict) -> None:
        """P1: queue the plan of the run P0 named, for this session only. Handled in the
        event loop whenever it comes: the link is ordered, so it always precedes P0's next
        ``begin``. (P1 used to wait 2 s for it after each run; when P0 was slower, P1
        queued nothing while P0 did, and at the next wrong guess P0 alone discarded
        material, the two servers' dealer requests fell out of step and the dealer closed
        the session, failing a request: review 12.)"""
        prep = self.party.prep if self.party is not None else None
        if isinstance(prep, PrefetchingPreprocessing) and meta.get("sid") == self.session:
            self._queue_plan(prep, meta.get("op"), meta.get("k"))

    def _queue_plan(self, prep: PrefetchingPreprocessing, op: Any, k: Any) -> None:
        plan = self._plan(op, k)
        # one plan queued at most: a run that fetched nothing (a wrong-dimension request, a
        # duplicate enrolment) leaves the last one queued, and queueing another after each
        # such run grew the queue without bound (262 MB a plan at N = 100,000; review 7)
        if plan and not prep.queued():
            prep.expect(plan)
            if op == "identify":
                self._prefetched_batch = k

    def _plan(self, op: Any, k: Any) -> list[Request]:
        """The dealer requests of the run P0 named: an identification's computed from public
        sizes (plans.py), for 1 to this server's batch limit of rows only (a malicious P0
        must not make it queue the material of a huge batch), on this session's opened
        gallery of the current model; an enrolment's as this session's last one asked."""
        if op == "enroll" and type(k) is int and k == 1:
            return self.enrol_plan
        if op != "identify" or type(k) is not int or not 1 <= k <= self._batch_cap():
            return []
        version, _ = self.store.model_meta()
        if self._gallery is None or self._gallery[:2] != (self.session, version):
            return []
        return identify_plan(k, self._gallery[2])

    def _abort_and_resync(self, reason: str, quiet: bool = False) -> None:
        with contextlib.suppress(TransportError):
            self.channel.send(Message("abort", {"reason": reason[:200]}))
        self._close_party()
        self.peer_ok = False
        if self.id == 0 and not self.resync() and not quiet:
            log.warning("P%d: peer unreachable after abort", self.id)

    def close(self) -> None:
        self._close_party()


def _next_batch(queue: Iterable[Inbound], answered: Collection[str]) -> int:
    """The next batch's expected size: the identifications waiting, and each terminal just
    answered that has not sent its next one yet (it comes back). Not the larger of the two:
    with 8 terminals, a batch of 7 and one left waiting named 7 again, and one request
    waited a whole batch every time. Not their sum: a terminal answered first had often
    sent its next request before the count, so it counted twice, and batches of 8 ran
    padded to 9-12 rows at N = 10,000 (a guess too large costs whole padding rows)."""
    waiting = [ib.key for ib in queue if ib.offer.op == "identify"]
    return len(waiting) + len(set(answered) - set(waiting))


def _begin_items(meta: dict[str, Any], batch_max: int) -> list[tuple[str, str, bytes]] | None:
    """P1: the (request id, terminal key, offer digest) of each request a ``begin`` starts,
    or None for a malformed one, a batch over this server's ``batch_max`` or one naming a
    request twice (a malicious P0 must not run one terminal's request twice)."""
    more = meta.get("more", [])
    if not isinstance(more, list) or len(more) + 1 > max(1, batch_max):
        return None
    items = [[meta.get("req"), meta.get("key"), meta.get("offer")], *more]
    out: list[tuple[str, str, bytes]] = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                and isinstance(item[1], str) and isinstance(item[2], bytes)):
            return None
        out.append((item[0], item[1], item[2]))
    if len({(req, key) for req, key, _ in out}) != len(out):
        return None
    return out


def _peer_code(code: Any) -> str:
    """The other server's error code for a terminal's reply: printable and short."""
    return api.printable(str(code), 40)


def _begin_rows(meta: dict[str, Any], items: list | None, cap: int) -> int | None:
    """P1: the rows a ``begin``'s run computes (its items, then padding rows up to the
    batch P0 prefetched for), or None where that is malformed or over this server's own
    limit: a malicious P0 must not make P1 hold more tournament keys than a full batch."""
    if items is None:
        return None
    rows = meta.get("rows", len(items))
    if type(rows) is not int or not len(items) <= rows <= max(1, cap):
        return None
    return rows


def terminal_names(keys_by_name: dict[str, bytes]) -> dict[str, str]:
    """z85 key -> terminal name, for the gateway's logs and admin checks."""
    return {k.decode() if isinstance(k, bytes) else k: n for n, k in keys_by_name.items()}


__all__ = ["Coordinator", "KeyState", "NodeOptions", "terminal_names"]
