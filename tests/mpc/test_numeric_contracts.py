"""Every primitive at both edges of its documented range (docs/PROTOCOL.md, "Primitives:
range, error, rounds and bytes"), including each case issue 11 found silently wrong."""

from __future__ import annotations

import numpy as np
import pytest

from splitface.servers.mpc import compare, nonlinear
from splitface.servers.mpc.beaver import mul_many
from splitface.servers.mpc.local_runtime import make_parties, run_pair
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.recognition import training
from splitface.shared import fixedpoint, training_range
from splitface.shared.fixedpoint import F
from tests.mpc.harness import as_share, share_floats, share_ints
from tests.mpc.test_identify import _plain, _run, unit

ULP = 2.0 ** -F
# |a - b| < 2^(63 - F) = 2^47: the difference of two compared reals must not wrap Z_2^64
CMP_LIMIT = 2.0 ** (63 - F)


def _pair(fn, *xs, ints=False):
    core = DealerCore()
    share = share_ints if ints else share_floats
    r0, r1 = run_pair(lambda p, *ts: fn(*[as_share(p, t) for t in ts]).reveal_float(),
                      make_parties(core), *[share(core, np.asarray(x)) for x in xs])
    np.testing.assert_array_equal(r0, r1)
    return r0


def test_comparisons_hold_across_the_whole_range():
    """a < b and a == b were wrong from |a - b| = 2^19 (524288.0 < 0 gave 1, 1048576.0 == 0
    gave 1); now exact up to the edge of the range (float64 holds 2^46 - 2^-6 exactly)."""
    h = 2.0**46 - 2.0**-6
    a = np.array([524288.0, 1048576.0, 2.0**30, 2.0**40, h, -h, h, h - 2.0**-6, 0.0, ULP,
                  -ULP, 3.0, 2.0**46 - 1.0])
    b = np.array([0.0, 0.0, 0.0, 2.0**40, -h, h, h - 2.0**-6, h, 0.0, 0.0, 0.0, 3.0,
                  1.0 - 2.0**46])
    assert np.all(np.abs(a - b) < CMP_LIMIT)
    np.testing.assert_array_equal(_pair(lambda x, y: x < y, a, b), a < b)
    np.testing.assert_array_equal(_pair(lambda x, y: (x - y).eqz(), a, b), a == b)
    np.testing.assert_array_equal(_pair(lambda x, y: x >= y, a, b), a >= b)


def test_products_hold_up_to_their_edge():
    """x * y at F bits is exact to a unit up to |xy| < 2^30 (the unscaled product must stay
    below 2^62 for the truncation); 40000 x 40000 = 1.6e9 is beyond it, so the engine's
    callers keep products inside by construction (docs/PROTOCOL.md)."""
    x = np.array([2.0**15, -2.0**15, 32767.5, 2.0**14, 1e-3, 0.5])
    y = np.array([2.0**15 - 1, 2.0**15 - 1, -32767.0, 2.0**15, 1e-3, -0.25])
    assert np.all(np.abs(x * y) < 2.0**30)
    got = _pair(lambda a, b: a * b, x, y)
    want = fixedpoint.decode(fixedpoint.encode(x)) * fixedpoint.decode(fixedpoint.encode(y))
    assert np.all(np.abs(got - want) <= 2 * ULP)


@pytest.mark.parametrize("unscaled", [False, True])
def test_hard_sigmoid_at_the_edges(unscaled):
    """Issue 11: about +-31 for 126 <= |x| < 128. Exact clip everywhere (the unscaled path
    decides within 2^-6 below a kink, never far from it)."""
    x = np.array([-2.0**29, -1e6, -128.0, -127.99, -127.0, -126.0, -2.01, -2.0, -1.0, 0.0,
                  1.0, 1.99, 126.0, 127.0, 127.99, 128.0, 1e6, 2.0**29])

    def fn(s):
        if not unscaled:
            return nonlinear.hard_sigmoid(s)
        one = compare.party_constant(s.party, np.ones(s.shape, dtype=np.int64), F)
        (prod,) = mul_many([(s, one)])  # x at 2F fractional bits, as the training's logits
        return nonlinear.hard_sigmoid(prod)

    got = _pair(fn, x)
    want = np.clip(0.5 + x / 4, 0, 1)
    assert np.all(np.abs(got - want) <= 2.0 ** -8), np.abs(got - want).max()


def test_exp_meets_its_documented_bound():
    """exp is (1 + x/256)^256: relative error below x^2/512 + 0.03 on [-8, 3] (method error
    1 - e^(-x^2/512) plus fixed point); the old 2 % claim failed at x = -8 (13.6 %).
    Below -8, absolute error 1e-4. It only seeds Newton's iterations (reciprocal, inv_sqrt)."""
    x = np.concatenate([np.linspace(-8, 3, 89), [-8.0, -7.999, 3.0]])
    got = _pair(nonlinear.exp, x)
    rel = np.abs(got - np.exp(x)) / np.exp(x)
    assert np.all(rel <= x**2 / 512 + 0.03), (x[np.argmax(rel - x**2 / 512)], rel.max())
    low = np.linspace(-16, -8, 30)
    assert np.all(np.abs(_pair(nonlinear.exp, low) - np.exp(low)) < 1e-4)


