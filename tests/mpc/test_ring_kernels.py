"""The compiled 128-bit matrix product against the numpy reference (ring.matmul)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitface.servers.mpc import ring_kernels
from splitface.servers.mpc.fss import kernels
from splitface.shared import ring

EDGES = np.array([0, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1], dtype=np.uint64)


def _ring(rng: np.random.Generator, shape: tuple[int, int], edges: bool) -> np.ndarray:
    a = rng.integers(0, 2**64, size=(2, *shape), dtype=np.uint64)
    if edges:  # carries out of every partial product and sum
        a = EDGES[rng.integers(0, EDGES.size, size=a.shape)]
    return a


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")
@given(m=st.integers(1, 11), n=st.integers(1, 140), p=st.integers(1, 90), edges=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_the_kernel_equals_the_reference(m, n, p, edges, seed):
    rng = np.random.default_rng(seed)  # test data only
    a, b = _ring(rng, (m, n), edges), _ring(rng, (n, p), edges)
    assert np.array_equal(ring_kernels.matmul(a, b, compiled=True), ring.matmul(a, b))


def test_the_fallback_equals_the_reference_in_column_blocks(monkeypatch):
    monkeypatch.setattr(ring_kernels, "FALLBACK_BLOCK", 7)
    rng = np.random.default_rng(3)
    a, b = _ring(rng, (3, 20), False), _ring(rng, (20, 30), True)
    assert np.array_equal(ring_kernels.matmul(a, b, compiled=False), ring.matmul(a, b))


def test_all_ones_wraps_mod_2_128():
    """(2^128 - 1)^2 * n = n mod 2^128: every carry path at once."""
    a = np.full((2, 4, 9), 2**64 - 1, dtype=np.uint64)
    b = np.full((2, 9, 5), 2**64 - 1, dtype=np.uint64)
    want = ring.from_int64(np.full((4, 5), 9, dtype=np.int64))
    assert np.array_equal(ring_kernels.matmul(a, b), want)
    assert np.array_equal(ring.matmul(a, b), want)


def test_shapes_must_match():
    with pytest.raises(ValueError):
        ring_kernels.matmul(np.zeros((2, 2, 3), np.uint64), np.zeros((2, 4, 5), np.uint64))


def test_a_share_times_a_public_table_is_the_same_by_either_product():
    """The name lookup (one-hot shares times the public name table) runs on the kernel;
    its value and MAC shares equal the limb GEMMs' for a long inner dimension, a
    vector and a batch, and a table with negative entries."""
    from types import SimpleNamespace

    from splitface.servers.mpc.beaver import share_matmul_public
    from splitface.servers.mpc.share import AuthShare

    rng = np.random.default_rng(11)  # test data only
    party = SimpleNamespace(id=0)
    table = rng.integers(-2**62, 2**62, size=(1 << 12, 16), dtype=np.int64)
    for rows in (1, 3):
        x = AuthShare(party, _ring(rng, (rows, 1 << 12), True),
                      _ring(rng, (rows, 1 << 12), False))
        if rows == 1:
            x = x.reshape(1 << 12)
        slow = share_matmul_public(x, table)
        fast = share_matmul_public(x, table, kernel=True)
        assert fast.shape == slow.shape
        assert np.array_equal(fast.val, slow.val) and np.array_equal(fast.mac, slow.mac)
