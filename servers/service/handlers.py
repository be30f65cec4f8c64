"""What each request type does once both servers have agreed to run it.

The coordinator (coordinator.py) picks requests, runs them in lockstep on both servers
and turns any error into a per-request error reply; these handlers hold the recognition
logic and the rules of who may do what:

* enrolment, training, revocation, reconciliation and key rotation are admin-only
  (``api.ADMIN_OPS``; terminals listed in the servers' ``admin_terminals``);
* a card-bound identity gains samples only with its own card, a card is bound to the
  identity it signed for (which must be the one the request names), and an identity has
  at most one card;
* every refusal is an :class:`ApiError` raised *before* anything is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from splitface.servers.cards.authorize import verify_card_authorization
from splitface.servers.cards.nonces import NonceStoreFullError
from splitface.servers.cards.registry import BindingStatus, CardRegistryError
from splitface.servers.mpc import client_io
from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.prep.prefetch import PrefetchingPreprocessing
from splitface.servers.mpc.probe_check import (
    CheckedProbe,
    ProbeCheck,
    ProbeChecks,
    accept_checked_probe,
)
from splitface.servers.mpc.rounds import drain, run_round
from splitface.servers.mpc.share import AuthShare, concat, stack
from splitface.servers.recognition import training
from splitface.servers.recognition.identify import Gallery, identify, verify
from splitface.servers.recognition.progress import TrainingProgress
from splitface.servers.service import failpoints
from splitface.servers.service.admission import RateOptions
from splitface.servers.service.gateway import Inbound
from splitface.servers.store import StoredShare, StoreError
from splitface.shared import api, training_range
from splitface.shared.api import ApiError
from splitface.shared.card_binding import CardAuthRequest, CardBindingError, RequestKind
from splitface.shared.fixedpoint import F
from splitface.shared.wire import Message

if TYPE_CHECKING:
    from splitface.servers.service.coordinator import Coordinator

log = logging.getLogger("splitface.server")
# Copies of one offer answered in turn when the previous one's connection is gone (a terminal
# that timed out and retried the same request id); bounded, so no terminal holds the pair up.
MAX_REROUTES = 3


@dataclass(frozen=True)
class NodeOptions:
    """Behaviour of a server node (from the server's config file)."""

    threshold: float = 0.5
    batch_max: int = 16  # identifications answered together in one MPC run, at most
    submit_timeout_s: float = 1.0  # an honest terminal submits within a round trip
    card_submit_timeout_s: float = 5.0  # ... after the card's signature for a card request
    peer_timeout_s: float = 10.0
    train_epochs: int = 5
    train_batch_size: int = 128
    train_learning_rate: float = 1.0
    train_logistic: bool = True  # also fit the logistic model (identification never reads it)
    admin_terminals: frozenset[str] = frozenset()
    rate: RateOptions = field(default_factory=RateOptions)
    audit_path: Path | None = None


@dataclass
class Inputs:
    """A terminal's accepted input: the embedding, its output masks, the submit it came in,
    the probe check, and the digest both servers compare in their first round."""

    probe: AuthShare
    masks: AuthShare
    submit: Inbound
    check: ProbeCheck
    digest: bytes


@dataclass
class Padding:
    """A padding row of a batch (handlers.identify): its range check, its result and its
    output masks, which belong to no terminal."""

    check: ProbeCheck
    result: AuthShare
    masks: AuthShare


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


def check_authorized(opts: NodeOptions, txn: Txn) -> None:
    """Admin operations only from admin terminals (checked by both servers)."""
    if txn.offer.op in api.ADMIN_OPS and txn.inbound.name not in opts.admin_terminals:
        raise ApiError(api.UNAUTHORIZED,
                       f"terminal {txn.inbound.name!r} may not {txn.offer.op}: only the "
                       "terminals in the servers' admin_terminals may (splitface-keys init "
                       "--admin NAME)")


def _masked_vector(txn: Txn, sub: Inbound) -> np.ndarray:
    """The one masked array of a terminal's submit, checked against its offer."""
    if len(sub.msg.arrays) != 1:
        raise ApiError(api.BAD_REQUEST, f"a submit carries exactly one masked array, got "
                                        f"{len(sub.msg.arrays)}")
    try:
        return client_io.check_masked(sub.msg.arrays[0], txn.offer.inputs())
    except client_io.InputError as exc:
        raise ApiError(api.BAD_REQUEST, str(exc)) from None


class Handlers:
    """One method per request type; ``node`` supplies the party, stores and peer exchange."""

    def __init__(self, node: Coordinator) -> None:
        self.node = node
        self._names: tuple[dict, frozenset[str]] | None = None  # (meta, its names as a set)

    def _revoked_in(self, meta: dict) -> list[str]:
        """The revoked identities a model's names include. The names' set is built once
        per model version (the store caches each version's meta object), not per request:
        100,000 names took 5 ms."""
        revoked = self.node.store.revoked_identities()
        if not revoked:
            return []
        if self._names is None or self._names[0] is not meta:
            self._names = (meta, frozenset(meta.get("identities", ())))
        return sorted(r for r in revoked if r in self._names[1])

    def dispatch(self, txns: list[Txn], rows: int = 1) -> list[Message]:
        """One reply per request: identifications may come as a batch (in ``rows`` rows,
        padded), the rest alone."""
        op = txns[0].offer.op
        if op == "identify":
            return self.identify(txns, max(rows, len(txns)))
        handler = {"enroll": self.enroll, "verify": self.verify,
                   "train": self.train, "revoke": self.revoke, "restore": self.restore,
                   "reconcile": self.reconcile,
                   "rotate_key": self.rotate_key}.get(op)
        if handler is None:
            raise ApiError(api.BAD_REQUEST, f"unknown operation {op!r}")
        if len(txns) != 1 or rows > 1:
            raise ApiError(api.BAD_REQUEST, "only identifications run in batches")
        return [handler(txns[0])]

    # ------------------------------------------------------------ inputs and cards
    def _offer_inputs(self, txn: Txn, extra: dict[str, Any] | None = None) -> Inputs:
        """Offer input triples (with the probe-check material for the embedding), take the
        terminal's masked vector; the servers confirm they got the same one in their first
        round together (``Inputs.digest``)."""
        (got,) = self._offer_inputs_many([txn], agree=False, extra=extra)
        if isinstance(got, ApiError):
            raise got
        return got

    def _offer_inputs_many(self, txns: list[Txn], *, agree: bool,
                           extra: dict[str, Any] | None = None) -> list[Inputs | ApiError]:
        """:meth:`_offer_inputs` for a batch: every offer goes out before any submit is
        awaited, and a request whose terminal sent no submit, a malformed one, or different
        vectors to the two servers gets its own error while the others go on. For a batch
        the servers agree on which inputs they both hold (one exchange of the per-request
        input digests) before computing on any of them."""
        node = self.node
        checked = []
        for txn in txns:
            chk, arrays = client_io.offer_checked_input(node.party, txn.offer.inputs(),
                                                        txn.offer.dim)
            checked.append(chk)
            meta = {"req": txn.req, "n": txn.offer.inputs(), **(extra or {})}
            self._send_offer(txn, Message("offer", meta, arrays))
        subs = node.wait_submits(txns)
        out: list[Inputs | ApiError] = []
        for txn, chk, sub in zip(txns, checked, subs, strict=True):
            if sub is None:  # the offer was this connection's one reply: never answer twice
                out.append(ApiError(api.TIMEOUT, "no submit from the terminal in time"))
                continue
            txn.awaiting_reply = True
            txn.inbound = sub  # reply on the connection the submit came from
            try:
                masked = _masked_vector(txn, sub)
            except ApiError as exc:
                out.append(exc)
                continue
            got = accept_checked_probe(node.party, chk, masked, txn.offer.dim)
            out.append(Inputs(got.probe, got.masks, sub, got.check, got.digest))
        if agree:
            out = self._agree_inputs(out)
        return out

    def _send_offer(self, txn: Txn, offer: Message) -> None:
        """Send the offer on the connection the request came from, or on the terminal's
        retry of it when that connection is gone."""
        node = self.node
        for _ in range(MAX_REROUTES):
            if node.gateway.reply(txn.inbound.ident, offer):
                break
            # the connection this copy came from is gone: answer the terminal's retry
            retry = node.await_retry(txn)
            if retry is None:
                break  # nobody to answer: the submit never comes (a strike, as before)
            txn.inbound = retry
        txn.awaiting_reply = False

    def _agree_inputs(self, got: list[Inputs | ApiError]) -> list[Inputs | ApiError]:
        """Keep the inputs both servers hold with equal digests: a terminal that sent the
        two servers different vectors, or submitted to one only, loses its own request and
        no one else's (the digests are of masked vectors both servers see anyway)."""
        mine = [g.digest if isinstance(g, Inputs) else b"" for g in got]
        peer = self.node.agree("inputs", mine)
        if not isinstance(peer, list) or len(peer) != len(mine) \
                or not all(isinstance(d, bytes) for d in peer):
            raise ProtocolError("the other server sent a malformed list of inputs")
        out: list[Inputs | ApiError] = []
        for g, theirs in zip(got, peer, strict=True):
            if isinstance(g, Inputs) and not hmac.compare_digest(g.digest, theirs):
                g = ApiError(api.BAD_REQUEST, "the servers received different inputs" if theirs
                             else f"the submit did not reach P{1 - self.node.id} in time")
            out.append(g)
        return out

    def _release(self, txn: Txn, inputs: Inputs, result: AuthShare | None) -> np.ndarray:
        """Open the probe check's verdict, MAC-check everything so far, and only for a probe
        in range open the result for the terminal (then MAC-check that opening too).

        The result is never opened beside the verdict: a server colluding with the terminal
        knows the terminal's output mask, so an opened result is a plaintext to it, and an
        additive error on any earlier opening could change what is opened before a late
        check caught it (docs/PROTOCOL.md, "Release").
        """
        (opened,) = self._release_many([txn], [inputs], [result])
        if isinstance(opened, ApiError):
            raise opened
        return opened

    def _release_many(self, txns: list[Txn], inputs: list[Inputs],
                      results: list[AuthShare | None], padding: list[Padding] | None = None
                      ) -> list[np.ndarray | ApiError]:
        """:meth:`_release` for a batch: the verdicts in one round, one MAC check, the
        results of the probes in range in one round, one MAC check; an out-of-range probe
        gets its own refusal (and its terminal a strike).

        Padding rows open beside the rest, so that the run asks the dealer for what was
        prefetched: their verdicts are ignored, and their results open under output masks
        no one knows (no terminal got their shares), so they are uniform to each server."""
        node = self.node
        pads = padding or []
        with node.party.op("client_output"):
            (oks,) = run_round(node.party, [client_io.bits_opening(node.party, concat(
                [c.ok.reshape(1) for c in [i.check for i in inputs] + [p.check for p in pads]]
            ))])
        oks = oks[:len(inputs)]
        for txn, ok in zip(txns, oks, strict=True):
            if ok != 1:  # counted before the check: a server aborting it must not make it free
                node.rate.strike(txn.inbound.name or txn.inbound.key, "out-of-range probe")
        node.party.check()
        out: list[np.ndarray | ApiError] = [
            np.empty(0) if ok == 1 else ApiError(
                api.BAD_PROBE, "the probe is out of range: the servers accept only "
                               "L2-normalised embeddings (|x| = 1, |x_k| < 2)") for ok in oks]
        live = [j for j, ok in enumerate(oks) if ok == 1 and results[j] is not None]
        if not live:
            return out
        ys = [results[j].reshape(-1) for j in live]
        masks = [inputs[j].masks for j in live] + [p.masks for p in pads]
        every = ys + [p.result.reshape(-1) for p in pads]
        if any(y.size != m.size for y, m in zip(every, masks, strict=True)):
            raise ProtocolError("a result and its terminal's output masks differ in size")
        with node.party.op("client_output"):  # one opening (one dealer request) for all
            (opened,) = run_round(node.party, [client_io.output_opening(
                node.party, concat(every), concat(masks))])
        node.party.check()
        ends = np.cumsum([y.size for y in ys])
        for j, end, y in zip(live, ends, ys, strict=True):
            out[j] = np.ascontiguousarray(opened[..., end - y.size:end])
        return out

    def _card_check(self, txn: Txn, sub: Inbound, kind: RequestKind) -> CardAuthRequest:
        """Both servers check the card signature and must both accept."""
        node = self.node
        ok, reason, card = True, "", None
        try:
            card = CardAuthRequest.from_wire(sub.msg.meta.get("card"))
            digest = api.card_payload_digest(txn.req, sub.msg.arrays[0])
            result = verify_card_authorization(card, server_index=node.id, nonces=node.nonces,
                                               registry=node.cards, kind=kind,
                                               payload_digest=digest)
            if not result.ok:
                ok, reason = False, result.reason.name.lower()
            elif result.identity_id != txn.offer.identity:
                ok, reason = False, "the card signed for another identity than the request's"
            elif card.challenge.card_id != txn.offer.card_id:
                ok, reason = False, "the card signed with another card id than the request's"
        except (CardBindingError, ValueError) as exc:
            ok, reason = False, f"malformed card authorisation: {exc}"
        peer = node.agree("card", [ok, reason])
        peer_ok = isinstance(peer, list) and len(peer) == 2 and peer[0] is True
        if not ok or not peer_ok:
            other = peer[1] if isinstance(peer, list) and len(peer) == 2 else "?"
            raise ApiError(api.CARD_REJECTED, reason or f"P{1 - node.id}: {other}")
        assert card is not None
        return card

    def _card_bound_inputs(self, txn: Txn, kind: RequestKind
                           ) -> tuple[Inputs, CardAuthRequest | None]:
        """Offer inputs (with this server's card nonce when the request names a card), take
        the masked vector and, for a card-bound request, require both servers' card check."""
        extra = {}
        if txn.offer.card_id:
            try:
                extra["nonce"] = self.node.nonces.issue(txn.offer.card_id).nonce
            except NonceStoreFullError:
                raise ApiError(api.BUSY, "too many card challenges outstanding; retry "
                                         "shortly") from None
        inputs = self._offer_inputs(txn, extra)
        card = self._card_check(txn, inputs.submit, kind) if txn.offer.card_id else None
        return inputs, card

    def _enrol_card_rules(self, txn: Txn) -> None:
        """Refuse, before any input, an enrolment that would add samples or a card to an
        identity against its card binding."""
        cards = self.node.cards
        bound = [c for c in cards.cards_of(txn.offer.identity)
                 if c.status is BindingStatus.BOUND]
        if bound and not txn.offer.card_id:
            raise ApiError(api.CARD_REJECTED, f"{txn.offer.identity!r} is card-bound: enrol "
                                              "more samples with the identity's card")
        if txn.offer.card_id:
            if bound and all(c.card_id != txn.offer.card_id for c in bound):
                raise ApiError(api.CARD_REJECTED, f"{txn.offer.identity!r} already has a card;"
                                                  " revoke it before binding another")
            try:
                existing = cards.lookup(txn.offer.card_id)
            except ValueError as exc:
                raise ApiError(api.BAD_REQUEST, str(exc)) from None
            if existing.status is BindingStatus.REVOKED:
                raise ApiError(api.CARD_REJECTED, "this card was revoked")
            if existing.is_bound and existing.identity_id != txn.offer.identity:
                raise ApiError(api.CARD_REJECTED, "this card is bound to another identity")

    # ------------------------------------------------------------ request types
    def enroll(self, txn: Txn) -> Message:
        node = self.node
        mine, theirs = node.store.has_enrolment(txn.req), bool(txn.peer.get("has"))
        if mine and theirs:
            return Message("done", {"req": txn.req, "status": "duplicate"})
        prep = node.party.prep
        if not isinstance(prep, PrefetchingPreprocessing):
            return self._enroll(txn, mine)
        prep.record()
        try:
            reply = self._enroll(txn, mine)
        finally:
            plan = prep.stop_recording()
        node.enrol_plan = plan  # what the next enrolment asks for, likely
        return reply

    def _enroll(self, txn: Txn, mine: bool) -> Message:
        node = self.node
        self._enrol_card_rules(txn)
        if mine:  # an orphan from a crash between the two commits: replace it
            node.store.delete_enrolments([txn.req])
        template = self._merge_guard(txn)
        inputs, card = self._card_bound_inputs(txn, RequestKind.ENROLL)
        if template is None:
            drain(node.party, [inputs.check], inputs.digest)  # the probe check's own rounds
            self._release(txn, inputs, None)  # stored only if verified and in range
        else:
            same = verify(template, inputs.probe, node.opts.threshold, [inputs.check],
                          inputs.digest)
            self._release(txn, inputs, None)
            with node.party.op("merge_check"):  # opened to the servers, after the check
                (match,) = run_round(node.party, [client_io.bit_opening(node.party, same)])
            node.party.check()
            if match != 1:
                raise ApiError(api.NOT_THE_SAME_PERSON,
                               f"this face does not match {txn.offer.identity!r}'s enrolled "
                               "samples: a different person under the same name? An admin "
                               "may add it anyway (enroll --force)")
        x = inputs.probe
        try:
            node.store.add_enrolment(txn.req, txn.offer.identity,
                                     StoredShare(x.val, x.mac, F))
        except StoreError as exc:
            raise ApiError(api.REVOKED, str(exc)) from None
        if card is not None:
            try:
                node.cards.bind(card.challenge.card_id, card.public_key, txn.offer.identity)
            except (CardRegistryError, ValueError) as exc:
                node.store.delete_enrolments([txn.req])
                raise ApiError(api.CARD_REJECTED, str(exc)) from None
        node.agree("committed", True)
        return Message("done", {"req": txn.req, "status": "enrolled"})

    def _merge_guard(self, txn: Txn) -> AuthShare | None:
        """The template a new sample of an already-trained identity must match (None: no
        check: a new identity, no model yet, or ``force``). Enrolling another person under
        an existing name would merge two people silently. The servers learn the match bit
        of an admin's enrolment (docs/SECURITY.md)."""
        version, meta = self.node.store.model_meta()
        names = meta.get("identities", [])
        if dict(txn.offer.params).get("force") is True or txn.offer.identity not in names:
            return None
        if version != txn.peer.get("model_version", version):
            raise ApiError(api.OUT_OF_SYNC, "the servers hold different model versions")
        return self._share(self._template_row(txn, version, names.index(txn.offer.identity)))

    def _models(self, txn: Txn) -> tuple[int, dict, dict[str, StoredShare]]:
        """The current model with its shares (see :meth:`_servable`)."""
        version, meta, models = self.node.store.models()
        self._servable(txn, version, meta)
        if "templates" not in models:
            raise ApiError(api.NO_MODEL, "no trained model: enrol identities and train first")
        return version, meta, models

    def _template_row(self, txn: Txn, version: int, row: int) -> StoredShare:
        """One identity's template share of model ``version``, read alone (a gallery of
        100,000 is never loaded for a 1:1 question), of the request's dimension; a model
        without it fails closed."""
        found = self.node.store.model_row(version, "templates", row)
        if found is None:
            raise ApiError(api.NO_MODEL, "the current model has no templates: train again")
        if txn.offer.dim != found.val.shape[1]:
            raise ApiError(api.WRONG_DIMENSION, f"model expects dim {found.val.shape[1]}")
        return found

    def _model_meta(self, txn: Txn) -> tuple[int, dict]:
        """The current model's version and names, without its shares (identification
        reads them only to build its gallery, once per version)."""
        version, meta = self.node.store.model_meta()
        self._servable(txn, version, meta)
        return version, meta

    def _servable(self, txn: Txn, version: int, meta: dict) -> None:
        """Refuse a model when the servers' versions differ, when there is none, or when it
        includes a revoked identity."""
        if version != txn.peer.get("model_version", version):
            raise ApiError(api.OUT_OF_SYNC, "the servers hold different model versions")
        if not version:
            raise ApiError(api.NO_MODEL, "no trained model: enrol identities and train first")
        revoked = self._revoked_in(meta)
        if revoked:  # e.g. rolled back past a revocation: never identify a revoked person
            raise ApiError(api.NO_MODEL, f"the model includes revoked identities "
                                         f"{revoked[:3]}: train again")

    def _share(self, s: StoredShare) -> AuthShare:
        return AuthShare(self.node.party, s.val, s.mac, s.frac)

    def identify(self, txns: list[Txn], rows: int = 1) -> list[Message]:
        """One identification, or a batch of them in one MPC run (coordinator._take_batch):
        the probes go through one product and one tournament, and each terminal gets only
        its own answer, or its own error.

        ``rows`` above the requests' number pads the run with rows that belong to no
        terminal, so that it asks the dealer for exactly the batch both servers
        prefetched for (docs/PROTOCOL.md, "Padding rows"): a padding row's input is the
        dealer's input mask itself, and nothing of it is ever opened but its masked
        values and its range verdict, both independent of every terminal's input."""
        node = self.node
        version, meta = self._model_meta(txns[0])
        gallery = self._open_gallery(
            version, lambda: self._share(self._models(txns[0])[2]["templates"]))
        replies: list[Message | None] = [None] * len(txns)
        for i, txn in enumerate(txns):  # the servers hold the same offers: they agree here
            if txn.offer.dim != gallery.dim:
                replies[i] = api.error(txn.req, api.WRONG_DIMENSION,
                                       f"model expects dim {gallery.dim}")
        todo = [i for i, r in enumerate(replies) if r is None]
        if not todo:
            return replies
        table = node.name_table(version, meta["identities"])
        # a batch agrees on its inputs even where one item is left to offer: only a lone
        # request's error is the run's (below), so the servers must not part ways here
        got = self._offer_inputs_many([txns[i] for i in todo], agree=len(txns) > 1)
        pads = self._padding_inputs(max(0, rows - len(todo)), gallery.dim)
        if len(txns) == 1 and isinstance(got[0], ApiError):
            raise got[0]  # alone: as any request's error (the servers resynchronise)
        for i, g in zip(todo, got, strict=True):
            if isinstance(g, ApiError):
                replies[i] = api.error(txns[i].req, g.code, g.reason)
        live = [(i, g) for i, g in zip(todo, got, strict=True) if isinstance(g, Inputs)]
        if live:
            inputs = [g for _, g in live]
            every = inputs + pads
            out = identify(gallery, stack([g.probe for g in every]), node.opts.threshold,
                           table, [ProbeChecks([g.check for g in every])],
                           hashlib.sha256(b"".join(g.digest for g in every)).digest())
            opened = self._release_many(
                [txns[i] for i, _ in live], inputs, [out[j] for j in range(len(inputs))],
                [Padding(p.check, out[len(inputs) + j], p.masks) for j, p in enumerate(pads)])
            if len(txns) == 1 and isinstance(opened[0], ApiError):
                raise opened[0]  # alone: as before; in a batch each item keeps its own
            for (i, _), o in zip(live, opened, strict=True):
                replies[i] = api.error(txns[i].req, o.code, o.reason) \
                    if isinstance(o, ApiError) else \
                    Message("result", {"req": txns[i].req, "model_version": version}, [o])
        return replies

    def _padding_inputs(self, count: int, dim: int) -> list[CheckedProbe]:
        """``count`` padding rows, with the dealer material a terminal's identification
        takes (the same requests, in the same order, as the offers just made): the masked
        vector is all zeros, so a row's input is the dealer's mask [a], which no one knows
        (no terminal received its shares)."""
        n = api.Offer(request_id="", op="identify", dim=dim).inputs()
        zeros = np.zeros((2, n), dtype=np.uint64)
        out = []
        for _ in range(count):
            chk, _ = client_io.offer_checked_input(self.node.party, n, dim)
            out.append(accept_checked_probe(self.node.party, chk, zeros, dim))
        return out

    def _open_gallery(self, version: int, templates: Callable[[], AuthShare]) -> Gallery:
        """The session's opened gallery of a model version, built on first use (W - B, one
        opening of D x N elements: about 10 s at N = 100,000)."""
        node = self.node
        # the transpose is a copy of its own (ring.transpose), so W - B may be formed in it:
        # 410 MB less at the opening's peak at N = 100,000
        return node.gallery(version, lambda: Gallery(
            templates().T, node.party.fresh_key(f"gallery-v{version}"), consume=True))

    def warmable(self) -> int:
        """The current model version if identification could use it now, else 0 (no model,
        no templates, or a revoked identity in it: see :meth:`_servable`)."""
        store = self.node.store
        version, meta = store.model_meta()
        names = meta.get("identities", [])
        if not version or not names or self._revoked_in(meta):
            return 0
        return version if store.model_row(version, "templates", 0) is not None else 0

    def warm(self, version: int) -> None:
        """Open model ``version``'s gallery for this session (coordinator._lead_warm)."""
        current, _, models = self.node.store.models()
        if current != version or "templates" not in models:
            raise ProtocolError(f"model version {version} is not the current one")
        self._warm_gallery(version, self._share(models["templates"]))

    def _warm_gallery(self, version: int, templates: AuthShare) -> None:
        """Open a new version's gallery and MAC-check the opening before it is committed."""
        self._open_gallery(version, lambda: templates)
        self.node.party.check()

    def verify(self, txn: Txn) -> Message:
        """1:1 verification. Every name gets the same answer path: a name that is not
        enrolled, or a card-bound one asked without its card, is verified against a zero
        template (always "rejected"), so a terminal cannot test who is enrolled or who
        holds a card (docs/SECURITY.md)."""
        node = self.node
        version, meta = self._model_meta(txn)
        names = meta.get("identities", [])
        if not names:
            raise ApiError(api.NO_MODEL, "no trained model: enrol identities and train first")
        bound = any(c.is_bound for c in node.cards.cards_of(txn.offer.identity))
        known = txn.offer.identity in names and bool(txn.offer.card_id or not bound)
        # one row is read either way (row 0 stands in), so both paths cost the same
        row = self._template_row(txn, version, names.index(txn.offer.identity) if known else 0)
        inputs, _ = self._card_bound_inputs(txn, RequestKind.VERIFY)
        template = self._share(row) if known else AuthShare(
            node.party, np.zeros_like(row.val), np.zeros_like(row.mac), row.frac)
        accept = verify(template, inputs.probe, node.opts.threshold, [inputs.check],
                        inputs.digest)
        opened = self._release(txn, inputs, accept)
        return Message("result", {"req": txn.req, "model_version": version}, [opened])

    def train(self, txn: Txn) -> Message:
        node = self.node
        if txn.peer.get("digest") != node.store.digest():
            raise ApiError(api.OUT_OF_SYNC, "the servers hold different enrolments; reconcile")
        # Both servers must run the same SGD (or none): different [train] settings would
        # desynchronise the protocol mid-run, so they are compared first and named.
        mine = [node.opts.train_epochs, node.opts.train_batch_size,
                node.opts.train_learning_rate, node.opts.train_logistic]
        theirs = node.agree("train_settings", mine)
        if theirs != mine:
            p0, p1 = (mine, theirs) if node.party.id == 0 else (theirs, mine)
            raise ApiError(api.BAD_REQUEST, "the servers' [train] settings differ (epochs, "
                           f"batch_size, learning_rate, logistic: P0 {p0}, P1 {p1}): set the "
                           "same values on both")
        enrolments = node.store.enrolments()
        names = node.store.identities()
        if not names:
            raise ApiError(api.NO_MODEL, "nothing enrolled")
        for name in names:  # enrolled before names were limited: one bad row would fail
            try:            # every identification, so it never reaches a model
                api.check_identity(name)
            except ApiError:
                raise ApiError(api.BAD_REQUEST, f"identity {name!r} cannot be an "
                                                "identification result (too long or not NFC): "
                                                "revoke it and enrol it under a valid name"
                               ) from None
        dims = {e.share.val.shape[1] for e in enrolments}
        if len(dims) != 1:
            raise ApiError(api.WRONG_DIMENSION, f"enrolments have mixed dimensions {dims}")
        index = {n: i for i, n in enumerate(names)}
        labels = np.array([index[e.identity] for e in enrolments], dtype=np.int64)
        x = AuthShare(node.party, np.stack([e.share.val for e in enrolments], axis=1),
                      np.stack([e.share.mac for e in enrolments], axis=1), F)
        del enrolments  # x holds them now (410 MB at 100,000 identities: not twice)
        logistic = node.opts.train_logistic and len(names) >= 2
        if logistic:  # public settings and counts: both servers refuse alike
            problems = training_range.run_problems(
                len(labels), node.opts.train_epochs, node.opts.train_batch_size,
                node.opts.train_learning_rate) or training_range.logistic_work_problems(
                len(names), len(labels), node.opts.train_epochs)
            if problems:
                raise ApiError(api.BAD_REQUEST, "training refused: " + "; ".join(problems))
        t0 = time.perf_counter()
        try:
            templates = training.train_templates(x, labels, len(names))
        except training.DegenerateClassError as exc:
            bad = ", ".join(repr(names[i]) for i in exc.classes[:10])
            raise ApiError(api.BAD_REQUEST, f"the enrolments of {bad} cancel out (they are not "
                                            "one face): revoke them and enrol again") from None
        models = {"templates": StoredShare(templates.val, templates.mac, templates.frac)}
        if logistic:
            opts = training.SgdOptions(node.opts.train_epochs, node.opts.train_batch_size,
                                       node.opts.train_learning_rate)
            per_epoch = len(training.batches(len(labels), opts, 0))
            progress = TrainingProgress(opts.epochs, per_epoch, node.channel.stats,
                                        tick=node.heartbeat)
            try:
                lr = training.train_logistic(x, labels, len(names), opts, progress=progress)
            finally:
                progress.close()
            models["logistic_w"] = StoredShare(lr.w.val, lr.w.mac, lr.w.frac)
            models["logistic_b"] = StoredShare(lr.b.val, lr.b.mac, lr.b.frac)
        node.party.check()  # nothing is stored unless every opened value verified
        seconds = time.perf_counter() - t0
        del x  # hundreds of MB at 100,000 identities, before the gallery opens
        # the new version's gallery is opened before it is committed, so the first
        # identification does not pay for it (14 s at N = 100,000, over a terminal's
        # default timeout) and a failure here commits nothing
        version = self._commit_models(
            models, {"identities": names, "records": len(labels), "train_s": round(seconds, 3)},
            warm=lambda v: self._warm_gallery(v, templates))
        return Message("done", {"req": txn.req, "status": "trained", "model_version": version,
                                "identities": len(names), "records": len(labels),
                                "models": ["templates", "logistic"] if logistic
                                else ["templates"], "train_s": round(seconds, 3)})

    def _commit_models(self, models: dict[str, StoredShare], meta: dict,
                       warm: Callable[[int], Any] | None = None) -> int:
        """Two-phase commit of a new model version on both servers (servers/store.py): a
        number new to both, staged on both, then committed; a crash in between is healed
        at the next session (coordinator._heal_models). ``warm`` runs (on both servers)
        once the version number is agreed, before anything is staged. Returns the
        version."""
        node = self.node
        seen = node.store.model_state().seen
        peer_seen = node.agree("model_seen", seen)
        if not isinstance(peer_seen, int) or isinstance(peer_seen, bool) or peer_seen < 0:
            raise ProtocolError("the other server sent a malformed model version")
        version = max(seen, peer_seen) + 1
        if warm is not None:
            warm(version)
        node.store.stage_models(version, models, meta)
        if node.agree("model_staged", version) != version:
            node.store.discard_staged_models()
            raise ProtocolError("the other server staged another model version")
        failpoints.hit("before_model_commit")
        node.store.commit_models(version)
        failpoints.hit("after_model_commit")
        node.agree("model_committed", version)
        return version

    def revoke(self, txn: Txn) -> Message:
        """Revoke an identity: its records are kept (restorable) but count no more, and it
        leaves identification at once: the new model version drops its template row (a
        local operation on shares); the classifier, trained with it, is dropped until the
        next training."""
        node = self.node
        identity = txn.offer.identity
        if txn.peer.get("digest") != node.store.digest():
            raise ApiError(api.OUT_OF_SYNC, "the servers hold different enrolments; reconcile")
        if identity not in node.store.identities():
            raise ApiError(api.UNKNOWN_IDENTITY, f"{identity!r} has no active enrolments "
                                                 "(never enrolled, or already revoked)")
        version, meta, models = node.store.models()
        names = meta.get("identities", [])
        if version and identity in names:
            if version != txn.peer.get("model_version", version):
                raise ApiError(api.OUT_OF_SYNC, "the servers hold different model versions")
            i = names.index(identity)
            t = models["templates"]
            keep = [k for k in range(len(names)) if k != i]
            templates = StoredShare(t.val[:, keep], t.mac[:, keep], t.frac)
            rest = [n for n in names if n != identity]
            new_meta = {**meta, "identities": rest, "revoke": identity,
                        "classifier": "stale: retrain"}
            new_meta.pop("train_s", None)
            if rest:
                version = self._commit_models({"templates": templates}, new_meta)
            else:
                version = self._commit_models({}, new_meta)
            removed = len([1 for _, n in node.store.record_ids() if n == identity])
        else:
            removed = node.store.revoke(identity)
            node.agree("revoked", removed)
        for card in node.cards.cards_of(identity):
            node.cards.unbind(card.card_id)
        return Message("done", {"req": txn.req, "status": "revoked", "records": removed,
                                "model_version": version})

    def restore(self, txn: Txn) -> Message:
        """Undo a revocation (admin): the records count again; the identity is identified
        again after the next training. Its card stays revoked (bind a new one)."""
        node = self.node
        identity = txn.offer.identity
        if identity not in node.store.revoked_identities():
            raise ApiError(api.UNKNOWN_IDENTITY, f"{identity!r} is not revoked")
        restored = node.store.restore(identity)
        node.agree("restored", restored)
        return Message("done", {"req": txn.req, "status": "restored", "records": restored,
                                "next": "train to identify it again"})

    def reconcile(self, txn: Txn) -> Message:
        node = self.node
        mine = {rid for rid, _ in node.store.record_ids()}
        theirs = node.agree_json("records", sorted(mine))
        if not isinstance(theirs, list) or not all(isinstance(r, str) for r in theirs):
            raise ProtocolError("the other server sent a malformed record list")
        orphans = sorted(mine - set(theirs))  # useless without the other server's share
        removed = node.store.quarantine_enrolments(orphans, "reconcile: the other server "
                                                            "lacks it")
        node.agree("reconciled", removed)
        return Message("done", {"req": txn.req, "status": "reconciled", "removed": removed,
                                "orphans": len(orphans)})

    def rotate_key(self, txn: Txn) -> Message:
        """Planned key rotation: end the current epoch at the dealer; stored shares are
        re-authenticated under the new one right after this reply (docs/PROTOCOL.md)."""
        node = self.node
        epoch = node.party.epoch
        node.dealer.rotate(epoch)
        node.agree("rotate_asked", epoch)  # both asked: the dealer has moved on
        current = node.end_epoch(epoch)
        if node.agree("rotated", current) != current:
            raise ProtocolError("the servers see different key epochs after the rotation")
        node.request_resync()
        log.warning("P%d: MAC key rotation requested by terminal %r: epoch %d -> %d",
                    node.id, txn.inbound.name, epoch, current)
        return Message("done", {"req": txn.req, "status": "rotated", "epoch": current})


__all__ = ["Handlers", "NodeOptions", "Txn", "check_authorized"]
