"""Fixed-point truncation with a dealer pair and an exact wrap correction.

For [x] with |x| < 2^(K-2) and a dealer triple ([r], [r' >> m], [r_{K-1}]) where
r' = r mod 2^(K-1):
  1. x' = x + 2^(K-2), so 0 <= x' < 2^(K-1) (its top bit is 0);
  2. open c = x' + r (uniform 128-bit mask); let c' = c mod 2^(K-1), c_{K-1} its top bit;
  3. the wrap bit b = [c' < r'] equals c_{K-1} XOR r_{K-1}, which is linear in [r_{K-1}];
  4. [x >> m] = (c' >> m) - [r' >> m] + 2^(K-1-m) [b] - 2^(K-2-m).
Because x' = c' - r' + 2^(K-1) b holds exactly, the only error is the dropped borrow of
the discarded low bits: the result is floor(x / 2^m) or one more. No large error can occur,
unlike local (SecureML) truncation whose wrap probability is about |x| / 2^K.
"""

from __future__ import annotations

import numpy as np

from splitface.servers.mpc.prep.base import TruncPair
from splitface.servers.mpc.rounds import Opening, run_round
from splitface.servers.mpc.share import AuthShare
from splitface.shared import ring
from splitface.shared.fixedpoint import K

TRUNC_MAX_ABS = 1 << (K - 2)
TRUNC_OFFSET = 1 << (K - 2)  # x' = x + 2^(K-2) has top bit 0 for |x| < 2^(K-2)


def truncate(x: AuthShare, m: int) -> AuthShare:
    """[floor(x / 2^m) + e], e in {0, 1}; ``frac`` drops by m (not below 0)."""
    if m == 0:
        return x
    with x.party.op("trunc"):
        return run_round(x.party, [truncate_opening(x, m)])[0]


def truncate_opening(x: AuthShare, m: int) -> Opening:
    """The round of :func:`truncate` (to run beside other openings)."""
    check_shift(m)
    t = x.party.prep.trunc_pairs(x.shape, m)
    xp = x.add_ring(ring.from_pyint(TRUNC_OFFSET))
    return Opening([(ring.add(xp.val, t.r[0]), ring.add(xp.mac, t.r[1]))],
                   lambda opened: finish(x, opened[0], t, m))


def check_shift(m: int) -> None:
    if not 0 < m < K - 2:
        raise ValueError(f"truncation by {m} bits is out of range")


def open_offset(x: AuthShare, t: TruncPair) -> np.ndarray:
    """Open c = x + 2^(K-2) + r (step 2); returns the public 128-bit c."""
    xp = x.add_ring(ring.from_pyint(TRUNC_OFFSET))
    (c,) = x.party.open((ring.add(xp.val, t.r[0]), ring.add(xp.mac, t.r[1])))
    return c


def finish(x: AuthShare, c: np.ndarray, t: TruncPair, m: int) -> AuthShare:
    """Steps 3-4: [x >> m] from the opened c and the pair's [r' >> m] and [r_{K-1}] (local)."""
    party = x.party
    c64 = c[0]
    c_msb = c64 >> np.uint64(K - 1)
    c_low = c64 & np.uint64((1 << (K - 1)) - 1)
    public = ring.add(ring.from_uint64(c_low >> np.uint64(m)),
                      ring.shl(ring.from_uint64(c_msb), K - 1 - m))
    public = ring.sub(public, ring.from_pyint(1 << (K - 2 - m)))
    coef = ring.shl(ring.from_int64(1 - 2 * c_msb.astype(np.int64)), K - 1 - m)
    r_sh = AuthShare(party, t.r_shifted[0], t.r_shifted[1])
    msb = AuthShare(party, t.r_msb[0], t.r_msb[1])
    y = msb.mul_ring(coef).sub(r_sh).add_ring(public)
    return AuthShare(party, y.val, y.mac, max(x.frac - m, 0))
