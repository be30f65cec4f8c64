"""Compiled DCF key generation and evaluation: one call each, AES included (aesni.py).

Each kernel walks the tree level by level and, within a level, key by key (or evaluation
by evaluation): consecutive keys' AES chains are independent, so the processor overlaps
them, and nothing returns to Python between levels. Seeds, control bits, corrections and
the accumulation in Z_2^128 (two uint64 limbs, wrapping arithmetic) are as in the numpy
reference of dcf.py (BCG+21 Fig. 3); tests run both and require equal outputs, bit for
bit. numba compiles on first use (cached on disk); ``SPLITFACE_NO_NUMBA=1`` forces numpy,
and so does a process that may not map code executable (numba then fails to load).
``AVAILABLE``: numba is there (the ring kernels need no more); ``DCF``: these kernels run
here too (AES-NI, aesni.SUPPORTED).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from splitface.servers.mpc.fss import aesni


def _no_numba(reason: str | None) -> None:
    """The numpy reference only: kernels become plain Python (never called)."""
    global AVAILABLE, njit
    if reason:
        logging.getLogger("splitface.kernels").warning(
            "compiled kernels unavailable (%s): the numpy reference runs instead, several "
            "times slower (docs/DEPLOY.md, MemoryDenyWriteExecute)", reason)
    AVAILABLE = False

    def njit(*args, **kwargs):
        def wrap(fn):
            return fn
        return wrap(args[0]) if args and callable(args[0]) else wrap


AVAILABLE = True
try:  # pragma: no cover - exercised through dcf.py
    if os.environ.get("SPLITFACE_NO_NUMBA"):
        raise ImportError
    from numba import njit
except ImportError:
    _no_numba(None)
except OSError as exc:  # LLVM may not map code executable (MemoryDenyWriteExecute=yes)
    _no_numba(str(exc))

DCF = AVAILABLE and aesni.SUPPORTED

ONE = np.uint64(1)
ZERO = np.uint64(0)



@njit(inline="always")
def _add(lo, hi, blo, bhi):  # pragma: no cover - compiled
    """(lo, hi) + (blo, bhi) mod 2^128."""
    nlo = lo + blo
    return nlo, hi + bhi + (ONE if nlo < lo else ZERO)


@njit(inline="always")
def _sub(lo, hi, blo, bhi):  # pragma: no cover - compiled
    """(lo, hi) - (blo, bhi) mod 2^128."""
    return lo - blo, hi - bhi - (ONE if lo < blo else ZERO)


@njit(inline="always")
def _neg(lo, hi):  # pragma: no cover - compiled
    """-(lo, hi) mod 2^128."""
    return ~lo + ONE, ~hi + (ONE if lo == 0 else ZERO)


@njit(inline="always")
def _mul(alo, ahi, blo, bhi):  # pragma: no cover - compiled
    """(alo, ahi) * (blo, bhi) mod 2^128 (the 64 x 64 -> 128-bit product from 32-bit
    halves, plus the two cross terms that reach the high word)."""
    low = np.uint64(0xFFFFFFFF)
    s32 = np.uint64(32)
    a0, a1, b0, b1 = alo & low, alo >> s32, blo & low, blo >> s32
    p00, p01, p10 = a0 * b0, a0 * b1, a1 * b0
    mid = (p00 >> s32) + (p01 & low) + (p10 & low)
    lo = (p00 & low) | (mid << s32)
    return lo, a1 * b1 + (p01 >> s32) + (p10 >> s32) + (mid >> s32) + alo * bhi + ahi * blo


@njit(cache=True, nogil=True)
def relu_finish(party, alpha, c, r_v, r_m, s_v, s_m, sr_v, sr_m, ev, skip, bits, y_v, y_m
                ):  # pragma: no cover - compiled
    """ReLU(x) = b*c - [b*r] from the opened c = x + r (compare.relu), per element: u = [s] +
    V_u and [u*r] = [s*r] + V_ur from the DCF outputs ev (2, n, 4: V_u, V_ur, their MACs),
    then b = 1 - u and [b*r] = r - [u*r] where the public top bit of the window is set, u
    and [u*r] where not. alpha is this party's MAC key share (2,); y_v, y_m get (2, n)."""
    half = ONE << np.uint64(skip + bits - 1)
    window = ~ZERO if skip + bits == 64 else (ONE << np.uint64(skip + bits)) - ONE
    for j in range(c.shape[1]):
        top = (((c[0, j] + half) & window) >> np.uint64(skip + bits - 1)) & ONE
        uvl, uvh = _add(s_v[0, j], s_v[1, j], ev[0, j, 0], ev[1, j, 0])
        uml, umh = _add(s_m[0, j], s_m[1, j], ev[0, j, 2], ev[1, j, 2])
        rvl, rvh = _add(sr_v[0, j], sr_v[1, j], ev[0, j, 1], ev[1, j, 1])
        rml, rmh = _add(sr_m[0, j], sr_m[1, j], ev[0, j, 3], ev[1, j, 3])
        if top:
            uvl, uvh = _sub(ONE if party == 0 else ZERO, ZERO, uvl, uvh)
            uml, umh = _sub(alpha[0], alpha[1], uml, umh)
            rvl, rvh = _sub(r_v[0, j], r_v[1, j], rvl, rvh)
            rml, rmh = _sub(r_m[0, j], r_m[1, j], rml, rmh)
        lo, hi = _mul(uvl, uvh, c[0, j], c[1, j])
        y_v[0, j], y_v[1, j] = _sub(lo, hi, rvl, rvh)
        lo, hi = _mul(uml, umh, c[0, j], c[1, j])
        y_m[0, j], y_m[1, j] = _sub(lo, hi, rml, rmh)


