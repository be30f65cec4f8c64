"""The edge's side of the protocol: authenticated input and verified output.

Input (the client-input protocol of Damgard et al., as in MP-SPDZ's external clients):
each server sends the edge its *value* shares of n fresh authenticated triples
(a, b, c = ab). The edge reconstructs them and checks c == a*b mod 2^128; a server
that altered its share of a by delta (delta != 0 mod 2^64) fails this check except
with probability about 2^-64, because b is uniform and unknown to it. The edge then sends
both servers the same masked vector y = x - a; the servers hold [x] = y + [a] with
valid MACs, so neither can change the edge's input undetected.

Output: the edge also inputs uniform 128-bit masks r. The servers open y + r between
themselves, MAC-check, and each sends the opened value; the edge requires both copies
to be equal (an honest server's copy is correct after the check) and removes r.

Nothing here imports server code: this module ships on the terminal.
"""

from __future__ import annotations

import hmac

import numpy as np

from splitface.shared import fixedpoint, ring
from splitface.shared.prg import Prg


class InputOfferError(ValueError):
    """The servers' triples do not multiply correctly: a server is cheating or broken."""


class OutputMismatchError(ValueError):
    """The two servers returned different results: one of them is cheating or broken."""


def _check_array(a: np.ndarray, n: int, what: str) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint64 or a.shape != (2, n):
        raise InputOfferError(f"{what}: expected a uint64 array of shape (2, {n}), got "
                              f"{getattr(a, 'dtype', type(a))} {getattr(a, 'shape', '')}")
    return a


def verify_offers(offer0: list[np.ndarray], offer1: list[np.ndarray], n: int) -> np.ndarray:
    """Reconstruct and check the two servers' triple shares; return the input masks a."""
    if len(offer0) != 3 or len(offer1) != 3:
        raise InputOfferError("each server must offer exactly three arrays (a, b, c)")
    a, b, c = (ring.add(_check_array(x, n, f"server 0 {name}"),
                        _check_array(y, n, f"server 1 {name}"))
               for x, y, name in zip(offer0, offer1, "abc", strict=True))
    if not ring.equal(ring.mul(a, b), c):
        raise InputOfferError("input triples do not verify (c != a*b): refusing to send input")
    return a


def mask_inputs(values: np.ndarray, a: np.ndarray) -> np.ndarray:
    """y = x - a for ring-encoded inputs x (shape (2, n))."""
    if values.shape != a.shape:
        raise ValueError(f"{ring.shape_of(values)} inputs for {ring.shape_of(a)} masks")
    return ring.sub(values, a)


def fresh_output_masks(n: int) -> np.ndarray:
    """Uniform 128-bit output masks from a fresh CSPRNG key."""
    return Prg().ring((n,))


def unmask_outputs(opened0: np.ndarray, opened1: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Both servers' opened (y + r); equal or error. Returns y mod 2^64 as signed int64."""
    for o in (opened0, opened1):
        if not isinstance(o, np.ndarray) or o.dtype != np.uint64 or o.shape != masks.shape:
            raise OutputMismatchError("a server returned a malformed result")
    if not hmac.compare_digest(opened0.tobytes(), opened1.tobytes()):
        raise OutputMismatchError("the two servers returned different results")
    return ring.low64_signed(ring.sub(opened0, masks))


class ClientRequest:
    """One request's client-side state: masked fixed-point inputs plus output masks.

    ``inputs`` are reals encoded with F fractional bits; ``n_outputs`` masks are drawn
    for the results. ``masked(a)`` gives the vector to send to both servers.
    """

    def __init__(self, inputs: np.ndarray, n_outputs: int) -> None:
        x = np.asarray(inputs, dtype=np.float64).ravel()
        self.n_inputs = x.size
        self.n_outputs = n_outputs
        self._masks = fresh_output_masks(n_outputs)
        self._values = ring.concat([fixedpoint.encode(x), self._masks], axis=0)

    @property
    def n_total(self) -> int:
        return self.n_inputs + self.n_outputs

    def masked(self, offer0: list[np.ndarray], offer1: list[np.ndarray]) -> np.ndarray:
        a = verify_offers(offer0, offer1, self.n_total)
        return mask_inputs(self._values, a)

    def result(self, opened0: np.ndarray, opened1: np.ndarray) -> np.ndarray:
        return unmask_outputs(opened0, opened1, self._masks)
