"""Training on shares against the same training in float64."""

from __future__ import annotations

import numpy as np
import pytest

from splitface.servers.mpc.local_runtime import run_pair
from splitface.servers.recognition import training
from tests.mpc.harness import as_share, share_floats


def clusters(ids: int, per: int, dim: int, spread: float, seed: int):
    rng = np.random.default_rng(seed)  # synthetic test data
    centres = rng.normal(size=(ids, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(ids), per)
    x = centres[labels] + rng.normal(size=(labels.size, dim)) * spread
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def nearest_template_accuracy(templates: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(x @ templates.T, axis=1) == y))


@pytest.mark.slow
def test_thousand_identity_gallery_matches_plaintext(parties, core):
    """1,000 identities x 10 embeddings: MPC templates within 0.5 pp of float64 on held-out data."""
    x, y = clusters(1000, 10, 128, spread=0.16, seed=1)
    train = np.arange(x.shape[0]) % 10 < 8  # 8 enrolments per identity, 2 held out
    xtr, ytr, xte, yte = x[train], y[train], x[~train], y[~train]
    def fn(p, t):
        return training.train_templates(as_share(p, t), ytr, 1000).reveal_float()

    got, _ = run_pair(fn, parties, share_floats(core, xtr))
    plain = training.plaintext_templates(xtr, ytr, 1000)
    acc_mpc = nearest_template_accuracy(got, xte, yte)
    acc_plain = nearest_template_accuracy(plain, xte, yte)
    assert 0.6 < acc_plain < 1.0  # the split is not trivially separable
    assert abs(acc_mpc - acc_plain) <= 0.005, (acc_mpc, acc_plain)
    assert np.abs(got - plain).max() < 1e-3


def test_logistic_sgd_matches_float64(parties, core):
    x, y = clusters(6, 40, 32, spread=0.25, seed=2)
    opts = training.SgdOptions(epochs=3, batch_size=64, learning_rate=1.0)
    (w, b), _ = run_pair(lambda p, t: _train(p, t, y, opts), parties, share_floats(core, x))
    wp, bp = training.train_logistic_plain(x, y, 6, opts)
    assert np.abs(w - wp).max() < 2e-3 and np.abs(b - bp).max() < 2e-3
    acc = np.mean(np.argmax(x @ w + b, 1) == y)
    acc_plain = np.mean(np.argmax(x @ wp + bp, 1) == y)
    assert abs(acc - acc_plain) <= 0.01


def _train(party, t, y, opts):
    model = training.train_logistic(as_share(party, t), y, 6, opts)
    return model.w.reveal_float(), model.b.reveal_float()


def test_prefetched_training_is_identical(core):
    """Prefetching the next batch's material changes timing only: same model, most items
    come from the queue, and the dealer's pairing survives the short last batch."""
    from splitface.servers.mpc.local_runtime import make_parties

    x, y = clusters(5, 30, 16, spread=0.2, seed=4)  # 150 rows: batches 64, 64, 22
    opts = training.SgdOptions(epochs=4, batch_size=64, learning_rate=1.0)
    results = []
    for prefetch in (False, True):
        parties = make_parties(core, prefetch=prefetch)
        (w, b), _ = run_pair(lambda p, t: _train5(p, t, y, opts), parties, share_floats(core, x))
        results.append((w, b))
        if prefetch:
            assert parties[0].prep.hits > 2 * parties[0].prep.misses
    assert np.abs(results[0][0] - results[1][0]).max() < 1e-3


def _train5(party, t, y, opts):
    model = training.train_logistic(as_share(party, t), y, 5, opts)
    return model.w.reveal_float(), model.b.reveal_float()
