"""Weight update of the fixed-point core after each minibatch (docs/core.md §6).

For every weight, in memory order (matrix, row j, column i), with g the gradient accumulator
(sum over the minibatch) and m the momentum word:

* Lion (§6.1): c = m + round((g - m) >> lion_shift); m <- sat(m + round((g - m) >> mom_shift));
  u = sign(c) in {-1, 0, 1}.
* SGD (§6.2): m <- sat(m - round(m >> mom_shift) + g) if mom_shift > 0; u = m (or g).

then dw = round_upd((u * lr_mant) >> lr_shift) with the update rounding (stochastic: one LFSR
draw of sr_bits bits per weight, drawn for every weight so the LFSR sequence does not depend on
the data), w <- sat(w - dw + bump), g <- 0.
"""

from __future__ import annotations

from numba import njit

from .fixed_ops import (
    F_MOM_SAT,
    F_W_SAT,
    P_GRAD_BITS,
    P_LFSR_TAPS,
    P_LION_SHIFT,
    P_MOM_SHIFT,
    P_N_LAYERS,
    P_OPTIMIZER,
    P_SR_BITS,
    P_STATE_ROUND,
    P_UPDATE_ROUND,
    P_W_BITS,
    ROUND_STOCHASTIC,
    rshift,
    saturate,
)
from .lfsr import lfsr_draw

__all__ = ["update_weights", "OPT_LION", "OPT_SGD"]

OPT_LION = 0
OPT_SGD = 1


@njit(cache=True)
def update_weights(P, sizes, w_off, W, G, M, lr_mant, lr_shift, bump, lfsr_state):
    """§6 over all weights. Returns (new LFSR state, flags)."""
    n_layers = P[P_N_LAYERS]
    opt = P[P_OPTIMIZER]
    k1 = P[P_LION_SHIFT]
    k2 = P[P_MOM_SHIFT]
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
        s = lr_shift[m]
        for idx in range(lo, hi):
            g = G[idx]
            if opt == OPT_LION:
                c = M[idx] + rshift(g - M[idx], k1, mode)
                mm, f = saturate(M[idx] + rshift(g - M[idx], k2, mode), g_bits)
                if f:
                    flags |= F_MOM_SAT
                M[idx] = mm
                u = 1 if c > 0 else (-1 if c < 0 else 0)
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