if DCF:  # pragma: no branch
    mmo = aesni.mmo

    @njit(inline="always")
    def _seed_corrections(g, a):  # pragma: no cover - compiled
        """One level's seed and control-bit corrections from both parties' expanded
        children g[party, child, limb] (children 0 left, 1 right) and alpha's bit a:
        (cw_lo, cw_hi) make the lost child's seeds equal, (tl_cw, tr_cw) its bits."""
        lose = 0 if a else 1
        cw_lo = (g[0, lose, 0] ^ g[1, lose, 0]) & ~ONE
        cw_hi = g[0, lose, 1] ^ g[1, lose, 1]
        tl_cw = ((g[0, 0, 0] ^ g[1, 0, 0]) & ONE) ^ a ^ ONE
        tr_cw = ((g[0, 1, 0] ^ g[1, 1, 0]) & ONE) ^ a
        return cw_lo, cw_hi, tl_cw, tr_cw

    @njit(inline="always")
    def _kept_child(g, b, keep, tb, cw_lo, cw_hi, tk_cw):  # pragma: no cover - compiled
        """Party b's next seed and control bit: its kept child, corrected where tb is set."""
        lo = g[b, keep, 0]
        hi = g[b, keep, 1]
        tk = lo & ONE
        lo &= ~ONE
        if tb:
            lo ^= cw_lo
            hi ^= cw_hi
            tk ^= tk_cw
        return lo, hi, 1 if tk else 0

    @njit(cache=True, nogil=True)
    def dcf_eval(party, n, root, cw_s, cw_t, cw_v, cw_out, x, rk, out):  # pragma: no cover
        """Party ``party``'s shares of beta * [x < alpha] at points x (K, E): root (K, 2),
        corrections as dcf.DcfKeys, rk the fixed key's round keys; writes out (2, K, E, P).
        Per level each evaluation expands only the child on its path: its seed block
        (tweak = the path bit) and P value blocks (tweaks 2 + bit * P + q)."""
        k, e = x.shape
        p = cw_out.shape[2]
        m = k * e
        xf = x.reshape(-1)
        s = np.empty((m, 2), dtype=np.uint64)
        t = np.empty(m, dtype=np.uint8)
        acc = np.zeros((m, 2 * p), dtype=np.uint64)  # low limbs, then high limbs
        for j in range(m):
            s[j, 0] = root[j // e, 0] & ~ONE
            s[j, 1] = root[j // e, 1]
            t[j] = party
        for i in range(n):
            shift = np.uint64(n - 1 - i)
            for j in range(m):
                kk = j // e
                slo, shi, tj = s[j, 0], s[j, 1], t[j]
                b = (xf[j] >> shift) & ONE
                lo, hi = mmo(slo ^ b, shi, rk)
                tc = lo & ONE
                lo &= ~ONE
                if tj:
                    lo ^= cw_s[i, kk, 0]
                    hi ^= cw_s[i, kk, 1]
                    tc ^= np.uint64(cw_t[i, kk, b])
                base = np.uint64(2) + b * np.uint64(p)
                for q in range(p):
                    vlo, vhi = mmo(slo ^ (base + np.uint64(q)), shi, rk)
                    if tj:
                        vlo, vhi = _add(vlo, vhi, cw_v[i, 0, kk, q], cw_v[i, 1, kk, q])
                    acc[j, q], acc[j, p + q] = _add(acc[j, q], acc[j, p + q], vlo, vhi)
                s[j, 0], s[j, 1] = lo, hi
                t[j] = 1 if tc else 0
        for j in range(m):  # the leaf's conversion (tweaks 2 + 2P + q), then the sign
            kk = j // e
            for q in range(p):
                vlo, vhi = mmo(s[j, 0] ^ np.uint64(2 + 2 * p + q), s[j, 1], rk)
                if t[j]:
                    vlo, vhi = _add(vlo, vhi, cw_out[0, kk, q], cw_out[1, kk, q])
                lo, hi = _add(acc[j, q], acc[j, p + q], vlo, vhi)
                if party:
                    lo, hi = _neg(lo, hi)
                out[0, kk, j % e, q] = lo
                out[1, kk, j % e, q] = hi

    @njit(cache=True, nogil=True)
    def dcf_gen(alpha, beta, n, roots, rk, cw_s, cw_t, cw_v, cw_out):  # pragma: no cover
        """Keys for [x < alpha] * beta (BCG+21 Fig. 3): alpha (K,), beta (2, K, P), roots
        (2, K, 2); writes the corrections cw_s (n, K, 2), cw_t (n, K, 2), cw_v (n, 2, K, P)
        and cw_out (2, K, P). Per level and key both parties expand both children: seed
        blocks (tweaks 0, 1) and value blocks (2 + child * P + q)."""
        k = alpha.shape[0]
        p = beta.shape[2]
        nb = 2 + 2 * p
        s = np.empty((2, k, 2), dtype=np.uint64)
        t = np.zeros((2, k), dtype=np.uint8)
        va = np.zeros((k, 2 * p), dtype=np.uint64)  # V_alpha: low limbs, then high limbs
        g = np.empty((2, nb, 2), dtype=np.uint64)
        for kk in range(k):
            for b in range(2):
                s[b, kk, 0] = roots[b, kk, 0] & ~ONE
                s[b, kk, 1] = roots[b, kk, 1]
            t[1, kk] = 1
        for i in range(n):
            shift = np.uint64(n - 1 - i)
            for kk in range(k):
                for b in range(2):
                    for j in range(nb):
                        g[b, j, 0], g[b, j, 1] = mmo(s[b, kk, 0] ^ np.uint64(j), s[b, kk, 1],
                                                     rk)
                a = (alpha[kk] >> shift) & ONE
                keep = 1 if a else 0  # the path to alpha goes right when its bit is 1
                lose = 1 - keep
                cw_lo, cw_hi, tl_cw, tr_cw = _seed_corrections(g, a)
                cw_s[i, kk, 0], cw_s[i, kk, 1] = cw_lo, cw_hi
                cw_t[i, kk, 0] = np.uint8(tl_cw)
                cw_t[i, kk, 1] = np.uint8(tr_cw)
                tk_cw = tr_cw if a else tl_cw
                neg1 = t[1, kk]
                for q in range(p):
                    lb = 2 + lose * p + q
                    kb = 2 + keep * p + q
                    # v_cw = (-1)^t1 (v1_lose - v0_lose - V_alpha [+ beta if lose is left])
                    lo, hi = _sub(g[1, lb, 0], g[1, lb, 1], g[0, lb, 0], g[0, lb, 1])
                    lo, hi = _sub(lo, hi, va[kk, q], va[kk, p + q])
                    if lose == 0:
                        lo, hi = _add(lo, hi, beta[0, kk, q], beta[1, kk, q])
                    if neg1:
                        lo, hi = _neg(lo, hi)
                    cw_v[i, 0, kk, q] = lo
                    cw_v[i, 1, kk, q] = hi
                    # V_alpha += v0_keep - v1_keep + (-1)^t1 v_cw
                    if neg1:
                        lo, hi = _neg(lo, hi)
                    dlo, dhi = _sub(g[0, kb, 0], g[0, kb, 1], g[1, kb, 0], g[1, kb, 1])
                    dlo, dhi = _add(dlo, dhi, lo, hi)
                    va[kk, q], va[kk, p + q] = _add(va[kk, q], va[kk, p + q], dlo, dhi)
                for b in range(2):  # next seeds and bits: the kept child, corrected
                    s[b, kk, 0], s[b, kk, 1], t[b, kk] = _kept_child(
                        g, b, keep, t[b, kk], cw_lo, cw_hi, tk_cw)
        for kk in range(k):  # cw_out = (-1)^t1 (conv_1 - conv_0 - V_alpha)
            for q in range(p):
                c0lo, c0hi = mmo(s[0, kk, 0] ^ np.uint64(nb + q), s[0, kk, 1], rk)
                c1lo, c1hi = mmo(s[1, kk, 0] ^ np.uint64(nb + q), s[1, kk, 1], rk)
                lo, hi = _sub(c1lo, c1hi, c0lo, c0hi)
                lo, hi = _sub(lo, hi, va[kk, q], va[kk, p + q])
                if t[1, kk]:
                    lo, hi = _neg(lo, hi)
                cw_out[0, kk, q] = lo
                cw_out[1, kk, q] = hi

    @njit(cache=True, nogil=True)
    def dpf_gen(alpha, beta, n, roots, rk, cw_s, cw_t, cw_out):  # pragma: no cover
        """Keys for beta * [x == alpha] (BGI16): alpha (K,), beta (2, K, P), roots (2, K, 2);
        writes cw_s (n, K, 2), cw_t (n, K, 2) and cw_out (2, K, P). Per level and key both
        parties expand both children (tweaks 0 and 1); leaves convert with tweaks 2 + q."""
        k = alpha.shape[0]
        p = beta.shape[2]
        g = np.empty((2, 2, 2), dtype=np.uint64)  # party, child, limb
        for kk in range(k):
            s0lo, s0hi = roots[0, kk, 0] & ~ONE, roots[0, kk, 1]
            s1lo, s1hi = roots[1, kk, 0] & ~ONE, roots[1, kk, 1]
            t0, t1 = 0, 1
            for i in range(n):
                for c in range(2):
                    g[0, c, 0], g[0, c, 1] = mmo(s0lo ^ np.uint64(c), s0hi, rk)
                    g[1, c, 0], g[1, c, 1] = mmo(s1lo ^ np.uint64(c), s1hi, rk)
                a = (alpha[kk] >> np.uint64(n - 1 - i)) & ONE
                keep = 1 if a else 0
                cw_lo, cw_hi, tl_cw, tr_cw = _seed_corrections(g, a)
                cw_s[i, kk, 0], cw_s[i, kk, 1] = cw_lo, cw_hi
                cw_t[i, kk, 0], cw_t[i, kk, 1] = np.uint8(tl_cw), np.uint8(tr_cw)
                tk_cw = tr_cw if a else tl_cw
                s0lo, s0hi, t0 = _kept_child(g, 0, keep, t0, cw_lo, cw_hi, tk_cw)
                s1lo, s1hi, t1 = _kept_child(g, 1, keep, t1, cw_lo, cw_hi, tk_cw)
            for q in range(p):  # cw_out = (-1)^t1 (beta - conv_0 + conv_1)
                c0lo, c0hi = mmo(s0lo ^ np.uint64(2 + q), s0hi, rk)
                c1lo, c1hi = mmo(s1lo ^ np.uint64(2 + q), s1hi, rk)
                lo, hi = _sub(beta[0, kk, q], beta[1, kk, q], c0lo, c0hi)
                lo, hi = _add(lo, hi, c1lo, c1hi)
                if t1:
                    lo, hi = _neg(lo, hi)
                cw_out[0, kk, q] = lo
                cw_out[1, kk, q] = hi

    @njit(inline="always")
    def _dpf_tree(party, n, kk, root, cw_s, cw_t, rk, s, t):  # pragma: no cover - compiled
        """Grow key kk's tree into s (2^n, 2), t (2^n), level by level in place: node j's
        children are 2j and 2j + 1, written from the last node down so no parent is
        overwritten before it is read. Leaves end in natural order."""
        s[0, 0] = root[kk, 0] & ~ONE
        s[0, 1] = root[kk, 1]
        t[0] = party
        for i in range(n):
            for j in range((1 << i) - 1, -1, -1):
                slo, shi, tj = s[j, 0], s[j, 1], t[j]
                for c in range(2):
                    lo, hi = mmo(slo ^ np.uint64(c), shi, rk)
                    tc = (lo & ONE) != 0
                    lo &= ~ONE
                    if tj:
                        lo ^= cw_s[i, kk, 0]
                        hi ^= cw_s[i, kk, 1]
                        tc ^= cw_t[i, kk, c] != 0
                    s[2 * j + c, 0] = lo
                    s[2 * j + c, 1] = hi
                    t[2 * j + c] = 1 if tc else 0

    @njit(inline="always")
    def _dpf_leaf(party, kk, q, s, t, x, cw_out, rk):  # pragma: no cover - compiled
        """Output q of leaf x: its conversion (tweak 2 + q), corrected, signed."""
        lo, hi = mmo(s[x, 0] ^ np.uint64(2 + q), s[x, 1], rk)
        if t[x]:
            lo, hi = _add(lo, hi, cw_out[0, kk, q], cw_out[1, kk, q])
        if party:
            lo, hi = _neg(lo, hi)
        return lo, hi

    @njit(cache=True, nogil=True)
    def dpf_one_hot(party, n, root, cw_s, cw_t, cw_out, rk, shift, val, mac
                    ):  # pragma: no cover - compiled
        """The authenticated one-hot rows of compare.one_hot: entry e of row kk is leaf
        (shift[kk] - e) mod 2^n of key kk, whose payload is (value, MAC); writes val and
        mac (2, K, 2^n) directly (no gathered copy of every leaf)."""
        s = np.empty((1 << n, 2), dtype=np.uint64)
        t = np.empty(1 << n, dtype=np.uint8)
        mask = np.uint64((1 << n) - 1)
        for kk in range(root.shape[0]):
            _dpf_tree(party, n, kk, root, cw_s, cw_t, rk, s, t)
            for x in range(1 << n):
                e = np.int64((shift[kk] - np.uint64(x)) & mask)
                val[0, kk, e], val[1, kk, e] = _dpf_leaf(party, kk, 0, s, t, x, cw_out, rk)
                mac[0, kk, e], mac[1, kk, e] = _dpf_leaf(party, kk, 1, s, t, x, cw_out, rk)
