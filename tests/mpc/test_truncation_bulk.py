"""Ten million truncations at realistic magnitudes: every error within the documented bound.

Local (SecureML) truncation would fail here: with |x| ~ 2^40 in Z_2^64 its wrap
probability is about 2^-24 per element, i.e. roughly one catastrophic error per 16 M.
Values are drawn as fixed-point products of embeddings-scale reals (2F = 32 fractional
bits) plus a spread of larger magnitudes up to 2^45.
"""

from __future__ import annotations

import numpy as np
import pytest

from splitface.servers.mpc.local_runtime import run_pair
from splitface.shared import ring
from splitface.shared.prg import Prg
from tests.mpc.harness import as_share, share_ints

TOTAL = 10_000_000
CHUNK = 1_000_000
SHIFT = 16


@pytest.mark.slow
def test_ten_million_truncations(parties, core):
    prg = Prg()
    worst = 0
    for _ in range(TOTAL // CHUNK):
        mags = (prg.uint64(CHUNK) % np.uint64(5)).astype(np.int64) + 41  # |x| < 2^40 .. 2^44
        raw = prg.uint64(CHUNK).view(np.int64) >> (64 - mags)  # signed, |x| < 2^(mags-1)
        shared = share_ints(core, raw)
        got, _ = run_pair(lambda p, t: as_share(p, t).truncate(SHIFT).reveal(), parties, shared)
        err = ring.low64_signed(got) - np.floor_divide(raw, 1 << SHIFT)
        worst = max(worst, int(np.abs(err).max()))
        assert np.all((err == 0) | (err == 1)), f"error outside [0, 1]: {np.unique(err)[:10]}"
    assert worst <= 1
