"""The preprocessing interface the online protocol pulls correlated randomness from.

Protocol code only calls the typed methods below; where the randomness comes from (an
in-process dealer for tests, the dealer service, or later an OT-based generator run by
the two servers themselves) is the implementation's business.
"""

from __future__ import annotations

import hashlib
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from splitface.servers.mpc.prep.material import MAX_FSS_LEVELS, FssKey, FssSpec, Item, Request

AuthPair = tuple[np.ndarray, np.ndarray]  # (value share, MAC share), both Z_2^128 arrays
NONCE_BYTES = 16


def session_id(nonce0: bytes, nonce1: bytes) -> str:
    """A dealer session id from both servers' fresh nonces: neither can reuse an old session
    or choose the id alone (24 hex characters)."""
    if len(nonce0) != NONCE_BYTES or len(nonce1) != NONCE_BYTES:
        raise ValueError("session nonces must be 16 bytes")
    return hashlib.sha256(b"splitface-session-v1|" + nonce0 + nonce1).hexdigest()[:24]


@dataclass
class Triple:
    """Authenticated (a, b, c) with c = a*b or c = a@b."""

    a: AuthPair
    b: AuthPair
    c: AuthPair


@dataclass
class TruncPair:
    """Authenticated r, (r mod 2^(K-1)) >> shift, and bit K-1 of r."""

    r: AuthPair
    r_shifted: AuthPair
    r_msb: AuthPair


@dataclass
class LtzMask:
    """Authenticated r, the sign bit s = bit (skip+bits-1) of r, for ReLU also s*r, and a
    DCF key for [(c >> skip) mod 2^(bits-1) < (r >> skip) mod 2^(bits-1)] whose payload is
    (1 - 2s) * (1[, r]) with MACs (compare.py derives [x < 0] and ReLU(x) from c = x + r)."""

    r: AuthPair
    sign: AuthPair
    sign_r: AuthPair | None
    key: FssKey


@dataclass
class TruncLtzMask:
    """A truncation pair whose r also comes with the sign bit and DCF key of an LtzMask, so
    one opening serves a truncation and sign tests (compare.truncate_and_test)."""

    trunc: TruncPair
    sign: AuthPair
    key: FssKey


@dataclass
class IntervalMask:
    """Authenticated r and a DCF key for [c < r mod 2^n] with payload (1, alpha)."""

    r: AuthPair
    key: FssKey


@dataclass
class CheckedInput:
    """A client-input triple whose first ``n_probe`` masks a_k come with [sum a_k^2] and DCF
    keys for [c < -a_k mod 2^64] (range and norm checks of the probe, compare.py)."""

    triple: Triple
    sum_sq: AuthPair
    key: FssKey


FSS_CHUNK_LEVELS = MAX_FSS_LEVELS // 2  # key levels per request when a request is split
# the key axis of each correction array (material.FssSpec.correction_shapes)
_KEY_AXES = {"dcf": (1, 1, 2, 1), "dpf": (1, 1, 1)}


def join_items(parts: list[Item], shape: tuple[int, ...]) -> Item:
    """Elementwise items of flat chunks as one item of ``shape`` (values and FSS keys
    concatenated along their element and key axes, in order)."""
    values = []
    for j in range(len(parts[0].values)):
        val = np.concatenate([p.values[j][0] for p in parts], axis=1)
        mac = np.concatenate([p.values[j][1] for p in parts], axis=1)
        values.append((val.reshape(val.shape[0], *shape), mac.reshape(mac.shape[0], *shape)))
    keys = [join_keys([p.keys[i] for p in parts]) for i in range(len(parts[0].keys))]
    return Item(values, keys)


