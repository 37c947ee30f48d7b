"""Weight update of the fixed-point core after each minibatch (docs/core.md §6).

For every weight, in memory order (matrix, row j, column i), with g the gradient accumulator
(sum over the minibatch), m the momentum word and v Adam's second moment:

* Adam (§6.1): m <- sat(m + round((g - m) >> s1)); v <- enc(v + round((g*g - v) >> s2)) with v a
  mantissa * 2**exponent; u = m * RSQ[v] (1/sqrt(v) from a ROM), shifted by the exponent.
* Lion (§6.2): c = m + round((g - m) >> lion_shift); m <- sat(m + round((g - m) >> mom_shift));
  u = sign(c) in {-1, 0, 1}.
* SGD (§6.3): m <- sat(m - round(m >> mom_shift) + g) if mom_shift > 0; u = m (or g).

then dw = round_upd((u * lr_mant) >> shift) with the update rounding (stochastic: one LFSR draw
of sr_bits bits per weight, drawn for every weight so the LFSR sequence does not depend on the
data), w <- sat(w - dw + bump), g <- 0 (§6.4).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .lfsr import lfsr_draw
from .ops import (
    F_MOM_SAT,
    F_W_SAT,
    P_ADAM_SHIFT1,
    P_ADAM_SHIFT2,
    P_GRAD_BITS,
    P_LFSR_TAPS,
    P_LION_SHIFT,
    P_MOM_SHIFT,
    P_N_LAYERS,
    P_OPTIMIZER,
    P_RSQRT_BITS,
    P_RSQRT_INDEX_BITS,
    P_SR_BITS,
    P_STATE_ROUND,
    P_UPDATE_ROUND,
    P_V_MANT_BITS,
    P_W_BITS,
    ROUND_STOCHASTIC,
    bit_length,
    rshift,
    saturate,
)

__all__ = ["update_weights", "v_decode", "v_encode", "OPT_LION", "OPT_SGD", "OPT_ADAM"]

OPT_LION = 0
OPT_SGD = 1
OPT_ADAM = 2


@njit(inline="always")
def v_decode(packed, mant_bits):
    """§6.1: the value mantissa << exponent of a packed (exponent, mantissa) word."""
    return (packed & ((np.int64(1) << mant_bits) - 1)) << (packed >> mant_bits)


@njit(inline="always")
def v_encode(x, mant_bits):
    """§6.1: x >= 0 as (exponent, mantissa) with the mantissa truncated to mant_bits bits."""
    e = bit_length(x) - mant_bits
    if e <= 0:
        return x
    return (np.int64(e) << mant_bits) | (x >> e)


@njit(cache=True)
def update_weights(P, sizes, w_off, W, G, M, V, lr_mant, lr_shift, bump, rsqrt_rom, lfsr_state):
    """§6 over all weights. Returns (new LFSR state, flags)."""
    n_layers = P[P_N_LAYERS]
    opt = P[P_OPTIMIZER]
    k1 = P[P_LION_SHIFT]
    k2 = P[P_MOM_SHIFT]
    a1 = P[P_ADAM_SHIFT1]
    a2 = P[P_ADAM_SHIFT2]
    vm = P[P_V_MANT_BITS]
    rk = P[P_RSQRT_INDEX_BITS]
    rb = P[P_RSQRT_BITS]
    mode = P[P_STATE_ROUND]
    umode = P[P_UPDATE_ROUND]
    sr = P[P_SR_BITS]
    taps = P[P_LFSR_TAPS]
    w_bits = P[P_W_BITS]
    g_bits = P[P_GRAD_BITS]
    flags = 0
    state = lfsr_state
    for m in range(n_layers):
        lo = w_off[m]
        hi = lo + sizes[m] * sizes[m + 1]
        for idx in range(lo, hi):
            g = G[idx]
            s = lr_shift[m]
            if opt == OPT_ADAM:
                mm, f = saturate(M[idx] + rshift(g - M[idx], a1, mode), g_bits)
                if f:
                    flags |= F_MOM_SAT
                M[idx] = mm
                v = v_decode(V[idx], vm)
                V[idx] = v_encode(v + rshift(g * g - v, a2, mode), vm)
                v = v_decode(V[idx], vm)
                if v == 0:
                    u = np.int64(0)
                else:
                    p = bit_length(v) - 1
                    if p >= rk:
                        a = (v >> (p - rk)) - (np.int64(1) << rk)
                    else:
                        a = (v << (rk - p)) - (np.int64(1) << rk)
                    u = mm * rsqrt_rom[p & 1, a]
                    s = s + rb + (p >> 1)
            elif opt == OPT_LION:
                c = M[idx] + rshift(g - M[idx], k1, mode)
                mm, f = saturate(M[idx] + rshift(g - M[idx], k2, mode), g_bits)
                if f:
                    flags |= F_MOM_SAT
                M[idx] = mm
                u = np.int64(1) if c > 0 else (np.int64(-1) if c < 0 else np.int64(0))
            elif k2 > 0:
                mm, f = saturate(M[idx] - rshift(M[idx], k2, mode) + g, g_bits)
                if f:
                    flags |= F_MOM_SAT
                M[idx] = mm
                u = mm
            else:
                u = g
            prod = u * lr_mant[m]
            if umode == ROUND_STOCHASTIC:
                state, r = lfsr_draw(state, taps, sr)
                if s >= sr:
                    prod += r << (s - sr)
                else:
                    prod += r >> (sr - s)
                dw = prod >> s
            else:
                dw = rshift(prod, s, umode)
            w, f = saturate(W[idx] - dw + bump[m], w_bits)
            if f:
                flags |= F_W_SAT
            W[idx] = w
            G[idx] = 0
    return state, flags
