"""Every engine operation against numpy, with random shapes and magnitudes (in-process parties).

The parties run in two threads over a LocalChannel that still serialises every message;
test_ops_net.py runs the same operations over real sockets and processes.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from splitface.servers.mpc import compare
from splitface.servers.mpc.beaver import FixedOperand
from splitface.servers.mpc.errors import ShapeError
from splitface.servers.mpc.fss import kernels
from splitface.servers.mpc.local_runtime import run_pair
from splitface.shared.fixedpoint import F
from tests.mpc.harness import as_share, share_floats, share_ints

ULP = 2.0**-F
SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def reals(shape, bound):
    return arrays(np.float64, shape, elements=st.floats(-bound, bound, allow_nan=False,
                                                         allow_subnormal=False))


shapes = st.lists(st.integers(1, 6), min_size=1, max_size=2).map(tuple)
magnitudes = st.sampled_from([1e-3, 1.0, 30.0, 1000.0])


def run(parties, core, fn, *xs, ints=False):
    share = share_ints if ints else share_floats
    shared = [share(core, np.asarray(x)) for x in xs]
    r0, r1 = run_pair(lambda p, *ts: fn(*[as_share(p, t) for t in ts]).reveal_float(),
                      parties, *shared)
    np.testing.assert_array_equal(r0, r1)
    return r0


@contextlib.contextmanager
def recorded_requests(party):
    """The kinds of the preprocessing requests a block makes, in order."""
    kinds, fetch = [], party.prep.fetch

    def recording(req):
        kinds.append(req.kind)
        return fetch(req)

    party.prep.fetch = recording
    try:
        yield kinds
    finally:
        del party.prep.fetch


def enc(x):
    return np.rint(np.asarray(x) * 2**F) / 2**F


@given(data=st.data(), shape=shapes, mag=magnitudes)
@SETTINGS
def test_linear(parties, core, data, shape, mag):
    a, b = data.draw(reals(shape, mag)), data.draw(reals(shape, mag))
    c = data.draw(st.floats(-mag, mag))
    np.testing.assert_allclose(run(parties, core, lambda x, y: x + y - c, a, b),
                               enc(a) + enc(b) - enc(c), atol=1e-9)
    np.testing.assert_allclose(run(parties, core, lambda x: -x + 2, a), 2 - enc(a), atol=1e-9)


@given(data=st.data(), shape=shapes, mag=magnitudes)
@SETTINGS
def test_mul(parties, core, data, shape, mag):
    a, b = data.draw(reals(shape, mag)), data.draw(reals(shape, mag))
    got = run(parties, core, lambda x, y: x * y, a, b)
    np.testing.assert_allclose(got, enc(a) * enc(b), atol=2 * ULP)


@given(data=st.data(), mag=magnitudes, k=st.integers(-50, 50))
@SETTINGS
def test_public_products(parties, core, data, mag, k):
    a = data.draw(reals((3, 4), mag))
    c = data.draw(st.floats(-4, 4))
    np.testing.assert_allclose(run(parties, core, lambda x: x * c, a), enc(a) * enc(c),
                               atol=2 * ULP)
    np.testing.assert_allclose(run(parties, core, lambda x: x * k, a), enc(a) * k, atol=1e-9)
    w = data.draw(reals((4, 2), 2.0))
    np.testing.assert_allclose(run(parties, core, lambda x: x @ w, a), enc(a) @ enc(w),
                               atol=8 * ULP * (mag + 1))
    np.testing.assert_allclose(run(parties, core, lambda x: w.T @ x.T, a), enc(w).T @ enc(a).T,
                               atol=8 * ULP * (mag + 1))


@given(data=st.data(), m=st.integers(1, 5), n=st.integers(1, 20), p=st.integers(1, 5),
       mag=st.sampled_from([0.1, 1.0, 10.0]))
@SETTINGS
def test_matmul(parties, core, data, m, n, p, mag):
    a, b = data.draw(reals((m, n), mag)), data.draw(reals((n, p), mag))
    got = run(parties, core, lambda x, y: x @ y, a, b)
    np.testing.assert_allclose(got, enc(a) @ enc(b), atol=2 * ULP)
    v = data.draw(reals((n,), mag))
    got = run(parties, core, lambda x, y: x @ y, v, b)
    np.testing.assert_allclose(got, enc(v) @ enc(b), atol=2 * ULP)


@given(data=st.data(), n=st.integers(1, 16), p=st.integers(1, 30))
@SETTINGS
def test_fixed_operand(parties, core, data, n, p):
    w, xs = data.draw(reals((n, p), 1.0)), data.draw(reals((3, n), 1.0))

    def fn(party, wt, xt):
        fo = FixedOperand(as_share(party, wt), party.fresh_key("w"))
        x = as_share(party, xt)
        return [fo.left_matmul(x[i]).reveal_float() for i in range(3)] + \
            [fo.left_matmul(x).reveal_float()]

    r0, r1 = run_pair(fn, parties, share_floats(core, w), share_floats(core, xs))
    for i in range(3):
        np.testing.assert_allclose(r0[i], enc(xs[i]) @ enc(w), atol=2 * ULP)
    np.testing.assert_allclose(r0[3], enc(xs) @ enc(w), atol=2 * ULP)


@given(data=st.data(), shape=shapes, mag=st.sampled_from([1e-4, 1.0, 1e3, 1e5]))
@SETTINGS
def test_comparisons(parties, core, data, shape, mag):
    a, b = data.draw(reals(shape, mag)), data.draw(reals(shape, mag))
    a = np.where(data.draw(st.booleans()), a, b)  # exercise ties as well
    ea, eb = enc(a), enc(b)
    np.testing.assert_array_equal(run(parties, core, lambda x, y: x < y, a, b), ea < eb)
    np.testing.assert_array_equal(run(parties, core, lambda x, y: x >= y, a, b), ea >= eb)
    np.testing.assert_array_equal(run(parties, core, lambda x, y: x > y, a, b), ea > eb)
    np.testing.assert_array_equal(run(parties, core, lambda x, y: (x - y).eqz(), a, b), ea == eb)


@given(bits=st.integers(2, 63), data=st.data())
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_ltz_bit_widths(parties, core, bits, data):
    """ltz at every width, including values right at the bound 2^(bits-1) - 1."""
    hi = (1 << (bits - 1)) - 1
    xs = np.array(data.draw(st.lists(st.integers(-hi, hi), min_size=1, max_size=12))
                  + [hi, -hi, 0, -1, 1][: max(1, min(5, hi + 1))], dtype=np.int64)
    xs = np.clip(xs, -hi, hi)
    got = run(parties, core, lambda x: x.ltz(bits), xs, ints=True)
    np.testing.assert_array_equal(got, xs < 0)
    got = run(parties, core, lambda x: x.eqz(bits), xs, ints=True)
    np.testing.assert_array_equal(got, xs == 0)


@given(data=st.data(), n=st.integers(1, 40), mag=st.sampled_from([0.01, 1.0, 100.0]))
@SETTINGS
def test_argmax_and_select(parties, core, data, n, mag):
    v = data.draw(reals((n,), mag))
    if n > 2 and data.draw(st.booleans()):
        v[n - 1] = v[0]  # a tie: the first maximum wins, as in numpy
    ev = enc(v)

    def fn(party, t):
        x = as_share(party, t)
        m, i = compare.argmax(x, bits=F + 10)
        return m.reveal_float(), i.reveal_float()

    (m, i), _ = run_pair(fn, parties, share_floats(core, v))
    assert i == np.argmax(ev) and m == pytest.approx(ev.max(), abs=1e-9)
    b = data.draw(reals((n,), mag))
    got = run(parties, core, lambda x, y: compare.select(x > y, x, y), v, b)
    np.testing.assert_allclose(got, np.maximum(ev, enc(b)), atol=1e-9)


@given(data=st.data(), shape=shapes, m=st.integers(1, 40),
       mag=st.sampled_from([1.0, 2.0**20, 2.0**40, 2.0**61]))
@SETTINGS
def test_truncation_bound(parties, core, data, shape, m, mag):
    xs = np.array(data.draw(arrays(np.int64, shape, elements=st.integers(-int(mag), int(mag)))))
    got = run(parties, core, lambda x: x.truncate(m), xs, ints=True)
    exact = np.floor_divide(xs, 1 << m)
    assert np.all((got == exact) | (got == exact + 1))


def test_structure_ops(parties, core):
    a = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    np.testing.assert_allclose(run(parties, core, lambda x: x.sum(0), a), enc(a).sum(0),
                               atol=1e-9)
    np.testing.assert_allclose(run(parties, core, lambda x: x[1:, ::2].T, a), enc(a)[1:, ::2].T)
    np.testing.assert_allclose(run(parties, core, lambda x: x.reshape(2, 6), a),
                               enc(a).reshape(2, 6))


def test_misuse_is_loud(parties, core):
    def fn(party, t):
        x = as_share(party, t)
        with pytest.raises(TypeError, match="truth value"):
            bool(x)
        with pytest.raises(ShapeError):
            x @ x  # (3,4) @ (3,4)
        with pytest.raises(ShapeError):
            compare.argmax(x)
        with pytest.raises(TypeError):
            x + "a"
        return True

    run_pair(fn, parties, share_floats(core, np.zeros((3, 4))))


def test_fixed_operand_checked_early(parties, core, monkeypatch):
    """Large models are MAC-checked as soon as they are opened (their copies then go):
    the same result."""
    from splitface.servers.mpc import beaver

    monkeypatch.setattr(beaver, "EARLY_CHECK_ELEMENTS", 0)
    rng = np.random.default_rng(5)
    w, x = rng.normal(size=(9, 30)) / 3, rng.normal(size=(5, 9)) / 3

    def fn(party, wt, xt):
        fixed = FixedOperand(as_share(party, wt), party.fresh_key("w"))
        assert party.pending_checks == 0
        return fixed.left_matmul(as_share(party, xt)).reveal_float()

    r0, _ = run_pair(fn, parties, share_floats(core, w), share_floats(core, x))
    np.testing.assert_allclose(r0, enc(x) @ enc(w), atol=2 * ULP)


@given(data=st.data(), n=st.integers(1, 30), bits=st.sampled_from([8, 14, 20, 36]))
@SETTINGS
def test_ltz_shifted_shares_one_mask(parties, core, data, n, bits):
    from splitface.servers.mpc import compare

    lim = (1 << (bits - 2)) - 1
    xs = np.array(data.draw(st.lists(st.integers(-lim, lim), min_size=n, max_size=n)))
    shifts = data.draw(st.lists(st.integers(-lim, lim), min_size=1, max_size=3))

    def fn(party, t):
        x = as_share(party, t)
        with recorded_requests(party) as kinds:
            outs = compare.ltz_shifted(x, shifts, bits)
        return [o.reveal_float() for o in outs], kinds

    (outs, kinds), _ = run_pair(fn, parties, share_ints(core, xs))
    for t, got in zip(shifts, outs):
        np.testing.assert_array_equal(got, (xs + t) < 0)
    # one comparison mask (a DCF key) for every shift, and nothing else: no products
    assert kinds == ["ltz"]


@given(data=st.data(), n=st.integers(1, 30), m=st.integers(1, 40),
       skip=st.integers(0, 30), bits=st.sampled_from([4, 8, 14, 20]))
@SETTINGS
def test_truncate_and_test_from_one_opening(parties, core, data, n, m, skip, bits):
    """One opening gives x >> m (error {0, +1}) and sign tests exact outside [-2^skip, 0)."""
    lim = (1 << (skip + bits - 2)) - 1
    xs = np.array(data.draw(st.lists(st.integers(-lim, lim), min_size=n, max_size=n)))
    shifts = data.draw(st.lists(st.integers(-lim // 2, lim // 2),
                                min_size=1, max_size=3))

    def fn(party, t):
        x = as_share(party, t)
        with recorded_requests(party) as kinds:
            xt, tests = compare.truncate_and_test(x, m, shifts, skip, bits)
        return xt.reveal_float(), [s.reveal_float() for s in tests], kinds

    (xt, tests, kinds), _ = run_pair(fn, parties, share_ints(core, xs))
    exact = np.floor_divide(xs, 1 << m)
    assert np.all((xt == exact) | (xt == exact + 1))
    for t, got in zip(shifts, tests):
        v = xs + t
        sure = (v >= 0) | (v < -(1 << skip))
        np.testing.assert_array_equal(got[sure], (v < 0)[sure])
        assert np.all((got == 1) | (got == 0))
    # one truncation-and-comparison mask, and nothing else
    assert kinds == ["trunc_ltz"]


def test_truncate_and_test_rejects_bad_windows(parties, core):
    def fn(party, t):
        x = as_share(party, t)
        with pytest.raises(ValueError):
            compare.truncate_and_test(x, 3, [0], 60, 14)
        with pytest.raises(ValueError):
            compare.truncate_and_test(x, 0, [0], 10, 14)
        return True

    run_pair(fn, parties, share_ints(core, np.zeros(3, dtype=np.int64)))


@given(data=st.data(), n=st.integers(1, 30))
@SETTINGS
def test_comparisons_open_one_value_per_element(parties, core, data, n):
    """Several shifts of n values: n masked values opened in one round, nothing more."""
    lim = (1 << 12) - 1
    xs = np.array(data.draw(st.lists(st.integers(-lim, lim), min_size=n, max_size=n)))
    shifts = [1 << 7, -(1 << 7), 3]

    def fn(party, t):
        x = as_share(party, t)
        before, rounds = party.pending_checks, party.channel.stats.rounds
        outs = compare.ltz_shifted(x, shifts, 14)
        opened, rounds = party.pending_checks - before, party.channel.stats.rounds - rounds
        return [o.reveal_float() for o in outs], opened, rounds

    (outs, opened, rounds), _ = run_pair(fn, parties, share_ints(core, xs))
    for t, got in zip(shifts, outs):
        np.testing.assert_array_equal(got, (xs + t) < 0)
    assert opened == n and rounds == 1


@given(data=st.data(), n=st.integers(1, 20), bits=st.sampled_from([2, 8, 31, 64]))
@SETTINGS
def test_exact_comparisons_over_the_whole_window(parties, core, data, n, bits):
    """ltz and eqz are exact for every |x| < 2^(bits-1), both edges included (bits = 64:
    every value of Z_2^64)."""
    lim = (1 << (bits - 1)) - 1
    edge = [0, 1, -1, lim, -lim, -(1 << (bits - 1))] if bits < 64 else \
        [0, 1, -1, 2**63 - 1, -(2**63), 524288 << 16, 1048576 << 16]
    xs = np.array(data.draw(st.lists(st.integers(-lim - 1, lim), min_size=n, max_size=n))
                  + edge, dtype=np.int64)

    def fn(party, t):
        x = as_share(party, t)
        return compare.ltz(x, bits).reveal_float(), compare.eqz(x, bits).reveal_float()

    (lt, eq), _ = run_pair(fn, parties, share_ints(core, xs))
    np.testing.assert_array_equal(lt, xs < 0)
    np.testing.assert_array_equal(eq, xs == 0)


@given(data=st.data(), n=st.integers(1, 20), bits=st.sampled_from([4, 20, 40, 64]))
@SETTINGS
def test_relu_from_one_opening(parties, core, data, n, bits):
    lim = (1 << (bits - 1)) - 1
    xs = np.array(data.draw(st.lists(st.integers(-lim, lim), min_size=n, max_size=n))
                  + [0, lim, -lim], dtype=np.int64)

    def fn(party, t):
        x = as_share(party, t)
        with recorded_requests(party) as kinds:
            before = party.pending_checks
            y = compare.relu(x, bits)
            opened = party.pending_checks - before
        return y.reveal_float(), kinds, opened

    (y, kinds, opened), _ = run_pair(fn, parties, share_ints(core, xs))
    np.testing.assert_array_equal(y, np.maximum(xs, 0))
    assert kinds == ["ltz"] and opened == xs.size


@given(data=st.data(), n=st.integers(1, 20), skip=st.sampled_from([1, 7, 17]),
       bits=st.sampled_from([3, 16, 30]))
@SETTINGS
def test_coarse_relu_errs_only_just_below_zero(parties, core, data, n, skip, bits):
    """relu with skip (the tournament's): max(x, 0), except that x in [-2^skip, 0) may
    come back as x; never any other value."""
    lim = (1 << (skip + bits - 1)) - (1 << skip) - 1
    edge = [0, -1, -(1 << skip), -(1 << skip) - 1, lim, -lim]
    xs = np.array(data.draw(st.lists(st.integers(-lim, lim), min_size=n, max_size=n))
                  + edge, dtype=np.int64)

    def fn(party, t):
        return compare.relu(as_share(party, t), bits, skip).reveal_float()

    y, _ = run_pair(fn, parties, share_ints(core, xs))
    coarse = (xs >= -(1 << skip)) & (xs < 0)
    np.testing.assert_array_equal(y[~coarse], np.maximum(xs, 0)[~coarse])
    assert np.all((y[coarse] == 0) | (y[coarse] == xs[coarse]))


@given(data=st.data(), n=st.integers(1, 20), bits=st.sampled_from([3, 16, 64]))
@SETTINGS
def test_interval_membership(parties, core, data, n, bits):
    mod = 1 << bits
    xs = np.array(data.draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n)),
                  dtype=np.int64)
    lo = data.draw(st.integers(0, mod - 1))
    size = data.draw(st.integers(1, mod))
    xs = np.concatenate([xs, np.array([lo, lo - 1, lo + size - 1, lo + size]) % 2**62])

    def fn(party, t):
        return compare.in_interval(as_share(party, t), lo, size, bits).reveal_float()

    got, _ = run_pair(fn, parties, share_ints(core, xs))
    want = ((xs.astype(object) - lo) % mod) < size
    np.testing.assert_array_equal(got, want.astype(float))


@given(j=st.integers(0, 63), bits=st.sampled_from([6, 8]))
@SETTINGS
def test_one_hot_of_a_secret_index(parties, core, j, bits):
    def fn(party, t):
        return compare.one_hot(as_share(party, t), bits).reveal_float()

    got, _ = run_pair(fn, parties, share_ints(core, np.array(j)))
    want = np.zeros(1 << bits)
    want[j] = 1
    np.testing.assert_array_equal(got, want)


@given(data=st.data(), n=st.integers(1, 12), fan=st.integers(1, 4))
@SETTINGS
def test_products_sharing_a_left_operand(parties, core, data, n, fan):
    """mul_many opens a shared left operand once (fan triples) and still multiplies
    exactly, also next to ordinary products and a right operand that broadcasts it."""
    from splitface.servers.mpc.beaver import mul_many

    x = np.array(data.draw(st.lists(st.integers(-1000, 1000), min_size=n, max_size=n)))
    ys = np.array(data.draw(st.lists(st.integers(-1000, 1000), min_size=(fan + 1) * n,
                                     max_size=(fan + 1) * n))).reshape(fan + 1, n)
    wide = np.array(data.draw(st.lists(st.integers(-9, 9), min_size=2 * n, max_size=2 * n)))

    def fn(party, xt, yt, wt):
        xs, y, w = as_share(party, xt), as_share(party, yt), as_share(party, wt)
        scalar = x_first = xs[0]  # a 0-d left operand that the wide right one broadcasts
        with recorded_requests(party) as kinds:
            before = party.pending_checks
            outs = mul_many([(xs, y[k]) for k in range(fan)]
                            + [(y[fan], y[0]), (scalar, w.reshape(2, n)), (x_first, y[1][0])])
            opened = party.pending_checks - before
        return [o.reveal_float() for o in outs], kinds, opened

    (outs, kinds, opened), _ = run_pair(fn, parties, share_ints(core, x), share_ints(core, ys),
                                        share_ints(core, wide))
    for k in range(fan):
        np.testing.assert_array_equal(outs[k], x * ys[k])
    np.testing.assert_array_equal(outs[fan], ys[fan] * ys[0])
    np.testing.assert_array_equal(outs[fan + 1], x[0] * wide.reshape(2, n))
    np.testing.assert_array_equal(outs[fan + 2], x[0] * ys[1][0])
    assert kinds == ["fan_triple"]
    if fan > 1:  # x - a once for all fan products, not once per product
        assert opened < 2 * (fan * n + n + 2 * n + 1)


@given(data=st.data(), n=st.integers(2, 20), skip=st.integers(1, 24),
       bits=st.sampled_from([8, 20]))
@SETTINGS
def test_coarse_comparison_and_argmax_skip_low_bits(parties, core, data, n, skip, bits):
    """With ``skip`` the comparison reads only the window above the low skip bits: exact
    outside [-2^skip, 0), and argmax's pick is within 2^skip of the true maximum."""
    lim = (1 << (skip + bits - 3)) - 1
    xs = np.array(data.draw(st.lists(st.integers(-lim, lim), min_size=n, max_size=n)))

    def fn(party, t):
        x = as_share(party, t)
        bit = compare.ltz(x, bits, skip)
        best, idx = compare.argmax(x, bits, skip)
        return bit.reveal_float(), best.reveal_float(), idx.reveal_float()

    (bit, best, idx), _ = run_pair(fn, parties, share_ints(core, xs))
    sure = (xs >= 0) | (xs < -(1 << skip))
    np.testing.assert_array_equal(bit[sure], (xs < 0)[sure])
    assert xs[int(idx)] == best
    assert best >= xs.max() - (1 << skip) * np.ceil(np.log2(n))


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed: numpy only")
@pytest.mark.parametrize("skip,bits", [(0, 4), (0, 64), (7, 16), (17, 30), (20, 44)])
def test_relu_kernel_equals_the_numpy_steps(parties, skip, bits):
    """kernels.relu_finish against compare.relu_from's numpy reference, value and MAC
    shares bit for bit, on the same dealer masks and any opened c (both window halves)."""
    c = np.frombuffer(os.urandom(2 * 40 * 8), dtype=np.uint64).reshape(2, 40).copy()

    def fn(party, _):
        m = party.prep.ltz_masks((40,), bits, skip, relu=True)
        fast = compare.relu_from(party, c, m, skip, bits, compiled=True)
        slow = compare.relu_from(party, c, m, skip, bits, compiled=False)
        return fast.val, fast.mac, slow.val, slow.mac

    for fv, fm, sv, sm in run_pair(fn, parties, (None, None)):
        assert np.array_equal(fv, sv) and np.array_equal(fm, sm)
