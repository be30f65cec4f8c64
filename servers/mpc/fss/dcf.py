"""Distributed comparison functions (BCG+21, "Function Secret Sharing for Mixed-Mode and
Fixed-Point Secure Computation", Fig. 3), vectorised over many keys.

A DCF key pair for (alpha, beta) over n-bit inputs gives two parties V_0(x) + V_1(x) =
beta * [x < alpha] (mod 2^128) for every public x; each key alone is pseudorandom. beta is
a vector of P ring elements: the protocols put a value and its MAC share side by side
(beta = (1, alpha_mac) or (u, u*r, alpha_mac*u, alpha_mac*u*r)), so an evaluation is an
authenticated share and a server that changes its output is caught by the MAC check.

Key size per comparison: 16 bytes of root seed per party, then per level a 128-bit seed
correction, two control bits and P ring elements; both parties receive the same
corrections. Evaluation expands one child per level: 1 + P AES blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splitface.servers.mpc.fss import aesni, kernels
from splitface.servers.mpc.fss.prg import FIXED_KEY, expand, split_seed, to_ring
from splitface.shared import ring

ROUND_KEYS = aesni.round_keys(FIXED_KEY)  # the compiled kernels' fixed AES key (public)


@dataclass
class DcfKeys:
    """The corrections shared by both parties' keys for K comparisons, and both root seeds
    (the dealer sends each party its own root seed and the corrections)."""

    n: int
    roots: np.ndarray  # (2, K, 2) uint64: party b's root seed per key
    cw_s: np.ndarray  # (n, K, 2) uint64 seed corrections
    cw_t: np.ndarray  # (n, K, 2) uint8 control-bit corrections (left, right)
    cw_v: np.ndarray  # (n, 2, K, P) ring value corrections per level
    cw_out: np.ndarray  # (2, K, P) ring final correction

    @property
    def size(self) -> int:
        return self.roots.shape[1]

    @property
    def width(self) -> int:
        return self.cw_out.shape[2]

    def corrections(self) -> list[np.ndarray]:
        """The arrays both parties receive (their order is the wire order)."""
        return [self.cw_s, self.cw_t, self.cw_v, self.cw_out]


def _tweaks(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Block indices: 0 left seed, 1 right seed, 2.. left values, 2+P.. right values;
    2+2P.. the final conversion of a leaf seed."""
    return np.arange(2 + 2 * p, dtype=np.uint64), np.arange(2 + 2 * p, 2 + 3 * p,
                                                            dtype=np.uint64)


# Keys per compiled key-generation pass. A batch of 8 probes at N = 10,000 asks for 80,000
# keys at once; generated in chunks, each chunk's working set stays small and its keys are
# copied out while cached: 347 -> 301-314 ms for 80,000 keys x 28 bits here, whatever the
# chunk size from 2,048 to 16,384 (so smaller requests are not chunked at all).
CHUNK_KEYS = 16384


def _neg_where(flag: np.ndarray, a: np.ndarray) -> np.ndarray:
    """(-1)^flag * a for a (2, K, P) ring array and flags (K,)."""
    return np.where(flag[None, :, None], ring.neg(a), a)


def gen(alpha: np.ndarray, beta: np.ndarray, n: int, roots: np.ndarray, *,
        compiled: bool | None = None) -> DcfKeys:
    """Keys for [x < alpha] * beta over n-bit x: alpha (K,) uint64 < 2^n, beta (2, K, P)
    ring, roots (2, K, 2) uint64 uniform root seeds (from the dealer's CSPRNG).
    ``compiled`` picks the numba kernels (default: when available) or numpy."""
    if not 1 <= n <= 64:
        raise ValueError("DCF domain must be 1..64 bits")
    if not (kernels.DCF if compiled is None else compiled):
        return gen_reference(alpha, beta, n, roots)
    k, p = alpha.shape[0], beta.shape[2]
    if k <= CHUNK_KEYS:
        return _gen_compiled(alpha, beta, n, roots)
    keys = DcfKeys(n, roots, np.empty((n, k, 2), dtype=np.uint64),
                   np.empty((n, k, 2), dtype=np.uint8), np.empty((n, 2, k, p), dtype=np.uint64),
                   np.empty((2, k, p), dtype=np.uint64))
    for s in range(0, k, CHUNK_KEYS):  # each chunk is copied out while it is still cached
        e = min(s + CHUNK_KEYS, k)
        part = _gen_compiled(alpha[s:e], beta[:, s:e], n, roots[:, s:e])
        keys.cw_s[:, s:e], keys.cw_t[:, s:e] = part.cw_s, part.cw_t
        keys.cw_v[:, :, s:e], keys.cw_out[:, s:e] = part.cw_v, part.cw_out
    return keys


