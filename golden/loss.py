"""Loss unit of the fixed-point core (docs/core.md §4): the TTFS cross-entropy's time derivative.

From the first-spike steps of the output neurons it computes, for each output k that spiked,
the value injected into lambda_V at that spike: 2**s (-tau_mem dL/dt_k) in the lambda format,
with the softmax through the exponential ROM and the reciprocal unit and the regulariser
through its ROM (§4.2-§4.3). The loss value itself is never computed on chip (§4.4).
"""

from __future__ import annotations

from numba import njit

from .ops import (
    F_LAM_SAT,
    P_LAM_BITS,
    P_LOSS_C0,
    P_N_STEPS,
    P_PROB_FRAC,
    P_RECIP_BITS,
    P_RECIP_EPS_SHIFT,
    P_RECIP_SEED_BITS,
    P_STATE_ROUND,
    recip,
    rshift,
    saturate,
)

__all__ = ["loss_unit"]


@njit(cache=True)
def loss_unit(P, exp_rom, reg_rom, recip_rom, first_step, label, prob, lterm):
    """§4: writes prob[k] (softmax, unsigned Q0.prob_frac) and lterm[k] for every output k.

    Returns (active, flags): active = 0 if the label neuron is silent (the sample is masked,
    §4.1: nothing is injected, the backward pass is skipped). lterm[k] = 0 for silent outputs.
    """
    n_steps = P[P_N_STEPS]
    mode = P[P_STATE_ROUND]
    pf = P[P_PROB_FRAC]
    r_bits = P[P_RECIP_BITS]
    n_out = first_step.shape[0]
    flags = 0
    # §4.2: exponentials relative to the earliest output, summed.
    n_min = first_step[0]
    for k in range(1, n_out):
        if first_step[k] < n_min:
            n_min = first_step[k]
    last = exp_rom.shape[0] - 1
    s = 0
    for k in range(n_out):
        s += exp_rom[min(first_step[k] - n_min, last)]
    y, e = recip(s, r_bits, P[P_RECIP_SEED_BITS], recip_rom, P[P_RECIP_EPS_SHIFT])
    p_max = (1 << pf) - 1
    for k in range(n_out):
        p = rshift(exp_rom[min(first_step[k] - n_min, last)] * y, r_bits + e - pf, mode)
        prob[k] = min(p, p_max)
    active = 1 if first_step[label] < n_steps else 0
    c0 = P[P_LOSS_C0]
    for k in range(n_out):
        lterm[k] = 0
        if active and first_step[k] < n_steps:
            delta = 1 if k == label else 0
            t = rshift(c0 * (prob[k] - (delta << pf)), pf, mode)
            if delta:
                t -= reg_rom[first_step[k]]
            t, f = saturate(t, P[P_LAM_BITS])
            if f:
                flags |= F_LAM_SAT
            lterm[k] = t
    return active, flags
