"""The FSS building blocks against brute force, and the numba kernels against the numpy
reference (bit-identical keys and outputs), at the edges of every domain."""

from __future__ import annotations

import os

import numpy as np
import pytest

from splitface.servers.mpc.fss import dcf, dpf, kernels
from splitface.shared import ring

SEED = np.random.default_rng(5)  # test data only: keys' roots come from the dealer's CSPRNG


def _roots(k: int) -> np.ndarray:
    return np.frombuffer(os.urandom(2 * k * 16), dtype=np.uint64).reshape(2, k, 2).copy()


def _beta(k: int, p: int) -> np.ndarray:
    return np.frombuffer(os.urandom(2 * k * p * 8), dtype=np.uint64).reshape(2, k, p).copy()


def _alphas(n: int, k: int) -> np.ndarray:
    top = (1 << n) - 1
    edge = [0, 1, top, top - 1 if top else 0, 1 << (n - 1)]
    rand = [int(SEED.integers(0, 1 << min(n, 62))) for _ in range(max(0, k - len(edge)))]
    return np.array([min(a, top) for a in edge + rand][:k], dtype=np.uint64)


def _points(n: int, alpha: np.ndarray) -> np.ndarray:
    top = (1 << n) - 1
    pts = []
    for a in alpha.tolist():
        near = [a - 1, a, a + 1, 0, top, int(SEED.integers(0, 1 << min(n, 62)))]
        pts.append([min(max(x, 0), top) for x in near])
    return np.array(pts, dtype=np.uint64)


def _open(shares0: np.ndarray, shares1: np.ndarray) -> list[int]:
    return ring.to_pyints(ring.add(shares0, shares1))


@pytest.mark.parametrize("n", [1, 2, 7, 16, 28, 63, 64])
@pytest.mark.parametrize("p", [1, 2, 4])
def test_dcf_is_beta_where_x_below_alpha(n, p):
    k = 6
    alpha = _alphas(n, k)
    beta = _beta(k, p)
    keys = dcf.gen(alpha, beta, n, _roots(k))
    x = _points(n, alpha)
    got = np.array(_open(dcf.evaluate(0, keys, x), dcf.evaluate(1, keys, x)),
                   dtype=object).reshape(k, x.shape[1], p)
    betas = np.array(ring.to_pyints(beta), dtype=object).reshape(k, p)
    for j in range(k):
        for e in range(x.shape[1]):
            want = betas[j] if int(x[j, e]) < int(alpha[j]) else [0] * p
            assert list(got[j, e]) == list(want), (n, p, j, e)


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed: numpy only")
@pytest.mark.parametrize("n", [1, 5, 28, 64])
@pytest.mark.parametrize("p", [1, 4])
def test_dcf_kernels_equal_the_numpy_reference_bit_for_bit(n, p):
    k = 9
    alpha, beta, roots = _alphas(n, k), _beta(k, p), _roots(k)
    fast = dcf.gen(alpha, beta, n, roots, compiled=True)
    slow = dcf.gen(alpha, beta, n, roots, compiled=False)
    for a, b in zip(fast.corrections(), slow.corrections(), strict=True):
        assert np.array_equal(a, b)
    x = _points(n, alpha)
    for party in (0, 1):
        args = (party, n, roots[party], fast.cw_s, fast.cw_t, fast.cw_v, fast.cw_out, x)
        assert np.array_equal(dcf.eval_dcf(*args, compiled=True),
                              dcf.eval_dcf(*args, compiled=False))


@pytest.mark.parametrize("n", [1, 3, 10])
def test_dpf_is_beta_at_alpha_only_over_the_whole_domain(n):
    k, p = 4, 3
    alpha = _alphas(n, k)
    beta = _beta(k, p)
    keys = dpf.gen(alpha, beta, n, _roots(k))
    total = ring.add(dpf.evaluate_all(0, keys), dpf.evaluate_all(1, keys))  # (2, K, 2^n, P)
    vals = np.array(ring.to_pyints(total), dtype=object).reshape(k, 1 << n, p)
    betas = np.array(ring.to_pyints(beta), dtype=object).reshape(k, p)
    for j in range(k):
        for x in range(1 << n):
            assert list(vals[j, x]) == (list(betas[j]) if x == int(alpha[j]) else [0] * p)


def test_one_partys_dcf_key_looks_alike_for_any_alpha():
    """A party's key alone is its root (uniform) and corrections masked by the other
    root's PRG outputs: the same alpha twice gives unrelated keys (no structure leaks)."""
    alpha = np.array([5, 5], dtype=np.uint64)
    keys = dcf.gen(alpha, _beta(2, 1), 8, _roots(2))
    assert not np.array_equal(keys.cw_s[:, 0], keys.cw_s[:, 1])


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed: numpy only")
def test_the_fss_benchmark_runs(capsys):
    from benchmarks import bench_fss

    assert bench_fss.main(["--keys", "64", "--repeat", "1", "--json"]) == 0
    assert '"speedup_gen"' in capsys.readouterr().out


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed: numpy only")
def test_chunked_key_generation_equals_the_reference(monkeypatch):
    """Large requests are generated chunk by chunk (dcf.CHUNK_KEYS); a chunk boundary must
    not change a single key."""
    monkeypatch.setattr(dcf, "CHUNK_KEYS", 4)
    n, p, k = 12, 4, 11  # chunks of 4, 4 and 3
    alpha, beta, roots = _alphas(n, k), _beta(k, p), _roots(k)
    fast = dcf.gen(alpha, beta, n, roots, compiled=True)
    slow = dcf.gen(alpha, beta, n, roots, compiled=False)
    for a, b in zip(fast.corrections(), slow.corrections(), strict=True):
        assert np.array_equal(a, b)