def _gen_compiled(alpha: np.ndarray, beta: np.ndarray, n: int, roots: np.ndarray) -> DcfKeys:
    k, p = alpha.shape[0], beta.shape[2]
    keys = DcfKeys(n, roots, np.empty((n, k, 2), dtype=np.uint64),
                   np.empty((n, k, 2), dtype=np.uint8), np.empty((n, 2, k, p), dtype=np.uint64),
                   np.empty((2, k, p), dtype=np.uint64))
    kernels.dcf_gen(np.ascontiguousarray(alpha, dtype=np.uint64), np.ascontiguousarray(beta),
                    n, np.ascontiguousarray(roots), ROUND_KEYS, keys.cw_s, keys.cw_t,
                    keys.cw_v, keys.cw_out)
    return keys


def gen_reference(alpha: np.ndarray, beta: np.ndarray, n: int, roots: np.ndarray) -> DcfKeys:
    """The numpy reference of :func:`gen` (BCG+21 Fig. 3 line by line)."""
    k, p = alpha.shape[0], beta.shape[2]
    level_tw, out_tw = _tweaks(p)
    s = [roots[0].copy(), roots[1].copy()]
    s[0][:, 0] &= ~np.uint64(1)
    s[1][:, 0] &= ~np.uint64(1)
    t = [np.zeros(k, dtype=bool), np.ones(k, dtype=bool)]
    v_alpha = ring.zeros((k, p))
    cw_s = np.empty((n, k, 2), dtype=np.uint64)
    cw_t = np.empty((n, k, 2), dtype=np.uint8)
    cw_v = np.empty((n, 2, k, p), dtype=np.uint64)
    for i in range(n):
        a_i = ((alpha >> np.uint64(n - 1 - i)) & np.uint64(1)).astype(bool)
        sl, tl, sr, tr, vl, vr = [], [], [], [], [], []
        for b in (0, 1):
            g = expand(s[b], level_tw)
            x, y = split_seed(g[:, 0]), split_seed(g[:, 1])
            sl.append(x[0])
            tl.append(x[1])
            sr.append(y[0])
            tr.append(y[1])
            vl.append(to_ring(g[:, 2:2 + p]))
            vr.append(to_ring(g[:, 2 + p:2 + 2 * p]))
        lose_left = a_i  # alpha_i = 1: the path to alpha goes right, left is lost
        pick = a_i[:, None]
        s_lose = [np.where(pick, sl[b], sr[b]) for b in (0, 1)]
        s_keep = [np.where(pick, sr[b], sl[b]) for b in (0, 1)]
        v_lose = [np.where(lose_left[None, :, None], vl[b], vr[b]) for b in (0, 1)]
        v_keep = [np.where(lose_left[None, :, None], vr[b], vl[b]) for b in (0, 1)]
        s_cw = s_lose[0] ^ s_lose[1]
        v_cw = ring.sub(ring.sub(v_lose[1], v_lose[0]), v_alpha)
        v_cw = np.where(lose_left[None, :, None], ring.add(v_cw, beta), v_cw)
        v_cw = _neg_where(t[1], v_cw)
        v_alpha = ring.add(ring.add(ring.sub(v_alpha, v_keep[1]), v_keep[0]),
                           _neg_where(t[1], v_cw))
        tl_cw = tl[0] ^ tl[1] ^ a_i ^ True
        tr_cw = tr[0] ^ tr[1] ^ a_i
        t_keep_cw = np.where(a_i, tr_cw, tl_cw)
        t_keep = [np.where(a_i, tr[b], tl[b]) for b in (0, 1)]
        cw_s[i], cw_v[i] = s_cw, v_cw
        cw_t[i, :, 0], cw_t[i, :, 1] = tl_cw, tr_cw
        for b in (0, 1):
            s[b] = s_keep[b] ^ np.where(t[b][:, None], s_cw, np.uint64(0))
            t[b] = t_keep[b] ^ (t[b] & t_keep_cw)
    conv = [to_ring(expand(s[b], out_tw)) for b in (0, 1)]
    cw_out = _neg_where(t[1], ring.sub(ring.sub(conv[1], conv[0]), v_alpha))
    return DcfKeys(n, roots, cw_s, cw_t, cw_v, cw_out)


