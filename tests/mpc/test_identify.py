"""Identification v2 and the probe check against numpy (in-process parties).

The name of the best identity reaching the threshold, or nothing; near ties, galleries
that are not powers of two, one identity, the truncated path of large galleries; and a
probe outside the range (a large coordinate, a wrong norm, a vector that wraps around the
ring) is refused.
"""

from __future__ import annotations

import numpy as np
import pytest

from splitface.servers.mpc import client_io
from splitface.servers.mpc.fss import dcf
from splitface.servers.mpc.local_runtime import make_parties, run_pair
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.prep.material import Request, layout
from splitface.servers.mpc.probe_check import ProbeChecks, accept_checked_probe
from splitface.servers.mpc.share import stack
from splitface.servers.recognition.identify import (
    Gallery,
    NameTable,
    batch_limit,
    identify,
    tournament_key_bytes,
    verify,
)
from splitface.shared import fixedpoint
from splitface.shared.client_protocol import ClientRequest
from splitface.shared.names import NAME_WORDS, decode_name
from tests.mpc.harness import as_share, share_floats

RNG = np.random.default_rng(7)  # test data only


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _run(core: DealerCore, templates: np.ndarray, probe: np.ndarray, threshold: float,
         names: list[str], *, one: int | None = None):
    """(name or None, ok) as the terminal and the servers would see them."""
    parties = make_parties(core)
    dim = templates.shape[1]
    req = ClientRequest(probe, NAME_WORDS if one is None else 1)
    w = share_floats(core, templates.T if one is None else templates[one])
    offers, checks = [], []
    for p in parties:
        t, arrays = client_io.offer_checked_input(p, req.n_total, dim)
        checks.append(t)
        offers.append(arrays)
    masked = req.masked(*offers)

    def fn(party, wt, chk):
        got = accept_checked_probe(party, chk, masked, dim)
        probe_s, masks, check, digest = got.probe, got.masks, got.check, got.digest
        if one is None:
            gallery = Gallery(as_share(party, wt), party.fresh_key("g"))
            out = identify(gallery, probe_s, threshold, NameTable(names), [check], digest)
        else:
            out = verify(as_share(party, wt), probe_s, threshold, [check], digest).reshape(1)
        opened = client_io.open_for_client(party, out.reshape(-1), masks)
        ok = check.ok.reveal()
        return opened, int(ok[0] if ok.ndim else ok)

    (o0, ok0), (o1, ok1) = run_pair(fn, parties, w, checks)
    assert ok0 == ok1
    result = req.result(o0, o1)
    return (decode_name(result) if one is None else int(result[0])), ok0


def _plain(templates: np.ndarray, probe: np.ndarray, threshold: float, frac: int):
    s = np.floor(fixedpoint.encode(probe)[0].view(np.int64).astype(float)[None, :]
                 @ fixedpoint.encode(templates)[0].view(np.int64).astype(float).T
                 / 2.0 ** (32 - frac)).ravel()
    j = int(np.argmax(s))
    return j if s[j] >= np.floor(threshold * 2**frac) else None, s


def _valid(templates: np.ndarray, probe: np.ndarray, threshold: float, got: str | None,
           names: list[str]) -> bool:
    """Whether ``got`` is an answer the contract allows: scores are truncated to 12 bits
    with an error of 0 or +1 unit, then compared exactly (docs/PROTOCOL.md)."""
    _, s = _plain(templates, probe, threshold, 12)  # floor(score * 2^12) per identity
    t = np.floor(threshold * 2**12)
    if got is None:
        return bool(s.max() < t)  # no score could have reached the threshold
    j = names.index(got)
    return bool(s[j] + 1 >= t and s[j] + 1 >= s.max())


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100])
def test_identify_matches_numpy(n):
    core = DealerCore()
    templates = unit(RNG.normal(size=(n, 16)))
    names = [f"person {i}" for i in range(n)]
    for k in range(4):
        probe = unit(templates[k % n] + RNG.normal(size=16) * 0.3) if k < 3 else \
            unit(RNG.normal(size=16))
        got, ok = _run(core, templates, probe, 0.6, names)
        want, _ = _plain(templates, probe, 0.6, 12)
        assert ok == 1
        assert _valid(templates, probe, 0.6, got, names)
        if want is not None:  # a clear match (no near tie here) is found as numpy finds it
            assert got == names[want]


