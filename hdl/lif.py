"""Neuron update unit of the forward pass (docs/core.md §3.2), built from a `CoreConfig` alone.

The RTL twin of the inner loop of `evcore.golden.lif.forward_sample`: one neuron per cycle,
a two-stage pipeline (products, then align/round/saturate/threshold/fan-in add).
"""

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from evcore.golden.config import CoreConfig, RoundingMode

__all__ = ["LifUnit", "lif_in_layout", "lif_out_layout", "rnd"]


def rnd(x, s: int, mode: RoundingMode):
    """§1.2 as Amaranth expression: x * 2**-s rounded (half up or floor); s <= 0 is x << -s."""
    if s <= 0:
        return x << -s
    if mode is RoundingMode.HALF_UP:
        return (x + (1 << (s - 1))) >> s
    return x >> s


def sat(x, bits: int):
    """§1.4: (clamped value, clamped?) for a signed `bits`-bit word."""
    hi, lo = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
    over, under = x > hi, x < lo
    return Mux(over, hi, Mux(under, lo, x)), over | under


def lif_in_layout(cfg: CoreConfig) -> data.StructLayout:
    """One neuron's state after step n-1 (V, I), its fan-in sum A_j, and `zero` (step 0: state is 0)."""
    return data.StructLayout(
        {"v": signed(cfg.v_bits), "cur": signed(cfg.i_bits), "acc": signed(cfg.fanin_acc_bits), "zero": 1}
    )


def lif_out_layout(cfg: CoreConfig) -> data.StructLayout:
    """State after step n (V after reset, I'), V'/I⁻ before reset/fan-in (record, §3.4), events, flags."""
    return data.StructLayout(
        {
            "v": signed(cfg.v_bits),
            "cur": signed(cfg.i_bits),
            "v_pre": signed(cfg.v_bits),
            "cur_dec": signed(cfg.i_bits),
            "spike": 1,
            "v_sat": 1,
            "i_sat": 1,
        }
    )


class LifUnit(wiring.Component):
    """§3.2 for one neuron per cycle: exact propagator, threshold, reset to 0, fan-in add, V_SAT/I_SAT.

    Stages: products; alignment and rounding; saturation, threshold and fan-in add (the split
    keeps the UP5K above 24 MHz). Latency `latency` = 3 cycles from ``i.valid`` to ``o.valid``;
    throughput one neuron per cycle; no back-pressure (both streams are always ready: the sweep never stalls).

    Members
    -------
    i : ``In(stream.Signature(lif_in_layout(cfg), always_ready=True))``
    o : ``Out(stream.Signature(lif_out_layout(cfg), always_ready=True))``
    """

    latency = 3

    def __init__(self, cfg: CoreConfig):
        self._cfg = cfg
        super().__init__(
            {
                "i": In(stream.Signature(lif_in_layout(cfg), always_ready=True)),
                "o": Out(stream.Signature(lif_out_layout(cfg), always_ready=True)),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        cf = cfg.coef_frac
        fx = max(cfg.v_frac, cfg.i_frac)
        mode = cfg.state_rounding

        # Stage 1: the three products, exact (registered so they map onto DSP output registers).
        v_in = Mux(self.i.p.zero, 0, self.i.p.v)
        i_in = Mux(self.i.p.zero, 0, self.i.p.cur)
        p_beta = Signal(signed(cfg.v_bits + cf + 1))
        p_gamma = Signal(signed(cfg.i_bits + cf + 1))
        p_alpha = Signal(signed(cfg.i_bits + cf + 1))
        acc1 = Signal(signed(cfg.fanin_acc_bits))
        valid1 = Signal()
        m.d.sync += [
            p_beta.eq(v_in * Const(cfg.beta_raw, cf + 1)),
            p_gamma.eq(i_in * Const(cfg.gamma_raw, cf + 1)),
            p_alpha.eq(i_in * Const(cfg.alpha_raw, cf + 1)),
            acc1.eq(self.i.p.acc),
            valid1.eq(self.i.valid),
        ]

        # Stage 2: align to F = max(f_V, f_I), one rounding per state variable (before saturation).
        x = (p_beta << (fx - cfg.v_frac)) + (p_gamma << (fx - cfg.i_frac))
        x_rnd = rnd(x, cf + fx - cfg.v_frac, mode)
        v_wide = Signal(signed(len(x_rnd)))
        i_dec = Signal(signed(cfg.i_bits))
        acc2 = Signal.like(acc1)
        valid2 = Signal()
        m.d.sync += [v_wide.eq(x_rnd), i_dec.eq(rnd(p_alpha, cf, mode)), acc2.eq(acc1), valid2.eq(valid1)]
        # |αI| <= |I| (§1.4): i_dec needs no saturation.

        # Stage 3: saturate V, threshold (on the unsaturated value: same verdict, since
        # 0 < θ <= V_max), reset, fan-in add and saturate I.
        v_new, v_sat = sat(v_wide, cfg.v_bits)
        v_new_s = Signal(signed(cfg.v_bits))
        m.d.comb += v_new_s.eq(v_new)
        spike = v_wide >= cfg.theta_v_raw
        i_new, i_sat = sat(i_dec + acc2, cfg.i_bits)
        m.d.sync += [
            self.o.valid.eq(valid2),
            self.o.p.v.eq(Mux(spike, 0, v_new_s)),
            self.o.p.v_pre.eq(v_new_s),
            self.o.p.cur.eq(i_new),
            self.o.p.cur_dec.eq(i_dec),
            self.o.p.spike.eq(spike),
            self.o.p.v_sat.eq(v_sat),
            self.o.p.i_sat.eq(i_sat),
        ]
        return m
