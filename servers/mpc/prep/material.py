"""What each kind of preprocessing request contains, and how it is generated and split.

A request names a kind and its parameters. Its *layout* lists the shapes of the
authenticated values it yields and the function-secret-sharing keys that come with them
(``FssSpec``: comparison keys (DCF) or point-function keys (DPF), fss/). The dealer
generates the plain values; party 0 expands its shares of every value and MAC, and its
root seeds of every FSS key, from a 16-byte AES-CTR seed; party 1 receives explicit
corrections ``(v - s0, alpha*v - t0)`` and its root seeds. Both receive the FSS keys'
correction words, which are common to the two keys of a pair.

Ring parameters: values mod 2^K (K=64) inside shares mod 2^128; alpha < 2^64 (S=64).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from splitface.servers.mpc import ring_kernels
from splitface.servers.mpc.errors import ProtocolError
from splitface.shared import ring, wire
from splitface.shared.fixedpoint import K
from splitface.shared.prg import Prg

KINDS = ("triple", "fan_triple", "mtriple", "trunc", "trunc_ltz", "ltz", "interval",
         "lookup", "checked_input", "fixed_mask", "fixed_triple", "client_triple",
         "rows_triple", "zero_check", "rekey", "random")
MAX_ELEMENTS = 1 << 26
MAX_FSS_LEVELS = 1 << 24  # keys x levels of one request (bounds the dealer's work)
MAX_DIM = 1 << 31


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


@dataclass(frozen=True)
class FssSpec:
    """``keys`` FSS key pairs of one kind (``dcf`` or ``dpf``) over ``n``-bit inputs with
    payloads of ``width`` ring elements."""

    kind: str
    keys: int
    n: int
    width: int

    def correction_shapes(self) -> list[tuple[tuple[int, ...], type]]:
        """The common correction arrays (shape, dtype), in wire order."""
        k, n, p = self.keys, self.n, self.width
        cw = [((n, k, 2), np.uint64), ((n, k, 2), np.uint8)]
        if self.kind == "dcf":
            cw.append(((n, 2, k, p), np.uint64))
        return [*cw, ((2, k, p), np.uint64)]

    @property
    def nbytes(self) -> int:
        """One party's key bytes: its root seeds and the corrections."""
        return self.keys * 16 + sum(math.prod(s) * np.dtype(t).itemsize
                                    for s, t in self.correction_shapes())


@dataclass(frozen=True)
class Layout:
    """Shapes of a request's authenticated values and the FSS keys that come with them."""

    values: tuple[tuple[int, ...], ...]
    fss: tuple[FssSpec, ...] = ()

    @property
    def nbytes(self) -> int:
        """Party 1's part: value and MAC corrections (16 bytes each per element), keys."""
        return sum(32 * math.prod(v) for v in self.values) + sum(f.nbytes for f in self.fss)


# Several requests may share one dealer message (remote.RemotePreprocessing.fetch_many):
# at most MAX_BATCH of them and, unless alone, MAX_BATCH_BYTES of parts in all, so a
# server cannot make the dealer hold many large parts at once for one reply.
MAX_BATCH = 64
MAX_BATCH_BYTES = 64 << 20


@dataclass
class FssKey:
    """One party's half of a batch of FSS key pairs: its root seeds and the corrections."""

    spec: FssSpec
    root: np.ndarray  # (keys, 2) uint64
    corrections: list[np.ndarray] = field(default_factory=list)


@dataclass
class Item:
    """One party's part of a request, ready for the protocol: (value, MAC) share pairs in
    layout order, and FSS keys in layout order."""

    values: list[tuple[np.ndarray, np.ndarray]]
    keys: list[FssKey] = field(default_factory=list)