@pytest.mark.parametrize("n", [4, 8, 64])
def test_coarse_argmax_loss_is_bounded_by_levels_under_compounding_ties(n):
    """Near-ties placed so that the first element's lineage meets a slightly larger value
    at every level: each coarse comparison may keep the first, so the pick may lose up to
    2^skip - 1 per level, never more than ceil(log2 N) (2^skip - 1) in all."""
    skip, bits = 8, 20
    delta = (1 << skip) - 1
    levels = int(np.ceil(np.log2(n)))
    xs = np.zeros(n, dtype=np.int64)
    for k in range(levels):  # element 2^k meets element 0's lineage at level k + 1
        xs[1 << k] = (k + 1) * delta
    worst = []
    for _ in range(4):
        core = DealerCore()

        def fn(party, t):
            best, idx = compare.argmax(as_share(party, t), bits, skip)
            return best.reveal_float(), idx.reveal_float()

        (best, idx), _ = run_pair(fn, make_parties(core), share_ints(core, xs))
        assert xs[int(idx)] == best
        worst.append(xs.max() - best)
    assert max(worst) <= levels * delta, worst


@pytest.mark.parametrize("n", [4, 8, 64])
def test_identification_stays_within_two_units_under_compounding_near_ties(n):
    """Scores are truncated once to 12 bits and then compared exactly: whatever the ties,
    the pick is within 2^-11 of the best score, for any N (no loss builds up per level)."""
    rng = np.random.default_rng(n)  # test data only
    base = unit(rng.normal(size=16))
    steps = np.arange(n)[::-1, None] * 1e-5  # near ties a few units of 2^-12 apart
    templates = unit(base[None, :] + steps * rng.normal(size=(1, 16)) + rng.normal(
        size=(n, 16)) * 1e-5)
    names = [f"near {i:03d}" for i in range(n)]
    got, ok = _run(DealerCore(), templates, base, 0.5, names)
    _, exact = _plain(templates, base, 0.5, 32)
    j = names.index(got)
    assert ok == 1 and exact[j] / 2**32 > exact.max() / 2**32 - 2.0 ** -11, \
        (got, (exact.max() - exact[j]) / 2**32)


@pytest.mark.parametrize("bound", [0.5, 9.0, 162.4])
def test_bounded_hard_sigmoid_is_exact_up_to_its_bound(bound):
    """Training sizes the clip tests' window from its public logit bound: still exact (the
    unscaled product's 2^-6 coarseness aside) at and inside +-bound, kinks included."""
    x = np.array([-bound, -bound + 2.0**-4, -2.01, -2.0, -1.99, 0.0, 1.99, 2.0, 2.01,
                  bound - 2.0**-4, bound])
    x = x[np.abs(x) <= bound]

    def fn(s):
        one = compare.party_constant(s.party, np.ones(s.shape, dtype=np.int64), F)
        (prod,) = mul_many([(s, one)])
        return nonlinear.hard_sigmoid(prod, bound)

    got = _pair(fn, x)
    assert np.all(np.abs(got - np.clip(0.5 + x / 4, 0, 1)) <= 2.0 ** -8)


def test_the_sigmoid_window_is_narrowed_by_the_bound():
    """The window really is the bound's: 15 bits for the benchmark's training (lr 1, 40
    steps) instead of the whole ring's 38, and a logit far outside it is misjudged, which
    is why training derives the bound from its settings (training_range.logit_bound)."""
    frac, skip = 2 * F, 2 * F - nonlinear.SIGMOID_TEST_FRAC
    assert nonlinear.sigmoid_test_bits(frac, skip, None) == 64 - skip
    bench = training_range.logit_bound(1000, 5, 128, 1.0)
    assert nonlinear.sigmoid_test_bits(frac, skip, bench) == 15
    assert nonlinear.sigmoid_test_bits(frac, skip, 2.03 * 2.0**29) == 64 - skip
    with pytest.raises(ValueError):
        nonlinear.sigmoid_test_bits(frac, skip, float("nan"))
    far = np.array([-(2.0**10) - 3.0, 2.0**10 + 3.0])  # the 0.5-bound window wraps here

    def fn(s):
        one = compare.party_constant(s.party, np.ones(s.shape, dtype=np.int64), F)
        (prod,) = mul_many([(s, one)])
        return nonlinear.hard_sigmoid(prod, 0.5)

    assert np.any(np.abs(_pair(fn, far) - np.clip(0.5 + far / 4, 0, 1)) > 0.5)


def test_training_tests_its_logits_in_the_bounds_window(monkeypatch):
    """train_logistic passes its run's logit bound to every hard sigmoid."""
    seen = []
    real = nonlinear.hard_sigmoid

    def spy(x, bound=None):
        seen.append(bound)
        return real(x, bound)

    monkeypatch.setattr(nonlinear, "hard_sigmoid", spy)
    rng = np.random.default_rng(5)  # synthetic test data
    x = rng.normal(size=(40, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.arange(40) % 3
    opts = training.SgdOptions(epochs=2, batch_size=16, learning_rate=0.5)
    core = DealerCore()
    run_pair(lambda p, t: training.train_logistic(as_share(p, t), y, 3, opts).w.reveal_float(),
             make_parties(core), share_floats(core, x))
    assert seen and set(seen) == {training_range.logit_bound(40, 2, 16, 0.5)}
