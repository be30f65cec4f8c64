"""The dealer's state machine: sessions both servers registered, each part delivered once.

Threat (docs/SECURITY.md): one server runs arbitrary code with its own dealer key. So

* a session exists only once *both* servers registered the same id under the same key
  epoch; when one becomes ready every other session is dropped (the honest server has
  moved on), and a server can hold at most one half-registered session;
* both servers issue the same request sequence, numbered per session and per party
  strictly in order (a server cannot skip ahead, go back or ask twice); the first party
  to ask for number ``seq`` triggers generation and the other party's part waits *tagged
  with its owner*, so it is only ever handed to that owner, once;
* two different requests under one number kill the session (its material and fixed masks
  are dropped; both servers must start a new one);
* fixed masks (the B of an opened gallery W - B, the U of training rows) live inside their
  session, are write-once and size-capped, and go with it;
* uncollected parts are capped in count and bytes per session, so memory stays bounded
  whatever a server asks;
* a session at a retired key epoch serves only re-keying material.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field

import numpy as np

from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.fss import dcf, dpf
from splitface.servers.mpc.prep import material
from splitface.servers.mpc.prep.keyring import KeyRing
from splitface.servers.mpc.prep.material import FixedMasks, Request
from splitface.shared.prg import Prg, fresh_seed

MAX_PENDING = 4096  # uncollected parts per session
MAX_PENDING_BYTES = 3 << 30  # their size (P1's explicit arrays; P0's parts are 16-byte seeds)
MAX_FIXED_ELEMENTS = 1 << 25  # fixed-mask elements per session (a 100,000 x 128 gallery is 2^23.6)
MAX_SEEN_SESSIONS = 4096  # ids remembered so that an old session can never be reopened
REKEY_KINDS = frozenset({"rekey", "zero_check"})


class SessionError(ProtocolError):
    """The session is unknown, not yet registered by both servers, or was closed."""


@dataclass
class Part:
    """One party's part of a request: party 0 a seed (its value shares and FSS roots come
    from it) plus the FSS corrections; party 1 explicit arrays."""

    seed: bytes | None
    arrays: list[np.ndarray]

    @property
    def nbytes(self) -> int:
        return (16 if self.seed is not None else 0) + sum(a.nbytes for a in self.arrays)


@dataclass
class Session:
    """Both servers' shared view of one dealer session."""

    sid: str
    epoch: int
    next_seq: list[int] = field(default_factory=lambda: [0, 0])
    pending: dict[int, tuple[Request, int, Part]] = field(default_factory=dict)
    pending_bytes: int = 0
    fixed: FixedMasks = field(default_factory=FixedMasks)
    fixed_elements: int = 0