def fan_groups(p: Any) -> tuple[np.ndarray, np.ndarray]:
    """(sizes, fan-outs) of a fan triple's groups: group g has one left vector of
    sizes[g] elements multiplied by fans[g] right vectors."""
    if not isinstance(p, tuple) or not p or len(p) > 4096:
        raise ProtocolError("fan triple needs 1 to 4096 groups")
    if not all(isinstance(g, tuple) and len(g) == 2 and type(g[0]) is int
               and type(g[1]) is int and 1 <= g[0] <= MAX_ELEMENTS and 1 <= g[1] <= 64
               for g in p):
        raise ProtocolError("fan triple groups must be (size, fan-out) pairs in range")
    sizes = np.array([g[0] for g in p], dtype=np.int64)
    fans = np.array([g[1] for g in p], dtype=np.int64)
    return sizes, fans


@functools.lru_cache(maxsize=64)
def fan_index(p: Any) -> np.ndarray:
    """For every right-operand element of a fan triple, the index of its left element
    (cached for the servers' own protocol, which asks for the same few group structures
    over and over; the dealer uses :func:`fan_index_uncached` on requests it is sent)."""
    return fan_index_uncached(p)


def fan_index_uncached(p: Any) -> np.ndarray:
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
    if not isinstance(p, tuple) or len(p) > 4 or not all(
            type(d) is int and 0 <= d < MAX_DIM for d in p):
        raise ProtocolError(f"bad shape {p!r} in preprocessing request")
    return p


def _int(v: Any, lo: int, hi: int, what: str) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise ProtocolError(f"{what} must be an integer in [{lo}, {hi}]")
    return v


# Parameters of each kind: anything more is refused, so a request (which a waiting part
# keeps, and the layout cache too) holds no more than its kind needs (attacker review 14)
ARITY = {"triple": 1, "client_triple": 1, "fan_triple": 1, "mtriple": 3, "trunc": 2,
         "ltz": 4, "trunc_ltz": 4, "interval": 2, "lookup": 2, "checked_input": 2,
         "fixed_mask": 3, "fixed_triple": 4, "rows_triple": 5, "zero_check": 0, "rekey": 1,
         "random": 1}


def layout(req: Request) -> Layout:
    """Shapes of a request's authenticated values and its FSS keys (validates parameters)."""
    if len(req.params) != ARITY.get(req.kind, -1):
        raise ProtocolError(f"{req.kind} takes {ARITY.get(req.kind, 'no such')} parameters")
    if req.kind == "rows_triple":  # up to 65,536 row indices: cheap to lay out, costly to keep
        return _layout(req)
    try:
        return _layout_cached(req)
    except TypeError:  # unhashable parameters from a malformed request: validate uncached
        return _layout(req)


@functools.lru_cache(maxsize=1024)
def _layout_cached(req: Request) -> Layout:
    """Training asks for the same few layouts thousands of times (a cache, not state)."""
    return _layout(req)


def _cmp_window(skip: int, bits: int) -> None:
    if skip < 0 or bits < 2 or skip + bits > K:
        raise ProtocolError(f"comparison window skip={skip} bits={bits} out of range")


# Multiply-adds of one product the dealer computes for a request (m x n by n x q). A
# batch's gallery triple at N = 100,000 or a training batch's logits are about 2^25, and
# the largest training the settings allow (batch 65,536 x 128 dims x 1,000 classes) 2^33;
# MAX_ELEMENTS alone let a request ask for up to 2^39 (an hour of the dealer's CPU).
MAX_PRODUCT_WORK = 1 << 34


def _product_work(m: int, n: int, q: int) -> None:
    if m * n * q > MAX_PRODUCT_WORK:
        raise ProtocolError(f"a {m} x {n} by {n} x {q} product is more than the dealer "
                            "computes for one request")