def eval_dcf(party: int, n: int, root: np.ndarray, cw_s: np.ndarray, cw_t: np.ndarray,
             cw_v: np.ndarray, cw_out: np.ndarray, x: np.ndarray, *,
             compiled: bool | None = None) -> np.ndarray:
    """Party ``party``'s shares of beta * [x < alpha] for every key and each of its points:
    root (K, 2), corrections as in :class:`DcfKeys`, x (K, E) uint64 < 2^n; returns a ring
    array (2, K, E, P)."""
    if kernels.DCF if compiled is None else compiled:
        return _eval_compiled(party, n, root, cw_s, cw_t, cw_v, cw_out, x)
    return eval_reference(party, n, root, cw_s, cw_t, cw_v, cw_out, x)


def _eval_compiled(party: int, n: int, root: np.ndarray, cw_s: np.ndarray, cw_t: np.ndarray,
                   cw_v: np.ndarray, cw_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    k, e = x.shape
    out = np.empty((2, k, e, cw_out.shape[2]), dtype=np.uint64)
    kernels.dcf_eval(party, n, np.ascontiguousarray(root), np.ascontiguousarray(cw_s),
                     np.ascontiguousarray(cw_t), np.ascontiguousarray(cw_v),
                     np.ascontiguousarray(cw_out), np.ascontiguousarray(x, dtype=np.uint64),
                     ROUND_KEYS, out)
    return out


def eval_reference(party: int, n: int, root: np.ndarray, cw_s: np.ndarray, cw_t: np.ndarray,
                   cw_v: np.ndarray, cw_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The numpy reference of :func:`eval_dcf` (BCG+21 Fig. 3, Eval)."""
    k, e = x.shape
    p = cw_out.shape[2]
    _, out_tw = _tweaks(p)
    key = np.repeat(np.arange(k), e)  # flat evaluation -> its key
    s = np.repeat(root, e, axis=0)
    s[:, 0] &= ~np.uint64(1)
    t = np.full(k * e, bool(party))
    xf = x.reshape(-1)
    acc = ring.zeros((k * e, p))
    for i in range(n):
        bit = ((xf >> np.uint64(n - 1 - i)) & np.uint64(1)).astype(np.int64)
        # only the child on x's path: its seed block and its P value blocks
        tw = np.concatenate([bit[:, None],
                             2 + bit[:, None] * p + np.arange(p, dtype=np.int64)[None, :]],
                            axis=1).astype(np.uint64)
        g = expand(s, tw)
        child, t_child = split_seed(g[:, 0])
        corr = t[:, None]
        child ^= np.where(corr, cw_s[i, key], np.uint64(0))
        t_child ^= t & cw_t[i, key, bit].astype(bool)
        v = to_ring(g[:, 1:])  # (2, KE, P)
        v = ring.add(v, np.where(t[None, :, None], cw_v[i][:, key], np.uint64(0)))
        acc = ring.add(acc, ring.neg(v) if party else v)
        s, t = child, t_child
    last = ring.add(to_ring(expand(s, out_tw)),
                    np.where(t[None, :, None], cw_out[:, key], np.uint64(0)))
    acc = ring.add(acc, ring.neg(last) if party else last)
    return acc.reshape(2, k, e, p)


def evaluate(party: int, keys: DcfKeys, x: np.ndarray) -> np.ndarray:
    """Convenience for tests: evaluate party ``party``'s half of ``keys``."""
    return eval_dcf(party, keys.n, keys.roots[party], keys.cw_s, keys.cw_t, keys.cw_v,
                    keys.cw_out, x)
