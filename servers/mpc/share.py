"""AuthShare: one party's authenticated share of a secret tensor, with numpy-like operators.

``x + y``, ``x - 3.5``, ``x * y``, ``x @ w``, ``x.sum(0)``, ``x[2:5]``, ``x < y`` work as in
numpy; every operation that needs interaction runs the protocol with the peer through
``x.party``. Fixed point: each share carries ``frac``, its number of fractional bits
(0 for integers and bits, F=16 for reals). A product of two fractional shares is
truncated back to F bits automatically (error at most one unit in the last place).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from splitface.servers.mpc.errors import ShapeError
from splitface.shared import fixedpoint, ring
from splitface.shared.fixedpoint import F

if TYPE_CHECKING:
    from splitface.servers.mpc.party import Party


class AuthShare:
    """This party's (value share, MAC share) of a secret tensor of logical shape ``shape``."""

    __array_ufunc__ = None  # make ndarray <op> AuthShare defer to our reflected operators

    def __init__(self, party: Party, val: np.ndarray, mac: np.ndarray, frac: int = 0) -> None:
        if val.shape != mac.shape or val.dtype != np.uint64 or val.shape[:1] != (2,):
            raise ShapeError(f"value/MAC share shapes differ or are not ring arrays: "
                             f"{val.shape} vs {mac.shape}")
        self.party, self.val, self.mac, self.frac = party, val, mac, frac

    # ------------------------------------------------------------ structure
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.val.shape[1:])

    @property
    def ndim(self) -> int:
        return self.val.ndim - 1

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def pair(self) -> tuple[np.ndarray, np.ndarray]:
        return self.val, self.mac

    def __len__(self) -> int:
        return self.shape[0]

    def __bool__(self) -> bool:
        raise TypeError("the truth value of a secret is unknown; reveal it or use select()")

    def __repr__(self) -> str:
        return f"AuthShare(party={self.party.id}, shape={self.shape}, frac={self.frac})"

    def _like(self, val: np.ndarray, mac: np.ndarray, frac: int | None = None) -> AuthShare:
        return AuthShare(self.party, val, mac, self.frac if frac is None else frac)

    def reshape(self, *shape: int | Sequence[int]) -> AuthShare:
        shp = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return self._like(self.val.reshape((2, *shp)), self.mac.reshape((2, *shp)))

    def __getitem__(self, idx: Any) -> AuthShare:
        idx = idx if isinstance(idx, tuple) else (idx,)
        return self._like(self.val[(slice(None), *idx)], self.mac[(slice(None), *idx)])

    @property
    def T(self) -> AuthShare:  # noqa: N802 - numpy spelling
        if self.ndim != 2:
            raise ShapeError("transpose needs a matrix")
        return self._like(ring.transpose(self.val), ring.transpose(self.mac))

    def sum(self, axis: int | None = None) -> AuthShare:
        return self._like(ring.sum_axis(self.val, axis), ring.sum_axis(self.mac, axis))

    def broadcast_to(self, shape: Sequence[int]) -> AuthShare:
        shape = tuple(shape)
        if shape == self.shape:
            return self
        val = _logical_broadcastable(self.val, len(shape) + 1)
        mac = _logical_broadcastable(self.mac, len(shape) + 1)
        return self._like(np.broadcast_to(val, (2, *shape)).copy(),
                          np.broadcast_to(mac, (2, *shape)).copy())

    # ------------------------------------------------------------ public constants
    def encode_public(self, c: Any, frac: int | None = None) -> np.ndarray:
        """A public number/array as a ring array at ``frac`` (default: this share's) bits."""
        frac = self.frac if frac is None else frac
        arr = np.asarray(c)
        if arr.dtype.kind in "iub":
            return ring.shl(fixedpoint.encode_int(arr.astype(np.int64)), frac)
        if arr.dtype.kind == "f":
            return fixedpoint.encode(arr, frac)
        raise TypeError(f"cannot use {type(c).__name__} as a public operand")

    def add_ring(self, c: np.ndarray) -> AuthShare:
        """Add a public ring constant: party 0 adds it to its share, both adjust MACs."""
        c = _logical_broadcastable(c, self.val.ndim)
        val = ring.add(self.val, c) if self.party.id == 0 else self.val
        val, mac = np.broadcast_arrays(val, ring.add(self.mac, self.party.alpha_times(c)))
        return self._like(val.copy(), mac.copy())

    def mul_ring(self, c: np.ndarray, frac_add: int = 0) -> AuthShare:
        """Multiply by a public ring constant (broadcasting); ``frac_add`` its fractional bits."""
        c = _logical_broadcastable(c, self.val.ndim)
        return self._like(ring.mul(self.val, c), ring.mul(self.mac, c), self.frac + frac_add)

    # ------------------------------------------------------------ linear operators
    def _align(self, other: AuthShare) -> tuple[AuthShare, AuthShare]:
        if other.party is not self.party:
            raise ShapeError("operands belong to different parties")
        a, b = self, other
        if a.frac < b.frac:
            a = a.mul_ring(ring.from_pyint(1 << (b.frac - a.frac)), b.frac - a.frac)
        elif b.frac < a.frac:
            b = b.mul_ring(ring.from_pyint(1 << (a.frac - b.frac)), a.frac - b.frac)
        if a.shape != b.shape:
            shape = np.broadcast_shapes(a.shape, b.shape)
            a, b = a.broadcast_to(shape), b.broadcast_to(shape)
        return a, b

    def add(self, other: AuthShare | Any) -> AuthShare:
        if isinstance(other, AuthShare):
            a, b = self._align(other)
            return a._like(ring.add(a.val, b.val), ring.add(a.mac, b.mac))
        return self.add_ring(self.encode_public(other))

    def sub(self, other: AuthShare | Any) -> AuthShare:
        if isinstance(other, AuthShare):
            a, b = self._align(other)
            return a._like(ring.sub(a.val, b.val), ring.sub(a.mac, b.mac))
        return self.add_ring(ring.neg(self.encode_public(other)))

    def neg(self) -> AuthShare:
        return self._like(ring.neg(self.val), ring.neg(self.mac))

    def rsub(self, other: Any) -> AuthShare:
        return self.neg().add(other)

    __add__ = add
    __radd__ = add
    __sub__ = sub
    __rsub__ = rsub
    __neg__ = neg

    # ------------------------------------------------------------ products
    def mul(self, other: AuthShare | Any) -> AuthShare:
        from splitface.servers.mpc import beaver

        if isinstance(other, AuthShare):
            return beaver.mul(self, other)
        arr = np.asarray(other)
        if arr.dtype.kind in "iub":
            return self.mul_ring(fixedpoint.encode_int(arr.astype(np.int64)))
        return beaver.rescale(self.mul_ring(fixedpoint.encode(arr, F), F))

    __mul__ = mul
    __rmul__ = mul

    def matmul(self, other: AuthShare | Any) -> AuthShare:
        from splitface.servers.mpc import beaver

        return beaver.matmul(self, other)

    def rmatmul(self, other: Any) -> AuthShare:
        from splitface.servers.mpc import beaver

        return beaver.public_matmul(other, self)

    __matmul__ = matmul
    __rmatmul__ = rmatmul

    def truncate(self, bits: int) -> AuthShare:
        """Divide by 2^bits (floor, error at most one unit); needs |x| < 2^62."""
        from splitface.servers.mpc import truncation

        return truncation.truncate(self, bits)

    # ------------------------------------------------------------ comparisons
    def ltz(self, bits: int | None = None) -> AuthShare:
        """[x < 0] as a shared bit; needs |x| < 2^(bits-1) in the ring's integer units."""
        from splitface.servers.mpc import compare

        return compare.ltz(self, bits)

    def eqz(self, bits: int | None = None) -> AuthShare:
        """[x == 0] as a shared bit; needs |x| < 2^(bits-1)."""
        from splitface.servers.mpc import compare

        return compare.eqz(self, bits)

    def __lt__(self, other: AuthShare | Any) -> AuthShare:
        return (self - other).ltz()

    def __gt__(self, other: AuthShare | Any) -> AuthShare:
        return self._rsub_any(other).ltz()

    def __le__(self, other: AuthShare | Any) -> AuthShare:
        return 1 - self._rsub_any(other).ltz()

    def __ge__(self, other: AuthShare | Any) -> AuthShare:
        return 1 - (self - other).ltz()

    def _rsub_any(self, other: AuthShare | Any) -> AuthShare:
        return other - self if isinstance(other, AuthShare) else self.rsub(other)

    def __eq__(self, other: object) -> AuthShare:  # type: ignore[override]
        return (self - other).eqz()  # type: ignore[operator]

    def __ne__(self, other: object) -> AuthShare:  # type: ignore[override]
        return 1 - (self - other).eqz()  # type: ignore[operator]

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------ output
    def reveal(self) -> np.ndarray:
        """Open to both servers after a MAC check (servers-only debugging and tests).

        The value is masked with a fresh random share so the opening itself leaks
        nothing beyond the result; the MAC check runs before the result is returned.
        """
        from splitface.servers.mpc import beaver

        return beaver.reveal(self)

    def reveal_float(self) -> np.ndarray:
        return fixedpoint.decode(self.reveal(), self.frac) if self.frac else \
            fixedpoint.decode_int(self.reveal()).astype(np.float64)


def _logical_broadcastable(c: np.ndarray, ndim: int) -> np.ndarray:
    """Insert singleton logical axes after the limb axis so numpy broadcasting aligns
    logical shapes from the right, as it would for plain arrays."""
    missing = ndim - c.ndim
    return c.reshape((2,) + (1,) * missing + c.shape[1:]) if missing > 0 else c


def concat(shares: Sequence[AuthShare], axis: int = 0) -> AuthShare:
    """Concatenate shares (aligned to the largest ``frac``) along ``axis``."""
    if not shares:
        raise ShapeError("nothing to concatenate")
    frac = max(s.frac for s in shares)
    al = [s if s.frac == frac else s.mul_ring(ring.from_pyint(1 << (frac - s.frac)),
                                             frac - s.frac) for s in shares]
    return AuthShare(al[0].party, ring.concat([s.val for s in al], axis),
                     ring.concat([s.mac for s in al], axis), frac)


def stack(shares: Sequence[AuthShare], axis: int = 0) -> AuthShare:
    """Stack equally shaped shares along a new axis."""
    return concat([s.reshape((*s.shape[:axis], 1, *s.shape[axis:])) for s in shares], axis)