def _layout(req: Request) -> Layout:
    k, p = req.kind, req.params
    fss: list[FssSpec] = []
    try:
        if k in ("triple", "client_triple"):
            s = _shape(p[0])
            out = [s, s, s]
        elif k == "fan_triple":
            sizes, fans = fan_groups(p[0])
            out = [(sum(sizes),), (int(np.dot(sizes, fans)),), (int(np.dot(sizes, fans)),)]
        elif k == "mtriple":
            m, n, q = _shape(tuple(p))
            out = [(m, n), (n, q), (m, q)]
            _product_work(m, n, q)
        elif k == "trunc":
            s = _shape(p[0])
            _int(p[1], 1, K - 3, "truncation shift")
            out = [s, s, s]
        elif k in ("ltz", "trunc_ltz"):
            # ltz: (shape, bits, skip, relu); trunc_ltz: (shape, shift, skip, bits)
            s = _shape(p[0])
            if k == "ltz":
                bits, skip, relu = _int(p[1], 2, K, "bits"), _int(p[2], 0, K, "skip"), p[3]
                if not isinstance(relu, bool):
                    raise ProtocolError("relu is a bool")
                out = [s, s] + ([s] if relu else [])  # r, sign bit (, sign bit * r)
            else:
                _int(p[1], 1, K - 3, "truncation shift")
                skip, bits, relu = _int(p[2], 0, K, "skip"), _int(p[3], 2, K, "bits"), False
                out = [s, s, s, s]  # r, r' >> shift, r_msb, sign bit
            _cmp_window(skip, bits)
            fss.append(FssSpec("dcf", math.prod(s), bits - 1, 4 if relu else 2))
        elif k == "interval":
            s, n = _shape(p[0]), _int(p[1], 1, K, "interval bits")
            out = [s]
            fss.append(FssSpec("dcf", math.prod(s), n, 2))
        elif k == "lookup":
            m, count = _int(p[0], 1, 20, "lookup bits"), _int(p[1], 1, 1 << 16, "lookups")
            out = [(count,)]
            fss.append(FssSpec("dpf", count, m, 2))
        elif k == "checked_input":
            n_total, n_probe = _int(p[0], 1, 1 << 16, "inputs"), _int(p[1], 0, p[0], "probe")
            out = [(n_total,)] * 3 + [()]  # a, b, ab and sum of the probe's a_k^2
            fss.append(FssSpec("dcf", n_probe, K, 2))
        elif k == "fixed_mask":
            _key(p[0])
            out = [_shape((p[1], p[2]))]
        elif k == "fixed_triple":
            _key(p[0])
            m, n, q = _shape(tuple(p[1:4]))
            out = [(m, n), (m, q)]
            _product_work(m, n, q)
        elif k == "rows_triple":
            _key(p[0])
            rows, q, transpose, d = p[1], p[2], p[3], p[4]
            if not isinstance(rows, tuple) or len(rows) > 1 << 16 or not all(
                    type(r) is int and 0 <= r < MAX_DIM for r in rows):
                raise ProtocolError("rows must be a list of row indices")
            if not isinstance(transpose, bool):
                raise ProtocolError("transpose must be a bool")
            b = len(rows)
            q, d = _shape((q, d))
            out = [(b, q), (d, q)] if transpose else [(d, q), (b, q)]
            if b * d > MAX_ELEMENTS:  # the dealer gathers the b rows of the d-column mask
                raise ProtocolError("rows_triple gathers too many mask elements")
            _product_work(b, d, q)
        elif k == "zero_check":
            out = [(), (), ()]
        elif k == "random":
            out = [_shape(p[0])]
        elif k == "rekey":
            s = _shape(p[0])
            out = [s, s]
        else:
            raise ProtocolError(f"unknown preprocessing kind {k!r}")
    except (IndexError, TypeError, ValueError) as exc:
        raise ProtocolError(f"bad parameters for {k}: {exc}") from None
    if sum(math.prod(s) for s in out) > MAX_ELEMENTS:  # Python ints: no overflow
        raise ProtocolError("preprocessing request too large")
    if sum(f.keys * f.n * f.width for f in fss) > MAX_FSS_LEVELS:
        raise ProtocolError("preprocessing request has too many FSS keys")
    return Layout(tuple(out), tuple(fss))


