"""Open-set identification (1:N) and verification (1:1) on authenticated shares.

Scores are cosine similarities of the probe with L2-normalised templates, so |score| <= 1
for a unit probe (which the servers enforce, probe_check.py). Identification:

1. scores s_j = probe . w_j from the fixed gallery (one opening: the probe's masked value);
2. for large galleries the scores are truncated to SCORE_FRAC = 12 fractional bits (one
   opening; error 0 or +1 unit); small galleries keep all 2F bits (one round fewer);
3. each score is packed with its identity: v_j = s_j * 2^m + (N - j), and a public
   *threshold sentinel* v_T = floor(threshold * 2^f) * 2^m joins them: the maximum of the
   packed values is the best identity if its score reaches the threshold, else the
   sentinel (ties go to the lower j, and a score equal to the threshold accepts);
4. a tournament of ReLUs, max(a, b) = b + ReLU(a - b), ONE opening per level and no
   product (compare.relu): ceil(log2(N + 1)) rounds;
5. the winner's low m bits are its row in a public name table; a one-hot of that secret
   row (one opening, a DPF key) times the table gives the name's words as shares. The
   sentinel's row is empty: an unknown face gets no name, and no index of a near miss.

Only the name words are opened, and only towards the edge (through its output masks).
The chosen identity's score is within one unit of the decision precision of the best
score, for any N: every score is truncated once and the tournament compares exactly.
"""

from __future__ import annotations

import numpy as np

from splitface.servers.mpc import compare, truncation
from splitface.servers.mpc.beaver import FixedOperand, matmul_opening, share_matmul_public
from splitface.servers.mpc.compare import party_constant
from splitface.servers.mpc.errors import ShapeError
from splitface.servers.mpc.rounds import Opening, SideWork, drain, run_round
from splitface.servers.mpc.share import AuthShare, concat
from splitface.shared import ring
from splitface.shared.names import NAME_WORDS, encode_name

SCORE_FRAC = 12  # fractional bits the decisions resolve when scores are truncated
SCORE_INT_BITS = 1  # |score| < 2: unit probe (enforced) and unit templates
TRUNCATE_FROM = 1024  # galleries at least this large truncate scores (fewer DCF levels)


class NameTable:
    """The public table a winner's row selects: row N - j holds identity j's name as
    NAME_WORDS words (shared/names.py); row 0 is the sentinel's (empty: "unknown")."""

    def __init__(self, names: list[str]) -> None:
        self.size = len(names)
        self.bits = max(1, self.size.bit_length())
        table = np.zeros((1 << self.bits, NAME_WORDS), dtype=np.int64)
        for j, name in enumerate(names):
            try:
                table[self.size - j] = encode_name(name)
            except ValueError as exc:
                raise ShapeError(f"identity {j}: {exc}") from None
        self.table = table


class Gallery:
    """The fixed template matrix W (dim x identities), opened once as W - B."""

    def __init__(self, templates: AuthShare, key: str, *, consume: bool = False) -> None:
        if templates.ndim != 2:
            raise ShapeError(f"templates must be (dim, identities), got {templates.shape}")
        self.dim, self.size = templates.shape
        self.operand = FixedOperand(templates, key, consume=consume)

    def scores_opening(self, probe: AuthShare) -> Opening:
        """[probe . w_j] for every identity j, unscaled (2F fractional bits)."""
        return self.operand.left_matmul_opening(probe)


def _frac_after(gallery: Gallery, probe: AuthShare) -> tuple[int, bool]:
    frac = probe.frac + gallery.operand.frac
    return (SCORE_FRAC, True) if gallery.size >= TRUNCATE_FROM else (frac, False)


def _rounds(party, side: list[SideWork], sync: bytes | None):
    """A round runner that adds the side work's openings (and, once, the sync digest)."""
    state = {"sync": sync}

    def run(openings: list[Opening]) -> list:
        extra = [o for w in side for o in w.openings()]
        out = run_round(party, openings + extra, sync=state.pop("sync", None))
        return out[:len(openings)]

    def finish() -> None:  # side work not done yet gets rounds of its own
        drain(party, side, state.pop("sync", None))

    return run, finish


def identify(gallery: Gallery, probe: AuthShare, threshold: float, names: NameTable,
             side: list[SideWork] | None = None, sync: bytes | None = None) -> AuthShare:
    """[name words] of the best identity whose score reaches ``threshold``, else zeros.

    ``side`` is independent work (the probe check) whose openings ride on these rounds;
    ``sync`` (the digest of the terminal's input) rides on the first round.
    """
    if probe.shape != (gallery.dim,):
        raise ShapeError(f"probe has shape {probe.shape}, gallery expects ({gallery.dim},)")
    if names.size != gallery.size:
        raise ShapeError(f"{names.size} names for {gallery.size} templates")
    party = probe.party
    round_, finish = _rounds(party, side or [], sync)
    with party.op("identify"):
        (scores,) = round_([gallery.scores_opening(probe)])
        frac, trunc = _frac_after(gallery, probe)
        if trunc:
            (scores,) = round_([truncation.truncate_opening(scores, scores.frac - frac)])
        m = names.bits
        packed = scores.mul_ring(_pow2(m)).add_ring(_public_ints(
            np.arange(gallery.size, 0, -1, dtype=np.int64)))
        sentinel = int(np.floor(threshold * (1 << frac))) << m
        values = concat([AuthShare(party, packed.val, packed.mac, 0),
                         party_constant(party, np.array([sentinel], dtype=np.int64))])
        bits = frac + SCORE_INT_BITS + m + 2  # |a - b| < 2^(bits-1) with room to spare
        while values.shape[0] > 1:
            n, h = values.shape[0], values.shape[0] // 2
            a, b = values[0:2 * h:2], values[1:2 * h:2]
            (gain,) = round_([compare.relu_opening(a - b, bits)])
            best = b + gain
            values = concat([best, values[n - 1:n]]) if n % 2 else best
        (onehot,) = round_([compare.one_hot_opening(values.reshape(1), m)])
        finish()
    return share_matmul_public(onehot, names.table)


def verify(template: AuthShare, probe: AuthShare, threshold: float,
           side: list[SideWork] | None = None, sync: bytes | None = None) -> AuthShare:
    """[accept] = [probe . template >= threshold], exact at 2F fractional bits: one
    product, one comparison."""
    if template.shape != probe.shape or probe.ndim != 1:
        raise ShapeError(f"probe {probe.shape} and template {template.shape} differ")
    party = probe.party
    round_, finish = _rounds(party, side or [], sync)
    with party.op("verify"):
        (score,) = round_([matmul_opening(probe.reshape(1, -1), template.reshape(-1, 1))])
        shifted = score.reshape(1) - threshold
        bits = shifted.frac + SCORE_INT_BITS + 3
        ((below,),) = round_([compare.ltz_opening(shifted, [0], bits)])
        finish()
    return 1 - below.reshape(())


def _pow2(m: int) -> np.ndarray:
    return ring.from_pyint(1 << m)


def _public_ints(v: np.ndarray) -> np.ndarray:
    return ring.from_int64(v)


def plaintext_identify(templates: np.ndarray, probe: np.ndarray, threshold: float
                       ) -> tuple[int, int]:
    """The same decision in float64 (reference for agreement)."""
    s = probe @ templates
    j = int(np.argmax(s))
    ok = int(s[j] >= threshold)
    return (j if ok else -1), ok
