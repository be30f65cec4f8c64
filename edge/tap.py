"""Tap-to-verify and card enrolment on the terminal: card, camera and both servers.

Tap-to-verify (``TapFlow.verify_once``)::

    card put down -> SELECT, READ BINARY card id / public key / holder EF (claimed identity)
    -> VERIFY PIN if the card has one (before any server transaction opens)
    -> frames until one gives a face -> embedding
    -> re-SELECT (card still there?) -> verify offer to P0 and P1 (card id, identity)
    -> each server answers with input masks and a fresh nonce
    -> the card signs (nonce_P0, nonce_P1, VERIFY, identity, digest of the masked input)
    -> submit (masked input + card authorisation) -> both servers check the card, run the
       MPC 1:1 comparison and return the accept bit as shares -> TapResult

Every expected failure (no card, card pulled, unknown card, refused card, no face,
servers down) comes back as a typed :class:`TapResult`; nothing secret (embedding, PIN,
signature) is logged. Enrolment (``TapFlow.enroll_with_card``) writes the identity into
the card's holder EF and binds the card on both servers with the first embedding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType

import numpy as np

from splitface.edge.card import (
    CardError,
    CardRemovedError,
    CardSession,
    CardTerminal,
    MalformedResponseError,
    NoCardError,
    PcscError,
    UnknownCardError,
)
from splitface.edge.client import (
    Outcome,
    ServerRefused,
    ServersDisagree,
    ServerUnavailable,
    SplitfaceClient,
)
from splitface.edge.pipeline.capture import Frame
from splitface.edge.pipeline.errors import PipelineError
from splitface.edge.pipeline.pipeline import FacePipeline
from splitface.shared import api
from splitface.shared.card_binding import CardAuthRequest, RequestKind

log = logging.getLogger("splitface.edge.tap")

# A frame provider: a callable giving the next BGR frame (None: no more frames), or an
# iterable of frames / pipeline Frames (a FrameSource).
FrameProvider = Callable[[], "np.ndarray | Frame | None"] | Iterable["np.ndarray | Frame"]


class TapStatus(StrEnum):
    """What a tap ended in; only ACCEPTED (verify) and ENROLLED (enrol) are successes."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"  # the face does not match the card's identity
    ENROLLED = "enrolled"
    NO_CARD = "no_card"  # nothing tapped before the deadline
    CARD_REMOVED = "card_removed"  # pulled before the request completed
    UNKNOWN_CARD = "unknown_card"  # not a splitface card, not personalised, or not bound
    CARD_REJECTED = "card_rejected"  # servers refused the card's authorisation
    CARD_ERROR = "card_error"  # PIN wrong/blocked, mute card, malformed answers
    READER_ERROR = "reader_error"  # no pcscd, no reader, reader unplugged
    NO_FACE = "no_face"  # no usable face within the capture budget
    SERVER_UNAVAILABLE = "server_unavailable"
    REFUSED = "refused"  # servers refused the request itself (unknown identity, no model..)
    SERVER_ERROR = "server_error"  # the two servers disagree: one is faulty


@dataclass(frozen=True)
class TapResult:
    """Typed outcome of one tap; ``reason`` is for the operator's log, never secret."""

    status: TapStatus
    accepted: bool = False
    identity: str = ""
    card_id: str = ""  # hex
    reason: str = ""
    request_id: str = ""
    enrolled: int = 0  # enrolment: records stored (card-bound first one included)
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TapOptions:
    """Time and frame budgets of one tap."""

    tap_timeout_s: float = 10.0
    capture_timeout_s: float = 5.0
    max_frames: int = 30
    # a card left on the reader counts once: wait for it to go before the next tap
    require_fresh_tap: bool = True


def _frames(provider: FrameProvider) -> Iterator[np.ndarray | Frame]:
    if callable(provider):
        while True:
            frame = provider()
            if frame is None:
                return
            yield frame
    else:
        yield from provider


