"""One verification through the real handler code (both servers in process), with a tap on
what each server sees opened while the result is released."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np

from splitface.servers.mpc import client_io
from splitface.servers.mpc.local_runtime import make_parties, run_pair
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.probe_check import accept_checked_probe
from splitface.servers.service import handlers as handlers_module
from splitface.servers.service.admission import RateLimiter
from splitface.servers.service.handlers import Handlers, Inputs
from splitface.shared.client_protocol import ClientRequest
from tests.mpc.harness import as_share, share_floats


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class OpeningTap:
    """Records, per party, every value a round opens in handlers._release: exactly what that
    server receives from the protocol (the colluding server just keeps it)."""

    def __init__(self) -> None:
        self.seen: dict[int, list] = {0: [], 1: []}
        self._orig = handlers_module.run_round

    def __enter__(self) -> OpeningTap:
        def tapped(party, openings, sync=None):
            out = self._orig(party, openings, sync)
            self.seen[party.id].append(out)
            return out

        handlers_module.run_round = tapped
        return self

    def __exit__(self, *exc) -> None:
        handlers_module.run_round = self._orig


def fake_node(party, rate: RateLimiter | None = None):
    return SimpleNamespace(party=party, rate=rate or RateLimiter())


def serve_verify(core: DealerCore, template: np.ndarray, probe: np.ndarray,
                 threshold: float = 0.5):
    """One verification through the real handler code path (accept_input, ProbeCheck,
    recognition.verify, Handlers._release) on both servers. Returns (outcome per party:
    ("released", value) or ("refused", ApiError)), the terminal's ClientRequest, and the
    values each server saw opened in _release."""
    from splitface.servers.recognition.identify import verify

    parties = make_parties(core)
    dim = template.size
    req = ClientRequest(probe, 1)
    w = share_floats(core, template)
    offers, checks = [], []
    for p in parties:
        t, arrays = client_io.offer_checked_input(p, req.n_total, dim)
        checks.append(t)
        offers.append(arrays)
    masked = req.masked(*offers)
    lock = threading.Lock()

    def fn(party, wt, chk):
        got = accept_checked_probe(party, chk, masked, dim)
        inputs = Inputs(got.probe, got.masks, None, got.check, got.digest)
        accept = verify(as_share(party, wt), got.probe, threshold, [got.check], got.digest)
        txn = SimpleNamespace(inbound=SimpleNamespace(name="edge-colluder"))
        try:
            return ("released", Handlers(fake_node(party))._release(txn, inputs, accept))
        except Exception as exc:  # ApiError(bad_probe) for an out-of-range probe
            with lock:
                return ("refused", exc)

    with OpeningTap() as tap:
        outs = run_pair(fn, parties, w, checks)
    for p in parties:
        p.channel.close()
    return outs, req, tap.seen


def verify_vs_rushing_p1(core: DealerCore, template: np.ndarray, probe: np.ndarray,
                         strategy, rate: RateLimiter, threshold: float = 0.5):
    """One verification on the real handler path with an honest P0 (its RateLimiter
    ``rate``) and a rushing P1 whose peer messages go through ``strategy``. Returns
    (P0's outcome, P1's outcome, the ClientRequest, the adversary's view)."""
    from splitface.servers.recognition.identify import verify
    from tests.adversary.harness import pair_with_adversary, run_honest_vs_adversary

    honest, evil, view, _ = pair_with_adversary(strategy, evil=1, core=core)
    parties = {0: honest, 1: evil}
    dim = template.size
    req = ClientRequest(probe, 1)
    w = share_floats(core, template)
    offers, checks = {}, {}
    for i in (0, 1):
        t, arrays = client_io.offer_checked_input(parties[i], req.n_total, dim)
        checks[i], offers[i] = t, arrays
    masked = req.masked(offers[0], offers[1])
    view.state["masks"] = req._masks  # the terminal colludes: it hands over its mask

    def fn(party):
        chk = checks[party.id]
        got = accept_checked_probe(party, chk, masked, dim)
        inputs = Inputs(got.probe, got.masks, None, got.check, got.digest)
        accept = verify(as_share(party, w[party.id]), got.probe, threshold, [got.check],
                        got.digest)
        txn = SimpleNamespace(inbound=SimpleNamespace(name="edge-colluder"))
        node = fake_node(party, rate if party.id == 0 else RateLimiter())
        return Handlers(node)._release(txn, inputs, accept)

    out0, out1 = run_honest_vs_adversary(fn, honest, evil, timeout=60)
    return out0, out1, req, view, honest
