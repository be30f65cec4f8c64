"""The servers' side of edge input and output (see shared/client_protocol.py for the maths)."""

from __future__ import annotations

import hashlib
import hmac

import numpy as np

from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.party import Party
from splitface.servers.mpc.prep.base import CheckedInput, Triple
from splitface.servers.mpc.rounds import Opening, run_round
from splitface.servers.mpc.share import AuthShare
from splitface.shared import ring


class InputError(ValueError):
    """The client's masked vector is malformed (a per-request ``bad_request``)."""


def offer_input(party: Party, n: int) -> tuple[Triple, list[np.ndarray]]:
    """Fresh triples for n client inputs and the value shares to send to the client."""
    with party.op("client_input"):
        t = party.prep.client_triples(n)
    return t, [t.a[0], t.b[0], t.c[0]]


def offer_checked_input(party: Party, n: int, n_probe: int
                        ) -> tuple[CheckedInput, list[np.ndarray]]:
    """Like :func:`offer_input`, with the probe-check material for the first ``n_probe``
    inputs (probe_check.py)."""
    with party.op("client_input"):
        t = party.prep.checked_input(n, n_probe)
    return t, [t.triple.a[0], t.triple.b[0], t.triple.c[0]]


def check_masked(masked: np.ndarray, n: int) -> np.ndarray:
    """The client's masked vector, or a per-request error (never a crash)."""
    if not isinstance(masked, np.ndarray) or masked.dtype != np.uint64 or masked.shape != (2, n):
        got = f"{getattr(masked, 'dtype', type(masked).__name__)} of shape " \
              f"{getattr(masked, 'shape', '?')}"
        raise InputError(f"the masked input must be uint64 of shape (2, {n}), got {got}")
    return masked


def input_digest(masked: np.ndarray) -> bytes:
    """What both servers compare to be sure they got the same masked vector."""
    return hashlib.sha256(masked.tobytes()).digest()


def accept_input(party: Party, triple: Triple, masked: np.ndarray, *, sync: bool = True
                 ) -> AuthShare:
    """[x] = y + [a] for the client's masked vector y. With ``sync`` both servers first
    confirm they got the same y (one round); otherwise the caller passes input_digest(y)
    to the next round (run_round(..., sync=...)) and saves that round."""
    n = triple.a[0].shape[1]
    masked = check_masked(masked, n)
    if sync:
        digest = input_digest(masked)
        with party.op("client_input"):
            msg = party._exchange("inputsync", [], {"h": digest})
        peer = msg.meta.get("h")
        if not isinstance(peer, bytes) or not hmac.compare_digest(peer, digest):
            raise ProtocolError("the servers received different masked inputs from the client")
    a = AuthShare(party, triple.a[0], triple.a[1])
    return a.add_ring(masked)


def output_opening(party: Party, y: AuthShare, r: AuthShare) -> Opening:
    """The round that opens y + r + 2^64 rho for the client (r: its output mask, rho: a
    fresh dealer mask). The client knows r, so without rho it would see y's upper 64 bits,
    which carry no value but can carry a cheating server's errors from secret operands; the
    client reads only the low 64 bits. Call party.check() before sending the result."""
    if y.shape != r.shape:
        raise ProtocolError(f"result of shape {y.shape} for {r.shape} client masks")
    rho = party.prep.random(y.shape)
    val = ring.add(ring.add(y.val, r.val), ring.shl(rho[0], 64))
    mac = ring.add(ring.add(y.mac, r.mac), ring.shl(rho[1], 64))
    return Opening([(val, mac)], lambda opened: opened[0])


def bit_opening(party: Party, bit: AuthShare) -> Opening:
    """The round that opens a bit to both servers (e.g. the probe check's verdict), its
    unused upper 64 bits hidden by 2^64 rho; the result is 0 or 1 (an int)."""
    op = bits_opening(party, bit.reshape(1))
    return Opening(op.pairs, lambda opened: op.finish(opened)[0])


def bits_opening(party: Party, bits: AuthShare) -> Opening:
    """:func:`bit_opening` for a vector of bits (a batch's verdicts: one dealer request for
    their rho); the result is a list of ints."""
    b = bits.reshape(-1)
    rho = party.prep.random(b.shape)
    return Opening([(ring.add(b.val, ring.shl(rho[0], 64)), ring.add(b.mac, ring.shl(rho[1], 64)))],
                   lambda opened: [int(v) for v in ring.low64_signed(opened[0])])


def open_for_client(party: Party, y: AuthShare, r: AuthShare) -> np.ndarray:
    """Open y + r (+ 2^64 rho) for the client in one round; see :func:`output_opening`."""
    with party.op("client_output"):
        return run_round(party, [output_opening(party, y, r)])[0]


def split_inputs(x: AuthShare, n_values: int, frac: int) -> tuple[AuthShare, AuthShare]:
    """Split an accepted input vector into (values at ``frac`` bits, output masks)."""
    v = x[:n_values]
    return AuthShare(party=x.party, val=v.val, mac=v.mac, frac=frac), x[n_values:]


__all__ = ["InputError", "accept_input", "bit_opening", "bits_opening", "check_masked",
           "input_digest", "offer_checked_input", "offer_input", "open_for_client",
           "output_opening", "split_inputs"]
