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

EXP_ITERATIONS = 8
RECIPROCAL_ITERATIONS = 10
INV_SQRT_ITERATIONS = 6
SIGMOID_CMP_BITS = 14
SIGMOID_CMP_SHIFT = 10  # keep 6 fractional bits of x for the clip decisions


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
    """clip(1/2 + x/4, 0, 1): one truncation, one masked opening for both clip tests, one product.

    x/4 is exact (the scale gains two fractional bits), so the only truncation is the
    coarse copy for the comparisons. below = [x/4 + 1/2 < 0] and above = [x/4 - 1/2 >= 0]
    come from one comparison mask (compare.ltz_shifted); at x/4 = 1/2 both give 1. The
    result keeps x's scale plus two bits.
    """
    with x.party.op("sigmoid"):
        quarter = AuthShare(x.party, x.val, x.mac, x.frac + 2)
        s = quarter + 0.5
        shift = quarter.frac - (SIGMOID_CMP_SHIFT - 2)
        coarse = quarter.truncate(shift) if shift > 0 else quarter
        half = 1 << (coarse.frac - 1)
        below, not_above = compare.ltz_shifted(coarse, [half, -half], SIGMOID_CMP_BITS)
        above = 1 - not_above
        (cut,) = mul_many([(below + above, s)])
        return s - cut + above
