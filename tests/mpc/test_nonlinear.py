"""Non-linear functions against numpy on their documented domains."""

import numpy as np
import pytest

from splitface.servers.mpc import nonlinear
from splitface.servers.mpc.beaver import mul_many
from splitface.servers.mpc.compare import party_constant
from splitface.servers.mpc.local_runtime import run_pair
from splitface.shared.fixedpoint import F
from tests.mpc.harness import as_share, share_floats


def evaluate(parties, core, fn, x):
    r0, _ = run_pair(lambda p, t: fn(as_share(p, t)).reveal_float(), parties,
                     share_floats(core, x))
    return r0


def test_exp(parties, core):
    x = np.concatenate([np.linspace(-8, 3, 60), np.linspace(-16, -8, 20)])
    got, ref = evaluate(parties, core, nonlinear.exp, x), np.exp(x)
    mid = x >= -8
    assert np.all(np.abs(got[mid] - ref[mid]) <= 0.02 * ref[mid] + 1e-3)
    assert np.all(np.abs(got[~mid] - ref[~mid]) < 2e-3)


def test_reciprocal(parties, core):
    x = np.geomspace(0.1, 30, 50)
    got = evaluate(parties, core, nonlinear.reciprocal, x)
    np.testing.assert_allclose(got, 1 / x, rtol=1e-3, atol=2e-4)


def test_inv_sqrt(parties, core):
    x = np.geomspace(0.05, 20, 50)
    got = evaluate(parties, core, nonlinear.inv_sqrt, x)
    np.testing.assert_allclose(got, 1 / np.sqrt(x), rtol=1e-3, atol=2e-4)


@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0])
def test_hard_sigmoid(parties, core, scale):
    x = np.linspace(-1.2, 1.2, 61) * scale
    x = np.concatenate([x, [-2.0, 2.0, -2.01, 2.01, -1.99, 1.99]])
    got = evaluate(parties, core, nonlinear.hard_sigmoid, x)
    ref = np.clip(0.5 + x / 4, 0, 1)
    near_kink = np.minimum(np.abs(x - 2), np.abs(x + 2)) < 2 ** -4
    assert np.all(np.abs(got - ref)[~near_kink] < 1e-4)
    assert np.all(np.abs(got - ref)[near_kink] < 2 ** -5)


@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0])
def test_hard_sigmoid_of_unscaled_product(parties, core, scale):
    """An unscaled product (2F fractional bits) takes the merged truncate-and-test path."""
    x = np.linspace(-1.2, 1.2, 61) * scale
    x = np.concatenate([x, [-2.0, 2.0, -2.01, 2.01, -1.99, 1.99]])

    def fn(s):
        (prod,) = mul_many([(s, as_one(s))])
        assert prod.frac == 2 * F
        return nonlinear.hard_sigmoid(prod)

    got = evaluate(parties, core, fn, x)
    ref = np.clip(0.5 + x / 4, 0, 1)
    near_kink = np.minimum(np.abs(x - 2), np.abs(x + 2)) < 2 ** -4
    assert np.all(np.abs(got - ref)[~near_kink] < 1e-4)
    assert np.all(np.abs(got - ref)[near_kink] < 2 ** -5)


def as_one(s):
    """A shared 1.0 at F fractional bits (a public constant, not a product)."""
    return party_constant(s.party, np.ones(s.shape, dtype=np.int64), F)
