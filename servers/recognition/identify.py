"""Open-set identification (1:N) and verification (1:1) on authenticated shares.

Scores are cosine similarities of the probe with L2-normalised templates, so |score| <= 1
for a unit probe (which the servers enforce, probe_check.py). Identification:

1. scores s_j = probe . w_j from the fixed gallery (one opening: the probe's masked value);
2. the scores are truncated to SCORE_FRAC = 12 fractional bits (one opening; error 0 or
   +1 unit), so the comparisons span 12 score bits instead of 32;
3. each score is packed with its identity: v_j = s_j * 2^(m+1) + (N - j), and a public
   *threshold sentinel* v_T = floor(threshold * 2^f) * 2^(m+1) joins them: the maximum of
   the packed values is the best identity if its score reaches the threshold, else the
   sentinel (exact ties of truncated scores go either way; the sentinel is always the
   right-hand operand, so a score equal to the threshold accepts);
4. a tournament of ReLUs, max(a, b) = b + ReLU(a - b), ONE opening per level and no
   product (compare.relu): ceil(log2(N + 1)) rounds. The ReLU's test skips the m index
   bits (tournament_window), so its DCF keys span the score's 15 bits whatever N is;
5. the winner's low m bits are its row in a public name table; a one-hot of that secret
   row (one opening, a DPF key) times the table gives the name's words as shares. The
   sentinel's row is empty: an unknown face gets no name, and no index of a near miss.

Only the name words are opened, and only towards the edge (through its output masks).
The chosen identity's score is within two units of the decision precision (2^-11) of the
best score, for any N: every score is truncated once and the tournament compares exactly.
"""

from __future__ import annotations

import numpy as np

from splitface.servers.mpc import compare, truncation
from splitface.servers.mpc.beaver import FixedOperand, matmul_opening, share_matmul_public
from splitface.servers.mpc.compare import party_constant
from splitface.servers.mpc.errors import ShapeError
from splitface.servers.mpc.prep.material import Request, layout
from splitface.servers.mpc.rounds import Opening, SideWork, drain, run_round
from splitface.servers.mpc.share import AuthShare, concat
from splitface.shared import ring
from splitface.shared.names import NAME_WORDS, encode_name

SCORE_FRAC = 12  # fractional bits the decisions resolve when scores are truncated
SCORE_INT_BITS = 1  # |score| < 2: unit probe (enforced) and unit templates
# The tournament's DCF keys a batch may hold on each server (the running batch's; the
# prefetched next batch holds as much again). One probe's keys grow as N: 13 MB at
# N = 10,000 and 131 MB at N = 100,000, where a batch of 16 would need 2.1 GB.
BATCH_KEY_BYTES = 384 << 20


class NameTable:
    """The public table a winner's row selects: row N - j holds identity j's name as
    NAME_WORDS words (shared/names.py); row 0 is the sentinel's (empty: "unknown")."""

    def __init__(self, names: list[str]) -> None:
        self.size = len(names)
        self.bits = self.index_bits(self.size)
        table = np.zeros((1 << self.bits, NAME_WORDS), dtype=np.int64)
        for j, name in enumerate(names):
            try:
                table[self.size - j] = encode_name(name)
            except ValueError as exc:
                raise ShapeError(f"identity {j}: {exc}") from None
        self.table = table

    @staticmethod
    def index_bits(identities: int) -> int:
        """The bits of a row index: rows 0 (the sentinel) to N."""
        return max(1, identities.bit_length())


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