class _Clock:
    """Named milliseconds since a start, for ``TapResult.timings_ms``."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.ms: dict[str, float] = {}

    def lap(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.ms[name] = round(self.ms.get(name, 0.0) + 1e3 * (now - since), 3)
        return now


def _card_failure(exc: CardError) -> tuple[TapStatus, str]:
    if isinstance(exc, CardRemovedError):
        return TapStatus.CARD_REMOVED, "card removed before the request completed"
    if isinstance(exc, NoCardError):
        return TapStatus.NO_CARD, str(exc)
    if isinstance(exc, UnknownCardError):
        return TapStatus.UNKNOWN_CARD, str(exc)
    if isinstance(exc, PcscError):
        return TapStatus.READER_ERROR, str(exc)
    return TapStatus.CARD_ERROR, f"{type(exc).__name__}: {exc}"


def _server_failure(exc: Exception) -> tuple[TapStatus, str]:
    if isinstance(exc, ServerRefused):
        if exc.code == api.CARD_REJECTED:
            status = TapStatus.UNKNOWN_CARD if exc.reason == "unknown_card" else \
                TapStatus.CARD_REJECTED
            return status, f"servers refused the card: {exc.reason}"
        return TapStatus.REFUSED, f"{exc.code}: {exc.reason}"
    if isinstance(exc, ServerUnavailable):
        return TapStatus.SERVER_UNAVAILABLE, str(exc)
    return TapStatus.SERVER_ERROR, f"{type(exc).__name__}: {exc}"


_SERVER_ERRORS = (ServerRefused, ServerUnavailable, ServersDisagree)


class TapFlow:
    """The terminal's card + face + servers flow; owns nothing it was given."""

    def __init__(self, client: SplitfaceClient, pipeline: FacePipeline, terminal: CardTerminal,
                 frames: FrameProvider, options: TapOptions | None = None) -> None:
        self.client = client
        self.pipeline = pipeline
        self.terminal = terminal
        self.opts = options or TapOptions()
        self._frames = _frames(frames)
        self._last_reader = ""

    @classmethod
    def from_options(cls, options: TapOptions, *, client: SplitfaceClient,
                     pipeline: FacePipeline, terminal: CardTerminal,
                     frames: FrameProvider) -> TapFlow:
        return cls(client, pipeline, terminal, frames, options)

    def __enter__(self) -> TapFlow:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._frames.close()  # stops iterating the provider; the provider is the caller's

    # ------------------------------------------------------------ steps
    def _tap(self, timeout_s: float | None, clock: _Clock) -> CardSession:
        """Wait for a (fresh) card and open it; CardError on failure."""
        timeout = self.opts.tap_timeout_s if timeout_s is None else timeout_s
        t = time.perf_counter()
        fresh = self.opts.require_fresh_tap and self._last_reader
        if fresh and not self.terminal.wait_for_removal(self._last_reader, timeout):
            raise NoCardError("the previous card was never taken away")
        self._last_reader = ""
        event = self.terminal.wait_for_card(timeout)
        t = clock.lap("wait_ms", t)
        clock.t0 = t  # latencies count from the moment the card was detected
        self._last_reader = event.reader  # even a card we cannot open counts as this tap
        session = self.terminal.open(event)
        clock.lap("card_read_ms", t)
        return session

    def _embedding(self, clock: _Clock) -> tuple[np.ndarray | None, str]:
        """First frame with a face within the frame/time budget; (None, why) otherwise."""
        t = time.perf_counter()
        deadline = t + self.opts.capture_timeout_s
        last = "no frame"
        tried = 0
        try:
            while tried < self.opts.max_frames and time.perf_counter() < deadline:
                frame = next(self._frames, None)
                if frame is None:
                    last = "camera gave no more frames"
                    break
                tried += 1
                if isinstance(frame, Frame):
                    if frame.error is not None:
                        last = frame.error.status
                        continue
                    frame = frame.image
                try:
                    return self.pipeline.process(frame).embedding, ""
                except PipelineError as exc:
                    last = exc.status
            return None, f"no usable face in {tried} frame(s) (last: {last})"
        finally:
            clock.lap("capture_embed_ms", t)

    def _signer(self, session: CardSession, clock: _Clock
                ) -> Callable[[bytes, bytes, RequestKind, str, bytes], CardAuthRequest]:
        def sign(n0: bytes, n1: bytes, kind: RequestKind, identity: str,
                 digest: bytes) -> CardAuthRequest:
            t = time.perf_counter()
            try:
                return session.authorize(n0, n1, kind, identity, digest)
            finally:
                clock.lap("card_sign_ms", t)
        return sign

    def _result(self, clock: _Clock, status: TapStatus, **kw: object) -> TapResult:
        clock.ms["total_ms"] = round(1e3 * (time.perf_counter() - clock.t0), 3)
        result = TapResult(status, timings_ms=dict(clock.ms), **kw)  # type: ignore[arg-type]
        level = logging.DEBUG if status is TapStatus.NO_CARD else logging.INFO  # idle polls
        log.log(level, "tap: %s card=%s identity=%r %s", status.value, result.card_id or "-",
                result.identity, result.reason)
        return result

    # ------------------------------------------------------------ flows
    def verify_once(self, tap_timeout_s: float | None = None) -> TapResult:
        """One tap-to-verify; never raises for an expected failure (see TapStatus)."""
        clock = _Clock()
        try:
            session = self._tap(tap_timeout_s, clock)
        except CardError as exc:
            status, reason = _card_failure(exc)
            return self._result(clock, status, reason=reason)
        with session:
            card_hex = session.identity.card_id.hex()
            try:
                identity = session.read_holder()
            except CardError as exc:
                status, reason = _card_failure(exc)
                return self._result(clock, status, card_id=card_hex, reason=reason)
            if not identity:
                return self._result(clock, TapStatus.UNKNOWN_CARD, card_id=card_hex,
                                    reason="card is not personalised (empty holder EF)")
            try:
                api.check_identity(identity)
            except api.ApiError as exc:
                return self._result(clock, TapStatus.UNKNOWN_CARD, card_id=card_hex,
                                    reason=f"holder EF: {exc.reason}")
            try:
                session.unlock()  # a PIN is asked before any server transaction opens
            except CardError as exc:
                status, reason = _card_failure(exc)
                return self._result(clock, status, identity=identity, card_id=card_hex,
                                    reason=reason)
            embedding, why = self._embedding(clock)
            if embedding is None:
                return self._result(clock, TapStatus.NO_FACE, identity=identity,
                                    card_id=card_hex, reason=why)
            t = time.perf_counter()
            try:
                session.check_present()
                out: Outcome = self.client.verify(
                    identity, embedding, card_id=session.identity.card_id,
                    signer=self._signer(session, clock))
            except CardError as exc:
                clock.lap("verify_ms", t)
                status, reason = _card_failure(exc)
                return self._result(clock, status, identity=identity, card_id=card_hex,
                                    reason=reason)
            except _SERVER_ERRORS as exc:
                clock.lap("verify_ms", t)
                status, reason = _server_failure(exc)
                return self._result(clock, status, identity=identity, card_id=card_hex,
                                    reason=reason)
            clock.lap("verify_ms", t)
            clock.ms["mpc_verify_ms"] = round(
                clock.ms["verify_ms"] - clock.ms.get("card_sign_ms", 0.0), 3)
            return self._result(clock, TapStatus.ACCEPTED if out.accepted else
                                 TapStatus.REJECTED, accepted=bool(out.accepted),
                                 identity=identity, card_id=card_hex,
                                 request_id=out.request_id,
                                 reason="" if out.accepted else "face does not match the card")

    def enroll_with_card(self, identity: str, frames: Iterable[np.ndarray | Frame],
                         tap_timeout_s: float | None = None) -> TapResult:
        """Personalise a tapped card for ``identity`` and enrol the face frames.

        The holder EF is written first (restored if the servers refuse); every frame with
        a face is enrolled card-bound (the card signs each request; both servers bind card
        id + key to ``identity`` once the first record commits, and refuse card-less
        samples for a card-bound identity). Frames without a face, or whose face is below
        the enrolment quality bar, are skipped. The servers need an admin ``train`` before
        the card verifies.
        """
        identity = api.check_identity(identity)
        clock = _Clock()
        try:
            session = self._tap(tap_timeout_s, clock)
        except CardError as exc:
            status, reason = _card_failure(exc)
            return self._result(clock, status, identity=identity, reason=reason)
        with session:
            card_hex = session.identity.card_id.hex()
            embeddings, skipped = self._embed_all(frames, clock)
            if not embeddings:
                return self._result(clock, TapStatus.NO_FACE, identity=identity,
                                    card_id=card_hex, reason=f"no face in {skipped} frame(s)")
            try:
                session.unlock()
                try:
                    previous = session.read_holder()
                except MalformedResponseError:  # garbage in the EF: personalise over it
                    previous = ""
                if previous != identity:
                    session.write_holder(identity)
                if session.read_holder() != identity:
                    raise CardError("holder EF reads back differently than written")
            except (CardError, ValueError) as exc:
                status, reason = _card_failure(exc) if isinstance(exc, CardError) else \
                    (TapStatus.CARD_ERROR, str(exc))
                return self._result(clock, status, identity=identity, card_id=card_hex,
                                    reason=f"writing the holder EF failed: {reason}")
            enrolled = 0
            t = time.perf_counter()
            try:
                for emb in embeddings:  # a card-bound identity gains samples only with its card
                    self.client.enroll(identity, emb, card_id=session.identity.card_id,
                                       signer=self._signer(session, clock))
                    enrolled += 1
            except (CardError, *_SERVER_ERRORS) as exc:
                clock.lap("enroll_ms", t)
                status, reason = _card_failure(exc) if isinstance(exc, CardError) else \
                    _server_failure(exc)
                if enrolled == 0 and previous != identity:
                    self._restore_holder(session, previous)
                return self._result(clock, status, identity=identity, card_id=card_hex,
                                    reason=reason, enrolled=enrolled)
            clock.lap("enroll_ms", t)
            return self._result(clock, TapStatus.ENROLLED, identity=identity, card_id=card_hex,
                                enrolled=enrolled,
                                reason=f"{skipped} frame(s) without a face" if skipped else "")

    def _embed_all(self, frames: Iterable[np.ndarray | Frame], clock: _Clock
                   ) -> tuple[list[np.ndarray], int]:
        t = time.perf_counter()
        out, skipped = [], 0
        for frame in frames:
            image = frame.image if isinstance(frame, Frame) else frame
            if image is None:
                skipped += 1
                continue
            try:
                out.append(self.pipeline.process(image, purpose="enrol").embedding)
            except PipelineError:
                skipped += 1
        clock.lap("capture_embed_ms", t)
        return out, skipped

    @staticmethod
    def _restore_holder(session: CardSession, previous: str) -> None:
        """Best effort: a stale claim is harmless (the servers' binding decides)."""
        try:
            session.write_holder(previous)
        except CardError as exc:
            log.warning("could not restore the card's holder EF: %s", type(exc).__name__)


__all__ = ["FrameProvider", "TapFlow", "TapOptions", "TapResult", "TapStatus"]