class FixedMasks:
    """One session's fixed-model masks B, by key, for later per-query triples (write-once)."""

    def __init__(self) -> None:
        self._masks: dict[str, np.ndarray] = {}

    def has(self, key: str) -> bool:
        return key in self._masks

    def put(self, key: str, b: np.ndarray) -> None:
        if key in self._masks:  # write-once: a second mask under a key would desynchronise
            raise ProtocolError(f"fixed mask {key!r} exists already")  # the opened W - B
        self._masks[key] = b

    def product(self, key: str, a: np.ndarray, q: int) -> np.ndarray:
        """A @ B for the mask B under ``key``, which must be (a's columns) x q."""
        b = self._masks.get(key)
        if b is None:
            raise ProtocolError(f"unknown fixed mask {key!r}")
        if b.shape[1:] != (a.shape[-1], q):
            raise ProtocolError("fixed triple shape does not match the stored mask")
        return ring_kernels.matmul(a, b)

    def rows_product(self, key: str, rows: tuple[int, ...], v: np.ndarray,
                     transpose: bool, cols: int) -> np.ndarray:
        """U[rows] @ v, or U[rows]^T @ v: the correlation of a fixed-rows triple; ``cols``
        is the request's d, which must be U's column count."""
        u = self._masks.get(key)
        if u is None:
            raise ProtocolError(f"unknown fixed mask {key!r}")
        if max(rows, default=0) >= u.shape[1]:
            raise ProtocolError("row index beyond the fixed matrix")
        if u.shape[2] != cols:  # before gathering: a mismatch must cost nothing
            raise ProtocolError("rows triple shape does not match the stored mask")
        ub = u[:, list(rows), :]
        return ring.matmul(ring.transpose(ub), v) if transpose else ring.matmul(ub, v)

    def drop(self, key: str) -> None:
        self._masks.pop(key, None)


@dataclass
class Plain:
    """The dealer's plain view of a request: the values, and per FSS spec the points and
    payloads of its keys (points (K,) uint64, payloads (2, K, P) ring)."""

    values: list[np.ndarray]
    points: list[np.ndarray] = field(default_factory=list)
    payloads: list[np.ndarray] = field(default_factory=list)


def _mask64(bits: int) -> np.uint64:
    return np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(2**64 - 1)


def _sign_payload(sbit: np.ndarray, parts: list[np.ndarray], alpha: np.ndarray) -> np.ndarray:
    """(1 - 2 sbit) * (parts..., alpha*parts...) as a (2, K, 2*len(parts)) payload."""
    cols = [p.reshape(2, -1) for p in parts]
    cols += [ring.mul(alpha.reshape(2, 1), c) for c in cols]
    pay = np.stack(cols, axis=-1)
    return np.where(sbit.reshape(1, -1, 1).astype(bool), ring.neg(pay), pay)