def identify(gallery: Gallery, probes: AuthShare, threshold: float, names: NameTable,
             side: list[SideWork] | None = None, sync: bytes | None = None) -> AuthShare:
    """[name words] of the best identity whose score reaches ``threshold``, else zeros.

    ``probes`` is one probe (dim,) or a batch (K, dim): a batch shares every round (one
    product, one tournament whose levels compare all K rows at once, K one-hots in one
    round), so K concurrent identifications cost the rounds of one; rows never mix, and
    the result is (K, NAME_WORDS). ``side`` is independent work (the probe checks) whose
    openings ride on these rounds; ``sync`` (the digest of the terminals' inputs) rides on
    the first round.
    """
    single = probes.ndim == 1
    batch = probes.reshape(1, -1) if single else probes
    if batch.ndim != 2 or batch.shape[1] != gallery.dim or batch.shape[0] < 1:
        raise ShapeError(f"probes have shape {probes.shape}, gallery expects "
                         f"({gallery.dim},) or (K, {gallery.dim})")
    if names.size != gallery.size:
        raise ShapeError(f"{names.size} names for {gallery.size} templates")
    party, k = batch.party, batch.shape[0]
    round_, finish = _rounds(party, side or [], sync)
    with party.op("identify"):
        (scores,) = round_([gallery.scores_opening(batch)])  # (K, N)
        frac = SCORE_FRAC
        (scores,) = round_([truncation.truncate_opening(scores, scores.frac - frac)])
        m = names.bits
        packed = scores.mul_ring(_pow2(m + 1)).add_ring(_public_ints(
            np.arange(gallery.size, 0, -1, dtype=np.int64)))
        sentinel = int(np.floor(threshold * (1 << frac))) << (m + 1)
        values = concat([AuthShare(party, packed.val, packed.mac, 0),
                         party_constant(party, np.full((k, 1), sentinel, dtype=np.int64))],
                        axis=1)
        skip, bits = tournament_window(m)
        while values.shape[1] > 1:
            n, h = values.shape[1], values.shape[1] // 2
            a, b = values[:, 0:2 * h:2], values[:, 1:2 * h:2]
            (gain,) = round_([compare.relu_opening(a - b, bits, skip)])
            best = b + gain
            values = concat([best, values[:, n - 1:n]], axis=1) if n % 2 else best
        (onehots,) = round_([compare.one_hot_opening(values[:, 0], m)])
        finish()
    words = share_matmul_public(onehots.reshape(k, 1 << m), names.table,  # (K, NAME_WORDS)
                                kernel=True)
    return words.reshape(NAME_WORDS) if single else words


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


def tournament_window(m: int) -> tuple[int, int]:
    """(skip, bits) of the tournament's comparisons for m index bits.

    A packed difference is x = ds * 2^(m+1) + di with |di| < 2^m, so the comparison skips
    the m index bits (its DCF spans only the score's bits, whatever N is). A coarse test
    may err only for x in [-2^m, 0); the spare bit m puts every x with ds != 0 outside
    that range, so scores are compared exactly and only exact ties (ds = 0) may go either
    way. The window holds |ds| <= 2^(SCORE_FRAC + SCORE_INT_BITS + 1) - 1 (|x| <
    2^(skip+bits-1) - 2^skip); the probe check and unit templates keep |score| <= 1.02,
    so |ds| <= 8,360."""
    return m, SCORE_FRAC + SCORE_INT_BITS + 3


def tournament_key_bytes(identities: int) -> int:
    """One probe's tournament DCF keys on one server (P1's part: root seeds and
    corrections), as the dealer lays them out."""
    skip, bits = tournament_window(NameTable.index_bits(identities))
    n, total = identities + 1, 0
    while n > 1:
        spec = layout(Request("ltz", ((1, n // 2), bits, skip, True))).fss[0]
        total += spec.nbytes
        n -= n // 2
    return total


def batch_limit(identities: int, batch_max: int) -> int:
    """The most probes one identification run takes at this gallery size: ``batch_max``,
    or fewer where their keys would exceed BATCH_KEY_BYTES (never below one). Both
    servers compute it from public sizes; P1 refuses a larger batch."""
    fit = BATCH_KEY_BYTES // max(1, tournament_key_bytes(identities))
    return max(1, min(batch_max, fit))


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
