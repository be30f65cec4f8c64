"""The servers check a probe's range inside MPC, so the accept bit cannot be bought with a
crafted vector; they learn one bit (in range or not) and nothing else.

A terminal could send scaled basis vectors and binary-search the scale on the accept bit,
recovering template coordinates, or vectors that wrap around the ring. So before anything
is released both servers require, on shares:

1. every probe coordinate |x_k| < 2 (as x_k + 2 in [0, 4) mod 2^64, exact for any input):
   the masks a_k of the terminal's input come with DCF keys at -a_k, and the masked input
   y = x - a is public, so each test is local -- no extra opening;
2. ||x||^2 in [NORM2_MIN, NORM2_MAX]: with the dealer's [sum a_k^2],
   ||x||^2 = sum y_k^2 + 2 sum y_k [a_k] + [sum a_k^2] is local too, and one interval test
   (one opening) decides it -- exact, because the coordinates are bounded;
3. ok = [bad == 0] for bad = (out-of-range coordinates) + (1 - norm in range): a second
   interval test. Only ok is opened (beside the result, before it is released).

Two openings in all, each in a round the identification needs anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splitface.servers.mpc import client_io, compare
from splitface.servers.mpc.prep.base import CheckedInput
from splitface.servers.mpc.rounds import Opening
from splitface.servers.mpc.share import AuthShare, concat
from splitface.shared import ring
from splitface.shared.fixedpoint import F

COORD_LIMIT = 1 << (F + 1)  # |x_k| < 2.0 in ring units
NORM2_MIN, NORM2_MAX = 0.98, 1.02  # ||x|| within 1 % of 1 (the edge sends unit vectors)
BAD_BITS = 16  # the count of failed tests is below 2^16 (dim <= 1024)
NORM_BITS = 64  # the norm test's domain: all of Z_2^64


class ProbeCheck:
    """The range checks of one probe: the coordinate tests (local, at once) and the norm;
    ``ok`` is the authenticated result bit once its openings ran (``openings()`` for a lone
    probe, :class:`ProbeChecks` for a batch's)."""

    def __init__(self, party, checked: CheckedInput, masked: np.ndarray, dim: int) -> None:
        self.party = party
        y = masked[:, :dim]
        # 1. coordinates, locally: x_k = y_k + a_k = c - r with c = y_k and r = -a_k (their
        # keys are evaluated for a whole batch at once: ProbeChecks)
        self.coords = (y[0], checked.key)
        self.coords_ok: AuthShare | None = None
        # 2. ||x||^2 at 2F fractional bits, locally
        a = AuthShare(party, checked.triple.a[0][:, :dim], checked.triple.a[1][:, :dim])
        cross = a.mul_ring(y).sum(0)
        sq = AuthShare(party, checked.sum_sq[0].reshape(2), checked.sum_sq[1].reshape(2))
        y2 = ring.sum_axis(ring.mul(y, y), 0)
        self.norm2 = (cross + cross + sq).add_ring(y2)
        self.dim = dim
        self.ok: AuthShare | None = None
        self._alone: ProbeChecks | None = None

    def openings(self) -> list[Opening]:
        """This probe's next openings, run as a batch of one ([] when done)."""
        if self._alone is None:
            self._alone = ProbeChecks([self])
        return self._alone.openings()


class ProbeChecks:
    """Several probes' checks as one side work: each stage tests every probe in ONE interval
    opening (one dealer request of K keys), the norm tests, then the final zero tests, and
    the K x 128 coordinate tests are one evaluation pass. A batch of K probes asked the
    dealer for 2K one-key requests and evaluated K coordinate passes before (issue 14)."""

    def __init__(self, checks: list[ProbeCheck]) -> None:
        self.checks = checks
        self._stage = 0 if checks else 2
        self._in_norm: AuthShare | None = None

    def openings(self) -> list[Opening]:
        """The openings of the next round ([] when done)."""
        if self._stage == 0:
            self._stage = 1
            lo = round(NORM2_MIN * (1 << 2 * F))
            size = round(NORM2_MAX * (1 << 2 * F)) - lo + 1
            norms = concat([c.norm2.reshape(1) for c in self.checks])
            op = compare.interval_opening(norms, lo, size, NORM_BITS)
            return [Opening(op.pairs, lambda o: setattr(self, "_in_norm", op.finish(o)))]
        if self._stage == 1:
            self._stage = 2
            coords = compare.intervals_from(self.checks[0].party,
                                            [c.coords for c in self.checks], -COORD_LIMIT,
                                            2 * COORD_LIMIT, 64)
            for c, ok in zip(self.checks, coords, strict=True):
                c.coords_ok = ok
            bad = concat([((c.dim - c.coords_ok.sum()) + (1 - self._in_norm[i])).reshape(1)
                          for i, c in enumerate(self.checks)])
            op = compare.interval_opening(bad, 0, 1, BAD_BITS)
            return [Opening(op.pairs, lambda o: self._set_ok(op.finish(o)))]
        return []

    def _set_ok(self, ok: AuthShare) -> None:
        for i, c in enumerate(self.checks):
            c.ok = ok[i].reshape(())


@dataclass
class CheckedProbe:
    """A terminal's accepted probe: the embedding and output masks as shares, its range
    check, and the input digest both servers compare in their first round together."""

    probe: AuthShare
    masks: AuthShare
    check: ProbeCheck
    digest: bytes


def accept_checked_probe(party, checked: CheckedInput, masked: np.ndarray, dim: int
                         ) -> CheckedProbe:
    """The servers' side of a checked client input (one place for the service, the
    benchmark jobs and the tests): shares from the masked vector, then the range check on
    the same masked values."""
    x = client_io.accept_input(party, checked.triple, masked, sync=False)
    probe, masks = client_io.split_inputs(x, dim, F)
    return CheckedProbe(probe, masks, ProbeCheck(party, checked, masked, dim),
                        client_io.input_digest(masked))
