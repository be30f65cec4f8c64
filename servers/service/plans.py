"""The dealer requests of an identification run, computed from public sizes.

Both servers prefetch the next run's dealer material (coordinator._prefetch_next) and must
queue the same requests in the same order. An identification's requests depend only on
public sizes: the run's rows, the gallery's dimension, size and dealer key, and the name
table's index bits. So each server computes them itself, for any batch size, before the
first run of that size. They used to be recorded from a session's first run of each size,
which left that run to fetch its 13 MB a probe (N = 10,000) on demand: after a restart,
the first batch of 8 took 0.97-1.10 s against 0.77-0.86 s for the next ones.

A plan that differs from what the run asks for costs only its discarded material (both
servers discard alike, prefetch.py); ``tests/services/test_prefetch.py`` runs identifications
of several sizes through the daemons and requires that none of them misses its plan.
"""

from __future__ import annotations

from splitface.servers.mpc.prep.base import interval_requests, ltz_requests
from splitface.servers.mpc.prep.material import Request
from splitface.servers.mpc.probe_check import BAD_BITS, NORM_BITS
from splitface.servers.recognition.identify import (
    SCORE_FRAC,
    Gallery,
    NameTable,
    tournament_window,
)
from splitface.shared import api
from splitface.shared.fixedpoint import F
from splitface.shared.names import NAME_WORDS


def identify_plan(rows: int, gallery: Gallery) -> list[Request]:
    """Every request of a ``rows``-row identification run (handlers.identify), in order:
    the rows' checked inputs; the scores' product; the probe checks' norm test riding on
    it; the truncation; the probe checks' verdict test; one ReLU per tournament level; the
    name lookup; the verdicts' and the names' output masks, each followed by a MAC check."""
    dim, size = gallery.dim, gallery.size
    inputs = api.Offer(request_id="", op="identify", dim=dim).inputs()
    plan = [Request("checked_input", (inputs, dim))] * rows
    plan.append(Request("fixed_triple", (gallery.operand.key, rows, dim, size)))
    plan += interval_requests((rows,), NORM_BITS)
    plan.append(Request("trunc", ((rows, size), 2 * F - SCORE_FRAC)))
    plan += interval_requests((rows,), BAD_BITS)
    bits = NameTable.index_bits(size)
    skip, window = tournament_window(bits)
    n = size + 1  # the identities and the threshold's sentinel
    while n > 1:
        plan += ltz_requests((rows * (n // 2),), window, skip, relu=True)
        n -= n // 2
    plan.append(Request("lookup", (bits, rows)))
    plan += [Request("random", ((rows,),)), Request("zero_check", ()),
             Request("random", ((rows * NAME_WORDS,),)), Request("zero_check", ())]
    return plan
