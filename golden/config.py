"""CoreConfig: the one frozen description of the on-chip training core.

Every width, Q format, time constant, ROM and memory of the core is a field or a derived property
of :class:`CoreConfig`; the fixed-point golden model (``golden/{core,lif,loss,adjoint,update,ops}.py``),
the Amaranth RTL, the
testbenches, synthesis and host software all read it and nothing else. The arithmetic that uses
these numbers is specified once in ``docs/core.md``; section ids below (``§n``) refer to it.

Conventions: ``*_bits`` is a word width including the sign bit, ``*_frac`` the number of
fractional bits of its two's-complement Q format (real value = raw * 2**-frac); a ``*_raw``
property is the integer the hardware holds. Real-valued fields (seconds, theta, the loss
constants) are converted to raw integers exactly once, here, with round-half-up.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property

import numpy as np

__all__ = [
    "ConfigError",
    "RoundingMode",
    "Optimizer",
    "Build",
    "Flag",
    "Device",
    "DEVICES",
    "QFormat",
    "Memory",
    "CoreConfig",
]


class ConfigError(ValueError):
    """A CoreConfig field is outside its valid range; the message names the field and the bound."""


class RoundingMode(enum.StrEnum):
    """How a right shift by s bits drops the low bits (docs/core.md §1.2)."""

    #: floor((x + 2**(s-1)) / 2**s): add half an output LSB, then arithmetic shift.
    HALF_UP = "half_up"
    #: floor(x / 2**s): the plain arithmetic shift (truncation toward minus infinity).
    FLOOR = "floor"
    #: floor((x + r) / 2**s) with r uniform from the LFSR (§6.4); unbiased on average.
    STOCHASTIC = "stochastic"


class Optimizer(enum.StrEnum):
    """The on-chip update rule (docs/core.md §6)."""

    #: Adam without bias correction: second moment in a small float format, 1/sqrt from a ROM.
    ADAM = "adam"
    #: Sign of the interpolated momentum (Lion, Chen et al. 2023): no multiplier, one memory.
    LION = "lion"
    #: Gradient descent, with heavy-ball momentum if mom_shift > 0.
    SGD = "sgd"


class Build(enum.StrEnum):
    """How the RTL spends cells against cycles (docs/core.md §8, "Area build"); golden's arithmetic
    is the same for both, only the cycle model's constants differ."""

    #: One item (neuron, synapse, update word) per cycle, a pipelined datapath per phase.
    THROUGHPUT = "throughput"
    #: Sequenced units borrowing the one multiplier lane: fewer cells, more cycles per item.
    AREA = "area"


class Flag(enum.IntFlag):
    """Sticky overflow flags (docs/core.md §1.4). Set by a saturation, cleared only by the host."""

    #: Membrane potential V saturated (§3.2).
    V_SAT = 1 << 0
    #: Synaptic current I saturated when the step's fan-in was added (§3.2).
    I_SAT = 1 << 1
    #: An adjoint word saturated: lambda_V, lambda_I, their difference or a jump numerator (§5).
    LAM_SAT = 1 << 2
    #: A gradient accumulator saturated (§5.4).
    GRAD_SAT = 1 << 3
    #: A momentum word saturated (§6.1).
    MOM_SAT = 1 << 4
    #: A weight saturated in the update (§6.4).
    W_SAT = 1 << 5
    #: The reciprocal unit's input I - theta was below recip_min and clamped (§2.3).
    RECIP_CLAMP = 1 << 6
    #: The spike record was full; later hidden spikes of the sample are missing from it (§3.4).
    REC_OVF = 1 << 7
    #: The host offered more input spikes than input_capacity; the extra ones were dropped (§3.1).
    IN_OVF = 1 << 8


@dataclass(frozen=True)
class Device:
    """Memory and multiplier budget of one FPGA (REFERENCES.md, Devices)."""

    name: str
    #: Block RAMs: count, bits per block and the (depth, width) aspect ratios each block offers.
    ebr_blocks: int
    ebr_bits: int
    ebr_modes: tuple
    #: Large single-port RAMs (iCE40 UltraPlus SPRAM): count, depth and width of one block.
    spram_blocks: int
    spram_depth: int
    spram_width: int
    #: Hard multipliers and the operand width each takes in one piece.
    dsp_blocks: int
    dsp_width: int


#: The device budgets the configuration is checked against by :meth:`CoreConfig.fits`.
DEVICES = {
    "up5k": Device("iCE40 UP5K", 30, 4096, ((256, 16), (512, 8), (1024, 4), (2048, 2)), 4, 16384, 16, 8, 16),
    "ecp5-25f": Device(
        "ECP5 LFE5U-25F",
        56,
        18432,
        ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)),
        0,
        0,
        0,
        28,
        18,
    ),
    "ecp5-85f": Device(
        "ECP5 LFE5U-85F",
        208,
        18432,
        ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)),
        0,
        0,
        0,
        156,
        18,
    ),
}


