"""Compiled per-level kernels of the DCF, one pass over the keys instead of ~20 numpy ops.

The AES expansion stays a single ``cryptography`` call per level (prg.expand); these
kernels do the rest of a level: building the AES input blocks, the seed/bit/value
corrections and the accumulation in Z_2^128 (two uint64 limbs, wrapping arithmetic).
The numpy code in dcf.py is the reference; tests run both and require equal outputs.
numba compiles on first use (cached on disk); ``SPLITFACE_NO_NUMBA=1`` forces numpy.
"""

from __future__ import annotations

import os

import numpy as np

try:  # pragma: no cover - exercised through dcf.py
    if os.environ.get("SPLITFACE_NO_NUMBA"):
        raise ImportError
    from numba import njit
    AVAILABLE = True
except ImportError:  # numpy reference only
    AVAILABLE = False

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        def wrap(fn):
            return fn
        return wrap(args[0]) if args and callable(args[0]) else wrap

ONE = np.uint64(1)


@njit(cache=True)
def tweak_blocks(seeds, tweaks, out):  # pragma: no cover - compiled
    """AES inputs s XOR j for every seed s (K, 2) and tweak j (B,): out (K, B, 2)."""
    for j in range(seeds.shape[0]):
        lo, hi = seeds[j, 0], seeds[j, 1]
        for q in range(tweaks.shape[0]):
            out[j, q, 0] = lo ^ tweaks[q]
            out[j, q, 1] = hi


@njit(cache=True)
def eval_inputs(s, bits, p, out):  # pragma: no cover - compiled
    """AES inputs of the child on each evaluation's path: its seed block and P value
    blocks (tweaks bit and 2 + bit*P + j), XORed into the seed's low limb."""
    for j in range(s.shape[0]):
        b = bits[j]
        out[j, 0, 0] = s[j, 0] ^ np.uint64(b)
        out[j, 0, 1] = s[j, 1]
        for q in range(p):
            out[j, 1 + q, 0] = s[j, 0] ^ np.uint64(2 + b * p + q)
            out[j, 1 + q, 1] = s[j, 1]


@njit(cache=True)
def eval_level(g, key, bits, cw_s, cw_t, cw_v, s, t, acc, party):  # pragma: no cover
    """One DCF level for every evaluation: g (KE, 1+P, 2) = raw AES outputs of the inputs
    eval_inputs built (completed to MMO here: XOR with the seed and tweak); corrections of
    this level indexed by key; updates s, t, acc in place."""
    p = acc.shape[2]
    for j in range(g.shape[0]):
        k = key[j]
        b = np.uint64(bits[j])
        slo = s[j, 0]
        shi = s[j, 1]
        lo = g[j, 0, 0] ^ slo ^ b
        hi = g[j, 0, 1] ^ shi
        tc = lo & ONE
        lo = lo & ~ONE
        tj = t[j]
        if tj:
            lo ^= cw_s[k, 0]
            hi ^= cw_s[k, 1]
            tc ^= np.uint64(cw_t[k, bits[j]])
        for q in range(p):
            vlo = g[j, 1 + q, 0] ^ slo ^ (np.uint64(2 + q) + b * np.uint64(p))
            vhi = g[j, 1 + q, 1] ^ shi
            if tj:
                clo = cw_v[0, k, q]
                nlo = vlo + clo
                vhi = vhi + cw_v[1, k, q] + (ONE if nlo < vlo else np.uint64(0))
                vlo = nlo
            if party:
                nlo = ~vlo + ONE
                vhi = ~vhi + (ONE if vlo == 0 else np.uint64(0))
                vlo = nlo
            alo = acc[0, j, q]
            nlo = alo + vlo
            acc[1, j, q] = acc[1, j, q] + vhi + (ONE if nlo < alo else np.uint64(0))
            acc[0, j, q] = nlo
        s[j, 0] = lo
        s[j, 1] = hi
        t[j] = tc != 0