def generate(req: Request, rng: Prg, fixed: FixedMasks, alpha: np.ndarray) -> Plain:
    """The plain values of a request and its FSS points and payloads (dealer side only);
    ``alpha`` is the session's MAC key, which FSS payloads carry beside the values."""
    shapes = layout(req).values
    k = req.kind
    if k in ("triple", "client_triple"):
        a, b = rng.ring(shapes[0]), rng.ring(shapes[1])
        return Plain([a, b, ring.mul(a, b)])
    if k == "fan_triple":
        a, b = rng.ring(shapes[0]), rng.ring(shapes[1])
        return Plain([a, b, ring.mul(a[:, fan_index_uncached(req.params[0])], b)])
    if k == "mtriple":
        a, b = rng.ring(shapes[0]), rng.ring(shapes[1])
        return Plain([a, b, ring.matmul(a, b)])
    if k in ("trunc", "trunc_ltz"):
        shift = int(req.params[1])
        r = rng.ring(shapes[0])
        low = r[0] & np.uint64((1 << (K - 1)) - 1)
        r_sh = ring.from_uint64(low >> np.uint64(shift))
        r_msb = ring.from_uint64(ring.bit(r, K - 1))
        if k == "trunc":
            return Plain([r, r_sh, r_msb])
        skip, bits = int(req.params[2]), int(req.params[3])
        point, sbit = _ltz_point(r, skip, bits)
        return Plain([r, r_sh, r_msb, ring.from_uint64(sbit)], [point],
                     [_sign_payload(sbit, [ring.from_int64(np.ones_like(point, np.int64))],
                                    alpha)])
    if k == "ltz":
        bits, skip, relu = int(req.params[1]), int(req.params[2]), bool(req.params[3])
        r = rng.ring(shapes[0])
        point, sbit = _ltz_point(r, skip, bits)
        one = ring.from_int64(np.ones(point.shape, np.int64))
        sb = ring.from_uint64(sbit)
        if not relu:
            return Plain([r, sb], [point], [_sign_payload(sbit, [one], alpha)])
        sbr = np.where(sbit.astype(bool), r, np.uint64(0))
        return Plain([r, sb, sbr], [point], [_sign_payload(sbit, [one, r], alpha)])
    if k == "interval":
        n = int(req.params[1])
        r = rng.ring(shapes[0])
        one = ring.from_int64(np.ones(r[0].size, np.int64))
        return Plain([r], [r[0].reshape(-1) & _mask64(n)],
                     [_sign_payload(np.zeros(r[0].size, np.uint64), [one], alpha)])
    if k == "lookup":
        m, count = int(req.params[0]), int(req.params[1])
        r = rng.ring((count,))
        return Plain([r], [r[0] & _mask64(m)],
                     [_sign_payload(np.zeros(count, np.uint64),
                                    [ring.from_int64(np.ones(count, np.int64))], alpha)])
    if k == "checked_input":
        n_probe = int(req.params[1])
        a, b = rng.ring(shapes[0]), rng.ring(shapes[1])
        probe = a[:, :n_probe]
        sq = ring.sum_axis(ring.mul(probe, probe), 0)
        neg_a = ring.neg(probe)[0]  # x = y + a = c - r with c = y, r = -a (mod 2^64)
        one = ring.from_int64(np.ones(n_probe, np.int64))
        return Plain([a, b, ring.mul(a, b), sq], [neg_a],
                     [_sign_payload(np.zeros(n_probe, np.uint64), [one], alpha)])
    if k == "fixed_mask":
        b = rng.ring(shapes[0])
        fixed.put(req.params[0], b)
        return Plain([b])
    if k == "fixed_triple":
        a = rng.ring(shapes[0])
        c = fixed.product(str(req.params[0]), a, shapes[1][1])  # shape checked before
        return Plain([a, c])
    if k == "zero_check":  # (a, b, ab): the MAC check's randomised zero test (party.py);
        a, b = rng.ring(()), rng.ring(())  # b odd: b * X = 0 only for X = 0
        b[0] |= np.uint64(1)
        return Plain([a, b, ring.mul(a, b)])
    if k == "random":
        return Plain([rng.ring(shapes[0])])
    if k == "rekey":  # one r, authenticated under the old and under the new key
        r = rng.ring(shapes[0])
        return Plain([r, r])
    if k == "rows_triple":
        key, rows, transpose = str(req.params[0]), req.params[1], bool(req.params[3])
        v = rng.ring(shapes[0])
        c = fixed.rows_product(key, rows, v, transpose, int(req.params[4]))  # checked before
        return Plain([v, c])
    raise ProtocolError(f"unknown kind {k!r}")


