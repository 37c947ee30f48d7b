"""Forward pass of the fixed-point core, time-stepped (docs/core.md §3).

One sample at a time, exactly in the order of §3.3: for every step n, the input spikes of step n
are fanned into the fan-in accumulators of layer 1; then each layer l = 1..L sweeps its neurons
(propagate V and I from step n-1 to n with the exact propagator, threshold, reset, record, add the
fan-in, clear it) and fans its own spikes of step n into layer l+1's accumulators. Spikes of
hidden layers go to the spike record (step, neuron, I at the spike); outputs keep their first
spike in registers. All arithmetic is int64 with the primitives of ``ops``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .ops import (
    F_I_SAT,
    F_REC_OVF,
    F_V_SAT,
    P_ALPHA,
    P_BETA,
    P_COEF_FRAC,
    P_EARLY_STOP,
    P_GAMMA,
    P_I_BITS,
    P_I_FRAC,
    P_N_LAYERS,
    P_N_STEPS,
    P_REC_CAP,
    P_STATE_ROUND,
    P_THETA_V,
    P_V_BITS,
    P_V_FRAC,
    rshift,
    saturate,
)

__all__ = ["forward_sample", "forward_batch"]


@njit(cache=True)
def forward_sample(P, sizes, w_off, nrn_off, w_shift, W, in_step, in_id, n_in,
                   v, cur, acc, spk, rec_step, rec_nrn, rec_cur,
                   first_step, first_cur, first_v, spiked, layer_counts, vmax, vmax_step):
    """Run one sample (§3). Scratch v, cur, acc (n_neurons,) and spk (max layer size) are reset here.

    Outputs (written in place): the spike record rec_* (capacity entries), the first spike of
    each output (step = n_steps if silent, I and V at that step), spiked[g] = 1 for every neuron
    that spiked, layer_counts[l] = spikes of layer l+1, vmax / vmax_step (n_hidden,) the running
    maximum of V of every hidden neuron and its first step (§3.6). Returns (records written, last step run,
    flags).
    """
    n_layers = P[P_N_LAYERS]
    n_steps = P[P_N_STEPS]
    cf = P[P_COEF_FRAC]
    beta = P[P_BETA]
    alpha = P[P_ALPHA]
    gamma = P[P_GAMMA]
    mode = P[P_STATE_ROUND]
    v_bits = P[P_V_BITS]
    i_bits = P[P_I_BITS]
    v_frac = P[P_V_FRAC]
    i_frac = P[P_I_FRAC]
    theta_v = P[P_THETA_V]
    cap = P[P_REC_CAP]
    fx = max(v_frac, i_frac)
    al_v = fx - v_frac
    al_i = fx - i_frac
    sh_v = cf + fx - v_frac
    n_out = sizes[n_layers]

    v[:] = 0
    cur[:] = 0
    acc[:] = 0
    spiked[:] = 0
    layer_counts[:] = 0
    # §3.6: V(0) = 0 for every neuron, so the running maximum starts as (0, step 0).
    vmax[:] = 0
    vmax_step[:] = 0
    first_step[:] = n_steps
    first_cur[:] = 0
    first_v[:] = 0
    flags = 0
    n_rec = 0
    n_first = 0
    ptr = 0
    n_end = n_steps - 1
    n0 = sizes[0]
    n1 = sizes[1]
    for n in range(n_steps):
        # §3.3 (a): input spikes of step n into layer 1's fan-in accumulators.
        while ptr < n_in and in_step[ptr] == n:
            i = in_id[ptr]
            for j in range(n1):
                acc[j] += rshift(W[w_off[0] + j * n0 + i], w_shift[0], mode)
            ptr += 1
        for l in range(1, n_layers + 1):
            base = nrn_off[l - 1]
            nl = sizes[l]
            ns = 0
            # §3.3 (b): neuron sweep of layer l.
            for j in range(nl):
                g = base + j
                # §3.2: exact propagator, one rounding per state variable.
                x = ((beta * v[g]) << al_v) + ((gamma * cur[g]) << al_i)
                vn, f = saturate(rshift(x, sh_v, mode), v_bits)
                if f:
                    flags |= F_V_SAT
                i_dec = rshift(alpha * cur[g], cf, mode)
                # §3.6: running maximum of V before the threshold test (hidden layers; strict >).
                if l < n_layers and vn > vmax[g]:
                    vmax[g] = vn
                    vmax_step[g] = n
                if vn >= theta_v:
                    spiked[g] = 1
                    layer_counts[l - 1] += 1
                    if l < n_layers:
                        # §3.4: the spike record, in order of production.
                        if n_rec < cap:
                            rec_step[n_rec] = n
                            rec_nrn[n_rec] = g
                            rec_cur[n_rec] = i_dec
                            n_rec += 1
                        else:
                            flags |= F_REC_OVF
                        spk[ns] = j
                        ns += 1
                    elif first_step[j] == n_steps:
                        first_step[j] = n
                        first_cur[j] = i_dec
                        first_v[j] = vn
                        n_first += 1
                    vn = 0
                cn, f = saturate(i_dec + acc[g], i_bits)
                if f:
                    flags |= F_I_SAT
                acc[g] = 0
                v[g] = vn
                cur[g] = cn
            # §3.3 (c): this step's spikes of layer l into layer l+1's accumulators.
            if l < n_layers:
                nxt = nrn_off[l]
                nn = sizes[l + 1]
                wo = w_off[l]
                sh = w_shift[l]
                for q in range(ns):
                    i = spk[q]
                    for k in range(nn):
                        acc[nxt + k] += rshift(W[wo + k * nl + i], sh, mode)
        # §3.5: early stop once every output neuron has spiked.
        if P[P_EARLY_STOP] and n_first == n_out:
            n_end = n
            break
    return n_rec, n_end, flags


@njit(cache=True)
def forward_batch(P, sizes, w_off, nrn_off, w_shift, W, in_step, in_id, in_cnt,
                  rec_step, rec_nrn, rec_cur, rec_cnt, first_step, first_cur, first_v,
                  spiked, layer_counts, final_v, final_cur, n_end, flags, vmax, vmax_step):
    """forward_sample for every sample b of the batch; per-sample outputs are rows b."""
    n_neur = nrn_off[P[P_N_LAYERS]]
    v = np.zeros(n_neur, dtype=np.int64)
    cur = np.zeros(n_neur, dtype=np.int64)
    acc = np.zeros(n_neur, dtype=np.int64)
    spk = np.zeros(np.max(sizes), dtype=np.int64)
    for b in range(in_step.shape[0]):
        nr, ne, fl = forward_sample(P, sizes, w_off, nrn_off, w_shift, W, in_step[b], in_id[b], in_cnt[b],
                                    v, cur, acc, spk, rec_step[b], rec_nrn[b], rec_cur[b],
                                    first_step[b], first_cur[b], first_v[b], spiked[b], layer_counts[b],
                                    vmax[b], vmax_step[b])
        rec_cnt[b] = nr
        n_end[b] = ne
        flags[b] |= fl
        final_v[b, :] = v
        final_cur[b, :] = cur