def _run_batch(core: DealerCore, templates: np.ndarray, probes: list[np.ndarray],
               threshold: float, names: list[str]) -> list[tuple[str | None, int]]:
    """A batch of identifications in one run, each probe with its own request, checks and
    output masks, as the service runs concurrent requests."""
    parties = make_parties(core)
    dim = templates.shape[1]
    reqs = [ClientRequest(p, NAME_WORDS) for p in probes]
    w = share_floats(core, templates.T)
    offers: list[list] = [[], []]
    checks: list[list] = [[], []]
    for req in reqs:
        for i, p in enumerate(parties):
            t, arrays = client_io.offer_checked_input(p, req.n_total, dim)
            checks[i].append(t)
            offers[i].append(arrays)
    masked = [req.masked(offers[0][j], offers[1][j]) for j, req in enumerate(reqs)]

    def fn(party, wt, chks):
        got = [accept_checked_probe(party, c, m, dim) for c, m in zip(chks, masked)]
        gallery = Gallery(as_share(party, wt), party.fresh_key("g"))
        out = identify(gallery, stack([g.probe for g in got]), threshold, NameTable(names),
                       [ProbeChecks([g.check for g in got])], b"".join(g.digest for g in got))
        assert out.shape == (len(got), NAME_WORDS)
        opened = [client_io.open_for_client(party, out[j], g.masks) for j, g in enumerate(got)]
        oks = [int(g.check.ok.reveal().reshape(-1)[0]) for g in got]
        return opened, oks

    (o0, ok0), (o1, ok1) = run_pair(fn, parties, w, checks)
    assert ok0 == ok1
    return [(decode_name(req.result(o0[j], o1[j])), ok0[j]) for j, req in enumerate(reqs)]


@pytest.mark.parametrize("n", [1, 5, 1030])
def test_a_batch_answers_each_probe_as_alone(n):
    """K probes in one run (near faces, strangers, an out-of-range one): each row gets the
    answer numpy gives it alone, and the bad probe's check fails for it only."""
    core = DealerCore()
    templates = unit(RNG.normal(size=(n, 16)))
    names = [f"person {i}" for i in range(n)]
    probes = [unit(templates[(3 * k) % n] + RNG.normal(size=16) * 0.2) for k in range(3)]
    probes += [unit(RNG.normal(size=16)), unit(templates[0]) * 1.3]
    got = _run_batch(core, templates, probes, 0.6, names)
    for (name, ok), probe in zip(got[:4], probes[:4], strict=True):
        assert ok == 1
        assert _valid(templates, probe, 0.6, name, names)
    assert got[4][1] == 0


def test_near_ties_pick_within_one_unit_of_the_best():
    """Scores equal to within 2^-12 in the truncated path: the pick is one of them, and
    never more than one unit of 2^-12 below the best (no loss builds up over rounds)."""
    core = DealerCore()
    base = unit(RNG.normal(size=16))
    n = 1030  # large enough to take the truncated path
    templates = np.repeat(base[None, :], n, axis=0) + RNG.normal(size=(n, 16)) * 1e-6
    templates = unit(templates)
    names = [f"twin {i:04d}" for i in range(n)]
    got, ok = _run(core, templates, base, 0.5, names)
    assert ok == 1 and got is not None
    j = names.index(got)
    exact = fixedpoint.encode(templates)[0].view(np.int64) @ fixedpoint.encode(base)[0].view(
        np.int64) / 2.0**32
    assert exact[j] > exact.max() - 2.0 ** -11