@njit(cache=True)
def gen_level(g0, g1, abits, t0, t1, beta, v_alpha, p, cw_s, cw_t, cw_v, s0, s1
              ):  # pragma: no cover - compiled
    """One DCF key-generation level for every key (BCG+21 Fig. 3, lines 5-14): g_b (K,
    2+2P, 2) = both parties' raw AES outputs of tweaks 0..2+2P-1 (completed to MMO here, in
    place); updates the seeds, bits and V_alpha in place and writes this level's
    corrections."""
    for k in range(g0.shape[0]):
        for j in range(g0.shape[1]):  # MMO: AES(s ^ j) ^ s ^ j (level tweaks are 0..B-1)
            g0[k, j, 0] ^= s0[k, 0] ^ np.uint64(j)
            g0[k, j, 1] ^= s0[k, 1]
            g1[k, j, 0] ^= s1[k, 0] ^ np.uint64(j)
            g1[k, j, 1] ^= s1[k, 1]
        a = abits[k]
        keep = 1 if a else 0  # 0 left, 1 right
        lose = 1 - keep
        # children: seed blocks 0 (left) / 1 (right); value blocks 2.. / 2+P..
        sl0 = g0[k, lose, 0] & ~ONE
        sl1 = g1[k, lose, 0] & ~ONE
        cw_s[k, 0] = sl0 ^ sl1
        cw_s[k, 1] = g0[k, lose, 1] ^ g1[k, lose, 1]
        tl = (g0[k, 0, 0] ^ g1[k, 0, 0]) & ONE
        tr = (g0[k, 1, 0] ^ g1[k, 1, 0]) & ONE
        tl_cw = tl ^ np.uint64(a) ^ ONE
        tr_cw = tr ^ np.uint64(a)
        cw_t[k, 0] = np.uint8(tl_cw)
        cw_t[k, 1] = np.uint8(tr_cw)
        tk_cw = tr_cw if a else tl_cw
        neg1 = t1[k]
        for q in range(p):
            lb = 2 + lose * p + q
            kb = 2 + keep * p + q
            # v_cw = v1_lose - v0_lose - V_alpha (+ beta if lose is left), times (-1)^t1
            lo = g1[k, lb, 0] - g0[k, lb, 0]
            hi = g1[k, lb, 1] - g0[k, lb, 1] - (ONE if g1[k, lb, 0] < g0[k, lb, 0]
                                                else np.uint64(0))
            nlo = lo - v_alpha[0, k, q]
            hi = hi - v_alpha[1, k, q] - (ONE if lo < v_alpha[0, k, q] else np.uint64(0))
            lo = nlo
            if lose == 0:
                nlo = lo + beta[0, k, q]
                hi = hi + beta[1, k, q] + (ONE if nlo < lo else np.uint64(0))
                lo = nlo
            if neg1:
                nlo = ~lo + ONE
                hi = ~hi + (ONE if lo == 0 else np.uint64(0))
                lo = nlo
            cw_v[0, k, q] = lo
            cw_v[1, k, q] = hi
            # V_alpha += v0_keep - v1_keep + (-1)^t1 * v_cw
            if neg1:
                clo = ~lo + ONE
                chi = ~hi + (ONE if lo == 0 else np.uint64(0))
            else:
                clo = lo
                chi = hi
            dlo = g0[k, kb, 0] - g1[k, kb, 0]
            dhi = g0[k, kb, 1] - g1[k, kb, 1] - (ONE if g0[k, kb, 0] < g1[k, kb, 0]
                                                 else np.uint64(0))
            nlo = dlo + clo
            dhi = dhi + chi + (ONE if nlo < dlo else np.uint64(0))
            dlo = nlo
            alo = v_alpha[0, k, q]
            nlo = alo + dlo
            v_alpha[1, k, q] = v_alpha[1, k, q] + dhi + (ONE if nlo < alo else np.uint64(0))
            v_alpha[0, k, q] = nlo
        # next seeds and bits: keep child, corrected where t_b was set
        for b in range(2):
            g = g0 if b == 0 else g1
            tb = t0[k] if b == 0 else t1[k]
            lo = g[k, keep, 0]
            hi = g[k, keep, 1]
            tk = lo & ONE
            lo = lo & ~ONE
            if tb:
                lo ^= cw_s[k, 0]
                hi ^= cw_s[k, 1]
                tk ^= tk_cw
            if b == 0:
                s0[k, 0] = lo
                s0[k, 1] = hi
                t0[k] = tk != 0
            else:
                s1[k, 0] = lo
                s1[k, 1] = hi
                t1[k] = tk != 0