def _ltz_point(r: np.ndarray, skip: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The DCF point (r >> skip) mod 2^(bits-1) and the sign bit, bit skip+bits-1 of r."""
    r64 = r[0].reshape(-1)
    return (r64 >> np.uint64(skip)) & _mask64(bits - 1), \
        (r64 >> np.uint64(skip + bits - 1)) & np.uint64(1)


def expand_p0(req: Request, seed: bytes) -> tuple[list[tuple[np.ndarray, np.ndarray]],
                                                  list[np.ndarray]]:
    """Party 0's (value share, MAC share) pairs and FSS root seeds, from the request's seed."""
    lay = layout(req)
    prg = Prg(seed)
    pairs = [(prg.ring(s), prg.ring(s)) for s in lay.values]
    return pairs, [prg.uint64((f.keys, 2)) for f in lay.fss]


def mac_epochs(req: Request, session_epoch: int, current_epoch: int) -> list[int]:
    """The key epoch each value of a request is MAC'd under: the session's, except the
    second value of a ``rekey`` item, which carries the current (new) key."""
    n = len(layout(req).values)
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


def _check(a: np.ndarray, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != shape:
        raise ProtocolError(f"dealer array has shape {getattr(a, 'shape', '?')}, expected "
                            f"{shape}")
    return a


def _corrections(lay: Layout, arrays: list[np.ndarray]) -> list[list[np.ndarray]]:
    out, i = [], 0
    for f in lay.fss:
        shapes = f.correction_shapes()
        out.append([_check(arrays[i + j], s, t) for j, (s, t) in enumerate(shapes)])
        i += len(shapes)
    if i != len(arrays):
        raise ProtocolError("dealer sent the wrong number of FSS arrays")
    return out


def check_batch(reqs: Sequence[Request]) -> None:
    """Refuse a dealer message of more than MAX_BATCH requests, or of several whose parts
    exceed MAX_BATCH_BYTES or one message's arrays together (both sides check; the dealer
    before generating)."""
    if not 1 <= len(reqs) <= MAX_BATCH:
        raise ProtocolError(f"a dealer message carries 1 to {MAX_BATCH} requests")
    if len(reqs) > 1 and sum(layout(r).nbytes for r in reqs) > MAX_BATCH_BYTES:
        raise ProtocolError(f"requests sharing a dealer message exceed {MAX_BATCH_BYTES} "
                            "bytes together")
    if len(reqs) > 1 and sum(part_arrays(r, 1) for r in reqs) > wire.MAX_ARRAYS:
        raise ProtocolError(f"requests sharing a dealer message exceed {wire.MAX_ARRAYS} "
                            "arrays together")


def batches(reqs: Sequence[Request], max_bytes: int) -> list[list[Request]]:
    """Consecutive requests grouped into dealer messages of 1, 2, 4, ... requests, each
    within check_batch's limits and, unless alone, ``max_bytes`` of parts: the first item
    comes back as soon as alone, and the rest share few round trips."""
    out: list[list[Request]] = []
    size, i = 1, 0
    while i < len(reqs):
        batch, nbytes, arrays = [reqs[i]], layout(reqs[i]).nbytes, part_arrays(reqs[i], 1)
        i += 1
        while i < len(reqs) and len(batch) < size:
            more, more_arrays = layout(reqs[i]).nbytes, part_arrays(reqs[i], 1)
            if nbytes + more > min(max_bytes, MAX_BATCH_BYTES) \
                    or arrays + more_arrays > wire.MAX_ARRAYS:
                break
            batch.append(reqs[i])
            nbytes, arrays = nbytes + more, arrays + more_arrays
            i += 1
        out.append(batch)
        size = min(2 * size, MAX_BATCH)
    return out


def part_arrays(req: Request, party: int) -> int:
    """How many arrays ``party``'s part of ``req`` has on the wire: the FSS corrections,
    and for party 1 also its value corrections and root seeds (public: the layout)."""
    lay = layout(req)
    n = sum(len(f.correction_shapes()) for f in lay.fss)
    return n if party == 0 else n + 2 * len(lay.values) + len(lay.fss)


def item_p0(req: Request, seed: bytes, arrays: list[np.ndarray]) -> Item:
    """Party 0's item from its seed and the common FSS corrections."""
    lay = layout(req)
    pairs, roots = expand_p0(req, seed)
    cws = _corrections(lay, arrays)
    return Item(pairs, [FssKey(f, r, c) for f, r, c in zip(lay.fss, roots, cws, strict=True)])


def item_p1(req: Request, arrays: list[np.ndarray]) -> Item:
    """Validate and assemble party 1's arrays: value corrections, root seeds, FSS
    corrections."""
    lay = layout(req)
    nv, nf = 2 * len(lay.values), len(lay.fss)
    if len(arrays) < nv + nf:
        raise ProtocolError("dealer sent the wrong number of arrays")
    pairs = []
    for i, s in enumerate(lay.values):
        v = _check(arrays[2 * i], (2, *s), np.uint64)
        m = _check(arrays[2 * i + 1], (2, *s), np.uint64)
        pairs.append((v, m))
    roots = [_check(arrays[nv + j], (f.keys, 2), np.uint64) for j, f in enumerate(lay.fss)]
    cws = _corrections(lay, arrays[nv + nf:])
    return Item(pairs, [FssKey(f, r, c) for f, r, c in zip(lay.fss, roots, cws, strict=True)])