def _exact(core: DealerCore, units: np.ndarray, threshold_units: int) -> str | None:
    """Identify the probe e_0 against templates s_j * e_0 (s_j in units of 2^-12): every
    score is exactly s_j, so the truncation adds no error and only the tournament's
    comparisons decide."""
    templates = np.zeros((units.size, 16))
    templates[:, 0] = units / 2.0**12
    probe = np.zeros(16)
    probe[0] = 1.0
    names = [f"id {i}" for i in range(units.size)]
    got, ok = _run(core, templates, probe, threshold_units / 2.0**12, names)
    assert ok == 1
    return got


@pytest.mark.parametrize("m", [2, 5, 8])
def test_scores_one_unit_apart_are_told_apart_exactly(m):
    """The best (last index) and the second best, one unit (2^-12) lower (index 0), meet in
    the final: their packed difference is -2^(m+1) + N - 1, so a coarse test without the
    spare bit between score and index (skip = m, packing by 2^m) errs with probability
    1 - 2/2^m there, and one with skip = m + 1 always may (attacker review 9)."""
    n = (1 << m) - 1
    core = DealerCore()
    for _ in range(3):
        units = np.full(n, -2000)
        units[0], units[-1] = 2999, 3000
        assert _exact(core, units, -4096) == f"id {n - 1}"
        assert _exact(core, units, 3000) == f"id {n - 1}"  # equal to the threshold: accepted
        units[0], units[-1] = 2998, 2999
        assert _exact(core, units, 3000) is None  # one unit below it: rejected


def _allowed(units: np.ndarray, threshold_units: int) -> set[str | None]:
    best = units.max()
    if best < threshold_units:
        return {None}
    return {f"id {i}" for i in np.flatnonzero(units == best)}


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 8, 15, 16])
def test_scores_and_thresholds_at_the_windows_edges(n):
    """Scores of exactly -1 and +1 (and one unit inside), thresholds at -1, 0 and +1: the
    tournament's window must hold every difference (a window one bit short fails here)."""
    core = DealerCore()
    for threshold in (-4096, 0, 4095, 4096):
        for _ in range(2):
            units = RNG.choice([-4096, 4096, -4095, 4095, 0, 1, -1], size=n)
            assert _exact(core, units, threshold) in _allowed(units, threshold), \
                (units, threshold)
    low = np.full(n, -4096)
    assert _exact(core, low, 4096) is None
    low[-1] = 4096
    assert _exact(core, low, 4096) == f"id {n - 1}"


def test_the_threshold_is_exact_to_one_unit():
    """The sentinel is always the right-hand operand, so a score equal to the threshold
    wins against it (x = N - j > 0 is decided exactly): equal accepts."""
    core = DealerCore()
    units = np.array([1200, 2047, -300, 2046, 5])
    assert _exact(core, units, 2048) is None  # one unit below: rejected
    assert _exact(core, units, 2047) == "id 1"  # equal: accepted
    assert _exact(core, units, 2046) == "id 1"  # one unit above: accepted, and the best


def test_exact_ties_pick_one_of_the_tied():
    core = DealerCore()
    units = np.array([7, 2100, -5, 2100, 2099, 2100])
    for _ in range(3):
        assert _exact(core, units, 1000) in ("id 1", "id 3", "id 5")


@pytest.mark.parametrize("probe_kind", ["big_coordinate", "short", "long", "wraps"])
def test_a_probe_out_of_range_is_refused(probe_kind):
    core = DealerCore()
    templates = unit(RNG.normal(size=(5, 16)))
    names = [f"p{i}" for i in range(5)]
    probe = unit(templates[0] + RNG.normal(size=16) * 0.1)
    if probe_kind == "big_coordinate":
        probe = probe.copy()
        probe[3] = 2.5
    elif probe_kind == "short":
        probe = probe * 0.9
    elif probe_kind == "long":
        probe = probe * 1.2
    else:  # (2^16, 1, 0...): its square wraps the 64-bit ring to the square of a unit vector
        probe = np.zeros(16)
        probe[0], probe[1] = 2.0**16, 1.0
    _, ok = _run(core, templates, probe, 0.5, names)
    assert ok == 0


