"""What the accept bit of verification costs an attacker, and what the limits make of it.

Hill-climbing on the accept bit is inherent to any system that answers accept/reject: with
one probe the system accepts for the victim (any photo of them), unit-norm probes
p(theta) = cos(theta) p0 + sin(theta) u_k -- all inside the servers' probe range -- and
bisection of the single crossing of the threshold on (0, pi) give one equation per
direction; the template's unit norm turns the unknown p0.w into a quadratic. 127 x 12 =
1,524 accept bits recover every coordinate to ~1e-3 (attacker review 2). This plays the exact
decision the servers compute (probe quantised to 2^-16, exact comparison of the 2F-bit score
with the threshold) in plaintext; tests/mpc/test_identify.py shows the MPC decision equals
it. docs/SECURITY.md quotes these numbers; the per-identity verification budget is what
turns minutes into days.
"""

from __future__ import annotations

import numpy as np

from splitface.servers.mpc.probe_check import NORM2_MAX, NORM2_MIN
from splitface.shared import fixedpoint

RNG = np.random.default_rng(123)  # test data only
DIM, THRESHOLD = 128, 0.5


def _unit(v):
    return v / np.linalg.norm(v)


class AcceptOracle:
    """verify(identity, probe) as the servers decide it, counting queries."""

    def __init__(self, w: np.ndarray) -> None:
        self.w_fix = fixedpoint.encode(w)[0].view(np.int64).astype(object)
        self.queries = 0

    def __call__(self, p: np.ndarray) -> bool:
        self.queries += 1
        x = fixedpoint.encode(p)[0].view(np.int64).astype(object)
        norm2 = sum(int(v) * int(v) for v in x) / 2.0**32
        assert NORM2_MIN <= norm2 <= NORM2_MAX and max(abs(x)) < 2**17  # always in range
        score = sum(int(a) * int(b) for a, b in zip(x, self.w_fix, strict=True))
        return score >= int(np.floor(THRESHOLD * 2**32))


def _reconstruct(oracle: AcceptOracle, p0: np.ndarray, steps: int) -> np.ndarray:
    basis = np.linalg.qr(np.column_stack([p0, RNG.normal(size=(DIM, DIM - 1))]))[0]
    basis[:, 0] *= np.sign(basis[:, 0] @ p0)
    thetas = []
    for k in range(1, DIM):
        lo, hi = 0.0, np.pi  # accepted at 0 (p0), refused at pi (-p0)
        for _ in range(steps):
            mid = (lo + hi) / 2
            if oracle(np.cos(mid) * basis[:, 0] + np.sin(mid) * basis[:, k]):
                lo = mid
            else:
                hi = mid
        thetas.append((lo + hi) / 2)
    c, s = np.cos(thetas), np.sin(thetas)
    # b_k(a) = (t - a c_k) / s_k; a^2 + sum b_k^2 = 1 is a quadratic in a
    qa = 1 + np.sum((c / s) ** 2)
    qb = -2 * THRESHOLD * np.sum(c / s**2)
    qc = np.sum((THRESHOLD / s) ** 2) - 1
    a = max(np.roots([qa, qb, qc]).real)
    b = (THRESHOLD - a * c) / s
    return basis @ np.concatenate([[a], b])


def test_one_accepted_probe_and_1524_accept_bits_give_the_template():
    w = _unit(RNG.normal(size=DIM))  # the victim's template (secret-shared on the servers)
    p0 = _unit(w + RNG.normal(size=DIM) * 0.09)  # a photo of the victim: accepted
    oracle = AcceptOracle(w)
    assert oracle(p0)
    oracle.queries = 0
    est = _reconstruct(oracle, p0, steps=12)
    assert oracle.queries == 127 * 12
    assert np.max(np.abs(est - w)) < 2e-3  # every coordinate, 2.5 min at 10 queries/s
    assert np.max(np.abs(est - w)) < 0.05 * np.max(np.abs(p0 - w))  # far beyond the photo


def test_the_per_identity_budget_makes_the_read_out_take_more_than_a_day():
    """At the default limits the 1,524 verifications naming the victim take > 24 hours from
    any number of terminals (they share the identity's budget), and each one is audited."""
    from splitface.servers.service.admission import RateLimiter, RateOptions

    now = [0.0]
    rate = RateLimiter(RateOptions(), clock=lambda: now[0])
    admitted, terminals = 0, [f"edge-{k}" for k in range(50)]
    while admitted < 127 * 12:
        for t in terminals:  # fifty colluding terminals, each well inside its own rate
            if rate.admit(t, "verify", "victim") is None:
                admitted += 1
        now[0] += 30.0  # each terminal asks every 30 s (any faster only meets refusals)
    assert now[0] > 24 * 3600
