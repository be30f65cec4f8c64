"""Z_2^128 arithmetic against Python integers."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitface.shared import ring

M = 1 << 128
u128 = st.integers(min_value=0, max_value=M - 1)


def arr(xs):
    out = np.zeros((2, len(xs)), dtype=np.uint64)
    for i, v in enumerate(xs):
        out[0, i], out[1, i] = v & (2**64 - 1), v >> 64
    return out


pairs = st.lists(st.tuples(u128, u128), min_size=1, max_size=20)


@given(pairs)
@settings(max_examples=200, deadline=None)
def test_add_sub_mul_neg(ps):
    a, b = arr([p[0] for p in ps]), arr([p[1] for p in ps])
    A, B = [p[0] for p in ps], [p[1] for p in ps]
    assert ring.to_pyints(ring.add(a, b)) == [(x + y) % M for x, y in zip(A, B)]
    assert ring.to_pyints(ring.sub(a, b)) == [(x - y) % M for x, y in zip(A, B)]
    assert ring.to_pyints(ring.mul(a, b)) == [(x * y) % M for x, y in zip(A, B)]
    assert ring.to_pyints(ring.neg(a)) == [(-x) % M for x in A]
    assert ring.to_pyints(ring.isub(a.copy(), b)) == [(x - y) % M for x, y in zip(A, B)]
    assert ring.to_pyints(ring.iadd(a.copy(), b)) == [(x + y) % M for x, y in zip(A, B)]


@given(st.lists(u128, min_size=1, max_size=30), st.integers(0, 127))
@settings(max_examples=100, deadline=None)
def test_shift_and_sum(xs, n):
    a = arr(xs)
    assert ring.to_pyints(ring.shl(a, n)) == [(x << n) % M for x in xs]
    assert ring.to_pyints(ring.sum_axis(a)) == [sum(xs) % M]


@given(st.integers(1, 5), st.integers(1, 40), st.integers(1, 6), st.data())
@settings(max_examples=40, deadline=None)
def test_matmul_exact(m, n, p, data):
    xs = data.draw(st.lists(u128, min_size=m * n, max_size=m * n))
    ys = data.draw(st.lists(u128, min_size=n * p, max_size=n * p))
    a, b = arr(xs).reshape(2, m, n), arr(ys).reshape(2, n, p)
    ref = (np.array(xs, dtype=object).reshape(m, n).dot(np.array(ys, dtype=object).reshape(n, p))
           % M)
    assert ring.to_pyints(ring.matmul(a, b)) == [int(v) for v in ref.ravel()]


def test_matmul_worst_case_limbs_exact():
    """All-ones limbs maximise every partial sum: the float64 GEMM must still be exact."""
    n = 2048
    a = np.full((2, 1, n), np.uint64(2**64 - 1))
    b = np.full((2, n, 2), np.uint64(2**64 - 1))
    assert ring.to_pyints(ring.matmul(a, b)) == [(n * (M - 1) ** 2) % M] * 2


def test_signed_embedding():
    v = ring.from_int64(np.array([-1, 0, 5, -(2**63)]))
    assert ring.to_pyints(v) == [M - 1, 0, 5, M - 2**63]
    assert ring.low64_signed(v).tolist() == [-1, 0, 5, -(2**63)]


def test_matmul_splits_long_inner_dimension():
    """Inner dimensions beyond the float64 exactness bound are summed in blocks."""
    n = 40_000
    a = np.full((2, 1, n), np.uint64(2**64 - 1))
    b = np.full((2, n, 1), np.uint64(2**64 - 1))
    assert ring.to_pyints(ring.matmul(a, b)) == [(n * (M - 1) ** 2) % M]


@given(st.lists(st.tuples(u128, st.integers(0, 4)), min_size=1, max_size=40))
@settings(max_examples=50, deadline=None)
def test_segment_sum(rows):
    a = arr([v for v, _ in rows]).reshape(2, len(rows), 1)
    seg = np.array([s for _, s in rows])
    got = ring.to_pyints(ring.segment_sum(a, seg, 5))
    assert got == [sum(v for v, s in rows if s == k) % M for k in range(5)]


@pytest.mark.parametrize("shape_a,shape_b", [((), ()), ((3,), (3,)), ((), (3,)), ((3,), ()),
                                             ((2, 3), (3,))])
def test_wrap_around_never_warns(shape_a, shape_b):
    """The overflow warning is silenced only for 0-d first operands (ring._wraps): every
    other case must be all-array arithmetic, which numpy never warns about."""
    top = np.uint64(2**64 - 1)
    a, b = np.full((2, *shape_a), top), np.full((2, *shape_b), top)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for got in (ring.add(a, b), ring.sub(ring.neg(a), b), ring.mul(a, b),
                    ring.mul_u64(a, top)):
            assert got.dtype == np.uint64
