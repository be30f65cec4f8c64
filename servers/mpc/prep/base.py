"""The preprocessing interface the online protocol pulls correlated randomness from.

Protocol code only calls the typed methods below; where the randomness comes from (an
in-process dealer for tests, the dealer service, or later an OT-based generator run by
the two servers themselves) is the implementation's business.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from splitface.servers.mpc.prep.material import Request

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
class CompareMask:
    """Authenticated r and one-hot encodings of the chunks of (r >> skip) mod 2^bits (LSB
    chunk first; skip is 0 unless asked for)."""

    r: AuthPair
    onehots: list[AuthPair]


@dataclass
class TruncCompareMask:
    """A truncation pair whose r also comes with one-hot chunks of (r >> skip) mod 2^bits,
    so one opening serves a truncation and coarse sign tests (compare.truncate_and_test)."""

    trunc: TruncPair
    onehots: list[AuthPair]


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
    def _fetch(self, req: Request) -> list[AuthPair]:
        """This party's authenticated values for one request, in layout order."""

    def fetch(self, req: Request) -> list[AuthPair]:
        """Timed :meth:`_fetch`."""
        t0 = time.perf_counter()
        try:
            return self._fetch(req)
        finally:
            self.seconds += time.perf_counter() - t0

    def triples(self, shape: Sequence[int]) -> Triple:
        return Triple(*self.fetch(Request("triple", (tuple(shape),))))

    def fan_triples(self, groups: Sequence[tuple[int, int]]) -> Triple:
        """Triples whose left factor a is shared by several products: group g has
        a_g (size_g) and b_g1..b_gk, c_gj = a_g * b_gj, all flattened in order."""
        return Triple(*self.fetch(Request("fan_triple", (tuple((int(s), int(k))
                                                               for s, k in groups),))))

    def matrix_triples(self, m: int, n: int, p: int) -> Triple:
        return Triple(*self.fetch(Request("mtriple", (m, n, p))))

    def trunc_pairs(self, shape: Sequence[int], shift: int) -> TruncPair:
        return TruncPair(*self.fetch(Request("trunc", (tuple(shape), shift))))

    def trunc_compare_masks(self, shape: Sequence[int], shift: int, skip: int, bits: int,
                            chunk: int) -> TruncCompareMask:
        r, r_sh, r_msb, *onehots = self.fetch(
            Request("trunc_cmp", (tuple(shape), shift, skip, bits, chunk)))
        return TruncCompareMask(TruncPair(r, r_sh, r_msb), onehots)

    def compare_masks(self, shape: Sequence[int], bits: int, chunk: int, skip: int = 0
                      ) -> CompareMask:
        """r and one-hot chunks of (r >> skip) mod 2^bits."""
        params = (tuple(shape), bits, chunk) + ((skip,) if skip else ())
        r, *onehots = self.fetch(Request("cmp", params))
        return CompareMask(r, onehots)

    def fixed_mask(self, key: str, n: int, p: int) -> AuthPair:
        return self.fetch(Request("fixed_mask", (key, n, p)))[0]

    def fixed_triples(self, key: str, m: int, n: int, p: int) -> tuple[AuthPair, AuthPair]:
        a, c = self.fetch(Request("fixed_triple", (key, m, n, p)))
        return a, c

    def rows_triples(self, key: str, rows: Sequence[int], p: int, transpose: bool,
                     d: int) -> tuple[AuthPair, AuthPair]:
        """(V, U[rows] @ V) or, transposed, (V', U[rows]^T @ V') for a fixed mask U."""
        v, c = self.fetch(Request("rows_triple", (key, tuple(int(r) for r in rows), p,
                                                  transpose, d)))
        return v, c

    def client_triples(self, n: int) -> Triple:
        return Triple(*self.fetch(Request("client_triple", ((n,),))))

    def zero_check(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Value shares of a scalar triple (a, b, ab) for the MAC check's randomised zero
        test (their MACs are not used)."""
        a, b, c = self.fetch(Request("zero_check", ()))
        return a[0], b[0], c[0]

    def rekey(self, shape: Sequence[int]) -> tuple[AuthPair, AuthPair]:
        """One random r authenticated under this session's (old) key and under the dealer's
        current key: [r]_old, [r]_new (re-keying, docs/PROTOCOL.md)."""
        old, new = self.fetch(Request("rekey", (tuple(shape),)))
        return old, new

    def open(self, timeout_s: float | None = None) -> None:  # noqa: B027 - optional hook
        """Register the session with the dealer and wait until the other server has too."""

    def close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing
        """Release resources (connections, threads)."""
