"""Non-linear functions for training and normalisation, built from products and comparisons.

Documented domains and errors (checked in tests/mpc/test_nonlinear.py against numpy):

* ``exp(x)``: (1 + x/2^8)^(2^8) by 8 squarings. Relative error < x^2/512 + 0.03 on
  [-8, 3] (the method's own 1 - e^(-x^2/512), 12 % at x = -8, plus fixed point: 13.6 %
  measured there), absolute error < 1e-4 on [-16, -8]. Used only to seed Newton's
  iterations, whose results carry the documented errors below.
* ``reciprocal(x)``: Newton y <- y (2 - x y) from y0 = 3 exp(1/2 - x) + 0.003 (CrypTen's
  start), 10 iterations. Relative error < 1e-3 on [0.1, 30].
* ``inv_sqrt(x)``: Newton y <- y (3 - x y^2) / 2 from y0 = 2.2 exp(-(x/2 + 0.2)) + 0.2 - x/1024,
  6 iterations. Relative error < 1e-3 on [0.05, 20] (squared norms of embedding means).
* ``hard_sigmoid(x, bound)``: clip(1/2 + x/4, 0, 1) for every x the ring holds (|x| < 2^(63-F)
  at F fractional bits): the two clip tests are exact comparisons over the whole ring, except
  for an unscaled product, whose tests read x above its lowest frac - 6 bits (the opening
  it shares with the rescaling truncation), so a decision can differ from the exact one
  only within 2^-6 below a kink. With a public ``bound`` on |x| the tests' window covers
  only [-bound - 2, bound + 2] (training's logits: ``training_range.logit_bound``), and
  their keys span that many bits. The plaintext reference training uses the same function.
"""

from __future__ import annotations

import math

from splitface.servers.mpc import compare
from splitface.servers.mpc.beaver import mul_many
from splitface.servers.mpc.share import AuthShare
from splitface.shared.fixedpoint import F, K

EXP_ITERATIONS = 8
RECIPROCAL_ITERATIONS = 10
INV_SQRT_ITERATIONS = 6
SIGMOID_TEST_FRAC = 6  # the clip decisions of an unscaled product see x at 6 fractional bits


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


def hard_sigmoid(x: AuthShare, bound: float | None = None) -> AuthShare:
    """clip(1/2 + x/4, 0, 1) with one masked opening for both clip tests and one product.

    below = [x/4 + 1/2 < 0] and above = [x/4 - 1/2 >= 0] share one comparison mask; at
    x/4 = 1/2 both give 1. For x at F fractional bits, x/4 is exact (the scale gains two
    bits) and the tests are exact over the whole ring. For an unscaled product
    (x.frac > F) the rescaling truncation and the tests come from the same opening
    (compare.truncate_and_test), reading x above its lowest frac - 6 bits. The result has
    F + 2 fractional bits. ``bound``: a public bound on |x| (real units) that the caller
    guarantees; the tests then span only the bits it needs (14 DCF levels instead of 37
    for the benchmark's training), and are wrong beyond it.
    """
    with x.party.op("sigmoid"):
        if x.frac > F:
            two = 2 << x.frac
            skip = x.frac - SIGMOID_TEST_FRAC
            xf, (below, not_above) = compare.truncate_and_test(
                x, x.frac - F, [two, -two], skip, sigmoid_test_bits(x.frac, skip, bound))
            quarter = AuthShare(x.party, xf.val, xf.mac, F + 2)
        else:
            quarter = AuthShare(x.party, x.val, x.mac, x.frac + 2)
            half = 1 << (quarter.frac - 1)
            below, not_above = compare.ltz_shifted(quarter, [half, -half],
                                                   sigmoid_test_bits(x.frac, 0, bound))
        s = quarter + 0.5
        above = 1 - not_above
        (cut,) = mul_many([(below + above, s)])
        return s - cut + above


def sigmoid_test_bits(frac: int, skip: int, bound: float | None) -> int:
    """The window (bits above ``skip``) of hard_sigmoid's clip tests for |x| <= bound at
    ``frac`` fractional bits: the tested values x +- 2 reach (bound + 2) * 2^frac, and a
    window of ``bits`` holds |y| < 2^(skip+bits-1) - 2^skip. Whole ring without a bound."""
    whole = K - skip
    if bound is None:
        return whole
    if not math.isfinite(bound) or bound < 0:
        raise ValueError(f"hard_sigmoid bound must be finite and >= 0, got {bound}")
    reach = math.ceil((bound + 2) * 2.0 ** (frac - skip))  # |x +- 2| in units of 2^skip
    return min(whole, max(2, 1 + (reach + 1).bit_length()))