class DealerCore:
    """Holds the MAC keys (:class:`KeyRing`) and serves authenticated correlated randomness."""

    def __init__(self, keys: KeyRing | None = None, *, rng: Prg | None = None,
                 max_pending_bytes: int = MAX_PENDING_BYTES,
                 max_fixed_elements: int = MAX_FIXED_ELEMENTS) -> None:
        self._rng = rng or Prg()
        self.keys = keys or KeyRing(rng=self._rng)
        self._max_bytes, self._max_fixed = max_pending_bytes, max_fixed_elements
        self._sessions: dict[str, Session] = {}
        self._half: dict[int, tuple[str, int]] = {}  # party -> (session id, epoch) it registered
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._rotation_asks: dict[int, int] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ keys
    @property
    def epoch(self) -> int:
        return self.keys.current

    def mac_key_share(self, party: int, epoch: int | None = None) -> np.ndarray:
        """Party ``party``'s additive share of alpha of ``epoch`` (default: current)."""
        _check_party(party)
        return self.keys.share(self.keys.current if epoch is None else epoch, party)

    def rotate(self, epoch: int) -> int:
        """End ``epoch`` unconditionally (an operator's command, or tests playing both
        servers); sessions under it serve only re-keying from now on."""
        with self._lock:
            self._rotation_asks.clear()
        return self.keys.rotate(epoch)

    def request_rotation(self, party: int, epoch: int) -> int:
        """A server asks to end ``epoch`` (a failed MAC check, or an admin's rotation): the
        epoch ends once BOTH servers asked, so one server alone can neither force re-keying
        rounds nor use up the key ring. Returns the current epoch."""
        _check_party(party)
        with self._lock:
            if epoch != self.keys.current:
                return self.keys.current
            self._rotation_asks[party] = epoch
            if self._rotation_asks.get(1 - party) != epoch:
                return self.keys.current
            self._rotation_asks.clear()
        return self.keys.rotate(epoch)

    # ------------------------------------------------------------ sessions
    def register(self, sid: str, party: int, epoch: int) -> bool:
        """Party ``party`` wants session ``sid`` under key ``epoch``; True once both do."""
        _check_party(party)
        if not isinstance(sid, str) or not 8 <= len(sid) <= 64:
            raise SessionError("bad session id")
        self.keys.key(epoch)  # refuses unknown epochs
        with self._lock:
            live = self._sessions.get(sid)
            if live is not None:
                if live.epoch != epoch:
                    raise SessionError("session registered under another key epoch")
                return True
            if self._half.get(party) == (sid, epoch):
                return False  # still waiting for the other server
            other = self._half.get(1 - party)
            if other is not None and other[0] == sid:
                if other[1] != epoch:
                    del self._half[1 - party]
                    raise SessionError(f"the servers asked for key epochs {other[1]} and "
                                       f"{epoch}")
                # both servers are here: this is now the only session
                self._sessions = {sid: Session(sid, epoch)}
                self._half.clear()
                return True
            if sid in self._seen:
                raise SessionError("session id was used before")
            self._half[party] = (sid, epoch)
            self._remember(sid)
            return False

    def _remember(self, sid: str) -> None:
        self._seen[sid] = None
        while len(self._seen) > MAX_SEEN_SESSIONS:
            self._seen.popitem(last=False)

    def forget_session(self, sid: str) -> None:
        """Drop a session and everything it holds (after an abort)."""
        with self._lock:
            self._sessions.pop(sid, None)
            for p, (s, _) in list(self._half.items()):
                if s == sid:
                    del self._half[p]

    def session_epoch(self, sid: str) -> int:
        with self._lock:
            s = self._sessions.get(sid)
        if s is None:
            raise SessionError("session is not registered by both servers (or was closed)")
        return s.epoch

    def stats(self) -> dict[str, int]:
        """Counts for monitoring: sessions, uncollected parts and their bytes."""
        with self._lock:
            return {"sessions": len(self._sessions), "half_registered": len(self._half),
                    "pending": sum(len(s.pending) for s in self._sessions.values()),
                    "pending_bytes": sum(s.pending_bytes for s in self._sessions.values()),
                    "fixed_elements": sum(s.fixed_elements for s in self._sessions.values())}

    # ------------------------------------------------------------ material
    def serve(self, sid: str, party: int, seq: int, req: Request) -> Part:
        """Return ``party``'s part of request number ``seq`` of session ``sid``."""
        _check_party(party)
        with self._lock:
            s = self._sessions.get(sid)
            if s is None:
                raise SessionError("session is not registered by both servers (or was closed)")
            if seq != s.next_seq[party]:
                raise ProtocolError(f"request number {seq} out of order (expected "
                                    f"{s.next_seq[party]})")
            waiting = s.pending.get(seq)
            if waiting is not None:
                other_req, owner, part = waiting
                if owner != party:  # unreachable with strict order; never hand over a part
                    raise ProtocolError("part already delivered")
                if other_req != req:
                    self._kill(sid)
                    raise ProtocolError(f"the servers disagree on preprocessing request {seq}: "
                                        f"{other_req.kind} vs {req.kind}; session closed")
                del s.pending[seq]
                s.pending_bytes -= part.nbytes
                s.next_seq[party] += 1
                return part
            if len(s.pending) >= MAX_PENDING:
                self._kill(sid)
                raise ProtocolError("too many uncollected preprocessing parts; session closed")
            try:
                mine, theirs = self._produce(s, req, party)
            except ProtocolError:
                self._kill(sid)
                raise
            if s.pending_bytes + theirs.nbytes > self._max_bytes:
                self._kill(sid)
                raise ProtocolError("uncollected preprocessing exceeds the dealer's memory "
                                    "budget; session closed")
            s.pending[seq] = (req, 1 - party, theirs)
            s.pending_bytes += theirs.nbytes
            s.next_seq[party] += 1
            return mine

    def _kill(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def _produce(self, s: Session, req: Request, asking: int) -> tuple[Part, Part]:
        """Generate a request within session ``s``; returns (asking party's part, other's)."""
        retired = s.epoch != self.keys.current
        if retired and req.kind not in REKEY_KINDS:
            raise ProtocolError(f"key epoch {s.epoch} is retired: only re-keying is served")
        if req.kind == "rekey" and not retired:
            raise ProtocolError("re-keying material needs a session at a retired key epoch")
        if req.kind == "fixed_mask":
            key, n = str(req.params[0]), int(req.params[1]) * int(req.params[2])
            if s.fixed.has(key):
                raise ProtocolError(f"fixed mask {key!r} exists already (write-once)")
            if s.fixed_elements + n > self._max_fixed:
                raise ProtocolError("fixed masks exceed this session's size cap")
            s.fixed_elements += n
        session_alpha = self.keys.key(s.epoch).alpha_ring()
        plain = material.generate(req, self._rng, s.fixed, session_alpha)
        alphas = [self.keys.key(e).alpha_ring()
                  for e in material.mac_epochs(req, s.epoch, self.keys.current)]
        seed = fresh_seed()
        p0_pairs, p0_roots = material.expand_p0(req, seed)
        p1 = material.split_for_p1(plain.values, p0_pairs, alphas)
        p1_roots, corrections = [], []
        for spec, point, payload, root0 in zip(material.layout(req).fss, plain.points,
                                               plain.payloads, p0_roots, strict=True):
            root1 = self._rng.uint64((spec.keys, 2))
            build = dcf.gen if spec.kind == "dcf" else dpf.gen
            keys = build(point, payload, spec.n, np.stack([root0, root1]))
            p1_roots.append(root1)
            corrections += keys.corrections()
        parts = (Part(seed, corrections), Part(None, p1 + p1_roots + corrections))
        return parts[asking], parts[1 - asking]


def _check_party(party: int) -> None:
    if party not in (0, 1):
        raise ProtocolError(f"unknown party {party}")


__all__ = ["MAX_PENDING", "DealerCore", "Part", "SessionError"]
