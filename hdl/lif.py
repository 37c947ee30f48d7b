"""Neuron update unit (docs/core.md §3.2 forward, §5.2 backward), built from a `CoreConfig` alone.

The RTL twin of the inner loop of `evcore.golden.lif.forward_sample` and of the propagation
sweep of `evcore.golden.adjoint.backward_sample`: one neuron per cycle, a three-stage pipeline.
Both directions share the three multipliers (the forward and the backward sweep never overlap):
forward (βV, γI, αI), backward (βΛ_V, κγΛ_V, αΛ_I).
"""

import contextlib

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from evcore.golden.config import Build, CoreConfig, RoundingMode

from .mul import mul_ports

__all__ = ["PIECE_BITS", "LifUnit", "lif_latency", "lif_in_layout", "lif_out_layout", "rnd", "sat",
           "sat_by_bits", "slices"]


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


def sat_by_bits(x, bits: int):
    """`sat` with the overflow read off the top bits of `x` (at least `bits` wide): the sign of the
    result and every bit above it must agree. No comparator chains, for the fast stages."""
    top = x[bits - 1 :]
    clamped = (top != 0) & (top != (1 << len(top)) - 1)
    return Mux(clamped, Mux(x[-1], -(1 << (bits - 1)), (1 << (bits - 1)) - 1), x[:bits].as_signed()), clamped


def lif_in_layout(cfg: CoreConfig) -> data.StructLayout:
    """Forward: one neuron's state after step n-1 (V, I), its fan-in sum A_j, and `zero` (step 0:
    the state is 0). Backward (`bwd`): its adjoint (Λ_V, Λ_I) after step n's jumps and `inject`
    (§5.6: subtract the revival term R̂ from Λ_V before the transposed propagator)."""
    return data.StructLayout(
        {"v": signed(cfg.v_bits), "cur": signed(cfg.i_bits), "acc": signed(cfg.fanin_acc_bits), "zero": 1,
         "bwd": 1, "lam_v": signed(cfg.lam_bits), "lam_i": signed(cfg.lam_bits), "inject": 1}
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
            "lam_v": signed(cfg.lam_bits),
            "lam_i": signed(cfg.lam_bits),
            "lam_sat": 1,
        }
    )


#: Products per neuron: the area build takes them one per cycle on the lane (`LifUnit`).
LANE_PRODUCTS = 3


def lif_latency(cfg: CoreConfig) -> int:
    """LifUnit's latency: 3 stages, plus with ``cfg.ram_read_regs`` (§8) the operand register (its
    inputs come straight from block RAM) and the registered product pieces; in the area build two
    more, the second and third product on the lane."""
    if cfg.build is Build.AREA:
        return 3 + LANE_PRODUCTS - 1
    return 3 + 2 * cfg.ram_read_regs


#: Slice width of pieced products (§8; the sweep's here, the update's u·lr_mant): a 17-bit unsigned
#: slice is one 18x18 signed multiplier operand (ECP5 MULT18X18D).
PIECE_BITS = 17


def slices(x, *, signed: bool):
    """(offset, slice) of `x` in PIECE_BITS-bit slices, low first; the top slice of a signed value
    carries its sign, the others are unsigned (x = sum of slice << offset)."""
    cuts = list(range(0, len(x), PIECE_BITS))
    return [(c, x[c:].as_signed() if signed and c == cuts[-1] else x[c : c + PIECE_BITS]) for c in cuts]


