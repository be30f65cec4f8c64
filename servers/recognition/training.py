"""Training on secret-shared enrolment embeddings; the models stay shares.

Labels (which identity an enrolment belongs to) are known to both servers: they file
enrolments under identity ids for revocation. Embeddings, templates, weights, scores
and every intermediate value stay authenticated shares.

(a) Templates: per identity, the normalised mean of its embeddings. Sums by label are
    local; dividing by the public count is a public product; normalising needs an
    inverse square root (Newton, nonlinear.inv_sqrt).
(b) One-vs-rest logistic regression by mini-batch SGD with the hard sigmoid
    clip(1/2 + z/4, 0, 1): z = X_b W + b, G = sigma(z) - Y_b, W -= lr/|b| X_b^T G.
    The plaintext reference runs the same algorithm in float64 on the same batches.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from splitface.servers.mpc import compare, nonlinear
from splitface.servers.mpc.beaver import FixedRows
from splitface.servers.mpc.errors import ShapeError
from splitface.servers.mpc.share import AuthShare, concat
from splitface.shared import fixedpoint, ring, training_range
from splitface.shared.fixedpoint import F
from splitface.shared.prg import SEED_BYTES, Prg

MIN_MEAN_NORM2 = 0.05  # |mean embedding|^2 below this: no template (inv_sqrt's range starts here)
# Classes per pass of the template training: one pass over all 100,000 classes asked the
# dealer for one 12.8M-element triple (1.2 GB, over the 1 GiB message limit: the training
# failed); 8,192 x 128 elements keep each request near 100 MB, for ~15 rounds per pass.
TEMPLATE_CHUNK = 8192
STEP_EXTRA_BITS_MAX = 24  # the step's encoding: F + e fractional bits, e <= 24


@dataclass(frozen=True)
class SgdOptions:
    """Hyper-parameters of the secure SGD (public)."""

    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1.0
    shuffle_seed: int = 0  # public: batch order is not secret

    def __post_init__(self) -> None:
        problems = training_range.settings_problems(self.epochs, self.batch_size,
                                                     self.learning_rate)
        if problems:
            raise TrainingRangeError("; ".join(problems))


class TrainingRangeError(ValueError):
    """SGD settings (or a run's step count) outside the range where fixed point follows
    float64 (shared/training_range.py): refused instead of a silently useless model."""


def batches(n: int, opts: SgdOptions, epoch: int) -> list[np.ndarray]:
    """The public mini-batch index order of one epoch: both servers derive the same
    permutation from the public seed and the epoch (AES-CTR, like every other stream; the
    order is not secret, but no product code draws from numpy's generators)."""
    seed = hashlib.sha256(b"splitface-batch-order|%d|%d" % (opts.shuffle_seed, epoch))
    keys = Prg(seed.digest()[:SEED_BYTES]).uint64(n)
    order = np.argsort(keys, kind="stable")
    return [order[i:i + opts.batch_size] for i in range(0, n, opts.batch_size)]


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    out = np.zeros((labels.size, classes))
    out[np.arange(labels.size), labels] = 1.0
    return out


def class_sums_matrix(labels: np.ndarray, classes: int) -> np.ndarray:
    """Public 0/1 matrix S (classes x n) with S @ X the per-class sums."""
    if labels.ndim != 1 or labels.min(initial=0) < 0 or labels.max(initial=0) >= classes:
        raise ShapeError("labels must be a vector of class indices in [0, classes)")
    return one_hot(labels, classes).T.astype(np.int64)


def train_templates(x: AuthShare, labels: np.ndarray, classes: int) -> AuthShare:
    """[T] (classes x dim): L2-normalised per-class means of the rows of [x]."""
    if x.ndim != 2 or x.shape[0] != labels.size:
        raise ShapeError(f"{x.shape} embeddings for {labels.size} labels")
    party = x.party
    counts = np.bincount(labels, minlength=classes)
    if np.any(counts == 0):
        raise ShapeError("every class needs at least one enrolment")
    with party.op("templates"):
        sums = AuthShare(party, ring.segment_sum(x.val, labels, classes),
                         ring.segment_sum(x.mac, labels, classes), x.frac)  # local
        shorts: list[int] = []
        out: list[AuthShare] = []
        for s in range(0, classes, TEMPLATE_CHUNK):
            e = min(s + TEMPLATE_CHUNK, classes)
            means = sums[s:e] * (1.0 / counts[s:e])[:, None]
            norm2 = (means * means).sum(1)
            # a class whose samples (nearly) cancel has no direction: inv_sqrt would answer
            # garbage outside its range, so such classes are named and refused instead
            short = np.flatnonzero(compare.ltz(norm2 - MIN_MEAN_NORM2).reveal())
            shorts += [s + int(i) for i in short]
            if not shorts:  # past the first degenerate class only the checks go on
                out.append(means * nonlinear.inv_sqrt(norm2).reshape(e - s, 1))
        if shorts:
            raise DegenerateClassError(shorts)
        return concat(out)


class DegenerateClassError(ValueError):
    """Classes whose embeddings average to (nearly) nothing: refused, not a zero template."""

    def __init__(self, classes: list[int]) -> None:
        super().__init__(f"{len(classes)} classes have embeddings that cancel out")
        self.classes = classes


def plaintext_templates(x: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    means = class_sums_matrix(labels, classes) @ x / np.bincount(labels, minlength=classes)[:, None]
    return means / np.linalg.norm(means, axis=1, keepdims=True)


def hard_sigmoid(z: np.ndarray) -> np.ndarray:
    return np.clip(0.5 + z / 4, 0.0, 1.0)


@dataclass
class LogisticModel:
    """Shared one-vs-rest weights [W] (dim x classes) and biases [b] (classes)."""

    w: AuthShare
    b: AuthShare


def train_logistic(x: AuthShare, labels: np.ndarray, classes: int, opts: SgdOptions,
                   progress: Callable[[int, int], None] | None = None) -> LogisticModel:
    """Mini-batch SGD on shares; ``progress(epoch, batch)`` reports position only."""
    if x.ndim != 2 or x.shape[0] != labels.size:
        raise ShapeError(f"{x.shape} embeddings for {labels.size} labels")
    party = x.party
    n, dim = x.shape
    problems = training_range.run_problems(n, opts.epochs, opts.batch_size, opts.learning_rate)
    if problems:
        raise TrainingRangeError("; ".join(problems))
    y = one_hot(labels, classes)
    # public: sizes the sigmoid's comparison window (keys 2.6x smaller at lr 1, 40 steps)
    bound = training_range.logit_bound(n, opts.epochs, opts.batch_size, opts.learning_rate)
    step_bits = step_fraction_bits(opts.learning_rate)  # the step's extra fractional bits
    w = compare.party_constant(party, np.zeros((dim, classes), dtype=np.int64), F)
    b = compare.party_constant(party, np.zeros(classes, dtype=np.int64), F)
    order = [idx for epoch in range(opts.epochs) for idx in batches(n, opts, epoch)]
    prefetch = getattr(party.prep, "expect", None)
    with party.op("train"):
        fixed_x = FixedRows(x, party.fresh_key("train"))  # X - U is opened once
        step_no, plans = 0, {}  # batch size -> the requests one batch of that size makes
        this_queued = False  # was this batch's material queued before it started?
        for epoch in range(opts.epochs):
            for k, idx in enumerate(batches(n, opts, epoch)):
                nxt = order[step_no + 1] if step_no + 1 < len(order) else None
                next_queued = False
                if prefetch is not None:
                    # queue the next batch behind this one's, so the dealer works ahead
                    if this_queued and nxt is not None and len(nxt) in plans:
                        prefetch(_for_batch(plans[len(nxt)], nxt))
                        next_queued = True
                    if len(idx) not in plans:
                        party.prep.record()  # a batch of a new size teaches its pattern
                # unscaled z: the sigmoid folds the rescaling into its comparison opening
                z = fixed_x.matmul(idx, w, rescale_result=False) + b
                g = nonlinear.hard_sigmoid(z, bound) - y[idx]  # scale F + 2
                w, b = _sgd_update(fixed_x, idx, w, b, g, opts.learning_rate / len(idx),
                                   step_bits)
                party.check_if_over()  # the openings of many steps are not held to the end
                if prefetch is not None:
                    if len(idx) not in plans:
                        plans[len(idx)] = party.prep.stop_recording()
                    if not next_queued and nxt is not None and len(nxt) in plans:
                        prefetch(_for_batch(plans[len(nxt)], nxt))
                        next_queued = True
                this_queued = next_queued
                step_no += 1
                if progress is not None:
                    progress(epoch, k)
    return LogisticModel(w, b)


def _sgd_update(fixed_x: FixedRows, idx: np.ndarray, w: AuthShare, b: AuthShare,
                g: AuthShare, step: float, e: int) -> tuple[AuthShare, AuthShare]:
    """w -= step X_b^T g, b -= step sum(g), with ONE truncation for both.

    X_b^T g is kept unscaled (scale F + F + 2) and multiplied by the step encoded with
    F + e fractional bits (``step_fraction_bits``): |x_k| < 2 and |g| <= 1 give
    |X_b^T g| < 2|b| and step = lr / |b|, so the product stays below lr * 2^(51+e) <= 2^61,
    inside truncation's 2^62. At F bits alone a step under 2^-16 encoded as zero and
    training silently did nothing (lr = 0.001, batch 256: accuracy 0.10 against 0.90).
    The bias gradient is brought to the same scale exactly, and both are truncated at once.
    """
    enc = fixedpoint.encode(np.float64(step), F + e)
    gw = fixed_x.t_matmul(idx, g, rescale_result=False).mul_ring(enc, F + e)
    gb = g.sum(0).mul_ring(enc, F + e)
    gb = gb.mul_ring(ring.from_pyint(1 << (gw.frac - gb.frac)), gw.frac - gb.frac)
    both = concat([gw.reshape(-1), gb]).truncate(gw.frac - F)
    d, c = w.shape
    return w - both[:d * c].reshape(d, c), b - both[d * c:]


def step_fraction_bits(learning_rate: float) -> int:
    """Extra fractional bits for the encoded step: as many as keep lr * 2^(51+e) <= 2^61."""
    return max(0, min(STEP_EXTRA_BITS_MAX, math.floor(10 - math.log2(learning_rate))))


def _for_batch(plan: list, idx: np.ndarray) -> list:
    """The recorded requests of one batch, re-targeted at the rows of another batch."""
    from splitface.servers.mpc.prep.material import Request

    rows = tuple(int(i) for i in idx)
    return [Request(r.kind, (r.params[0], rows, *r.params[2:])) if r.kind == "rows_triple"
            else r for r in plan]


def train_logistic_plain(x: np.ndarray, labels: np.ndarray, classes: int,
                         opts: SgdOptions) -> tuple[np.ndarray, np.ndarray]:
    """The same SGD in float64 (reference)."""
    n, dim = x.shape
    y = one_hot(labels, classes)
    w, b = np.zeros((dim, classes)), np.zeros(classes)
    for epoch in range(opts.epochs):
        for idx in batches(n, opts, epoch):
            g = hard_sigmoid(x[idx] @ w + b) - y[idx]
            step = opts.learning_rate / len(idx)
            w -= x[idx].T @ g * step
            b -= g.sum(0) * step
    return w, b