def join_keys(keys: list[FssKey]) -> FssKey:
    """FSS keys of one kind, domain and width as one key batch (in order): one evaluation
    pass instead of one per batch (its per-level overhead is fixed)."""
    first = keys[0].spec
    if any((k.spec.kind, k.spec.n, k.spec.width) != (first.kind, first.n, first.width)
           for k in keys):
        raise ValueError("only keys of one kind, domain and width join")
    spec = FssSpec(first.kind, sum(k.spec.keys for k in keys), first.n, first.width)
    root = np.concatenate([k.root for k in keys], axis=0)
    cws = [np.concatenate([k.corrections[c] for k in keys], axis=axis)
           for c, axis in enumerate(_KEY_AXES[spec.kind])]
    return FssKey(spec, root, cws)


def elementwise_requests(shape: Sequence[int], levels_per_element: int,
                         request: Callable[[tuple[int, ...]], Request]) -> list[Request]:
    """The requests of one elementwise FSS item: one, or pieces of at most FSS_CHUNK_LEVELS
    key levels (joined back into one item): the dealer caps a request at MAX_FSS_LEVELS,
    which a training batch's logits exceeded at 1,000 classes and batch 256. Both parties
    split alike (the split depends on public sizes only), and so does a prefetch plan."""
    shape = tuple(int(d) for d in shape)
    n = math.prod(shape)
    per = max(1, FSS_CHUNK_LEVELS // max(1, levels_per_element))
    if n <= per:
        return [request(shape)]
    return [request((min(per, n - i),)) for i in range(0, n, per)]


def ltz_requests(shape: Sequence[int], bits: int, skip: int = 0, relu: bool = False
                 ) -> list[Request]:
    """What :meth:`Preprocessing.ltz_masks` asks the dealer for."""
    return elementwise_requests(shape, (bits - 1) * (4 if relu else 2),
                                lambda s: Request("ltz", (s, bits, skip, relu)))


def interval_requests(shape: Sequence[int], n: int) -> list[Request]:
    """What :meth:`Preprocessing.interval_masks` asks the dealer for."""
    return elementwise_requests(shape, n * 2, lambda s: Request("interval", (s, n)))


class Preprocessing(ABC):
    """Source of one party's authenticated correlated randomness within one dealer session.

    ``session`` names the session both servers registered; ``epoch`` is the MAC key epoch
    it runs under (its alpha authenticates everything the session produces).
    """

    party: int
    session: str = ""
    epoch: int = 0
    seconds: float = 0.0  # wall time spent obtaining preprocessing (for benchmarks)

    @abstractmethod
    def mac_key_share(self, epoch: int | None = None) -> np.ndarray:
        """This party's additive share of alpha of ``epoch`` (default: the session's)."""

    @abstractmethod
    def _fetch(self, req: Request) -> Item:
        """This party's authenticated values and FSS keys for one request."""

    @contextmanager
    def _timed(self):
        """Add the block's wall time to ``seconds``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - t0

    def fetch(self, req: Request) -> Item:
        """Timed :meth:`_fetch`."""
        with self._timed():
            return self._fetch(req)

    def fetch_many(self, reqs: Sequence[Request]) -> list[Item]:
        """Timed :meth:`_fetch_many`: several requests in order (prefetching's batches)."""
        with self._timed():
            return self._fetch_many(reqs)

    def _fetch_many(self, reqs: Sequence[Request]) -> list[Item]:
        """One by one; a remote source asks for all of them in one message."""
        return [self._fetch(r) for r in reqs]

    def _values(self, req: Request) -> list[AuthPair]:
        return self.fetch(req).values

    def triples(self, shape: Sequence[int]) -> Triple:
        return Triple(*self._values(Request("triple", (tuple(shape),))))

    def fan_triples(self, groups: Sequence[tuple[int, int]]) -> Triple:
        """Triples whose left factor a is shared by several products: group g has
        a_g (size_g) and b_g1..b_gk, c_gj = a_g * b_gj, all flattened in order."""
        return Triple(*self._values(Request("fan_triple", (tuple((int(s), int(k))
                                                                 for s, k in groups),))))

    def matrix_triples(self, m: int, n: int, p: int) -> Triple:
        return Triple(*self._values(Request("mtriple", (m, n, p))))

    def trunc_pairs(self, shape: Sequence[int], shift: int) -> TruncPair:
        return TruncPair(*self._values(Request("trunc", (tuple(shape), shift))))

    def _fetch_elementwise(self, shape: Sequence[int], requests: list[Request]) -> Item:
        """One elementwise FSS item from its requests (:func:`elementwise_requests`)."""
        if len(requests) == 1:
            return self.fetch(requests[0])
        return join_items([self.fetch(r) for r in requests], tuple(int(d) for d in shape))

    def ltz_masks(self, shape: Sequence[int], bits: int, skip: int = 0, relu: bool = False
                  ) -> LtzMask:
        item = self._fetch_elementwise(shape, ltz_requests(shape, bits, skip, relu))
        r, sign, *rest = item.values
        return LtzMask(r, sign, rest[0] if relu else None, item.keys[0])

    def trunc_ltz_masks(self, shape: Sequence[int], shift: int, skip: int, bits: int
                        ) -> TruncLtzMask:
        item = self._fetch_elementwise(shape, elementwise_requests(
            shape, (bits - 1) * 2, lambda s: Request("trunc_ltz", (s, shift, skip, bits))))
        r, r_sh, r_msb, sign = item.values
        return TruncLtzMask(TruncPair(r, r_sh, r_msb), sign, item.keys[0])

    def interval_masks(self, shape: Sequence[int], n: int) -> IntervalMask:
        item = self._fetch_elementwise(shape, interval_requests(shape, n))
        return IntervalMask(item.values[0], item.keys[0])

    def lookup_mask(self, bits: int, count: int = 1) -> IntervalMask:
        """``count`` masks r and DPF keys at r mod 2^bits with payload (1, alpha): one-hots
        of secret indices from one opening (compare.one_hot)."""
        item = self.fetch(Request("lookup", (bits, count)))
        return IntervalMask(item.values[0], item.keys[0])

    def checked_input(self, n: int, n_probe: int) -> CheckedInput:
        item = self.fetch(Request("checked_input", (n, n_probe)))
        a, b, c, sq = item.values
        return CheckedInput(Triple(a, b, c), sq, item.keys[0])

    def fixed_mask(self, key: str, n: int, p: int) -> AuthPair:
        return self._values(Request("fixed_mask", (key, n, p)))[0]

    def fixed_triples(self, key: str, m: int, n: int, p: int) -> tuple[AuthPair, AuthPair]:
        a, c = self._values(Request("fixed_triple", (key, m, n, p)))
        return a, c

    def rows_triples(self, key: str, rows: Sequence[int], p: int, transpose: bool,
                     d: int) -> tuple[AuthPair, AuthPair]:
        """(V, U[rows] @ V) or, transposed, (V', U[rows]^T @ V') for a fixed mask U."""
        v, c = self._values(Request("rows_triple", (key, tuple(int(r) for r in rows), p,
                                                    transpose, d)))
        return v, c

    def client_triples(self, n: int) -> Triple:
        return Triple(*self._values(Request("client_triple", ((n,),))))

    def random(self, shape: Sequence[int]) -> AuthPair:
        """Uniform authenticated values (e.g. to mask the unused upper bits of an opening)."""
        return self._values(Request("random", (tuple(shape),)))[0]

    def zero_check(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Value shares of a scalar triple (a, b, ab) for the MAC check's randomised zero
        test (their MACs are not used)."""
        a, b, c = self._values(Request("zero_check", ()))
        return a[0], b[0], c[0]

    def rekey(self, shape: Sequence[int]) -> tuple[AuthPair, AuthPair]:
        """One random r authenticated under this session's (old) key and under the dealer's
        current key: [r]_old, [r]_new (re-keying, docs/PROTOCOL.md)."""
        old, new = self._values(Request("rekey", (tuple(shape),)))
        return old, new

    def open(self, timeout_s: float | None = None) -> None:  # noqa: B027 - optional hook
        """Register the session with the dealer and wait until the other server has too."""

    def close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing
        """Release resources (connections, threads)."""