class LifUnit(wiring.Component):
    """§3.2 for one neuron per cycle: exact propagator, threshold, reset to 0, fan-in add, V_SAT/I_SAT;
    with ``bwd`` §5.2 instead: the transposed propagator of (Λ_V, Λ_I), LAM_SAT, after the §5.6
    revival injection when ``inject``.

    Stages: (with ``cfg.ram_read_regs``) the registered operands, and the products' registered
    pieces; products; alignment and rounding; saturation, threshold and fan-in add (the split keeps
    the UP5K above 24 MHz). Latency `latency` = 3 (+ 2 with ``ram_read_regs``) cycles from
    ``i.valid`` to ``o.valid``;
    throughput one neuron per cycle; no back-pressure (both streams are always ready: the sweep never stalls).

    Area build (``cfg.build = area``, §8): the three products take turns on the borrowed multiplier
    lane (``mul``), one per cycle from the ``i.valid`` cycle (β, then γ or κγ, then α), so the unit
    takes a neuron every `LANE_PRODUCTS` cycles, and ``i.p`` must hold still for those cycles (the
    core's sweep holds its neuron address); latency 5.

    Members
    -------
    i : ``In(stream.Signature(lif_in_layout(cfg), always_ready=True))``
    o : ``Out(stream.Signature(lif_out_layout(cfg), always_ready=True))``
    mul : the lane (area build only, `mul_need`)
    """

    @staticmethod
    def mul_need(cfg: CoreConfig) -> tuple[int, int]:
        """Signed operand widths of the products on the lane: a coefficient (a), a state or adjoint (b)."""
        coef = max(cfg.beta_raw, cfg.gamma_raw, cfg.kgamma_raw, cfg.alpha_raw).bit_length()
        return coef + 1, max(cfg.v_bits, cfg.i_bits, cfg.lam_bits)

    def __init__(self, cfg: CoreConfig, *, mul_lane: tuple[int, int] | None = None):
        self._cfg = cfg
        #: Cycles from ``i.valid`` to ``o.valid`` (`lif_latency`).
        self.latency = lif_latency(cfg)
        lane = {}
        if cfg.build is Build.AREA:
            lane = mul_ports(mul_lane or self.mul_need(cfg), need=self.mul_need(cfg), owner="LifUnit")
        super().__init__(
            {
                "i": In(stream.Signature(lif_in_layout(cfg), always_ready=True)),
                "o": Out(stream.Signature(lif_out_layout(cfg), always_ready=True)),
                **lane,
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        cf = cfg.coef_frac
        fx = max(cfg.v_frac, cfg.i_frac)
        mode = cfg.state_rounding

        # Stage 1: the three products, exact (registered so they map onto DSP output registers).
        # Backward, the operands are (Λ_V, Λ_V, Λ_I) and the middle coefficient is κγ.
        p = self.i.p
        xb = max(cfg.v_bits, cfg.i_bits, cfg.lam_bits)
        v_in = Mux(p.zero, 0, p.v)
        i_in = Mux(p.zero, 0, p.cur)
        operands = {
            "x_beta": (signed(xb), Mux(p.bwd, p.lam_v, v_in)),
            "x_gamma": (signed(xb), Mux(p.bwd, p.lam_v, i_in)),
            "c_gamma": (unsigned(cf + 2), Mux(p.bwd, Const(cfg.kgamma_raw, cf + 2), cfg.gamma_raw)),
            "x_alpha": (signed(xb), Mux(p.bwd, p.lam_i, i_in)),
            "acc": (signed(cfg.fanin_acc_bits), p.acc),
            "bwd": (unsigned(1), p.bwd),
            "inject": (unsigned(1), p.inject),
            "valid": (unsigned(1), self.i.valid),
        }
        op = {}
        for name, (shape, value) in operands.items():
            op[name] = Signal(shape, name=f"op_{name}")
            if cfg.ram_read_regs:
                # §8: the operands registered after the muxes, so that no block-RAM read is in
                # series with a multiplier.
                m.d.sync += op[name].eq(value)
            else:
                m.d.comb += op[name].eq(value)
        if cfg.ram_read_regs:
            # §8: each product as registered pieces of 17-bit slices of both operands (one
            # multiplier each, no adder behind it), summed in the next stage; the other operand
            # fields wait a cycle beside them.
            pieces = {}
            for name, coef in (("beta", Const(cfg.beta_raw, cf + 1)), ("gamma", op["c_gamma"]),
                               ("alpha", Const(cfg.alpha_raw, cf + 1))):
                x = op[f"x_{name}"]
                for a, xa in slices(x, signed=True):
                    for b, cb in slices(coef, signed=False):
                        pp = Signal(signed(len(xa) + len(cb) + 1), name=f"pp_{name}_{a}_{b}")
                        m.d.sync += pp.eq(xa * cb)
                        pieces.setdefault(name, []).append((a + b, pp))
            late = {}
            for name in ("acc", "bwd", "inject", "valid", "x_beta"):
                late[name] = Signal.like(op[name], name=f"op1_{name}")
                m.d.sync += late[name].eq(op[name])
            products = {name: sum(pp << sh for sh, pp in pp_list) for name, pp_list in pieces.items()}
            op = {**op, **late}
        elif cfg.build is not Build.AREA:
            products = {"beta": op["x_beta"] * Const(cfg.beta_raw, cf + 1),
                        "gamma": op["x_gamma"] * op["c_gamma"],
                        "alpha": op["x_alpha"] * Const(cfg.alpha_raw, cf + 1)}
        bwd = op["bwd"]
        p_beta = Signal(signed(xb + cf + 1))
        p_gamma = Signal(signed(xb + cf + 2))
        p_alpha = Signal(signed(xb + cf + 1))
        acc1 = Signal(signed(cfg.fanin_acc_bits))
        valid1, bwd1 = Signal(), Signal()
        # The cycle stage 1 takes the side fields (acc, bwd, the injection): the input's own, or in
        # the area build its third, when the last product is taken.
        take = op["valid"]
        if cfg.build is Build.AREA:
            # §8 area build: β·x_β now, γ·x_γ (κγ·Λ_V backward) and α·x_α in the next two cycles,
            # on the lane; the input holds still meanwhile.
            turn = Signal(range(LANE_PRODUCTS))
            with m.If(op["valid"]):
                m.d.sync += turn.eq(1)
            with m.Elif(turn != 0):
                m.d.sync += turn.eq(Mux(turn == LANE_PRODUCTS - 1, 0, turn + 1))
            take = turn == LANE_PRODUCTS - 1
            lane = self.mul
            m.d.comb += lane.req.eq(op["valid"] | (turn != 0))
            with m.If(op["valid"]):
                m.d.comb += [lane.a.eq(cfg.beta_raw), lane.b.eq(op["x_beta"])]
                m.d.sync += p_beta.eq(lane.p)
            with m.Elif(turn == 1):
                m.d.comb += [lane.a.eq(op["c_gamma"]), lane.b.eq(op["x_gamma"])]
                m.d.sync += p_gamma.eq(lane.p)
            with m.Elif(turn == 2):
                m.d.comb += [lane.a.eq(cfg.alpha_raw), lane.b.eq(op["x_alpha"])]
                m.d.sync += p_alpha.eq(lane.p)
            with m.If(take):
                m.d.sync += [acc1.eq(op["acc"]), bwd1.eq(bwd)]
            m.d.sync += valid1.eq(take)
        else:
            m.d.sync += [
                p_beta.eq(products["beta"]),
                p_gamma.eq(products["gamma"]),
                p_alpha.eq(products["alpha"]),
                acc1.eq(op["acc"]),
                valid1.eq(op["valid"]),
                bwd1.eq(bwd),
            ]
        # §5.6: β·sat(Λ_V − R̂) = β·Λ_V − β·R̂, or β·Λ_min where the difference saturates (the same
        # for κγ): the injection needs a comparator here and constants in stage 2, no multiplier.
        lam_lo = -(1 << (cfg.lam_bits - 1))
        inject1, inj_sat1 = Signal(), Signal()
        if cfg.revive_hidden > 0:
            r_raw = cfg.revive_raw
            inj = [inject1.eq(bwd & op["inject"]), inj_sat1.eq(op["x_beta"] < lam_lo + r_raw)]
            if cfg.build is Build.AREA:
                with m.If(take):
                    m.d.sync += inj
            else:
                m.d.sync += inj

        # Stage 2: align to F = max(f_V, f_I), one rounding per state variable (before saturation).
        x = (p_beta << (fx - cfg.v_frac)) + (p_gamma << (fx - cfg.i_frac))
        x_rnd = rnd(x, cf + fx - cfg.v_frac, mode)
        v_wide = Signal(signed(len(x_rnd)))
        i_dec = Signal(signed(cfg.i_bits))
        acc2 = Signal.like(acc1)
        valid2, bwd2 = Signal(), Signal()
        # The area build loads I⁻ and Λ_V' (below) only with their neuron: they are the outputs.
        m.d.sync += [v_wide.eq(x_rnd), valid2.eq(valid1), bwd2.eq(bwd1)]
        with (m.If(valid1) if cfg.build is Build.AREA else contextlib.nullcontext()):
            m.d.sync += i_dec.eq(rnd(p_alpha, cf, mode))
        if cfg.build is Build.AREA:
            # acc1 holds until the next neuron's last turn, two cycles after this one's stage 3.
            m.d.comb += acc2.eq(acc1)
        else:
            m.d.sync += acc2.eq(acc1)
        # |αI| <= |I| (§1.4): i_dec needs no saturation.
        # Backward (§5.2): Λ_V' = rnd(β Λ_V) needs no saturation (β < 1); Λ_I' is saturated in stage 3.
        pb, pg = Signal.like(p_beta), Signal.like(p_gamma)
        m.d.comb += [pb.eq(p_beta), pg.eq(p_gamma)]
        if cfg.revive_hidden > 0:
            with m.If(inject1):
                with m.If(inj_sat1):
                    m.d.comb += [pb.eq(cfg.beta_raw * lam_lo), pg.eq(cfg.kgamma_raw * lam_lo)]
                with m.Else():
                    m.d.comb += [pb.eq(p_beta - cfg.beta_raw * r_raw),
                                 pg.eq(p_gamma - cfg.kgamma_raw * r_raw)]
        lam_v2 = Signal(signed(cfg.lam_bits))
        lam_i_wide = Signal(signed(len(p_gamma) + 2 - cf))
        inj_sat2 = Signal()
        m.d.sync += [lam_i_wide.eq(rnd(pg + p_alpha, cf, mode)), inj_sat2.eq(inject1 & inj_sat1)]
        with (m.If(valid1) if cfg.build is Build.AREA else contextlib.nullcontext()):
            m.d.sync += lam_v2.eq(rnd(pb, cf, mode))

        # Stage 3: saturate V, threshold (on the unsaturated value: same verdict, since
        # 0 < θ <= V_max), reset, fan-in add and saturate I.
        v_new, v_sat = sat(v_wide, cfg.v_bits)
        v_new_s = Signal(signed(cfg.v_bits))
        m.d.comb += v_new_s.eq(v_new)
        spike = v_wide >= cfg.theta_v_raw
        i_new, i_sat = sat(i_dec + acc2, cfg.i_bits)
        lam_i_new, lam_i_sat = sat(lam_i_wide, cfg.lam_bits)
        if cfg.build is Build.AREA:
            # Λ_V' and I⁻ are stage 2's registers themselves, loaded with their neuron and held
            # until the next neuron's stage 2, three cycles on, past this neuron's output cycle (a
            # copy would cost a logic cell per bit on iCE40: a flip-flop fed by a flip-flop).
            m.d.comb += [self.o.p.lam_v.eq(lam_v2), self.o.p.cur_dec.eq(i_dec)]
        else:
            m.d.sync += [self.o.p.lam_v.eq(lam_v2), self.o.p.cur_dec.eq(i_dec)]
        m.d.sync += [
            self.o.p.lam_i.eq(lam_i_new),
            self.o.p.lam_sat.eq(bwd2 & (lam_i_sat | inj_sat2)),
            self.o.valid.eq(valid2),
            self.o.p.v.eq(Mux(spike, 0, v_new_s)),
            self.o.p.v_pre.eq(v_new_s),
            self.o.p.cur.eq(i_new),
            self.o.p.spike.eq(spike & ~bwd2),
            self.o.p.v_sat.eq(v_sat & ~bwd2),
            self.o.p.i_sat.eq(i_sat & ~bwd2),
        ]
        return m
