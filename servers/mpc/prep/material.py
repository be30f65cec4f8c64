"""What each kind of preprocessing request contains, and how it is generated and split.

A request names a kind and its parameters. Its *layout* is the list of shapes of the
authenticated values it yields; the dealer generates the plain values, party 0 expands
its shares of every value and MAC from a 16-byte AES-CTR seed, and party 1 receives
explicit corrections ``(v - s0, alpha*v - t0)``. So P0 receives 16 bytes per request and
P1 32 bytes per authenticated element.

Ring parameters: values mod 2^K (K=64) inside shares mod 2^128; alpha < 2^64 (S=64).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from splitface.servers.mpc.errors import ProtocolError
from splitface.shared import ring
from splitface.shared.fixedpoint import K
from splitface.shared.prg import Prg

KINDS = ("triple", "fan_triple", "mtriple", "trunc", "trunc_cmp", "cmp", "fixed_mask",
         "fixed_triple", "client_triple", "rows_triple", "zero_check", "rekey")
MAX_ELEMENTS = 1 << 26


@dataclass(frozen=True)
class Request:
    """A preprocessing request; equal requests from both parties pair up at the dealer."""

    kind: str
    params: tuple[Any, ...]

    def to_wire(self) -> list[Any]:
        return [self.kind, list(self.params)]

    @classmethod
    def from_wire(cls, obj: Any) -> Request:
        if (not isinstance(obj, list) or len(obj) != 2 or obj[0] not in KINDS
                or not isinstance(obj[1], list)):
            raise ProtocolError("malformed preprocessing request")
        params = tuple(_freeze(p) for p in obj[1])
        req = cls(obj[0], params)
        layout(req)  # validates parameters
        return req


def _freeze(p: Any) -> Any:
    """Nested lists from msgpack as nested tuples (hashable, comparable to local requests)."""
    return tuple(_freeze(v) for v in p) if isinstance(p, list) else p


def cmp_chunks(bits: int, chunk: int) -> list[int]:
    """Widths of the one-hot chunks for an L-bit comparison, least significant first.

    The low L-1 bits are cut into chunks of ``chunk`` bits; the top chunk also carries
    bit L-1, so its one-hot has one more bit.
    """
    widths, done = [], 0
    while done < bits - 1:
        w = min(chunk, bits - 1 - done)
        widths.append(w)
        done += w
    widths[-1] += 1
    return widths


def fan_groups(p: Any) -> tuple[np.ndarray, np.ndarray]:
    """(sizes, fan-outs) of a fan triple's groups: group g has one left vector of
    sizes[g] elements multiplied by fans[g] right vectors."""
    if not isinstance(p, tuple) or not p or len(p) > 4096:
        raise ProtocolError("fan triple needs 1 to 4096 groups")
    try:
        sizes = np.array([int(g[0]) for g in p], dtype=np.int64)
        fans = np.array([int(g[1]) for g in p], dtype=np.int64)
    except (TypeError, ValueError, IndexError):
        raise ProtocolError("fan triple groups must be (size, fan-out) pairs") from None
    if sizes.min() < 1 or fans.min() < 1 or fans.max() > 64 or sizes.max() > MAX_ELEMENTS:
        raise ProtocolError("fan triple group out of range")
    return sizes, fans


@functools.lru_cache(maxsize=256)
def fan_index(p: Any) -> np.ndarray:
    """For every right-operand element of a fan triple, the index of its left element
    (cached: a protocol asks for the same few group structures over and over)."""
    sizes, fans = fan_groups(p)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    idx = np.concatenate([np.tile(np.arange(st, st + sz), f)
                          for st, sz, f in zip(starts, sizes, fans, strict=True)])
    idx.setflags(write=False)
    return idx


def _key(p: Any) -> str:
    if not isinstance(p, str) or not 1 <= len(p) <= 128:
        raise ProtocolError("a fixed-mask key is a string of 1 to 128 characters")
    return p


def _shape(p: Any) -> tuple[int, ...]:
    if not isinstance(p, tuple) or not all(isinstance(d, int) and d >= 0 for d in p):
        raise ProtocolError(f"bad shape {p!r} in preprocessing request")
    return p


def layout(req: Request) -> list[tuple[int, ...]]:
    """Shapes of the authenticated values of a request (validates its parameters)."""
    try:
        return list(_layout_cached(req))
    except TypeError:  # unhashable parameters from a malformed request: validate uncached
        return _layout(req)


@functools.lru_cache(maxsize=1024)
def _layout_cached(req: Request) -> tuple[tuple[int, ...], ...]:
    """Training asks for the same few layouts thousands of times (a cache, not state)."""
    return tuple(_layout(req))


def _layout(req: Request) -> list[tuple[int, ...]]:
    k, p = req.kind, req.params
    try:
        if k in ("triple", "client_triple"):
            s = _shape(p[0])
            out = [s, s, s]
        elif k == "fan_triple":
            sizes, fans = fan_groups(p[0])
            out = [(sum(sizes),), (int(np.dot(sizes, fans)),), (int(np.dot(sizes, fans)),)]
        elif k == "mtriple":
            m, n, q = (int(v) for v in p)
            out = [(m, n), (n, q), (m, q)]
        elif k == "trunc":
            s = _shape(p[0])
            shift = int(p[1])
            if not 0 < shift < K - 2:
                raise ProtocolError(f"truncation shift {shift} out of range")
            out = [s, s, s]
        elif k == "trunc_cmp":
            s, shift, skip, bits, chunk = _shape(p[0]), int(p[1]), int(p[2]), int(p[3]), int(p[4])
            if not 0 < shift < K - 2:
                raise ProtocolError(f"truncation shift {shift} out of range")
            if skip < 0 or bits < 2 or skip + bits > K or not 1 <= chunk <= 8:
                raise ProtocolError(f"comparison skip={skip} bits={bits} chunk={chunk} "
                                    "out of range")
            out = [s, s, s] + [(*s, 1 << w) for w in cmp_chunks(bits, chunk)]
        elif k == "cmp":
            s, bits, chunk = _shape(p[0]), int(p[1]), int(p[2])
            skip = int(p[3]) if len(p) > 3 else 0
            if not 2 <= bits <= K - 1 or not 1 <= chunk <= 8 or skip < 0 or skip + bits > K:
                raise ProtocolError(f"comparison bits={bits} chunk={chunk} skip={skip} "
                                    "out of range")
            out = [s] + [(*s, 1 << w) for w in cmp_chunks(bits, chunk)]
        elif k == "fixed_mask":
            _key(p[0])
            out = [(int(p[1]), int(p[2]))]
        elif k == "fixed_triple":
            _key(p[0])
            m, n, q = int(p[1]), int(p[2]), int(p[3])
            out = [(m, n), (m, q)]
        elif k == "rows_triple":
            _key(p[0])
            rows, q, transpose, d = p[1], int(p[2]), bool(p[3]), int(p[4])
            if not isinstance(rows, tuple) or not all(isinstance(r, int) and r >= 0
                                                      for r in rows):
                raise ProtocolError("rows must be a list of row indices")
            b = len(rows)
            out = [(b, q), (d, q)] if transpose else [(d, q), (b, q)]
        elif k == "zero_check":
            if p:
                raise ProtocolError("zero_check takes no parameters")
            out = [(), (), ()]
        elif k == "rekey":
            s = _shape(p[0])
            if len(p) != 1:
                raise ProtocolError("rekey takes one shape")
            out = [s, s]
        else:
            raise ProtocolError(f"unknown preprocessing kind {k!r}")
    except (IndexError, TypeError, ValueError) as exc:
        raise ProtocolError(f"bad parameters for {k}: {exc}") from None
    if sum(int(np.prod(s, dtype=np.int64)) for s in out) > MAX_ELEMENTS:
        raise ProtocolError("preprocessing request too large")
    return out


STACK_CACHE_ELEMENTS = 4 << 20  # masks up to this size keep their float64 limb split (64 B/el.)


class FixedMasks:
    """One session's fixed-model masks B, by key, for later per-query triples (write-once)."""

    def __init__(self) -> None:
        self._masks: dict[str, np.ndarray] = {}
        self._stacks: dict[str, np.ndarray] = {}

    def has(self, key: str) -> bool:
        return key in self._masks

    def put(self, key: str, b: np.ndarray) -> None:
        if key in self._masks:  # write-once: a second mask under a key would desynchronise
            raise ProtocolError(f"fixed mask {key!r} exists already")  # the opened W - B
        self._masks[key] = b

    def product(self, key: str, a: np.ndarray) -> np.ndarray:
        if key not in self._masks:
            raise ProtocolError(f"unknown fixed mask {key!r}")
        b = self._masks[key]
        if b[0].size > STACK_CACHE_ELEMENTS:  # bounded memory: split per query instead
            return ring.matmul(a, b)
        if key not in self._stacks:
            self._stacks[key] = ring.stack_limbs(b)
        return ring.matmul_limbs(a, self._stacks[key])

    def rows_product(self, key: str, rows: tuple[int, ...], v: np.ndarray,
                     transpose: bool) -> np.ndarray:
        """U[rows] @ v, or U[rows]^T @ v: the correlation of a fixed-rows triple."""
        u = self._masks.get(key)
        if u is None:
            raise ProtocolError(f"unknown fixed mask {key!r}")
        if max(rows, default=0) >= u.shape[1]:
            raise ProtocolError("row index beyond the fixed matrix")
        ub = u[:, list(rows), :]
        return ring.matmul(ring.transpose(ub), v) if transpose else ring.matmul(ub, v)

    def drop(self, key: str) -> None:
        self._masks.pop(key, None)
        self._stacks.pop(key, None)


