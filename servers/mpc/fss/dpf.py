"""Distributed point functions (BGI16, as in BCG+21), evaluated on the whole domain.

A DPF key pair for (alpha, beta) over n-bit inputs gives V_0(x) + V_1(x) = beta * [x ==
alpha] for every x. Full-domain evaluation expands the tree level by level (2^n leaves in
about 2^(n+1) AES blocks), which is what a secret-index table lookup needs: with alpha a
dealer mask r and a public opened c = j + r, the shares of the one-hot vector of the
secret index j are V(c - k) for every row k. beta = (1, alpha_mac) makes the one-hot
authenticated, so a lookup in a public table is an authenticated share like any other.
Key generation and the one-hot lookup's full-domain evaluation (kernels.dpf_one_hot)
run as one compiled call each where kernels.DCF holds (AES-NI); the numpy code below is
their reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splitface.servers.mpc.fss import kernels
from splitface.servers.mpc.fss.dcf import ROUND_KEYS
from splitface.servers.mpc.fss.prg import expand, split_seed, to_ring
from splitface.shared import ring

MAX_BITS = 20  # full-domain evaluation is 2^n leaves


@dataclass
class DpfKeys:
    """Corrections shared by both parties' keys for K point functions, and both roots."""

    n: int
    roots: np.ndarray  # (2, K, 2) uint64
    cw_s: np.ndarray  # (n, K, 2) uint64
    cw_t: np.ndarray  # (n, K, 2) uint8
    cw_out: np.ndarray  # (2, K, P) ring

    def corrections(self) -> list[np.ndarray]:
        return [self.cw_s, self.cw_t, self.cw_out]


def _out_tweaks(p: int) -> np.ndarray:
    return np.arange(2, 2 + p, dtype=np.uint64)


def gen(alpha: np.ndarray, beta: np.ndarray, n: int, roots: np.ndarray, *,
        compiled: bool | None = None) -> DpfKeys:
    """Keys for beta * [x == alpha] over n-bit x: alpha (K,), beta (2, K, P) ring.
    ``compiled`` picks the numba kernel (default: where it runs) or numpy."""
    if not 1 <= n <= MAX_BITS:
        raise ValueError(f"DPF domain must be 1..{MAX_BITS} bits")
    k, p = alpha.shape[0], beta.shape[2]
    if kernels.DCF if compiled is None else compiled:
        keys = DpfKeys(n, roots, np.empty((n, k, 2), dtype=np.uint64),
                       np.empty((n, k, 2), dtype=np.uint8), np.empty((2, k, p), np.uint64))
        kernels.dpf_gen(np.ascontiguousarray(alpha, dtype=np.uint64),
                        np.ascontiguousarray(beta), n, np.ascontiguousarray(roots), ROUND_KEYS,
                        keys.cw_s, keys.cw_t, keys.cw_out)
        return keys
    return gen_reference(alpha, beta, n, roots)


def gen_reference(alpha: np.ndarray, beta: np.ndarray, n: int, roots: np.ndarray) -> DpfKeys:
    """The numpy reference of :func:`gen`."""
    k, p = alpha.shape[0], beta.shape[2]
    s = [roots[0].copy(), roots[1].copy()]
    s[0][:, 0] &= ~np.uint64(1)
    s[1][:, 0] &= ~np.uint64(1)
    t = [np.zeros(k, dtype=bool), np.ones(k, dtype=bool)]
    cw_s = np.empty((n, k, 2), dtype=np.uint64)
    cw_t = np.empty((n, k, 2), dtype=np.uint8)
    tw = np.arange(2, dtype=np.uint64)
    for i in range(n):
        a_i = ((alpha >> np.uint64(n - 1 - i)) & np.uint64(1)).astype(bool)
        kids = []
        for b in (0, 1):
            g = expand(s[b], tw)
            kids.append((split_seed(g[:, 0]), split_seed(g[:, 1])))
        (sl0, tl0), (sr0, tr0) = kids[0]
        (sl1, tl1), (sr1, tr1) = kids[1]
        s_cw = np.where(a_i[:, None], sl0 ^ sl1, sr0 ^ sr1)  # the lost child's seeds
        tl_cw = tl0 ^ tl1 ^ a_i ^ True
        tr_cw = tr0 ^ tr1 ^ a_i
        cw_s[i], cw_t[i, :, 0], cw_t[i, :, 1] = s_cw, tl_cw, tr_cw
        t_keep_cw = np.where(a_i, tr_cw, tl_cw)
        for b, ((sl, tl), (sr, tr)) in enumerate(kids):
            sk, tk = np.where(a_i[:, None], sr, sl), np.where(a_i, tr, tl)
            s[b] = sk ^ np.where(t[b][:, None], s_cw, np.uint64(0))
            t[b] = tk ^ (t[b] & t_keep_cw)
    conv = [to_ring(expand(s[b], _out_tweaks(p))) for b in (0, 1)]
    diff = ring.add(ring.sub(beta, conv[0]), conv[1])
    cw_out = np.where(t[1][None, :, None], ring.neg(diff), diff)
    return DpfKeys(n, roots, cw_s, cw_t, cw_out)


def eval_all(party: int, n: int, root: np.ndarray, cw_s: np.ndarray, cw_t: np.ndarray,
             cw_out: np.ndarray) -> np.ndarray:
    """Party ``party``'s shares of beta * [x == alpha] for every x in [0, 2^n) and every
    key: root (K, 2); returns a ring array (2, K, 2^n, P), x in natural order. (The
    one-hot lookup runs kernels.dpf_one_hot where it can; this is its reference.)"""
    k, p = root.shape[0], cw_out.shape[2]
    s = root.copy()[:, None, :]  # (K, width, 2)
    s[:, :, 0] &= ~np.uint64(1)
    t = np.full((k, 1), bool(party))
    tw = np.arange(2, dtype=np.uint64)
    for i in range(n):
        width = s.shape[1]
        g = expand(s.reshape(-1, 2), tw).reshape(k, width, 2, 2)
        child = g.copy()
        tbits = (child[..., 0] & np.uint64(1)).astype(bool)  # (K, width, 2)
        child[..., 0] &= ~np.uint64(1)
        corr = t[:, :, None, None]
        child ^= np.where(corr, cw_s[i][:, None, None, :], np.uint64(0))
        tbits ^= t[:, :, None] & cw_t[i][:, None, :].astype(bool)
        s = child.reshape(k, 2 * width, 2)  # left, right interleaved: natural order
        t = tbits.reshape(k, 2 * width)
    leaves = to_ring(expand(s.reshape(-1, 2), _out_tweaks(p)))  # (2, K*2^n, P)
    leaves = leaves.reshape(2, k, 1 << n, p)
    leaves = ring.add(leaves, np.where(t[None, :, :, None], cw_out[:, :, None, :],
                                       np.uint64(0)))
    return ring.neg(leaves) if party else leaves


def evaluate_all(party: int, keys: DpfKeys) -> np.ndarray:
    return eval_all(party, keys.n, keys.roots[party], keys.cw_s, keys.cw_t, keys.cw_out)
