"""Test helpers: authenticated sharing of known plaintexts and two-party execution."""

from __future__ import annotations

import numpy as np

from splitface.servers.mpc.party import Party
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.share import AuthShare
from splitface.shared import fixedpoint, ring
from splitface.shared.prg import Prg


def dealer_share(core: DealerCore, plain: np.ndarray) -> tuple[tuple, tuple]:
    """Authenticated shares of a known ring array, as a trusted dealer would make them."""
    prg = Prg()
    alpha = ring.add(core.mac_key_share(0), core.mac_key_share(1))
    mac = ring.mul(alpha.reshape((2,) + (1,) * (plain.ndim - 1)), plain)
    v0, m0 = prg.ring(plain.shape[1:]), prg.ring(plain.shape[1:])
    return (v0, m0), (ring.sub(plain, v0), ring.sub(mac, m0))


def share_floats(core: DealerCore, x: np.ndarray, frac: int = fixedpoint.F):
    """Per-party (val, mac, frac) tuples of a real array."""
    p0, p1 = dealer_share(core, fixedpoint.encode(x, frac))
    return ((*p0, frac), (*p1, frac))


def share_ints(core: DealerCore, x: np.ndarray):
    p0, p1 = dealer_share(core, fixedpoint.encode_int(x))
    return ((*p0, 0), (*p1, 0))


def as_share(party: Party, t: tuple) -> AuthShare:
    return AuthShare(party, t[0], t[1], t[2])
