"""Which SGD settings the secure training is known to follow float64 under (measured).

The servers train in fixed point (F = 16 fractional bits). Outside the range below the
result still looks like a model but is not the float64 one (issue 11): rates above 10 or
steps lr / batch above 2.5 make SGD chaotic, so the 2^-16 rounding of each step sends it
elsewhere (lr = 100, batch 4: accuracy 0.90 against 0.95; lr = 100, batch 80: 0.805
against 0.821 in one of three runs); learning rates below 0.01 or
too few steps leave weights a few units of 2^-16 large, drowned by rounding
(lr = 0.001, batch 256: 0.71 against 0.90); and lr times the number of steps bounds the
logits, which must stay below 2^30 for the truncation. The grid behind these numbers is
in benchmarks/HISTORY.md ("Training range"); the config refuses settings outside the
range at load time, the training refuses a run whose step count leaves it.
"""

from __future__ import annotations

import math

LR_MIN = 0.01
LR_MAX = 10.0
MAX_STEP = 2.5  # lr / batch_size
MAX_BATCH = 1 << 20  # rows per step: keeps the step's rounding inside logit_bound's margin
MIN_TOTAL_STEP = 0.1  # lr * steps: the weights must rise well above 2^-16 (0.05 failed)
MAX_TOTAL_STEP = float(1 << 28)  # lr * steps: logits |z| <= 2.03 lr * steps < 2^30
# classes x enrolments x epochs: the logistic model's logits, each one a product term and a
# comparison. Through the daemons 1,000 x 1,000 x 20 (batch 32) took 219 s on the 2-core
# reference host, so this bound is about 20 minutes there.
MAX_LOGISTIC_WORK = 100_000_000


def settings_problems(epochs: int, batch_size: int, learning_rate: float) -> list[str]:
    """Why these settings are outside the measured range (empty when they are inside)."""
    found = []
    if epochs < 1 or batch_size < 1:
        found.append("epochs and batch_size must be at least 1")
    if batch_size > MAX_BATCH:
        found.append(f"batch_size must be at most {MAX_BATCH:,}, got {batch_size:,}")
    if not math.isfinite(learning_rate) or not LR_MIN <= learning_rate <= LR_MAX:
        found.append(f"learning_rate must be in [{LR_MIN}, {LR_MAX}], got {learning_rate}")
    elif batch_size >= 1 and learning_rate / batch_size > MAX_STEP:
        found.append(f"learning_rate / batch_size = {learning_rate / batch_size:.3g} exceeds "
                     f"{MAX_STEP}: fixed-point SGD no longer follows float64; lower the rate "
                     f"or raise the batch size to at least {math.ceil(learning_rate / MAX_STEP)}")
    return found


def logistic_work_problems(classes: int, rows: int, epochs: int) -> list[str]:
    """Why fitting the logistic model would take too long (it grows with classes times
    enrolments; the templates, which identification and verification use, grow with
    enrolments only)."""
    work = classes * rows * epochs
    if work <= MAX_LOGISTIC_WORK:
        return []
    return [f"the logistic model over {classes:,} identities x {rows:,} enrolments x {epochs} "
            f"epochs is {work:,} logits (limit {MAX_LOGISTIC_WORK:,}, about 20 minutes on "
            "2 cores): set train.logistic = false (identification and verification use the "
            "templates only) or lower train.epochs"]


LOGIT_GROWTH = 2.03  # a logit's change per SGD step, in units of lr (||x|| <= 1.01, |g| <= 1)
LOGIT_MARGIN = 2.0  # covers fixed-point drift per step (docs/PROTOCOL.md, "The sigmoid's window")


def sgd_steps(rows: int, epochs: int, batch_size: int) -> int:
    """How many SGD steps a run over ``rows`` enrolments takes (the last batch may be short)."""
    return epochs * math.ceil(rows / batch_size)


def logit_bound(rows: int, epochs: int, batch_size: int, learning_rate: float) -> float:
    """A bound on every logit |z| a training run can reach, public before it starts: from
    zero weights each step moves a logit by at most 2.03 lr (docs/PROTOCOL.md), doubled for
    fixed-point drift. The hard sigmoid's comparison window is sized from it."""
    return LOGIT_MARGIN * LOGIT_GROWTH * learning_rate * sgd_steps(rows, epochs, batch_size)


def run_problems(rows: int, epochs: int, batch_size: int, learning_rate: float) -> list[str]:
    """Why a run over ``rows`` enrolments leaves the range (settings checked too)."""
    found = settings_problems(epochs, batch_size, learning_rate)
    if found:
        return found
    steps = sgd_steps(rows, epochs, batch_size)
    total = learning_rate * steps
    if total < MIN_TOTAL_STEP:
        found.append(f"{steps} SGD steps at learning_rate {learning_rate} are too few for "
                     f"fixed point (lr x steps = {total:.3g} < {MIN_TOTAL_STEP}): raise epochs "
                     "or the learning rate")
    elif total > MAX_TOTAL_STEP:
        found.append(f"lr x steps = {total:.3g} could let logits overflow the fixed-point "
                     f"range (limit {MAX_TOTAL_STEP:.3g}): lower epochs or the learning rate")
    return found
