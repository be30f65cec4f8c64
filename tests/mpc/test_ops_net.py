"""Engine operations over the real path: dealer + P0 + P1 as processes on CurveZMQ loopback,
inputs and outputs through the client protocol (this process plays the edge)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from splitface.shared.fixedpoint import F
from tests.mpc.netclient import mpc_op, run_job

ULP = 2.0**-F
NET = settings(max_examples=15, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])


def reals(shape, bound):
    return arrays(np.float64, shape, elements=st.floats(-bound, bound, allow_nan=False,
                                                         allow_subnormal=False))


def enc(x):
    return np.rint(np.asarray(x) * 2**F) / 2**F


shapes = st.lists(st.integers(1, 5), min_size=1, max_size=2).map(tuple)
mags = st.sampled_from([0.01, 1.0, 100.0])


@given(data=st.data(), shape=shapes, mag=mags)
@NET
def test_arithmetic(cluster, data, shape, mag):
    a, b = data.draw(reals(shape, mag)), data.draw(reals(shape, mag))
    np.testing.assert_allclose(mpc_op(cluster, "add", a, b, out_shape=shape), enc(a) + enc(b),
                               atol=1e-9)
    np.testing.assert_allclose(mpc_op(cluster, "sub", a, b, out_shape=shape), enc(a) - enc(b),
                               atol=1e-9)
    np.testing.assert_allclose(mpc_op(cluster, "neg", a, out_shape=shape), -enc(a), atol=1e-9)
    np.testing.assert_allclose(mpc_op(cluster, "mul", a, b, out_shape=shape), enc(a) * enc(b),
                               atol=2 * ULP)
    np.testing.assert_allclose(mpc_op(cluster, "mul_public", a, public=[-1.5], out_shape=shape),
                               enc(a) * -1.5, atol=2 * ULP)
    np.testing.assert_allclose(mpc_op(cluster, "add_public", a, public=[0.25], out_shape=shape),
                               enc(a) + 0.25, atol=1e-9)


@given(data=st.data(), m=st.integers(1, 4), n=st.integers(1, 12), p=st.integers(1, 4))
@NET
def test_matrix(cluster, data, m, n, p):
    a, b = data.draw(reals((m, n), 2.0)), data.draw(reals((n, p), 2.0))
    np.testing.assert_allclose(mpc_op(cluster, "matmul", a, b, out_shape=(m, p)), enc(a) @ enc(b),
                               atol=2 * ULP)
    np.testing.assert_allclose(mpc_op(cluster, "matmul_public", a, public=[b.tolist()],
                                      out_shape=(m, p)), enc(a) @ enc(b), atol=4 * ULP * n)
    np.testing.assert_allclose(mpc_op(cluster, "sum0", a, out_shape=(n,)), enc(a).sum(0),
                               atol=1e-9)
    np.testing.assert_allclose(mpc_op(cluster, "transpose", a, out_shape=(n, m)), enc(a).T)


@given(data=st.data(), shape=shapes, mag=st.sampled_from([1e-3, 1.0, 1e4]))
@NET
def test_compare_select(cluster, data, shape, mag):
    a, b = data.draw(reals(shape, mag)), data.draw(reals(shape, mag))
    a = np.where(data.draw(st.booleans()), a, b)
    ea, eb = enc(a), enc(b)
    np.testing.assert_array_equal(mpc_op(cluster, "lt", a, b, out_shape=shape), ea < eb)
    np.testing.assert_array_equal(mpc_op(cluster, "gt", a, b, out_shape=shape), ea > eb)
    np.testing.assert_array_equal(mpc_op(cluster, "eqz", a - b, out_shape=shape),
                                  enc(a - b) == 0)
    c = (ea < eb).astype(np.float64)
    np.testing.assert_allclose(mpc_op(cluster, "select", c, a, b, out_shape=shape),
                               np.where(c > 0.5, ea, eb), atol=1e-9)


@given(data=st.data(), n=st.integers(1, 30))
@NET
def test_argmax(cluster, data, n):
    v = data.draw(reals((n,), 1.0))
    got = mpc_op(cluster, "argmax", v, out_shape=(2,))
    assert got[1] == np.argmax(enc(v))
    assert abs(got[0] - enc(v).max()) < 1e-9


@given(data=st.data(), m=st.integers(1, 30), mag=st.sampled_from([1.0, 2.0**30, 2.0**45]))
@NET
def test_truncation(cluster, data, m, mag):
    xs = data.draw(reals((6,), mag))
    got = mpc_op(cluster, "trunc", xs, public=[m], out_shape=(6,))
    got_units = np.rint(got * 2.0 ** max(F - m, 0)).astype(np.int64)  # result keeps F-m bits
    exact = np.floor_divide(np.rint(xs * 2**F).astype(np.int64), 1 << m)
    assert np.all((got_units == exact) | (got_units == exact + 1))


def test_fixed_model_reuse(cluster):
    """W - B is opened once; each query opens only its own masked vector."""
    rng = np.random.default_rng(7)
    w = rng.normal(size=(16, 40)) / 4
    run_job(cluster, "tests.mpc.jobs:fixed_prepare", [w], 0, shape=[16, 40], key="gallery")
    before = cluster.stats()[0]["bytes_sent"]
    for _ in range(3):
        x = rng.normal(size=16) / 4
        vals, frac = run_job(cluster, "tests.mpc.jobs:fixed_query", [x], 40, n=16, key="gallery")
        np.testing.assert_allclose(vals / 2**frac, enc(x) @ enc(w), atol=2 * ULP)
    per_query = (cluster.stats()[0]["bytes_sent"] - before) / 3
    # 16 masked inputs + 40 truncations + 40 outputs + checks; nothing proportional to 16 x 40
    assert per_query < 16 * 16 + 40 * 16 * 2 + 2000
