"""Worker jobs for the client protocol: offer input triples, accept masked inputs.

The controller plays the edge: it calls ``offer`` on both servers, verifies and masks
its inputs with :class:`splitface.shared.client_protocol.ClientRequest`, then passes the
masked vector to a computation job that calls :func:`take_input` first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from splitface.servers.mpc import client_io
from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.party import Party
from splitface.servers.mpc.share import AuthShare
from splitface.shared.fixedpoint import F


def offer(party: Party, state: dict[str, Any], n: int) -> list[np.ndarray]:
    """Job: reserve n input triples and return this server's value shares of them."""
    triple, arrays = client_io.offer_input(party, n)
    state["offer"] = triple
    return arrays


def offer_checked(party: Party, state: dict[str, Any], n: int, n_probe: int
                  ) -> list[np.ndarray]:
    """Job: like :func:`offer`, with the probe-check material for the first n_probe
    inputs (identification and verification). Its wait for the dealer is kept in
    ``state["offer_prep_seconds"]`` for the computation job to report with its own."""
    prep0 = party.prep.seconds
    checked, arrays = client_io.offer_checked_input(party, n, n_probe)
    state["offer_checked"] = checked
    state["offer_size"] = (n, n_probe)
    state["offer_prep_seconds"] = party.prep.seconds - prep0
    return arrays


def take_input(party: Party, state: dict[str, Any], masked: np.ndarray, n_values: int,
               frac: int = F) -> tuple[AuthShare, AuthShare]:
    """Accept the client's masked vector: (values at ``frac`` bits, output masks)."""
    triple = state.pop("offer", None)
    if triple is None:
        raise ProtocolError("no input offer is pending for this client")
    x = client_io.accept_input(party, triple, masked)
    return client_io.split_inputs(x, n_values, frac)


def deliver(party: Party, y: AuthShare, masks: AuthShare) -> np.ndarray:
    """Open y + masks for the client, after the MAC check of everything so far."""
    opened = client_io.open_for_client(party, y.reshape(-1), masks)
    party.check()
    return opened