def generate(req: Request, rng: Prg, fixed: FixedMasks) -> list[np.ndarray]:
    """The plain values of a request (dealer side only)."""
    shapes = layout(req)
    k = req.kind
    if k in ("triple", "client_triple"):
        a, b = rng.ring(shapes[0]), rng.ring(shapes[1])
        return [a, b, ring.mul(a, b)]
    if k == "fan_triple":
        a, b = rng.ring(shapes[0]), rng.ring(shapes[1])
        return [a, b, ring.mul(a[:, fan_index(req.params[0])], b)]
    if k == "mtriple":
        a, b = rng.ring(shapes[0]), rng.ring(shapes[1])
        return [a, b, ring.matmul(a, b)]
    if k in ("trunc", "trunc_cmp"):
        shift = int(req.params[1])
        r = rng.ring(shapes[0])
        low = r[0] & np.uint64((1 << (K - 1)) - 1)
        r_sh = ring.from_uint64(low >> np.uint64(shift))
        r_msb = ring.from_uint64(ring.bit(r, K - 1))
        if k == "trunc":
            return [r, r_sh, r_msb]
        skip, bits, chunk = int(req.params[2]), int(req.params[3]), int(req.params[4])
        return [r, r_sh, r_msb, *_onehot_chunks(r[0] >> np.uint64(skip), bits, chunk)]
    if k == "cmp":
        s, bits, chunk = req.params[0], int(req.params[1]), int(req.params[2])
        skip = int(req.params[3]) if len(req.params) > 3 else 0
        r = rng.ring(s)
        return [r, *_onehot_chunks(r[0] >> np.uint64(skip), bits, chunk)]
    if k == "fixed_mask":
        b = rng.ring(shapes[0])
        fixed.put(req.params[0], b)
        return [b]
    if k == "fixed_triple":
        a = rng.ring(shapes[0])
        c = fixed.product(str(req.params[0]), a)
        if ring.shape_of(c) != shapes[1]:
            raise ProtocolError("fixed triple shape does not match the stored mask")
        return [a, c]
    if k == "zero_check":  # (a, b, ab): the MAC check's randomised zero test (party.py)
        a, b = rng.ring(()), rng.ring(())
        return [a, b, ring.mul(a, b)]
    if k == "rekey":  # one r, authenticated under the old and under the new key
        r = rng.ring(shapes[0])
        return [r, r]
    if k == "rows_triple":
        key, rows, transpose = str(req.params[0]), req.params[1], bool(req.params[3])
        v = rng.ring(shapes[0])
        c = fixed.rows_product(key, rows, v, transpose)
        if ring.shape_of(c) != shapes[1]:
            raise ProtocolError("rows triple shape does not match the stored mask")
        return [v, c]
    raise ProtocolError(f"unknown kind {k!r}")


