"""Primitive integer operations of the fixed-point core: shift-round, saturate, reciprocal unit.

Each primitive of docs/core.md §1-§2 is implemented exactly once, here, as a Numba function that
the per-phase kernels (``lif``, ``loss``, ``adjoint``, ``update``) call.
All values are int64; no floating point. The kernels receive the configuration as one int64
vector built by :func:`pack_params` (indices ``P_*``), so a kernel never recomputes a constant.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .config import CoreConfig, Flag, Optimizer, RoundingMode

__all__ = ["rshift", "saturate", "bit_length", "recip", "recip_array", "pack_params", "ROUND_CODES"]

#: Rounding modes as kernel codes (§1.2).
ROUND_CODES = {RoundingMode.HALF_UP: 0, RoundingMode.FLOOR: 1, RoundingMode.STOCHASTIC: 2}
#: Optimizers as kernel codes (§6).
OPTIMIZER_CODES = {Optimizer.LION: 0, Optimizer.SGD: 1, Optimizer.ADAM: 2}
ROUND_HALF_UP = 0
ROUND_FLOOR = 1
ROUND_STOCHASTIC = 2

# Flag bits as plain ints for the kernels (values of config.Flag).
F_V_SAT = int(Flag.V_SAT)
F_I_SAT = int(Flag.I_SAT)
F_LAM_SAT = int(Flag.LAM_SAT)
F_GRAD_SAT = int(Flag.GRAD_SAT)
F_MOM_SAT = int(Flag.MOM_SAT)
F_W_SAT = int(Flag.W_SAT)
F_RECIP_CLAMP = int(Flag.RECIP_CLAMP)
F_REC_OVF = int(Flag.REC_OVF)
F_IN_OVF = int(Flag.IN_OVF)


# -- §1.2 rounding right shift ------------------------------------------------------------------


@njit(inline="always")
def rshift(x, s, mode):
    """x * 2**-s rounded to an integer (§1.2); s <= 0 is an exact left shift.

    mode 0 (HALF_UP): (x + 2**(s-1)) >> s.  mode 1 (FLOOR): x >> s. ``>>`` is arithmetic.
    """
    if s <= 0:
        return x << (-s)
    if mode == ROUND_HALF_UP:
        return (x + (np.int64(1) << (s - 1))) >> s
    return x >> s


# -- §1.4 saturation ----------------------------------------------------------------------------


@njit(inline="always")
def saturate(x, bits):
    """Clamp x to a signed ``bits``-bit word (§1.4). Returns (value, 1 if clamped else 0)."""
    hi = (np.int64(1) << (bits - 1)) - 1
    lo = -hi - 1
    if x > hi:
        return hi, 1
    if x < lo:
        return lo, 1
    return x, 0


# -- §2.3 reciprocal unit -----------------------------------------------------------------------


@njit(inline="always")
def bit_length(d):
    """Position of the leading one plus one (a leading-zero counter in hardware); d >= 1."""
    n = 0
    while d > 0:
        d >>= 1
        n += 1
    return n


@njit(cache=True)
def recip(d, r_bits, k_bits, rom, eps_shift):
    """Reciprocal unit (§2.3): 1/d ~= y * 2**-(R + e) for an integer d >= 1.

    Normalise d to the R-bit mantissa m in [2**(R-1), 2**R) (exponent e = bit_length(d) - 1;
    extra low bits truncated), seed y0 from the ROM addressed by the k bits below m's leading
    one, then one Newton step y1 = y0 + (y0 * eps_t) >> (2R - 1 - eps_shift) with the residual
    eps = 2**(2R-1) - m * y0 truncated to eps_t = eps >> eps_shift. Returns (y1, e), y1 < 2**R.
    """
    e = bit_length(d) - 1
    if e <= r_bits - 1:
        m = d << (r_bits - 1 - e)
    else:
        m = d >> (e - (r_bits - 1))
    a = (m >> (r_bits - 1 - k_bits)) - (np.int64(1) << k_bits)
    y0 = rom[a]
    eps = (np.int64(1) << (2 * r_bits - 1)) - m * y0
    eps_t = eps >> eps_shift
    y1 = y0 + rshift(y0 * eps_t, 2 * r_bits - 1 - eps_shift, ROUND_HALF_UP)
    y_max = (np.int64(1) << r_bits) - 1
    if y1 > y_max:
        y1 = y_max
    return y1, e


@njit(cache=True)
def _recip_many(d, r_bits, k_bits, rom, eps_shift, y, e):
    for n in range(d.shape[0]):
        y[n], e[n] = recip(d[n], r_bits, k_bits, rom, eps_shift)


def recip_array(cfg: CoreConfig, d) -> tuple[np.ndarray, np.ndarray]:
    """The reciprocal unit applied to every element of d (>= 1): returns (y, e) arrays."""
    d = np.ascontiguousarray(d, dtype=np.int64).ravel()
    if d.size and d.min() < 1:
        raise ValueError("the reciprocal unit takes integers >= 1")
    y = np.empty_like(d)
    e = np.empty_like(d)
    _recip_many(d, cfg.recip_bits, cfg.recip_seed_bits, cfg.recip_rom, cfg.recip_eps_shift, y, e)
    return y, e


# -- parameter vector for the kernels -----------------------------------------------------------

# Indices into the parameter vector (explicit so Numba folds them as constants).
P_N_STEPS = 0
P_COEF_FRAC = 1
P_BETA = 2
P_ALPHA = 3
P_GAMMA = 4
P_KGAMMA = 5
P_V_BITS = 6
P_V_FRAC = 7
P_I_BITS = 8
P_I_FRAC = 9
P_W_BITS = 10
P_LAM_BITS = 11
P_LAM_FRAC = 12
P_GRAD_BITS = 13
P_THETA_V = 14
P_THETA_I = 15
P_RECIP_BITS = 16
P_RECIP_SEED_BITS = 17
P_RECIP_EPS_SHIFT = 18
P_RECIP_MIN = 19
P_EXP_FRAC = 20
P_PROB_FRAC = 21
P_LOSS_C0 = 22
P_STATE_ROUND = 23
P_UPDATE_ROUND = 24
P_MOM_SHIFT = 25
P_LR_BITS = 26
P_SR_BITS = 27
P_LFSR_BITS = 28
P_LFSR_TAPS = 29
P_REC_CAP = 30
P_EARLY_STOP = 31
P_N_LAYERS = 32
P_OPTIMIZER = 33
P_LION_SHIFT = 34
P_ADAM_SHIFT1 = 35
P_ADAM_SHIFT2 = 36
P_V_MANT_BITS = 37
P_RSQRT_INDEX_BITS = 38
P_RSQRT_BITS = 39
_P_NAMES = (
    "N_STEPS",
    "COEF_FRAC",
    "BETA",
    "ALPHA",
    "GAMMA",
    "KGAMMA",
    "V_BITS",
    "V_FRAC",
    "I_BITS",
    "I_FRAC",
    "W_BITS",
    "LAM_BITS",
    "LAM_FRAC",
    "GRAD_BITS",
    "THETA_V",
    "THETA_I",
    "RECIP_BITS",
    "RECIP_SEED_BITS",
    "RECIP_EPS_SHIFT",
    "RECIP_MIN",
    "EXP_FRAC",
    "PROB_FRAC",
    "LOSS_C0",
    "STATE_ROUND",
    "UPDATE_ROUND",
    "MOM_SHIFT",
    "LR_BITS",
    "SR_BITS",
    "LFSR_BITS",
    "LFSR_TAPS",
    "REC_CAP",
    "EARLY_STOP",
    "N_LAYERS",
    "OPTIMIZER",
    "LION_SHIFT",
    "ADAM_SHIFT1",
    "ADAM_SHIFT2",
    "V_MANT_BITS",
    "RSQRT_INDEX_BITS",
    "RSQRT_BITS",
)
P_LEN = len(_P_NAMES)


def pack_params(cfg: CoreConfig) -> np.ndarray:
    """The int64 parameter vector read by every kernel (one source: the CoreConfig)."""
    vals = {
        "N_STEPS": cfg.n_steps, "COEF_FRAC": cfg.coef_frac, "BETA": cfg.beta_raw, "ALPHA": cfg.alpha_raw,
        "GAMMA": cfg.gamma_raw, "KGAMMA": cfg.kgamma_raw,
        "V_BITS": cfg.v_bits, "V_FRAC": cfg.v_frac, "I_BITS": cfg.i_bits, "I_FRAC": cfg.i_frac,
        "W_BITS": cfg.w_bits, "LAM_BITS": cfg.lam_bits, "LAM_FRAC": cfg.lam_frac, "GRAD_BITS": cfg.grad_bits,
        "THETA_V": cfg.theta_v_raw, "THETA_I": cfg.theta_i_raw, "RECIP_BITS": cfg.recip_bits,
        "RECIP_SEED_BITS": cfg.recip_seed_bits, "RECIP_EPS_SHIFT": cfg.recip_eps_shift,
        "RECIP_MIN": cfg.recip_min_raw, "EXP_FRAC": cfg.exp_frac, "PROB_FRAC": cfg.prob_frac,
        "LOSS_C0": cfg.loss_c0_raw, "STATE_ROUND": ROUND_CODES[cfg.state_rounding],
        "UPDATE_ROUND": ROUND_CODES[cfg.update_rounding], "MOM_SHIFT": cfg.mom_shift,
        "LR_BITS": cfg.lr_bits, "SR_BITS": cfg.sr_bits, "LFSR_BITS": cfg.lfsr_bits,
        "LFSR_TAPS": cfg.lfsr_taps, "REC_CAP": cfg.record_capacity, "EARLY_STOP": int(cfg.early_stop),
        "N_LAYERS": cfg.n_layers, "OPTIMIZER": OPTIMIZER_CODES[cfg.optimizer], "LION_SHIFT": cfg.lion_shift,
        "ADAM_SHIFT1": cfg.adam_shift1,
        "ADAM_SHIFT2": cfg.adam_shift2,
        "V_MANT_BITS": cfg.v_mant_bits,
        "RSQRT_INDEX_BITS": cfg.rsqrt_index_bits,
        "RSQRT_BITS": cfg.rsqrt_bits,
    }
    return np.array([vals[n] for n in _P_NAMES], dtype=np.int64)
assert all(globals()[f"P_{n}"] == k for k, n in enumerate(_P_NAMES))
