"""Backward pass of the fixed-point core in reverse time (docs/core.md §5).

Per sample, from the last forward step down to step 0: replay the spike record of the step
(gradient accumulation and lambda_V jumps of hidden neurons, §5.3-§5.4), the input spikes of the
step (gradient only), the output neurons' first spikes (jump with the loss term, §4), then the
transposed propagator to step n-1 (§5.2). Within a step every read of lambda sees the values of
before the step's jumps (§5.5 "snapshot"); the record holds a step's spikes in ascending layer
order, so applying jumps in record order gives exactly that.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .ops import (
    F_GRAD_SAT,
    F_LAM_SAT,
    F_RECIP_CLAMP,
    P_ALPHA,
    P_BETA,
    P_COEF_FRAC,
    P_GRAD_BITS,
    P_I_FRAC,
    P_KGAMMA,
    P_LAM_BITS,
    P_N_LAYERS,
    P_RECIP_BITS,
    P_RECIP_EPS_SHIFT,
    P_RECIP_MIN,
    P_RECIP_SEED_BITS,
    P_STATE_ROUND,
    P_THETA_I,
    recip,
    rshift,
    saturate,
)

__all__ = ["jump", "backward_sample", "layer_of"]


@njit(cache=True)
def jump(P, recip_rom, lam_v, theta_w, err, w_frac, cur):
    """§5.3: lambda_V after (in reverse time) a spike with current ``cur`` and error sum ``err``.

    lam_v^- = lam_v^+ + (theta lam_v^+ + err) / (I - theta). theta_w is theta in the weight
    format (w_frac fractional bits) so the numerator theta_w lam_v + err is one MAC sum with
    w_frac + lam_frac fractional bits. Returns (lam_v^-, flags).
    """
    mode = P[P_STATE_ROUND]
    lam_bits = P[P_LAM_BITS]
    r_bits = P[P_RECIP_BITS]
    flags = 0
    num_l, f = saturate(rshift(theta_w * lam_v + err, w_frac, mode), lam_bits)
    if f:
        flags |= F_LAM_SAT
    d = cur - P[P_THETA_I]
    if d < P[P_RECIP_MIN]:
        d = P[P_RECIP_MIN]
        flags |= F_RECIP_CLAMP
    y, e = recip(d, r_bits, P[P_RECIP_SEED_BITS], recip_rom, P[P_RECIP_EPS_SHIFT])
    delta = rshift(num_l * y, r_bits + e - P[P_I_FRAC], mode)
    out, f = saturate(lam_v + delta, lam_bits)
    if f:
        flags |= F_LAM_SAT
    return out, flags


@njit(inline="always")
def layer_of(nrn_off, g):
    """Layer (1..L) of global neuron g."""
    l = 1
    while g >= nrn_off[l]:
        l += 1
    return l


@njit(cache=True)
def backward_sample(P, sizes, w_off, nrn_off, w_frac, theta_w, W, recip_rom,
                    in_step, in_id, n_in, rec_step, rec_nrn, rec_cur, n_rec,
                    first_step, first_cur, lterm, n_end, lam_v, lam_i, G, active, rev_step, rev_raw):
    """§5 for one sample; accumulates into G (flat like W) with saturation.

    active = 0 skips the output jumps (label silent, §4.1: only revival terms act); rev_step
    (n_hidden,) is the step at which each hidden neuron receives the revival injection rev_raw
    (§5.6), -1 for none. Returns (flags, hidden spikes replayed, input spikes replayed, output
    jumps)."""
    n_layers = P[P_N_LAYERS]
    cf = P[P_COEF_FRAC]
    beta = P[P_BETA]
    alpha = P[P_ALPHA]
    kgamma = P[P_KGAMMA]
    mode = P[P_STATE_ROUND]
    lam_bits = P[P_LAM_BITS]
    grad_bits = P[P_GRAD_BITS]
    n_neur = nrn_off[n_layers]
    n_out = sizes[n_layers]
    out_base = nrn_off[n_layers - 1]
    lam_v[:] = 0
    lam_i[:] = 0
    flags = 0
    n_hid = 0
    n_inp = 0
    n_jmp = 0
    rp = n_rec - 1
    ip = n_in - 1
    while ip >= 0 and in_step[ip] > n_end:
        ip -= 1
    n0 = sizes[0]
    n1 = sizes[1]
    for n in range(n_end, -1, -1):
        # §5.3-§5.4: the record entries of step n, in record (= ascending layer) order.
        hi = rp
        while rp >= 0 and rec_step[rp] == n:
            rp -= 1
        for q in range(rp + 1, hi + 1):
            g = rec_nrn[q]
            l = layer_of(nrn_off, g)
            i = g - nrn_off[l - 1]
            nl = sizes[l]
            nn = sizes[l + 1]
            nxt = nrn_off[l]
            wo = w_off[l]
            err = np.int64(0)
            for k in range(nn):
                gk = nxt + k
                d, f = saturate(lam_v[gk] - lam_i[gk], lam_bits)
                if f:
                    flags |= F_LAM_SAT
                widx = wo + k * nl + i
                err += W[widx] * d
                gs, f = saturate(G[widx] + lam_i[gk], grad_bits)
                if f:
                    flags |= F_GRAD_SAT
                G[widx] = gs
            lam_v[g], f = jump(P, recip_rom, lam_v[g], theta_w[l], err, w_frac[l], rec_cur[q])
            flags |= f
            n_hid += 1
        # §5.4: input spikes of step n (gradient of the first weight matrix only).
        while ip >= 0 and in_step[ip] == n:
            i = in_id[ip]
            for k in range(n1):
                widx = w_off[0] + k * n0 + i
                gs, f = saturate(G[widx] + lam_i[k], grad_bits)
                if f:
                    flags |= F_GRAD_SAT
                G[widx] = gs
            ip -= 1
            n_inp += 1
        # §4.3: output neurons whose first spike is at step n receive the loss term.
        for k in range(n_out):
            if active and first_step[k] == n:
                g = out_base + k
                wf = w_frac[n_layers - 1]
                lam_v[g], f = jump(P, recip_rom, lam_v[g], theta_w[n_layers - 1], lterm[k] << wf, wf,
                                   first_cur[k])
                flags |= f
                n_jmp += 1
        # §5.2: transposed exact propagator, step n -> n-1.
        if n > 0:
            # §5.6: revival injections of step n, after the step's jumps (V(n) of a hidden
            # neuron does not depend on the spikes of step n below it, §3.2).
            for g in range(rev_step.shape[0]):
                if rev_step[g] == n:
                    lam_v[g], f = saturate(lam_v[g] - rev_raw, lam_bits)
                    if f:
                        flags |= F_LAM_SAT
            for g in range(n_neur):
                a = lam_v[g]
                lam_v[g] = rshift(beta * a, cf, mode)
                li, f = saturate(rshift(kgamma * a + alpha * lam_i[g], cf, mode), lam_bits)
                if f:
                    flags |= F_LAM_SAT
                lam_i[g] = li
    return flags, n_hid, n_inp, n_jmp
