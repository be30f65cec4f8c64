"""The FSS building blocks against brute force, and the numba kernels against the numpy
reference (bit-identical keys and outputs), at the edges of every domain."""

from __future__ import annotations

import os

import numpy as np
import pytest

from splitface.servers.mpc.fss import aesni, dcf, dpf, kernels, prg
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


@pytest.mark.skipif(not kernels.DCF, reason="no numba or no AES-NI: numpy only")
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


@pytest.mark.skipif(not kernels.DCF, reason="no numba or no AES-NI: numpy only")
@pytest.mark.parametrize("n,k,p", [(1, 3, 2), (4, 5, 3), (9, 2, 2)])
def test_dpf_key_generation_kernel_equals_the_numpy_reference(n, k, p):
    alpha, beta, roots = _alphas(n, k), _beta(k, p), _roots(k)
    fast = dpf.gen(alpha, beta, n, roots, compiled=True)
    slow = dpf.gen(alpha, beta, n, roots, compiled=False)
    for a, b in zip(fast.corrections(), slow.corrections(), strict=True):
        assert np.array_equal(a, b)


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


@pytest.mark.skipif(not kernels.DCF, reason="no numba or no AES-NI: numpy only")
def test_the_fss_benchmark_runs(capsys):
    from benchmarks import bench_fss

    assert bench_fss.main(["--keys", "64", "--repeat", "1", "--json"]) == 0
    assert '"speedup_gen"' in capsys.readouterr().out


@pytest.mark.skipif(not kernels.DCF, reason="no numba or no AES-NI: numpy only")
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


def test_the_aes_key_schedule_is_fips_197():
    """FIPS-197 appendix A.1: the last round key of 2b7e1516 28aed2a6 abf71588 09cf4f3c."""
    rk = aesni.round_keys(bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c"))
    assert rk[0].tobytes().hex() == "2b7e151628aed2a6abf7158809cf4f3c"
    assert rk[10].tobytes().hex() == "d014f9a8c9ee2589e13f0cc8b6630ca6"


@pytest.mark.skipif(not kernels.DCF, reason="no numba or no AES-NI: numpy only")
def test_the_aesni_rounds_are_the_aes_of_cryptography():
    """FIPS-197 appendix C.1, then random blocks under the FSS key against prg.encrypt."""
    key = bytes(range(16))
    block = np.frombuffer(bytes.fromhex("00112233445566778899aabbccddeeff"),
                          dtype=np.uint64).reshape(1, 2).copy()
    out = np.empty_like(block)
    aesni.encrypt_blocks(block, aesni.round_keys(key), out)
    assert out.tobytes().hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"
    blocks = np.frombuffer(os.urandom(16 * 1000), dtype=np.uint64).reshape(1000, 2).copy()
    out = np.empty_like(blocks)
    aesni.encrypt_blocks(blocks, aesni.round_keys(prg.FIXED_KEY), out)
    assert np.array_equal(out, prg.encrypt(blocks))


def test_without_numba_the_dcf_runs_the_numpy_reference():
    """``SPLITFACE_NO_NUMBA=1`` (or a processor without AES-NI) selects the reference;
    its keys still evaluate to beta * [x < alpha]."""
    import subprocess
    import sys

    script = (
        "import numpy as np, os\n"
        "from splitface.servers.mpc.fss import aesni, dcf, kernels\n"
        "from splitface.shared import ring\n"
        "assert not aesni.SUPPORTED and not kernels.DCF and not kernels.AVAILABLE\n"
        "roots = np.frombuffer(os.urandom(64), dtype=np.uint64).reshape(2, 2, 2).copy()\n"
        "beta = ring.from_uint64(np.ones((2, 1), dtype=np.uint64))\n"
        "keys = dcf.gen(np.array([5, 9], dtype=np.uint64), beta, 4, roots)\n"
        "x = np.array([[4, 5], [9, 8]], dtype=np.uint64)\n"
        "v = ring.add(dcf.evaluate(0, keys, x), dcf.evaluate(1, keys, x))\n"
        "print(v[0].ravel().tolist(), v[1].ravel().tolist())\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True, env={**os.environ, "SPLITFACE_NO_NUMBA": "1"})
    assert out.stdout.split() == ["[1,", "0,", "0,", "1]", "[0,", "0,", "0,", "0]"]


@pytest.mark.skipif(not kernels.DCF, reason="no numba or no AES-NI: numpy only")
@pytest.mark.parametrize("bits,k", [(1, 1), (4, 3), (9, 2)])
def test_one_hot_kernel_equals_the_numpy_gather(bits, k):
    """kernels.dpf_one_hot writes the rotated one-hot rows that compare.one_hot_from's
    numpy reference gathers from a full-domain evaluation, value and MAC bit for bit."""
    from splitface.servers.mpc import compare
    from splitface.servers.mpc.prep.material import FssKey, FssSpec

    keys = dpf.gen(_alphas(bits, k), _beta(k, 2), bits, _roots(k))
    c64 = np.frombuffer(os.urandom(8 * k), dtype=np.uint64).copy()
    for party_id in (0, 1):
        party = type("P", (), {"id": party_id})()
        key = FssKey(FssSpec("dpf", k, bits, 2), keys.roots[party_id], keys.corrections())
        fast = compare.one_hot_from(party, c64, key, bits, compiled=True)
        slow = compare.one_hot_from(party, c64, key, bits, compiled=False)
        assert all(np.array_equal(a, b) for a, b in zip(fast, slow, strict=True))
