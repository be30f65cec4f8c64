"""Elementwise FSS requests over the dealer's per-request cap are split and joined: a
training batch's logits at 1,000 classes and batch 256 (18.9M key levels against a cap of
16.8M) made the dealer refuse the whole training."""

from __future__ import annotations

import numpy as np
import pytest

from splitface.servers.mpc import compare, nonlinear
from splitface.servers.mpc.beaver import mul_many
from splitface.servers.mpc.errors import ProtocolError
from splitface.servers.mpc.local_runtime import make_parties, run_pair
from splitface.servers.mpc.prep import base
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.prep.material import MAX_FSS_LEVELS, Request, layout
from splitface.shared.fixedpoint import F
from tests.mpc.harness import as_share, share_floats


def test_the_dealer_cap_is_real():
    with pytest.raises(ProtocolError, match="too many FSS keys"):
        layout(Request("trunc_ltz", ((256, 1000), 16, 26, 38)))
    assert MAX_FSS_LEVELS < 256 * 1000 * 37 * 2


@pytest.mark.parametrize("chunk", [64, 1000, 10**9])
def test_split_requests_give_the_same_answers(monkeypatch, chunk):
    monkeypatch.setattr(base, "FSS_CHUNK_LEVELS", chunk)
    rng = np.random.default_rng(11)  # test data only
    x = rng.normal(size=(7, 9)) * 4
    y = rng.normal(size=(7, 9)) * 4
    fetched: list[int] = []
    core = DealerCore()
    parties = make_parties(core)
    orig = parties[0].prep.fetch

    def counting(req):
        fetched.append(1)
        return orig(req)

    parties[0].prep.fetch = counting

    def fn(p, a, b):
        xa, yb = as_share(p, a), as_share(p, b)
        one = compare.party_constant(p, np.ones(xa.shape, dtype=np.int64), F)
        (prod,) = mul_many([(xa, one)])
        return ((xa < yb).reveal_float(), (xa - yb).eqz().reveal_float(),
                nonlinear.hard_sigmoid(prod).reveal_float(),
                compare.relu(xa, 40).reveal_float())

    (lt, eq, sig, relu), _ = run_pair(fn, parties, share_floats(core, x), share_floats(core, y))
    ex, ey = np.rint(x * 2**F) / 2**F, np.rint(y * 2**F) / 2**F
    np.testing.assert_array_equal(lt, ex < ey)
    np.testing.assert_array_equal(eq, ex == ey)
    assert np.abs(sig - np.clip(0.5 + ex / 4, 0, 1)).max() <= 2.0**-8
    np.testing.assert_allclose(relu, np.maximum(ex, 0), atol=2.0**-F)
    if chunk == 64:
        assert len(fetched) > 4 * 20  # 63 elements at up to 78 levels each: many pieces