@dataclass(frozen=True)
class QFormat:
    """A signed two's-complement fixed-point format: ``bits`` wide, ``frac`` fractional bits."""

    bits: int
    frac: int

    @property
    def min_raw(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def max_raw(self) -> int:
        return (1 << (self.bits - 1)) - 1

    @property
    def lsb(self) -> float:
        return 2.0**-self.frac

    @property
    def max(self) -> float:
        return self.max_raw * self.lsb

    @property
    def min(self) -> float:
        return self.min_raw * self.lsb

    def to_raw(self, x):
        """Host-side conversion of reals: round half up, then saturate (no flag: not the datapath)."""
        raw = np.floor(np.asarray(x, dtype=np.float64) * 2.0**self.frac + 0.5)
        return np.clip(raw, self.min_raw, self.max_raw).astype(np.int64)

    def to_real(self, raw):
        return np.asarray(raw, dtype=np.float64) * self.lsb

    def __str__(self) -> str:
        return f"Q{self.bits - self.frac}.{self.frac}"


@dataclass(frozen=True)
class Memory:
    """One on-chip memory of the core (depth words of width bits), as listed in docs/core.md §8."""

    name: str
    depth: int
    width: int
    #: True for tables computed from the config at build time (no write port).
    rom: bool = False
    #: Synchronous read ports at different addresses. A block RAM has one read port beside its
    #: write port, so synthesis builds one copy of the memory per read port.
    read_ports: int = 1

    @property
    def bits(self) -> int:
        return self.depth * self.width


def _raw_half_up(x: float) -> int:
    """Round half up of a real to an integer: the one conversion rule for constants (§1.2)."""
    return int(math.floor(x + 0.5))


def _bitlen_signed(lo: int, hi: int) -> int:
    """Bits of the smallest two's-complement word holding every integer in [lo, hi]."""
    n = 1
    while not (-(1 << (n - 1)) <= lo and hi <= (1 << (n - 1)) - 1):
        n += 1
    return n


def _gf2_mulmod(a: int, b: int, poly: int, deg: int) -> int:
    """a * b modulo poly in GF(2)[x] (poly includes its x**deg term)."""
    r = 0
    while b:
        if b & 1:
            r ^= a
        b >>= 1
        a <<= 1
        if a >> deg & 1:
            a ^= poly
    return r


def _gf2_powmod(e: int, poly: int, deg: int) -> int:
    """x**e modulo poly in GF(2)[x]."""
    result, base = 1, 2
    while e:
        if e & 1:
            result = _gf2_mulmod(result, base, poly, deg)
        base = _gf2_mulmod(base, base, poly, deg)
        e >>= 1
    return result


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        if n % p == 0:
            out.append(p)
            while n % p == 0:
                n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def lfsr_is_maximal(taps: int, bits: int) -> bool:
    """True if the Galois LFSR with feedback mask ``taps`` has period 2**bits - 1 (§6.4).

    The right-shifting Galois LFSR with mask T realises the characteristic polynomial
    x**bits + sum over set bits k of T of x**(bits - 1 - k); it is maximal iff that polynomial
    is primitive: x**(2**bits - 1) = 1 and x**((2**bits - 1) / q) != 1 for every prime q.
    """
    if not (taps >> (bits - 1)) & 1:
        return False  # without the top tap the register is shorter than `bits`
    poly = 1 << bits
    for k in range(bits):
        if taps >> k & 1:
            poly |= 1 << (bits - 1 - k)
    order = (1 << bits) - 1
    if _gf2_powmod(order, poly, bits) != 1:
        return False
    return all(_gf2_powmod(order // q, poly, bits) != 1 for q in _prime_factors(order))


def _tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


@dataclass(frozen=True)
class CoreConfig:
    """Everything that defines the fixed-point training core (docs/core.md).

    Construct with keyword arguments or a preset (:meth:`up5k`, :meth:`ecp5_85f`, :meth:`wide`);
    invalid values raise :class:`ConfigError` naming the field and its bound.
    """

    # -- network and time (§3) ---------------------------------------------------------------
    #: Layer sizes, input first, e.g. (5, 200, 3): inputs, hidden LIF layer(s), LIF outputs.
    sizes: tuple = (5, 200, 3)
    #: Time step in seconds, e.g. 0.25e-3. Input spikes are snapped to step round(t / dt).
    dt_s: float = 0.25e-3
    #: Trial length in steps; steps are 0 .. n_steps - 1 and t_max = n_steps * dt (e.g. 200 -> 50 ms).
    n_steps: int = 200
    #: Membrane and synaptic time constants in seconds (REFERENCES.md: 20 ms, 5 ms).
    tau_mem_s: float = 20e-3
    tau_syn_s: float = 5e-3
    #: Firing threshold in units of V (V resets to 0 after a spike).
    theta: float = 1.0
    #: Fractional bits of the propagator coefficients (unsigned Q0.coef_frac, §2.1), e.g. 16.
    coef_frac: int = 16

    # -- word formats (§1.1) -------------------------------------------------------------------
    #: Membrane potential V: width and fractional bits, e.g. 24 and 18 (range +-32).
    v_bits: int = 24
    v_frac: int = 18
    #: Synaptic current I (same unit as V): width and fractional bits, e.g. 24 and 16 (range +-128).
    i_bits: int = 24
    i_frac: int = 16
    #: Weights: width, and fractional bits per weight matrix (input->hidden first), e.g. (10, 12).
    w_bits: int = 16
    w_frac: tuple = (11, 12)
    #: Adjoints lambda_V and lambda_I (scaled, §5.1): width and fractional bits.
    lam_bits: int = 24
    lam_frac: int = 16
    #: Gradient accumulators (same fractional bits as lambda): width, e.g. 32.
    grad_bits: int = 24

    # -- reciprocal unit (§2.3) ----------------------------------------------------------------
    #: Mantissa width R of the reciprocal unit (one SB_MAC16 operand), e.g. 16.
    recip_bits: int = 16
    #: Address bits of the reciprocal seed ROM (2**k entries of R bits), e.g. 7.
    recip_seed_bits: int = 7
    #: Smallest denominator I - theta the unit accepts (real, unit of V); smaller ones are clamped.
    recip_min: float = 1.0 / 16

    # -- loss (§4) -----------------------------------------------------------------------------
    #: TTFS loss constants (REFERENCES.md): softmax time constant, regulariser tau and weight.
    tau0_s: float = 0.5e-3
    tau1_s: float = 6.4e-3
    alpha: float = 3e-3
    #: Fractional bits of the softmax exponential ROM (unsigned, entry 0 = 1.0 = 2**exp_frac).
    exp_frac: int = 15
    #: Fractional bits of the softmax probabilities p (unsigned, < 1).
    prob_frac: int = 15
    #: The adjoints carry the loss scaled by 2**loss_scale_log2 (§5.1), e.g. -6.
    loss_scale_log2: int = -6

    # -- update (§6) ---------------------------------------------------------------------------
    #: Samples per minibatch; the update runs after each minibatch.
    batch_size: int = 32
    #: Update rule (§6): "adam", "lion" or "sgd".
    optimizer: Optimizer = Optimizer.ADAM
    #: Learning rate per weight matrix as mantissa * 2**-lr_shift, in weight LSBs per unit of
    #: the update direction u (§6.4): m/sqrt(v) (adam), sign (lion) or the raw gradient (sgd).
    #: :meth:`lr_real` converts to real units and :meth:`with_lr` back. Default: 5e-3 (adam).
    lr_mant: tuple = (41943, 41943)
    lr_shift: tuple = (12, 11)
    #: Width of the learning-rate mantissa (an unsigned SB_MAC16 operand).
    lr_bits: int = 16
    #: Momentum memory time constant: m <- m + (g - m) >> mom_shift (lion: beta2 = 1 - 2**-mom_shift)
    #: or m <- m - m >> mom_shift + g (sgd: mu = 1 - 2**-mom_shift; 0 = no momentum).
    mom_shift: int = 7
    #: Lion's interpolation c = m + (g - m) >> lion_shift (beta1 = 1 - 2**-lion_shift).
    lion_shift: int = 3
    #: Adam (§6.1): m <- m + (g - m) >> adam_shift1, v <- v + (g*g - v) >> adam_shift2
    #: (beta1 = 1 - 2**-3 = 0.875, beta2 = 1 - 2**-10 = 0.99902).
    adam_shift1: int = 3
    adam_shift2: int = 10
    #: Adam's v is stored as mantissa * 2**exponent: mantissa and exponent widths.
    v_mant_bits: int = 14
    v_exp_bits: int = 6
    #: 1/sqrt ROM of Adam (§6.1): address bits below the leading one, and entry width.
    rsqrt_index_bits: int = 7
    rsqrt_bits: int = 16
    #: Loss shaping (§6.5): if more than this fraction of (sample, neuron) pairs of a layer stayed
    #: silent in a minibatch, every weight into that layer grows by silent_bump. 1.0 = off.
    silent_threshold: tuple = (1.0, 1.0)
    silent_bump: float = 0.0
    #: Revival of dead hidden neurons (§5.6): loss weight revive_hidden / batch_size per sample on
    #: theta - Vmax of each hidden neuron that was silent for the whole previous minibatch and is
    #: silent in the sample. 0 = off (no vmax memory).
    revive_hidden: float = 0.0

    # -- memories and control (§3.4, §8) -------------------------------------------------------
    #: Spike-record entries per sample (hidden spikes; outputs keep their first spike in registers).
    record_capacity: int = 512
    #: Input spikes per sample the input buffer holds.
    input_capacity: int = 16
    #: End the forward pass after the step in which the last output neuron first spiked (§3.5).
    early_stop: bool = True
    #: Rounding of the propagators and adjoint jumps (§1.2): HALF_UP or FLOOR.
    state_rounding: RoundingMode = RoundingMode.HALF_UP
    #: Rounding of the weight update (§6.4): STOCHASTIC, HALF_UP or FLOOR.
    update_rounding: RoundingMode = RoundingMode.STOCHASTIC
    #: LFSR (§6.4): width, Galois feedback mask and non-zero seed.
    lfsr_bits: int = 32
    lfsr_taps: int = 0x80200003
    lfsr_seed: int = 0xACE1ACE1
    #: Random bits drawn per stochastic rounding (LFSR steps per draw).
    sr_bits: int = 16

    # -- cycle model (§7) ----------------------------------------------------------------------
    #: Pipeline fill latency in cycles of one sweep over a layer's neurons or weights.
    cyc_sweep_latency: int = 4
    #: Cycles per synapse of a read-modify-write of the synapse word (replay, update): 2 with a
    #: single-port memory (UP5K SPRAM), 1 with a simple dual-port block RAM.
    cyc_synapse_rmw: int = 2
    #: Cycles of one lambda_V jump once its error sum is complete (numerator, reciprocal unit,
    #: product, write back).
    cyc_jump: int = 8
    #: Registers the RTL puts between a block-RAM read and the logic that uses it (0 or 1; §8):
    #: 1 where a RAM's clock-to-out cannot share a cycle with a multiplier or an adder (ECP5 at
    #: 80 MHz). It costs two cycles of sweep fill (cyc_sweep_latency >= 6: the operands and the
    #: products' pieces), six per jump (cyc_jump >= 14) and one per backward synapse (cyc_synapse_rmw
    #: 3); the fan-out hides it; the record gains a first-of-step bit; host reads take 2 cycles.
    ram_read_regs: int = 0
    #: THROUGHPUT or AREA (§8, "Area build"): AREA builds the sequenced units (so far the update,
    #: §6.6, and the neuron unit, §3.2) on the one multiplier lane, so it needs ram_read_regs = 0.
    build: Build = Build.THROUGHPUT
    #: Cycles per synapse word of the update (§6.6, §7): 2 in the throughput build (one read and
    #: one write, the datapath pipelined between); in the area build the length of the word's
    #: sequence (hdl.update_seq.word_cycles is the least; a larger value pads).
    cyc_update_word: int = 2
    #: Cycles per neuron of a sweep (§3.3, §5.2, §7): 1 in the throughput build (pipelined); in the
    #: area build the neuron unit's three products take turns on the multiplier lane (3).
    cyc_neuron: int = 1

    # ------------------------------------------------------------------------------------------

    def __post_init__(self):
        # Normalise JSON lists and enum strings, then validate.
        for name in ("sizes", "w_frac", "lr_mant", "lr_shift", "silent_threshold"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        for name, kind in (
            ("state_rounding", RoundingMode),
            ("update_rounding", RoundingMode),
            ("optimizer", Optimizer),
            ("build", Build),
        ):
            try:
                object.__setattr__(self, name, kind(getattr(self, name)))
            except ValueError:
                raise ConfigError(
                    f"CoreConfig.{name} must be one of {[m.value for m in kind]}, got {getattr(self, name)!r}"
                ) from None
        self._validate()

    # -- validation ----------------------------------------------------------------------------

    def _validate(self):
        def fail(msg):
            raise ConfigError(f"CoreConfig.{msg}")

        def check_int(name, lo, hi=None):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                fail(f"{name} must be an integer, got {v!r}")
            if v < lo or (hi is not None and v > hi):
                fail(f"{name} = {v} must lie in [{lo}, {hi if hi is not None else 'inf'}]")

        def check_pos(name):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                fail(f"{name} must be a positive finite number, got {v!r}")

        if len(self.sizes) < 3 or any(not isinstance(n, (int, np.integer)) or n < 1 for n in self.sizes):
            fail(
                f"sizes must list an input, at least one hidden and an output layer size (>= 1), "
                f"got {self.sizes}"
            )
        n_layers = len(self.sizes) - 1
        for name in ("w_frac", "lr_mant", "lr_shift", "silent_threshold"):
            if len(getattr(self, name)) != n_layers:
                fail(f"{name} needs one entry per weight matrix ({n_layers}), got {getattr(self, name)}")
        for name in ("dt_s", "tau_mem_s", "tau_syn_s", "theta", "tau0_s", "tau1_s", "recip_min"):
            check_pos(name)
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha >= 0):
            fail(f"alpha must be a finite number >= 0, got {self.alpha!r}")
        if abs(self.tau_mem_s - self.tau_syn_s) < 1e-3 * self.tau_mem_s:
            fail(
                f"tau_syn_s = {self.tau_syn_s} must differ from tau_mem_s = {self.tau_mem_s} by 0.1 % "
                "(the propagator divides by their difference, §2.1)"
            )
        check_int("n_steps", 1, 1 << 20)
        check_int("coef_frac", 4, 24)
        for name in ("v_bits", "i_bits", "lam_bits"):
            check_int(name, 8, 32)
        check_int("w_bits", 2, 24)
        check_int("grad_bits", 8, 48)
        check_int("v_frac", 0, self.v_bits - 2)
        check_int("i_frac", 0, self.i_bits - 2)
        check_int("lam_frac", 0, self.lam_bits - 2)
        for l, f in enumerate(self.w_frac):
            if not isinstance(f, (int, np.integer)) or not 0 <= f <= self.w_bits - 1:
                fail(f"w_frac[{l}] = {f} must lie in [0, w_bits - 1 = {self.w_bits - 1}]")
        if self.grad_bits < self.lam_bits:
            fail(
                f"grad_bits = {self.grad_bits} must be >= lam_bits = {self.lam_bits} "
                "(the accumulator holds at least one lambda_I)"
            )
        check_int("recip_bits", 8, 20)
        check_int("recip_seed_bits", 2, min(10, self.recip_bits - 4))
        check_int("exp_frac", 4, 20)
        check_int("prob_frac", 4, 16)
        check_int("loss_scale_log2", -16, 16)
        check_int("batch_size", 1, 1 << 16)
        check_int("lr_bits", 2, 18)
        for l, (m, s) in enumerate(zip(self.lr_mant, self.lr_shift)):
            if not isinstance(m, (int, np.integer)) or not 0 <= m < (1 << self.lr_bits):
                fail(f"lr_mant[{l}] = {m} must lie in [0, 2**lr_bits - 1 = {(1 << self.lr_bits) - 1}]")
            if not isinstance(s, (int, np.integer)) or not 0 <= s <= 56:
                fail(f"lr_shift[{l}] = {s} must lie in [0, 56]")
        check_int("mom_shift", 0, 16)
        check_int("lion_shift", 0, 16)
        check_int("adam_shift1", 1, 16)
        check_int("adam_shift2", 1, 20)
        check_int("v_mant_bits", 4, 24)
        check_int("v_exp_bits", 1, 8)
        check_int("rsqrt_index_bits", 2, 12)
        check_int("rsqrt_bits", 8, 20)
        if (
            self.optimizer is Optimizer.ADAM
            and (1 << self.v_exp_bits) - 1 < 2 * (self.grad_bits - 1) + 1 - self.v_mant_bits
        ):
            fail(
                f"v_exp_bits = {self.v_exp_bits} cannot hold the exponent of g*g for "
                f"grad_bits = {self.grad_bits} and v_mant_bits = {self.v_mant_bits}"
            )
        if self.optimizer is Optimizer.LION and self.mom_shift == 0:
            fail("mom_shift must be >= 1 for the lion optimizer (beta2 = 1 - 2**-mom_shift)")
        for l, t in enumerate(self.silent_threshold):
            if not (isinstance(t, (int, float)) and 0.0 <= t <= 1.0):
                fail(f"silent_threshold[{l}] = {t} must lie in [0, 1]")
        if not (isinstance(self.silent_bump, (int, float)) and math.isfinite(self.silent_bump)):
            fail(f"silent_bump must be a finite number, got {self.silent_bump!r}")
        if not (isinstance(self.revive_hidden, (int, float)) and math.isfinite(self.revive_hidden)
                and self.revive_hidden >= 0):
            fail(f"revive_hidden must be a finite number >= 0, got {self.revive_hidden!r}")
        check_int("record_capacity", 1, 1 << 24)
        n_hidden = sum(self.sizes[1:-1])
        if self.record_capacity < n_hidden:
            fail(
                f"record_capacity = {self.record_capacity} cannot hold one spike per hidden neuron "
                f"(needs >= {n_hidden})"
            )
        check_int("input_capacity", 1, 1 << 20)
        if self.input_capacity < self.sizes[0]:
            fail(
                f"input_capacity = {self.input_capacity} cannot hold one spike per input neuron "
                f"(needs >= {self.sizes[0]})"
            )
        if not isinstance(self.early_stop, bool):
            fail(f"early_stop must be a bool, got {self.early_stop!r}")
        if self.state_rounding not in (RoundingMode.HALF_UP, RoundingMode.FLOOR):
            fail(f"state_rounding must be half_up or floor, got {self.state_rounding.value!r}")
        check_int("lfsr_bits", 8, 32)
        check_int("sr_bits", 1, self.lfsr_bits)
        check_int("lfsr_taps", 1, (1 << self.lfsr_bits) - 1)
        if not lfsr_is_maximal(self.lfsr_taps, self.lfsr_bits):
            fail(
                f"lfsr_taps = {self.lfsr_taps:#x} is not a maximal-length feedback mask for "
                f"lfsr_bits = {self.lfsr_bits}"
            )
        check_int("lfsr_seed", 1, (1 << self.lfsr_bits) - 1)
        check_int("cyc_sweep_latency", 0, 64)
        check_int("cyc_jump", 0, 64)
        check_int("cyc_synapse_rmw", 1, 4)
        check_int("ram_read_regs", 0, 1)
        check_int("cyc_update_word", 2, 256)
        check_int("cyc_neuron", 1, 8)
        if self.build is Build.AREA and self.ram_read_regs:
            fail("build = 'area' shares one multiplier lane, which needs ram_read_regs = 0")

        # Propagator coefficients must neither vanish nor round to one (§2.1).
        one = 1 << self.coef_frac
        for name in ("beta_raw", "alpha_raw"):
            v = getattr(self, name)
            if not 0 < v < one:
                fail(
                    f"dt_s = {self.dt_s}: decay {name[:-4]} = {v}/2**{self.coef_frac} rounds to "
                    f"{'0' if v <= 0 else '1'}; change dt_s or coef_frac"
                )
        for name in ("gamma_raw", "kgamma_raw"):
            v = getattr(self, name)
            if not 0 < v < one:
                fail(
                    f"dt_s = {self.dt_s}: coefficient {name[:-4]} = {v}/2**{self.coef_frac} must lie in "
                    f"(0, 1); change dt_s or coef_frac"
                )
        # Constants must be representable.
        if not 0 < self.theta_v_raw <= self.v_fmt.max_raw or self.theta_i_raw > self.i_fmt.max_raw:
            fail(f"theta = {self.theta} is not representable in V {self.v_fmt} and I {self.i_fmt}")
        if self.recip_min_raw < 1 or self.recip_min < 2.0 ** -(self.recip_bits - 1):
            fail(
                f"recip_min = {self.recip_min} must be at least one LSB of I ({self.i_fmt}) and "
                f"2**-(recip_bits - 1) (the jump's shift R + e - i_frac must stay positive, §5.3)"
            )
        if self.recip_min_raw + self.theta_i_raw > self.i_fmt.max_raw:
            fail(f"recip_min = {self.recip_min} + theta exceeds the range of I {self.i_fmt}")
        if self.loss_c0_raw > self.lam_fmt.max_raw:
            fail(
                f"loss_scale_log2 = {self.loss_scale_log2}: softmax term 2**s tau_mem/tau0 = "
                f"{self.loss_c0_raw * self.lam_fmt.lsb:g} exceeds lambda {self.lam_fmt}"
            )
        if int(self.reg_rom.max()) > self.lam_fmt.max_raw:
            fail(
                f"loss_scale_log2 = {self.loss_scale_log2}: regulariser term at t_max = "
                f"{int(self.reg_rom.max()) * self.lam_fmt.lsb:g} exceeds lambda {self.lam_fmt}"
            )
        if self.revive_hidden > 0 and not 1 <= self.revive_raw <= self.lam_fmt.max_raw:
            fail(
                f"revive_hidden = {self.revive_hidden}: the injection 2**s revive_hidden / batch_size = "
                f"{self.revive_raw} LSB of lambda must lie in [1, {self.lam_fmt.max_raw}] (§5.6)"
            )
        for l, b in enumerate(self.silent_bump_raw):
            if abs(b) > (1 << (self.w_bits - 2)):
                fail(f"silent_bump = {self.silent_bump} is too large for the weight format of layer {l}")
        # No intermediate may exceed the int64 of the golden model (the RTL uses exact widths, §1.3).
        widest = self.widest_intermediate_bits
        if widest > 62:
            fail(f"word widths give a {widest}-bit intermediate (> 62, see §1.3); narrow them")

    # -- formats -------------------------------------------------------------------------------

    @property
    def n_layers(self) -> int:
        """Number of weight matrices (= spiking layers)."""
        return len(self.sizes) - 1

    @property
    def v_fmt(self) -> QFormat:
        return QFormat(self.v_bits, self.v_frac)

    @property
    def i_fmt(self) -> QFormat:
        return QFormat(self.i_bits, self.i_frac)

    def w_fmt(self, layer: int) -> QFormat:
        return QFormat(self.w_bits, self.w_frac[layer])

    @property
    def lam_fmt(self) -> QFormat:
        return QFormat(self.lam_bits, self.lam_frac)

    @property
    def grad_fmt(self) -> QFormat:
        return QFormat(self.grad_bits, self.lam_frac)

    @property
    def t_max_s(self) -> float:
        return self.n_steps * self.dt_s

    @property
    def step_bits(self) -> int:
        """Width of a step index; holds 0 .. n_steps (n_steps marks a silent output)."""
        return max(1, self.n_steps.bit_length())

    @property
    def neuron_bits(self) -> int:
        """Width of a neuron address over all non-input layers."""
        return max(1, (sum(self.sizes[1:]) - 1).bit_length())

    @property
    def input_id_bits(self) -> int:
        return max(1, (self.sizes[0] - 1).bit_length())

    def input_step(self, t_s):
        """Host-side snapping of input spike times to steps: floor(t / dt + 1/2) (§3.1)."""
        return np.floor(np.asarray(t_s, dtype=np.float64) / self.dt_s + 0.5).astype(np.int64)

    # -- propagator constants (§2.1) -----------------------------------------------------------

    @property
    def beta(self) -> float:
        return math.exp(-self.dt_s / self.tau_mem_s)

    @property
    def alpha_decay(self) -> float:
        return math.exp(-self.dt_s / self.tau_syn_s)

    @property
    def kappa(self) -> float:
        """Adjoint scale of lambda_I: tau_mem / tau_syn (§5.1)."""
        return self.tau_mem_s / self.tau_syn_s

    @property
    def beta_raw(self) -> int:
        return _raw_half_up(self.beta * 2**self.coef_frac)

    @property
    def alpha_raw(self) -> int:
        return _raw_half_up(self.alpha_decay * 2**self.coef_frac)

    @property
    def gamma_raw(self) -> int:
        """V(n) gets gamma * I(n-1): gamma = tau_syn / (tau_mem - tau_syn) * (beta - alpha)."""
        g = self.tau_syn_s / (self.tau_mem_s - self.tau_syn_s) * (self.beta - self.alpha_decay)
        return _raw_half_up(g * 2**self.coef_frac)

    @property
    def kgamma_raw(self) -> int:
        """lambda_I(n-1) gets kappa * gamma * lambda_V(n) = tau_mem / (tau_mem - tau_syn) (beta - alpha)."""
        g = self.tau_mem_s / (self.tau_mem_s - self.tau_syn_s) * (self.beta - self.alpha_decay)
        return _raw_half_up(g * 2**self.coef_frac)

    @property
    def theta_v_raw(self) -> int:
        return _raw_half_up(self.theta * 2**self.v_frac)

    @property
    def theta_i_raw(self) -> int:
        return _raw_half_up(self.theta * 2**self.i_frac)

    @property
    def recip_min_raw(self) -> int:
        return _raw_half_up(self.recip_min * 2**self.i_frac)

    # -- loss unit constants (§4) --------------------------------------------------------------

    @cached_property
    def exp_rom(self) -> np.ndarray:
        """exp(-d dt / tau0) in unsigned Q0.exp_frac for d = 0, 1, ... up to the first zero entry."""
        vals = []
        d = 0
        while True:
            v = _raw_half_up(math.exp(-d * self.dt_s / self.tau0_s) * 2**self.exp_frac)
            vals.append(v)
            if v == 0 or d >= self.n_steps:
                break
            d += 1
        return np.array(vals, dtype=np.int64)

    @property
    def loss_c0_raw(self) -> int:
        """2**loss_scale_log2 * tau_mem / tau0 in the lambda format (§4.3)."""
        return _raw_half_up(2.0**self.loss_scale_log2 * self.tau_mem_s / self.tau0_s * 2**self.lam_frac)

    @cached_property
    def reg_rom(self) -> np.ndarray:
        """2**s * alpha * tau_mem / tau1 * exp(n dt / tau1) in the lambda format, n = 0 .. n_steps - 1."""
        c = 2.0**self.loss_scale_log2 * self.alpha * self.tau_mem_s / self.tau1_s * 2**self.lam_frac
        return np.array(
            [_raw_half_up(c * math.exp(n * self.dt_s / self.tau1_s)) for n in range(self.n_steps)],
            dtype=np.int64,
        )

    # -- reciprocal unit (§2.3) ----------------------------------------------------------------

    @cached_property
    def recip_rom(self) -> np.ndarray:
        """Seed ROM: round(2**(R + k) / (2**k + a + 1/2)) for a = 0 .. 2**k - 1 (R-bit unsigned)."""
        k, r = self.recip_seed_bits, self.recip_bits
        return np.array(
            [_raw_half_up(2.0 ** (r + k) / ((1 << k) + a + 0.5)) for a in range(1 << k)], dtype=np.int64
        )

    @cached_property
    def rsqrt_rom(self) -> np.ndarray:
        """Adam's 1/sqrt ROM (§6.1): entry [p, a] = round(2**rsqrt_bits / sqrt((1 + (a + 1/2) / 2**k) 2**p))
        for the parity p of the leading-one position and the k bits below the leading one."""
        k, r = self.rsqrt_index_bits, self.rsqrt_bits
        return np.array(
            [
                [_raw_half_up(2.0**r / math.sqrt((1 + (a + 0.5) / 2**k) * 2**p)) for a in range(1 << k)]
                for p in (0, 1)
            ],
            dtype=np.int64,
        )

    @property
    def recip_eps_shift(self) -> int:
        """Right shift of the Newton residual so it fits a signed R-bit multiplier operand (§2.3)."""
        return self.recip_bits - self.recip_seed_bits + 1

    # -- update constants (§6) -----------------------------------------------------------------

    @property
    def silent_bump_raw(self) -> tuple:
        return tuple(_raw_half_up(self.silent_bump * 2**f) for f in self.w_frac)

    @property
    def revive_raw(self) -> int:
        """§5.6: 2**s * revive_hidden / batch_size in the lambda format (subtracted from lambda_V)."""
        c = 2.0**self.loss_scale_log2 * self.revive_hidden / self.batch_size
        return _raw_half_up(c * 2**self.lam_frac)

    @property
    def n_hidden(self) -> int:
        """Neurons of the hidden layers 1..L-1 (the ones the spike record and the revival serve)."""
        return sum(self.sizes[1:-1])

    @property
    def shapes_hidden(self) -> bool:
        """§6.5: loss shaping on for a hidden layer (its silent count needs per-sample spiked bits)."""
        return self.n_hidden > 0 and any(t < 1.0 for t in self.silent_threshold[:-1])

    @property
    def silent_count_max(self) -> tuple:
        """Silent (sample, neuron) pairs per minibatch above which layer l is bumped (§6.5)."""
        return tuple(
            math.floor(t * self.batch_size * n) for t, n in zip(self.silent_threshold, self.sizes[1:])
        )

    def _lr_unit(self, layer: int) -> float:
        """Real learning rate of mantissa 1, shift 0 (§6.4): dw_raw = u * mant * 2**-shift.

        adam: u = m / sqrt(v), lion: u = sign, so the unit is one weight LSB. sgd: u = G_raw =
        (sum of dL/dw) / grad_lsb, so the unit is w_lsb / grad_lsb (w per unit of summed dL/dw).
        """
        if self.optimizer in (Optimizer.LION, Optimizer.ADAM):
            return self.w_fmt(layer).lsb
        return self.w_fmt(layer).lsb / self.grad_scale(layer)

    def lr_real(self, layer: int) -> float:
        """The learning rate: lion, the step of each weight in its real unit; sgd, the factor in
        w -= lr_real * (sum over the minibatch of dL/dw)."""
        return self.lr_mant[layer] * 2.0 ** -self.lr_shift[layer] * self._lr_unit(layer)

    def lr_mant_for(self, lr: float, layer: int) -> int:
        """The mantissa that best realises learning rate ``lr`` (dL/dw units) with lr_shift[layer]."""
        m = _raw_half_up(lr / (2.0 ** -self.lr_shift[layer] * self._lr_unit(layer)))
        if not 0 <= m < (1 << self.lr_bits):
            raise ConfigError(
                f"CoreConfig.lr_mant: learning rate {lr:g} of layer {layer} needs mantissa "
                f"{m}, outside [0, 2**{self.lr_bits}); change lr_shift[{layer}]"
            )
        return m

    def with_lr(self, lrs) -> CoreConfig:
        """This config with learning rates ``lrs`` (dL/dw units, one per matrix) as normalised
        mantissa (top bit set) and shift."""
        lrs = _tuple(lrs)
        if len(lrs) != self.n_layers:
            raise ConfigError(f"CoreConfig.with_lr: need {self.n_layers} learning rates, got {len(lrs)}")
        mants, shifts = [], []
        for l, lr in enumerate(lrs):
            if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
                raise ConfigError(f"CoreConfig.with_lr: learning rate {lr!r} must be positive")
            # lr = mant * 2**-shift * unit; pick shift so mant lies in [2**(bits-1), 2**bits).
            unit = self._lr_unit(l)
            shift = math.ceil(self.lr_bits - 1 - math.log2(lr / unit))
            mant = _raw_half_up(lr / unit * 2.0**shift)
            if mant >= 1 << self.lr_bits:
                shift -= 1
                mant = _raw_half_up(lr / unit * 2.0**shift)
            mants.append(mant)
            shifts.append(shift)
        return replace(self, lr_mant=tuple(mants), lr_shift=tuple(shifts))

    def grad_scale(self, layer: int = 0) -> float:
        """dL/dw per LSB of a gradient accumulator (§5.4)."""
        return self.lam_fmt.lsb / (self.kappa * 2.0**self.loss_scale_log2)

    # -- widths of intermediates (§1.3) --------------------------------------------------------

    @property
    def fanin_acc_bits(self) -> int:
        """Width of the per-step fan-in accumulator: every input of a neuron spiking in one step. A
        neuron of a hidden layer spikes at most once per step, but one input may spike several
        times in a step (§3.1: the buffer keeps ties): up to `input_capacity` spikes of layer 0."""
        worst = 0
        for l in range(self.n_layers):
            shift = self.i_frac - self.w_frac[l]
            one = (1 << (self.w_bits - 1) << shift) if shift >= 0 else (1 << (self.w_bits - 1)) >> -shift
            spikes = self.input_capacity if l == 0 else self.sizes[l]
            worst = max(worst, spikes * (one + 1))
        return _bitlen_signed(-worst, worst)

    @property
    def max_fanout_hidden(self) -> int:
        """Largest number of targets of a hidden neuron (terms of one jump's error sum)."""
        return max(self.sizes[2:])

    def theta_w_raw(self, layer: int) -> int:
        """theta in the weight format of matrix ``layer`` (the first term of a jump's sum, §5.3)."""
        return _raw_half_up(self.theta * 2 ** self.w_frac[layer])

    @property
    def widest_intermediate_bits(self) -> int:
        """The widest exact intermediate of any operation in docs/core.md (bits, signed)."""
        c = self.coef_frac + 1
        fv = max(self.v_frac, self.i_frac)
        cands = [
            # §3.2: beta V + gamma I aligned to max(v_frac, i_frac)
            max(self.v_bits + fv - self.v_frac, self.i_bits + fv - self.i_frac) + c + 1,
            self.fanin_acc_bits + 1,
            # §5.2: kgamma lamV + alpha lamI
            self.lam_bits + c + 1,
            # §5.3: theta_w lamV + sum_j w_ji D_j over the fan-out (D is one bit wider than lambda)
            self.w_bits + self.lam_bits + 1 + self.max_fanout_hidden.bit_length() + 1,
            # §5.3: numerator * reciprocal mantissa
            self.lam_bits + self.recip_bits + 2,
        ]
        if self.optimizer is Optimizer.ADAM:
            # §6.1: g*g and v, and m * (1/sqrt v) * lr mantissa + random bits
            cands.append(2 * self.grad_bits + 1)
            cands.append(self.grad_bits + self.rsqrt_bits + self.lr_bits + 2)
        if self.optimizer is Optimizer.SGD:
            # §6.3: momentum/gradient * lr mantissa + random bits
            cands.append(self.grad_bits + self.lr_bits + 2)
        return max(cands)

    # -- memories and devices (§8) -------------------------------------------------------------

    def memories(self) -> list[Memory]:
        """Every memory of the core with its depth and width (docs/core.md §8)."""
        n_neur = sum(self.sizes[1:])
        # One word per synapse holds its weight, gradient accumulator and momentum: they are
        # addressed together (fan-out, replay, update), so one address decoder serves all three.
        mems = [Memory("synapses", self.n_synapses, self.synapse_word_bits)]
        if self.optimizer is Optimizer.ADAM:
            # Only the update reads v: a memory of its own keeps the synapse word at 64 bits.
            mems.append(Memory("adam_v", self.n_synapses, self.v_exp_bits + self.v_mant_bits))
            mems.append(Memory("rsqrt_rom", 2 << self.rsqrt_index_bits, self.rsqrt_bits, rom=True))
        # Forward (V, I) and backward (lambda_V, lambda_I) never live at the same time: one memory.
        mems.append(Memory("state", n_neur, max(self.v_bits + self.i_bits, 2 * self.lam_bits)))
        mems.append(Memory("fanin_acc", n_neur, self.fanin_acc_bits))
        # With ram_read_regs an entry also says whether it is the first of its step (§8).
        mems.append(
            Memory("spike_record", self.record_capacity,
                   self.step_bits + self.neuron_bits + self.i_bits + self.ram_read_regs)
        )
        # Two read ports (the current entry and the next one, §3.1): two copies in block RAM.
        mems.append(
            Memory("input_buffer", self.input_capacity, self.step_bits + self.input_id_bits, read_ports=2)
        )
        if self.revive_hidden > 0 and self.n_hidden:
            # §5.6: per hidden neuron the running V maximum and its step (per sample), the fired bit
            # (per minibatch) and the dead bit (the previous minibatch's verdict).
            # V max, its step, and the spiked / fired / dead bits (§5.6).
            mems.append(Memory("vmax", self.n_hidden, self.v_bits + self.step_bits + 3))
        elif self.shapes_hidden:
            # §6.5 without the vmax word: the sample's spiked bit per hidden neuron.
            mems.append(Memory("spiked", self.n_hidden, 1))
        # What the RTL adds for the forward pass: this step's spikes of the layer just swept (indices
        # within the layer, §3.3 (c)) and the output first-spike registers of §3.4 as a memory. The
        # RTL builds a one-word memory two words deep (a zero-width address is not valid Verilog).
        n_list = max(2, max(self.sizes[1:-1], default=0))
        mems.append(Memory("spike_list", n_list, (n_list - 1).bit_length()))
        mems.append(Memory("first_spike", max(2, self.sizes[-1]), self.step_bits + self.i_bits + self.v_bits))
        mems.append(Memory("exp_rom", len(self.exp_rom), self.exp_frac + 1, rom=True))
        mems.append(Memory("reg_rom", self.n_steps, max(1, int(self.reg_rom.max()).bit_length()), rom=True))
        mems.append(Memory("recip_rom", 1 << self.recip_seed_bits, self.recip_bits, rom=True))
        return mems

    @property
    def n_synapses(self) -> int:
        return sum(a * b for a, b in zip(self.sizes, self.sizes[1:]))

    @property
    def has_momentum(self) -> bool:
        return self.optimizer in (Optimizer.LION, Optimizer.ADAM) or self.mom_shift > 0

    @property
    def synapse_word_bits(self) -> int:
        """Weight + gradient accumulator (+ momentum) of one synapse (§8)."""
        return self.w_bits + self.grad_bits + (self.grad_bits if self.has_momentum else 0)

    @property
    def register_bits(self) -> int:
        """Flip-flops that hold data (not control): output first-spike registers, spiked bits, LFSR."""
        n_out = self.sizes[-1]
        return (
            n_out * (self.step_bits + self.i_bits + self.v_bits)
            + sum(self.sizes[1:])
            + self.lfsr_bits
            + len(Flag)
        )

    def mult_pieces(self, dsp_width: int = 16) -> dict:
        """Hard-multiplier pieces each pipelined operation needs to run at one neuron, synapse or
        weight per cycle (§7). A signed operand wider than the multiplier splits into an unsigned
        low part and a signed high part; coefficients and mantissas are unsigned."""

        def pieces(a, b):
            return math.ceil(a / dsp_width) * math.ceil(b / dsp_width)

        cf = self.coef_frac
        return {
            "forward_neuron": pieces(self.v_bits, cf) + 2 * pieces(self.i_bits, cf),
            "adjoint_neuron": 3 * pieces(self.lam_bits, cf),
            "err_synapse": pieces(self.w_bits, self.lam_bits),
            "update_weight": {
                Optimizer.SGD: pieces(self.grad_bits, self.lr_bits),
                Optimizer.LION: 0,
                Optimizer.ADAM: pieces(self.grad_bits, self.rsqrt_bits)
                + pieces(self.grad_bits + self.rsqrt_bits, self.lr_bits),
            }[self.optimizer],
        }

    #: Per device (DEVICES key): memories of at most this many words are built in the fabric, not
    #: in block RAM (placement "logic", no blocks). The iCE40 has no LUT RAM: yosys builds a few
    #: words as flip-flops (the 3-word first_spike) but puts the 16-word input buffer into EBR.
    #: ECP5 LUT RAM is 16 words deep (TRELLIS_DPR16X4): yosys builds up to 16 words there.
    FABRIC_MAX_DEPTH = {"up5k": 8, "ecp5-25f": 16, "ecp5-85f": 16}

    def _place(self, device: Device, fabric_max_depth: int = 0) -> dict:
        """Assign each memory to the fabric, block RAM or SPRAM: (placement, blocks) per memory."""

        def ebr_blocks(m: Memory) -> int:
            # One copy per read port: a block RAM has one read port beside its write port.
            one = min(math.ceil(m.width / w) * math.ceil(m.depth / d) for d, w in device.ebr_modes)
            return m.read_ports * one

        def spram_blocks(m: Memory) -> int:
            return math.ceil(m.width / device.spram_width) * math.ceil(m.depth / device.spram_depth)

        mems = self.memories()
        place = {m.name: ("logic", 0) if m.depth <= fabric_max_depth else ("ebr", ebr_blocks(m))
                 for m in mems}
        # Move the memories that cost the most block RAM into SPRAM (single-port) while SPRAM remains.
        spram_free = device.spram_blocks
        movable = (m for m in mems if not m.rom and place[m.name][0] == "ebr")
        for m in sorted(movable, key=lambda m: -ebr_blocks(m)):
            if sum(b for k, b in place.values() if k == "ebr") <= device.ebr_blocks:
                break
            need = spram_blocks(m)
            if m.read_ports == 1 and need <= spram_free and ebr_blocks(m) > need:
                place[m.name] = ("spram", need)
                spram_free -= need
        return place

    def memory_report(self, device: str | None = None) -> dict:
        """Bits per memory and, for a named device, where each goes and whether it fits (§8)."""
        mems = self.memories()
        report = {
            "memories": {
                m.name: {"depth": m.depth, "width": m.width, "bits": m.bits, "rom": m.rom,
                         "read_ports": m.read_ports}
                for m in mems
            },
            "total_bits": sum(m.bits for m in mems),
            "register_bits": self.register_bits,
            "mult16_pieces": self.mult_pieces(),
        }
        if device is not None:
            dev = self._device(device)
            place = self._place(dev, self.FABRIC_MAX_DEPTH.get(device.strip().lower(), 0))
            for m in mems:
                kind, blocks = place[m.name]
                report["memories"][m.name].update({"placed": kind, "blocks": blocks})
            ebr = sum(b for k, b in place.values() if k == "ebr")
            spram = sum(b for k, b in place.values() if k == "spram")
            logic_bits = sum(m.bits for m in mems if place[m.name][0] == "logic")
            dsp_need = max(self.mult_pieces(dev.dsp_width).values())
            report.update(
                {
                    "device": dev.name,
                    "ebr_used": ebr,
                    "ebr_available": dev.ebr_blocks,
                    "spram_used": spram,
                    "spram_available": dev.spram_blocks,
                    "logic_bits": logic_bits,
                    "dsp_used": dsp_need,
                    "dsp_available": dev.dsp_blocks,
                    "fits": ebr <= dev.ebr_blocks
                    and spram <= dev.spram_blocks
                    and dsp_need <= dev.dsp_blocks,
                }
            )
        return report

    def fits(self, device: str) -> bool:
        """True if every memory and the multipliers fit the named device ("up5k", "ecp5-25f", ...)."""
        return self.memory_report(device)["fits"]

    @staticmethod
    def _device(name: str) -> Device:
        key = name.strip().lower()
        if key not in DEVICES:
            raise ConfigError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}")
        return DEVICES[key]

    # -- JSON round trip -----------------------------------------------------------------------

    def to_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
            elif isinstance(v, enum.Enum):
                d[k] = v.value
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CoreConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"CoreConfig: unknown field(s) {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> CoreConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes) -> CoreConfig:
        return replace(self, **changes)

    # -- presets -------------------------------------------------------------------------------

    #: Learning rate (real, per weight matrix) the presets set with :meth:`with_lr`.
    PRESET_LR = (5e-3, 5e-3)

    @classmethod
    def _preset(cls, base: dict, changes: dict) -> CoreConfig:
        lr = changes.pop("lr", None)
        explicit_lr = "lr_mant" in changes or "lr_shift" in changes
        cfg = cls(**{**base, **changes})
        if lr is not None or not explicit_lr:
            cfg = cfg.with_lr(lr if lr is not None else cls.PRESET_LR)
        return cfg

    @classmethod
    def up5k(cls, **changes) -> CoreConfig:
        """Yin-Yang 5-200-3 core whose memories fit an iCE40 UP5K (defaults: docs/design_space.md),
        with the revival of dead hidden neurons (§5.6, revive_hidden = 4) and, with it, a finer
        step than the field defaults: dt = 0.2 ms, 250 steps (both chosen on a fresh validation
        draw: docs/design_space.md, "Revival of dead hidden neurons on chip").

        ``changes`` override fields; ``lr=(lr0, lr1)`` sets real learning rates (default 5e-3)."""
        return cls._preset(dict(revive_hidden=4.0, dt_s=0.2e-3, n_steps=250), changes)

    @classmethod
    def ecp5_85f(cls, **changes) -> CoreConfig:
        """Yin-Yang 5-200-3 core with a finer time step (0.1 ms) and wider words for the ECP5-85F, its
        block-RAM reads registered (§8)."""
        base = dict(
            dt_s=0.1e-3,
            n_steps=500,
            coef_frac=20,
            v_bits=28,
            v_frac=22,
            i_bits=28,
            i_frac=20,
            lam_bits=28,
            lam_frac=20,
            grad_bits=28,
            w_bits=18,
            w_frac=(13, 14),
            record_capacity=2048,
            revive_hidden=4.0,
            # §8: the block-RAM reads registered and the jump's wide stages split for the ECP5's
            # 80 MHz: two more cycles of sweep fill, six more per jump and one more per backward
            # synapse read-modify-write (hdl.core.check_buildable).
            ram_read_regs=1,
            cyc_sweep_latency=6,
            cyc_jump=14,
            cyc_synapse_rmw=3,
        )
        return cls._preset(base, changes)

    @classmethod
    def wide(cls, **changes) -> CoreConfig:
        """Fine time step (10 us) and wide words: the fixed-point model close to float EventProp.

        For gradient comparisons (tests/golden/test_fixed_vs_float.py); the update is plain SGD so
        that the 40-bit gradient needs no g*g (Adam) within int64."""
        base = dict(
            dt_s=0.01e-3,
            n_steps=5000,
            coef_frac=24,
            v_bits=32,
            v_frac=26,
            i_bits=32,
            i_frac=24,
            w_bits=20,
            w_frac=(15, 16),
            lam_bits=32,
            lam_frac=22,
            grad_bits=40,
            recip_min=2.0**-12,
            exp_frac=20,
            prob_frac=16,
            record_capacity=4096,
            loss_scale_log2=-2,
            optimizer="sgd",
            mom_shift=0,
        )
        return cls._preset(base, changes)
