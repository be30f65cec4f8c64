"""Non-linear functions for training and normalisation, built from products and comparisons.

Documented domains and errors (checked in tests/mpc/test_nonlinear.py against numpy):

* ``exp(x)``: (1 + x/2^8)^(2^8) by 8 squarings. Relative error < 2 % on [-8, 3],
  absolute error < 2e-3 on [-16, -8].
* ``reciprocal(x)``: Newton y <- y (2 - x y) from y0 = 3 exp(1/2 - x) + 0.003 (CrypTen's
  start), 10 iterations. Relative error < 1e-3 on [0.1, 30].
* ``inv_sqrt(x)``: Newton y <- y (3 - x y^2) / 2 from y0 = 2.2 exp(-(x/2 + 0.2)) + 0.2 - x/1024,
  6 iterations. Relative error < 1e-3 on [0.05, 20] (squared norms of embedding means).
* ``hard_sigmoid(x)``: clip(1/2 + x/4, 0, 1), exact up to fixed-point rounding for |x| < 128;
  the clip decisions use x truncated to 6 fractional bits (two 14-bit comparisons from one
  masked opening), so a
  decision can differ from the exact one only within 2^-6 of the kinks. The plaintext
  reference training uses the same function.
"""

from __future__ import annotations

from splitface.servers.mpc import compare
from splitface.servers.mpc.beaver import mul_many
from splitface.servers.mpc.share import AuthShare
from splitface.shared.fixedpoint import F

EXP_ITERATIONS = 8
RECIPROCAL_ITERATIONS = 10
INV_SQRT_ITERATIONS = 6
SIGMOID_CMP_BITS = 14
SIGMOID_TEST_FRAC = 6  # the clip decisions see x with 6 fractional bits


def exp(x: AuthShare) -> AuthShare:
    """e^x by the limit (1 + x/2^n)^(2^n)."""
    with x.party.op("exp"):
        y = x * (1.0 / (1 << EXP_ITERATIONS)) + 1.0
        for _ in range(EXP_ITERATIONS):
            y = y * y
    return y


def reciprocal(x: AuthShare) -> AuthShare:
    """1/x for x in [0.1, 30]."""
    with x.party.op("reciprocal"):
        y = exp(0.5 - x) * 3.0 + 0.003
        for _ in range(RECIPROCAL_ITERATIONS):
            y = y * (2.0 - x * y)
    return y


def inv_sqrt(x: AuthShare) -> AuthShare:
    """1/sqrt(x) for x in [0.05, 20]."""
    with x.party.op("inv_sqrt"):
        y = exp(x * -0.5 - 0.2) * 2.2 + 0.2 - x * (1.0 / 1024)
        for _ in range(INV_SQRT_ITERATIONS):
            y = y * (3.0 - x * (y * y)) * 0.5
    return y


def hard_sigmoid(x: AuthShare) -> AuthShare:
    """clip(1/2 + x/4, 0, 1) with one masked opening for both clip tests and one product.

    below = [x/4 + 1/2 < 0] and above = [x/4 - 1/2 >= 0] share one comparison mask; at
    x/4 = 1/2 both give 1. For x at F fractional bits, x/4 is exact (the scale gains two
    bits) and the tests run on a coarse copy truncated to 6 fractional bits. For an
    unscaled product (x.frac > F) the rescaling truncation and the tests come from the
    same opening (compare.truncate_and_test), which saves two rounds. The result has
    F + 2 fractional bits.
    """
    with x.party.op("sigmoid"):
        if x.frac > F:
            two = 2 << x.frac
            skip = x.frac - SIGMOID_TEST_FRAC
            xf, (below, not_above) = compare.truncate_and_test(
                x, x.frac - F, [two, -two], skip, SIGMOID_CMP_BITS)
            quarter = AuthShare(x.party, xf.val, xf.mac, F + 2)
        else:
            quarter = AuthShare(x.party, x.val, x.mac, x.frac + 2)
            shift = quarter.frac - (SIGMOID_TEST_FRAC + 2)
            coarse = quarter.truncate(shift) if shift > 0 else quarter
            half = 1 << (coarse.frac - 1)
            below, not_above = compare.ltz_shifted(coarse, [half, -half], SIGMOID_CMP_BITS)
        s = quarter + 0.5
        above = 1 - not_above
        (cut,) = mul_many([(below + above, s)])
        return s - cut + above
