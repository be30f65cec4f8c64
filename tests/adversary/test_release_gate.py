"""A server colluding with a terminal knows the terminal's output mask r: whatever is opened
as y + r is a plaintext to it. The result of an out-of-range probe must therefore never be
opened at all (attacker review 2, finding 1): not beside the probe check's verdict, not to
a rushing server that withholds its own share, not after an additive error on the verdict.

Each test plays the colluder's best read: every value the server sees opened while the
result is released, minus the terminal's mask, must never be the verification bit. On the
code before the fix the result was opened beside the verdict and these tests fail.
"""

from __future__ import annotations

import numpy as np

from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.service.admission import RateLimiter
from splitface.shared import ring
from splitface.shared.wire import Message
from tests.adversary.release_harness import serve_verify, unit, verify_vs_rushing_p1

RNG = np.random.default_rng(2027)  # test data only
DIM = 16


def _reads(seen_values: list, masks: np.ndarray) -> set[int]:
    """Every opened value the colluder holds, unmasked with the terminal's r (low 64 bits)."""
    out = set()
    for v in seen_values:
        arr = np.asarray(v) if not isinstance(v, int) else None
        if arr is None or arr.dtype != np.uint64 or arr.ndim != 2 or arr.shape[1] != 1:
            continue  # the verdicts (ints) or another shape: not y + r
        out.add(int(ring.low64_signed(ring.sub(arr, masks))[0]))
    return out


def _scaled_basis_probe(template: np.ndarray, tau: float) -> np.ndarray:
    k = int(np.argmax(template))
    probe = np.zeros(DIM)
    probe[k] = tau / template[k]  # |x_k| >> 2 and ||x|| >> 1, score tau: accepted if opened
    return probe


def test_an_out_of_range_probe_is_refused_and_its_result_never_opened():
    core = DealerCore()
    template = unit(RNG.normal(size=DIM))
    outs, req, seen = serve_verify(core, template, _scaled_basis_probe(template, 3.0))
    assert [o[0] for o in outs] == ["refused", "refused"]
    assert all(getattr(o[1], "code", None) == "bad_probe" for o in outs)
    for party in (0, 1):
        assert seen[party] == [[[0]]]  # only the verdicts (here one) were opened
        assert not _reads([x for r in seen[party] for x in r], req._masks) & {0, 1}


def test_an_in_range_probe_result_is_opened_after_the_verdict():
    core = DealerCore()
    template = unit(RNG.normal(size=DIM))
    outs, req, seen = serve_verify(core, template, unit(template + RNG.normal(size=DIM) * .05))
    assert [o[0] for o in outs] == ["released", "released"]
    assert int(ring.low64_signed(ring.sub(outs[0][1], req._masks))[0]) == 1
    assert [r[0] for r in seen[0]][:1] == [[1]] and len(seen[0]) == 2  # verdict, then result


class Withheld(Exception):
    """The rushing P1 stops after reading the honest opening."""


def _rushing(stop_after: int):
    """P1 reads every honest opening first, records its sum with its own, and withholds its
    message at the ``stop_after``-th opening (None: never)."""

    def strategy(kind: str, ours: Message, honest: Message, view) -> Message:
        if kind == "open":
            view.state["n"] = view.state.get("n", 0) + 1
            opened = ring.add(honest.arrays[0], ours.arrays[0])
            view.state.setdefault("opened", []).append(opened)
            if view.state["n"] == stop_after:
                raise Withheld()
        return ours

    return strategy


def test_a_rushing_colluder_reads_no_result_of_an_out_of_range_probe():
    core = DealerCore()
    template = unit(RNG.normal(size=DIM))
    for stop_after in (None, 1, 2, 3, 4):
        for tau in (0.6, 3.0, 7.5):  # below and above the threshold
            out0, out1, req, view, _ = verify_vs_rushing_p1(
                core, template, _scaled_basis_probe(template, tau), _rushing(stop_after),
                RateLimiter())
            assert out0.value is None  # the terminal never gets a result
            columns = [o[:, j:j + 1] for o in view.state["opened"] for j in range(o.shape[1])]
            assert not _reads(columns, view.state["masks"]) & {0, 1}, (stop_after, tau)
