"""One party of the two-party SPDZ2k-style engine: openings, the MAC check, inputs, outputs.

Representation (docs/PROTOCOL.md): a secret x in Z_2^64 is held as additive shares
x = x_0 + x_1 of a representative in Z_2^128 with MAC shares m_0 + m_1 = alpha * x mod
2^128, alpha uniform in [0, 2^64) and additively shared. Opened values are full 128-bit
sums; every opened value is masked by a uniform 128-bit mask, so nothing leaks through
the upper bits. Before anything leaves the servers, :meth:`Party.check` verifies all
values opened so far with a random linear combination (SPDZ2k MAC check): a party that
altered an opened value by delta != 0 mod 2^64 passes with probability at most about
2^-(S - log2(S+1)) = 2^-57.8. The check is designed against a rushing, adaptive peer: its
coin binds party, session and check number, and a failed check does not reveal alpha.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import os
from contextlib import contextmanager

import numpy as np

from splitface.servers.mpc.errors import MacCheckError, ProtocolError
from splitface.servers.mpc.prep.base import AuthPair, Preprocessing
from splitface.shared import api, ring
from splitface.shared.prg import Prg
from splitface.shared.transport.base import Channel
from splitface.shared.wire import Message, WireError

_SEED = 16


_CHECK_BLOCK = 1 << 20  # elements per step of the MAC check's linear combination
# opened elements a long computation (training) lets wait for the MAC check: each holds
# its opened value and this server's MAC share, 32 bytes, so about 64 MB (training on
# 1,000 identities, batch 32, held 7.5 GB after 20 epochs when it checked only at the end)
CHECK_PENDING_LIMIT = 1 << 21
# the other server's abort reason is chosen by a server that may be malicious and passed
# on to a terminal's screen: escaped, and at most this long
ABORT_REASON_CHARS = 200


def _commit(tag: bytes, *parts: bytes) -> bytes:
    h = hashlib.sha256(b"splitface-commit-v1|" + tag)
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.digest()


class Party:
    """Protocol state of one server: its channel to the peer, its preprocessing, its MAC key share.

    Not thread-safe; one computation at a time. ``pending_checks`` counts opened values
    whose MACs have not been checked yet. Every peer message carries the dealer session id
    and a per-session counter, so a stale message from an aborted computation is refused.
    ``mac_failed`` is set by a failed MAC check: the key epoch must then be retired.
    """

    def __init__(self, party: int, channel: Channel, prep: Preprocessing) -> None:
        if party not in (0, 1) or prep.party != party:
            raise ValueError(f"party id {party} does not match its preprocessing ({prep.party})")
        self.id = party
        self.channel = channel
        self.prep = prep
        self.session = str(getattr(prep, "session", ""))
        self.epoch = int(getattr(prep, "epoch", 0))
        self.alpha = ring.check(prep.mac_key_share()).reshape(2)
        self._open_vals: list[np.ndarray] = []
        self._open_macs: list[np.ndarray] = []
        self._my_seed: bytes | None = None
        self._peer_seed_commit: bytes | None = None
        self._checks = 0  # MAC checks run in this session (bound into every commitment)
        self._ctr = 0  # peer messages exchanged in this session
        self.aborted: str | None = None
        self.mac_failed = False
        self._keys = itertools.count()

    def fresh_key(self, prefix: str) -> str:
        """A name for dealer-held fixed masks that both parties derive identically."""
        return f"{prefix}:{next(self._keys)}"

    # ------------------------------------------------------------ helpers
    def alpha_times(self, c: np.ndarray) -> np.ndarray:
        """alpha_i * c for a public ring array c (MAC share of a public constant)."""
        return ring.mul(self.alpha.reshape((2,) + (1,) * (c.ndim - 1)), c)

    def _exchange(self, kind: str, arrays: list[np.ndarray], meta: dict | None = None) -> Message:
        """Send our message and receive the peer's of the same kind (one round)."""
        if self.aborted:
            raise ProtocolError(f"party aborted earlier: {self.aborted}")
        out = dict(meta or {})
        out["sid"], out["ctr"] = self.session, self._ctr
        try:
            self.channel.send(Message(kind, out, arrays))
            msg = self.channel.recv((kind, "abort"))
        except WireError as exc:
            self.abort(f"malformed message from peer: {exc}")
            raise ProtocolError(f"malformed message from peer: {exc}") from exc
        if msg.kind == "abort":  # the other server gave up this run: say why, compute no more
            why = "the other server aborted: " \
                  f"{api.printable(msg.meta.get('reason'), ABORT_REASON_CHARS)}"
            self.abort(why)
            raise ProtocolError(why)
        if msg.meta.get("sid") != self.session or msg.meta.get("ctr") != self._ctr:
            self.abort("stale or out-of-order message from peer")
            raise ProtocolError(f"peer message {kind!r} belongs to another session or step")
        self._ctr += 1
        return msg

    def abort(self, reason: str) -> None:
        """Mark this party unusable: after an abort no output may ever be produced."""
        self.aborted = reason
        self._open_vals.clear()
        self._open_macs.clear()

    @contextmanager
    def op(self, label: str):
        """Attribute the bytes and rounds of a block to ``label`` in the channel statistics."""
        prev = self.channel.stats.op
        self.channel.stats.op = label
        try:
            yield
        finally:
            self.channel.stats.op = prev

    # ------------------------------------------------------------ opening
    def open(self, *pairs: AuthPair, sync: bytes | None = None) -> list[np.ndarray]:
        """Open masked shared values in one round; their MACs are queued for the check.

        ``sync`` (a digest) rides along and must equal the peer's: both servers confirm, in
        the same round, that they received the same public input (e.g. the terminal's
        masked vector); a mismatch aborts.
        """
        flats = [v.reshape(2, -1) for v, _ in pairs]
        mine = ring.concat(flats, axis=0) if len(flats) > 1 else flats[0]
        msg = self._exchange("open", [np.ascontiguousarray(mine)],
                             {"sync": sync} if sync is not None else None)
        if sync is not None and not (isinstance(msg.meta.get("sync"), bytes)
                                     and hmac.compare_digest(msg.meta["sync"], sync)):
            self.abort("the servers received different inputs")
            raise ProtocolError("the servers received different masked inputs from the client")
        if len(msg.arrays) != 1:
            self.abort("peer opening has the wrong number of arrays")
            raise ProtocolError("peer opening has the wrong number of arrays")
        theirs = msg.arrays[0]
        if theirs.dtype != np.uint64 or theirs.shape != mine.shape:
            self.abort("peer opening has the wrong shape")
            raise ProtocolError(f"peer opened shape {theirs.shape}, expected {mine.shape}")
        total = ring.iadd(np.array(theirs), mine)  # one full-size temporary, not three
        self._open_vals.append(total)
        self._open_macs.append(ring.concat([m.reshape(2, -1) for _, m in pairs], axis=0)
                               if len(pairs) > 1 else pairs[0][1].reshape(2, -1))
        out, start = [], 0
        for v, _ in pairs:
            n = math.prod(v.shape[1:])
            out.append(total[:, start:start + n].reshape(v.shape))
            start += n
        return out

    @property
    def pending_checks(self) -> int:
        return sum(v.shape[1] for v in self._open_vals)

    # ------------------------------------------------------------ MAC check
    def _bind(self, *parts: bytes, check: int | None = None) -> bytes:
        """Session id and check number (default: the current one), for commitments and coins."""
        n = self._checks if check is None else check
        return b"|".join([self.session.encode(), str(n).encode(), *parts])

    def _fail(self, reason: str) -> MacCheckError:
        self.mac_failed = True
        self.abort(reason)
        return MacCheckError(reason)

    def _coin(self) -> bytes:
        """A seed for chi that neither party controls (commit, reveal, hash both).

        Each commitment binds the party id, the session and the check number, so a rushing
        peer cannot echo ours; a revealed seed equal to ours is refused; the coin is a hash
        of both seeds, so a known seed of one party does not fix it.
        """
        if self._my_seed is None:
            self._my_seed = os.urandom(_SEED)
            msg = self._exchange("seedcommit", [], {"c": self._seed_commit(self.id,
                                                                           self._my_seed)})
            self._peer_seed_commit = _meta_bytes(msg, "c", 32)
        msg = self._exchange("seed", [], {"s": self._my_seed})
        peer_seed = _meta_bytes(msg, "s", _SEED)
        if not hmac.compare_digest(self._seed_commit(1 - self.id, peer_seed),
                                   self._peer_seed_commit or b""):
            raise self._fail("peer's coin-toss seed does not match its commitment")
        if hmac.compare_digest(peer_seed, self._my_seed):
            raise self._fail("peer's coin-toss seed equals ours")
        seeds = (self._my_seed, peer_seed) if self.id == 0 else (peer_seed, self._my_seed)
        self._my_seed = None
        return hashlib.sha256(b"splitface-chi-v2|" + self._bind(*seeds)).digest()[:_SEED]

    def _seed_commit(self, party: int, seed: bytes, check: int | None = None) -> bytes:
        return _commit(b"seed", str(party).encode(), self._bind(seed, check=check))

    def check_if_over(self, limit: int | None = None) -> bool:
        """At a fixed point of a long computation: run the MAC check when more than
        ``limit`` opened elements wait for it (True), so that they are not all held to the
        end. The check's dealer triple is taken either way, so every iteration asks the
        dealer for the same things (training's prefetch plans replay one batch's requests);
        an unused triple is dropped. Both servers open the same shapes, so they check at
        the same points."""
        triple = self.prep.zero_check()
        if self.pending_checks <= (CHECK_PENDING_LIMIT if limit is None else limit):
            return False
        self.check(triple)
        return True

    def check(self, triple: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        """Verify the MACs of every value opened since the last check, or abort.

        Steps (docs/PROTOCOL.md, "MAC check"): (1) toss a coin for public chi_j in [0, 2^64);
        (2) y = sum chi_j x_j; (3) sigma_i = sum chi_j m_ij - alpha_i * y, so that
        sigma_0 + sigma_1 = 0 iff the check passes; (4) test that without revealing sigma_i:
        with a dealer triple (a, b, ab) open d = sigma - a and form z_i = c_i + d b_i, so
        z_0 + z_1 = b * sigma for a secret uniform odd b (z = 0 iff sigma = 0); (5) commit
        to H(z_0) and H(-z_1), open, require them equal. A failed check reveals only a hash
        of a value that depends on the secret b, never alpha. Any failure or interruption
        sets ``mac_failed``: the key epoch must be retired. ``triple``: the zero test's
        dealer triple when the caller has already taken it (:meth:`check_if_over`).
        """
        if not self._open_vals:
            return
        with self.op("mac_check"):
            vals = ring.concat(self._open_vals, axis=0) if len(self._open_vals) > 1 \
                else self._open_vals[0]
            macs = ring.concat(self._open_macs, axis=0) if len(self._open_macs) > 1 \
                else self._open_macs[0]
            self._open_vals, self._open_macs = [], []
            try:
                self._check(vals, macs, triple)
            except MacCheckError:
                raise
            except BaseException as exc:
                # a rushing peer learns the outcome first (it reads our last message before
                # sending its own): any deviation inside the check -- a stall, a crash, a
                # malformed or missing message -- counts as a failed check, never as a mere
                # network error, or it could query the check as an oracle for alpha
                raise self._fail(f"MAC check interrupted: {exc}") from exc

    def _check(self, vals: np.ndarray, macs: np.ndarray,
               triple: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> None:
        chi = Prg(self._coin()).uint64(vals.shape[1])
        y, chi_m = ring.zeros(()), ring.zeros(())
        for s in range(0, vals.shape[1], _CHECK_BLOCK):  # bounded temporaries
            c = chi[s:s + _CHECK_BLOCK]
            y = ring.add(y, ring.sum_axis(ring.mul_u64(vals[:, s:s + _CHECK_BLOCK], c), 0))
            chi_m = ring.add(chi_m, ring.sum_axis(ring.mul_u64(macs[:, s:s + _CHECK_BLOCK], c),
                                                  0))
        sigma = ring.sub(chi_m, ring.mul(self.alpha, y))
        a, b, c = (x.reshape(2) for x in (triple or self.prep.zero_check()))
        msg = self._exchange("checkmask", [ring.sub(sigma, a)])
        if len(msg.arrays) != 1 or msg.arrays[0].dtype != np.uint64 \
                or msg.arrays[0].shape != (2,):
            raise self._fail("peer's MAC-check mask is malformed")
        d = ring.add(ring.sub(sigma, a), msg.arrays[0])
        z = ring.add(c, ring.mul(d, b))  # z_0 + z_1 = b * (sigma_0 + sigma_1), b odd
        h = hashlib.sha256(b"splitface-zero-v2|" + self._bind(
            (z if self.id == 0 else ring.neg(z)).tobytes())).digest()
        nonce = os.urandom(16)
        msg = self._exchange("checkcommit", [], {"c": self._zero_commit(self.id, h, nonce)})
        peer_commit = _meta_bytes(msg, "c", 32)
        self._my_seed = os.urandom(_SEED)  # the next check's seed, committed now
        next_commit = self._seed_commit(self.id, self._my_seed, check=self._checks + 1)
        msg = self._exchange("checkopen", [], {"h": h, "n": nonce, "next": next_commit})
        peer_h, peer_nonce = _meta_bytes(msg, "h", 32), _meta_bytes(msg, "n", 16)
        self._peer_seed_commit = _meta_bytes(msg, "next", 32)
        if not hmac.compare_digest(self._zero_commit(1 - self.id, peer_h, peer_nonce),
                                   peer_commit):
            raise self._fail("peer's MAC-check value does not match its commitment")
        self._checks += 1
        if not hmac.compare_digest(peer_h, h):
            raise self._fail("MAC check failed: a share or opened value was tampered with")

    def _zero_commit(self, party: int, h: bytes, nonce: bytes) -> bytes:
        return _commit(b"zero", str(party).encode(), self._bind(h, nonce))


def _meta_bytes(msg: Message, key: str, length: int) -> bytes:
    v = msg.meta.get(key)
    if not isinstance(v, bytes) or len(v) != length:
        raise MacCheckError(f"peer message {msg.kind!r} lacks a {length}-byte {key!r}")
    return v