def _onehot_chunks(r64: np.ndarray, bits: int, chunk: int) -> list[np.ndarray]:
    """One-hot encodings (as ring arrays) of the chunks of r64 mod 2^bits, LSB chunk first."""
    rl = r64 & np.uint64((1 << bits) - 1) if bits < 64 else r64
    out, offset = [], 0
    for w in cmp_chunks(bits, chunk):
        v = (rl >> np.uint64(offset)) & np.uint64((1 << w) - 1)
        out.append(ring.from_uint64(
            (v[..., None] == np.arange(1 << w, dtype=np.uint64)).astype(np.uint64)))
        offset += w
    return out


def expand_p0(req: Request, seed: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    """Party 0's (value share, MAC share) pairs, expanded from the request's seed."""
    prg = Prg(seed)
    return [(prg.ring(s), prg.ring(s)) for s in layout(req)]


def mac_epochs(req: Request, session_epoch: int, current_epoch: int) -> list[int]:
    """The key epoch each value of a request is MAC'd under: the session's, except the
    second value of a ``rekey`` item, which carries the current (new) key."""
    n = len(layout(req))
    if req.kind == "rekey":
        return [session_epoch, current_epoch]
    return [session_epoch] * n


def split_for_p1(values: list[np.ndarray], p0: list[tuple[np.ndarray, np.ndarray]],
                 alphas: list[np.ndarray]) -> list[np.ndarray]:
    """Party 1's explicit shares: ``[v - s0, alpha*v - t0]`` per value, flattened, each
    value under its own key (``alphas``, one ring scalar per value)."""
    out = []
    for v, (s0, t0), alpha in zip(values, p0, alphas, strict=True):
        out.append(ring.sub(v, s0))
        out.append(ring.sub(ring.mul_u64(v, alpha[0]), t0))  # alpha < 2^64 (S = 64)
    return out


def unpack_p1(req: Request, arrays: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validate and pair up party 1's arrays."""
    shapes = layout(req)
    if len(arrays) != 2 * len(shapes):
        raise ProtocolError("dealer sent the wrong number of arrays")
    out = []
    for i, s in enumerate(shapes):
        v, m = arrays[2 * i], arrays[2 * i + 1]
        for a in (v, m):
            if a.dtype != np.uint64 or a.shape != (2, *s):
                raise ProtocolError(f"dealer array has shape {a.shape}, expected {(2, *s)}")
        out.append((v, m))
    return out