def test_verify_matches_numpy_and_checks_the_probe():
    core = DealerCore()
    templates = unit(RNG.normal(size=(3, 16)))
    near = unit(templates[1] + RNG.normal(size=16) * 0.2)
    got, ok = _run(core, templates, near, 0.5, [], one=1)
    assert ok == 1 and got == int(near @ templates[1] >= 0.5)
    far = unit(RNG.normal(size=16))
    got, ok = _run(core, templates, far, 0.5, [], one=1)
    assert ok == 1 and got == int(far @ templates[1] >= 0.5)
    _, ok = _run(core, templates, near * 3.0, 0.5, [], one=1)
    assert ok == 0


def test_name_table_round_trip():
    t = NameTable(["ada", "Zoë Ünal", "x" * 128])
    for j, name in enumerate(["ada", "Zoë Ünal", "x" * 128]):
        assert decode_name(t.table[t.size - j]) == name
    assert decode_name(t.table[0]) is None
    with pytest.raises(Exception, match="bytes"):
        NameTable(["y" * 129])


@pytest.mark.parametrize("n", [1, 37])
def test_tournament_key_bytes_are_what_the_dealer_sends(n, monkeypatch):
    """batch_limit sizes batches by tournament_key_bytes: it must count the keys an
    identification really asks for (P1's roots and corrections, as dcf.gen makes them)."""
    asked: list[Request] = []
    produce = DealerCore._produce

    def spy(self, s, req, asking):
        asked.append(req)
        return produce(self, s, req, asking)

    monkeypatch.setattr(DealerCore, "_produce", spy)
    templates = unit(RNG.normal(size=(n, 16)))
    _run(DealerCore(), templates, templates[0], 0.5, [f"p{i}" for i in range(n)])
    sent = 0
    for req in asked:
        if req.kind == "ltz" and req.params[3]:  # the tournament's ReLUs
            spec = layout(req).fss[0]
            alpha = np.zeros(spec.keys, np.uint64)
            keys = dcf.gen(alpha, np.zeros((2, spec.keys, spec.width), np.uint64), spec.n,
                           np.zeros((2, spec.keys, 2), np.uint64))
            sent += keys.roots[1].nbytes + sum(c.nbytes for c in keys.corrections())
    assert sent == tournament_key_bytes(n) > 0
    assert batch_limit(n, 16) == 16 and batch_limit(100_000, 16) == 3


def test_a_batch_asks_the_dealer_as_often_as_one_probe(monkeypatch):
    """A batch's probe checks and lookups share dealer requests (one per stage for all K
    probes); only each terminal's own input material is per probe."""
    asked: list[str] = []
    produce = DealerCore._produce

    def spy(self, s, req, asking):
        asked.append(req.kind)
        return produce(self, s, req, asking)

    monkeypatch.setattr(DealerCore, "_produce", spy)
    templates = unit(RNG.normal(size=(9, 16)))
    counts = []
    for k in (1, 4):
        asked.clear()
        _run_batch(DealerCore(), templates, [templates[i] for i in range(k)], 0.5,
                   [f"p{i}" for i in range(9)])
        counts.append({kind: asked.count(kind) for kind in set(asked)})
    one, four = counts
    assert four.pop("checked_input") == 4 * one.pop("checked_input")
    for per_probe in ("zero_check", "random", "triple"):  # the test's own reveals
        four.pop(per_probe), one.pop(per_probe)
    assert four == one and one["interval"] == 2 and one["lookup"] == 1
