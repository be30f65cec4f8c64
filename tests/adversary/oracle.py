"""The attacker review's alpha oracle on the MAC check (2026-11-30), kept as an attack.

The malicious server (P1) opens a value with an error confined to bits >= 64, adds a
chosen offset e to its MAC-check mask after it has seen chi, computes the z-hash the check
would need, and reads the honest server's opened hash *before* sending its own (rushing).
If the hashes differ it sends a wrong-kind message (a "network glitch") instead of
opening. Before the fix the honest server saw a ProtocolError, not a failed check, and
kept the key: about 1,400 such requests gave all of alpha. Now any interruption inside
the check counts as a failure (Party.mac_failed) and the key is retired.
"""

from __future__ import annotations

import hashlib
import os
import threading

import numpy as np

from splitface.servers.mpc.party import Party
from splitface.servers.mpc.prep.dealer import DealerCore
from splitface.servers.mpc.prep.local import local_pair as local_prep_pair
from splitface.shared import ring
from splitface.shared.prg import Prg
from splitface.shared.transport.local import local_pair
from splitface.shared.wire import Message

M128 = 1 << 128


def shift(a: np.ndarray, delta: int, index: int = 0) -> np.ndarray:
    out = np.array(a, copy=True)
    flat = out.reshape(2, -1)
    v = ring.to_pyints(flat[:, index:index + 1])[0]
    flat[:, index:index + 1] = ring.from_pyint((v + delta) % M128, (1,))
    return out


def evil_check(p: Party, offset_of_chi, *, complete_on_match: bool = True,
               complete_on_mismatch: bool = False) -> tuple[bool, int]:
    """P1's replacement for Party.check: returns (honest hash == the passing hash, chi_0).

    ``offset_of_chi(chi_0)`` is the offset added to P1's check mask after seeing chi.
    """
    vals = ring.concat(p._open_vals, axis=0) if len(p._open_vals) > 1 else p._open_vals[0]
    macs = ring.concat(p._open_macs, axis=0) if len(p._open_macs) > 1 else p._open_macs[0]
    p._open_vals, p._open_macs = [], []
    chi = Prg(p._coin()).uint64(vals.shape[1])
    y = ring.sum_axis(ring.mul_u64(vals, chi), 0)
    chi_m = ring.sum_axis(ring.mul_u64(macs, chi), 0)
    sigma = ring.sub(chi_m, ring.mul(p.alpha, y))
    a, b, c = (x.reshape(2) for x in p.prep.zero_check())
    chi0 = int(chi[0])
    mask = ring.add(ring.sub(sigma, a), ring.from_pyint(offset_of_chi(chi0) % M128))
    msg = p._exchange("checkmask", [mask])
    d = ring.add(mask, msg.arrays[0])
    z = ring.add(c, ring.mul(d, b))
    h = hashlib.sha256(b"splitface-zero-v2|" + p._bind(ring.neg(z).tobytes())).digest()
    nonce = os.urandom(16)
    p._exchange("checkcommit", [], {"c": p._zero_commit(p.id, h, nonce)})
    honest_open = p.channel.recv("checkopen")  # rushing: the honest opening comes first
    match = honest_open.meta["h"] == h
    if (complete_on_match if match else complete_on_mismatch):
        nxt = p._seed_commit(p.id, os.urandom(16), check=p._checks + 1)
        p.channel.send(Message("checkopen", {"sid": p.session, "ctr": p._ctr, "h": h,
                                             "n": nonce, "next": nxt}))
    else:  # "the link hiccuped": anything but an opening
        p.channel.send(Message("abort", {"reason": "connection reset"}))
    return match, chi0


def query(core: DealerCore, delta: int, offset_of_chi, *, epoch: int | None = None,
          complete_on_match: bool = True):
    """One request: both open a masked value (P1 adds ``delta`` to its share), then the
    check. Returns (match, chi_0, honest error or None, honest party)."""
    c0, c1 = local_pair()
    preps = local_prep_pair(core, epoch=epoch)
    honest, evil = Party(0, c0, preps[0]), Party(1, c1, preps[1])
    out: dict = {}

    def run_honest() -> None:
        try:
            t = honest.prep.triples((1,))
            honest.open(t.a)
            honest.check()
        except BaseException as exc:
            out["honest"] = exc

    def run_evil() -> None:
        try:
            t = evil.prep.triples((1,))
            v, m = t.a
            evil.open((shift(v, delta), m))
            out["evil"] = evil_check(evil, offset_of_chi, complete_on_match=complete_on_match)
        except BaseException as exc:
            out["evil_error"] = exc

    th = [threading.Thread(target=run_honest, daemon=True),
          threading.Thread(target=run_evil, daemon=True)]
    for t in th:
        t.start()
    for t in th:
        t.join(30)
    if "evil_error" in out:
        raise out["evil_error"]
    match, chi0 = out["evil"]
    return match, chi0, out.get("honest"), honest


def recover_alpha(core: DealerCore, *, bits: int = 64, confirm: int = 20,
                  epoch: int | None = None, on_query=None, query_fn=None
                  ) -> tuple[int, int, list]:
    """Learn alpha mod 2^bits bit by bit. Returns (alpha guess, queries, honest errors).

    ``query_fn(delta, offset_of_chi)`` -> (match, chi_0, honest error, honest party);
    default: :func:`query` on ``core``."""
    if query_fn is None:
        def query_fn(delta, off):
            return query(core, delta, off, epoch=epoch)
    known, queries, errors = 0, 0, []
    for t in range(bits):
        delta = 1 << (127 - t)  # an error in bits >= 64 only ("does not change any value")
        zeros = 0
        while True:
            match, chi0, err, honest = query_fn(
                delta, lambda chi0, g=known, d=delta: g * chi0 * d)
            queries += 1
            errors.append((err, honest.mac_failed))
            if on_query is not None:
                on_query()
            if chi0 % 2 == 0:
                continue  # X = 0 whatever alpha is: no information
            if not match:  # b odd and bit t of alpha set
                known |= 1 << t
                break
            zeros += 1
            if zeros >= confirm:
                break
    return known, queries, errors
