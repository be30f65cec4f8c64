"""Open-set identification (1:N) and verification (1:1) on authenticated shares.

Scores are cosine similarities of L2-normalised embeddings with L2-normalised templates,
so |score| <= 1 and a difference of two scores is below 2 in absolute value. Decisions
resolve scores to SCORE_FRAC = 12 fractional bits: 2^-12 = 0.00024, a hundred times finer
than the int8 embedder's own deviation from float (cosine 0.97 on average,
docs/MODELS.md). Comparisons read the SCORE_BITS-bit window above the lower fractional
bits of the unscaled scores (no truncation round), so a difference below 2^-12 may count
as a tie. A 15-bit window needs 56 one-hot entries of dealer material per comparison,
where 20 bits at 16 fractional bits needed 128. Nothing but the final (index, accept)
pair is ever opened, and only towards the edge (through its output masks).
"""

from __future__ import annotations

import numpy as np

from splitface.servers.mpc import compare
from splitface.servers.mpc.beaver import FixedOperand, mul_many
from splitface.servers.mpc.errors import ShapeError
from splitface.servers.mpc.share import AuthShare, stack

SCORE_FRAC = 12  # fractional bits the decisions resolve
SCORE_BITS = SCORE_FRAC + 3  # sign, |difference| < 2, and the fraction


class Gallery:
    """The fixed template matrix W (dim x identities), opened once as W - B."""

    def __init__(self, templates: AuthShare, key: str, *, consume: bool = False) -> None:
        if templates.ndim != 2:
            raise ShapeError(f"templates must be (dim, identities), got {templates.shape}")
        self.dim, self.size = templates.shape
        self.operand = FixedOperand(templates, key, consume=consume)

    def scores(self, probe: AuthShare) -> AuthShare:
        """[probe . w_j] for every identity j, unscaled (2F fractional bits)."""
        return self.operand.left_matmul(probe, rescale_result=False)


def identify(gallery: Gallery, probe: AuthShare, threshold: float) -> AuthShare:
    """[(index or -1, accept)]: argmax identity if its score reaches the threshold.

    The index of a rejected probe is replaced by -1 under MPC, so an unknown face learns
    nothing about its nearest enrolled identity.
    """
    if probe.shape != (gallery.dim,):
        raise ShapeError(f"probe has shape {probe.shape}, gallery expects ({gallery.dim},)")
    party = probe.party
    with party.op("identify"):
        scores = gallery.scores(probe)
        skip = scores.frac - SCORE_FRAC  # compare at SCORE_FRAC bits without truncating
        best, idx = compare.argmax(scores, bits=SCORE_BITS, skip=skip)
        accept = 1 - compare.ltz(best - threshold, SCORE_BITS, skip)
        (gated,) = mul_many([(accept, idx + 1)])
    return stack([gated - 1, accept])


def verify(template: AuthShare, probe: AuthShare, threshold: float) -> AuthShare:
    """[accept] for a claimed identity's template (a shared vector)."""
    if template.shape != probe.shape or probe.ndim != 1:
        raise ShapeError(f"probe {probe.shape} and template {template.shape} differ")
    with probe.party.op("verify"):
        score = probe @ template
        skip = score.frac - SCORE_FRAC
        return (1 - compare.ltz(score - threshold, SCORE_BITS, skip)).reshape(1)


def plaintext_identify(templates: np.ndarray, probe: np.ndarray, threshold: float
                       ) -> tuple[int, int]:
    """The same decision in float64 (reference for agreement)."""
    s = probe @ templates
    j = int(np.argmax(s))
    ok = int(s[j] >= threshold)
    return (j if ok else -1), ok
