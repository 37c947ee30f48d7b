"""Jump unit of the backward pass (docs/core.md §5.3), built from a `CoreConfig` alone.

The RTL twin of `evcore.golden.adjoint.jump`: from a spiking neuron's Λ_V, the exact error sum of
its replay MAC (or an output's injected loss term, shifted into the weight format) and the current
I⁻ of its spike, the new Λ_V. The MAC itself and the gradient accumulation run in the core's replay
phase (`hdl.core`), which owns the synapse memory; the propagation sweep is `hdl.lif.LifUnit`'s
backward mode.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from evcore.golden.config import Build, CoreConfig, RoundingMode

from .lif import rnd, sat, sat_by_bits
from .mul import mul_ports
from .recip import recip_latency, recip_ports, use_recip

__all__ = ["JumpUnit", "jump_in_layout", "jump_out_layout", "err_bits", "jump_latency", "jump_shift_cycles"]


def err_bits(cfg: CoreConfig) -> int:
    """Width of the replay MAC's exact sum θ̂_w Λ̂_V + Σ_k ŵ_ki D̂_k (and of L̂ << f_w), signed."""
    terms = max(cfg.sizes[2:]) + 1  # the fan-out of a hidden neuron, plus the θ term
    return cfg.w_bits + cfg.lam_bits - 1 + terms.bit_length() + 1


def jump_in_layout(cfg: CoreConfig) -> data.StructLayout:
    """Λ_V of the spiking neuron, the MAC sum without the θ term, I⁻ of the spike, the matrix m."""
    return data.StructLayout({
        "lam_v": signed(cfg.lam_bits), "err": signed(err_bits(cfg)), "cur": signed(cfg.i_bits),
        "mat": range(cfg.n_layers),
    })  # fmt: skip


def jump_out_layout(cfg: CoreConfig) -> data.StructLayout:
    """The new Λ_V and the flags the jump raised."""
    return data.StructLayout({"lam_v": signed(cfg.lam_bits), "lam_sat": 1, "recip_clamp": 1})


def rnd_var(x, s, s_minus_1, mode: RoundingMode):
    """§1.2 with a shift held in a signal (s >= 1 for every use here; s − 1 given beside it so
    that no shift amount is an expression): x * 2**-s rounded."""
    if mode is RoundingMode.HALF_UP:
        return (x + (Const(1, 1) << s_minus_1)) >> s
    return x >> s


def jump_shift_cycles(cfg: CoreConfig) -> int:
    """The area build's serial shift of N̂·y (docs/core.md §5.5): one bit per cycle for as many
    cycles as the largest shift, R + e − f_I with e the leading-one position of the largest d̂ =
    max(I_max − θ̂_I, d̂_min), one fewer with half up (it shifts s − 1, then rounds); 0 otherwise."""
    if cfg.build is not Build.AREA:
        return 0
    e_max = max(cfg.i_fmt.max_raw - cfg.theta_i_raw, cfg.recip_min_raw).bit_length() - 1
    return e_max + cfg.recip_bits - cfg.i_frac - (cfg.state_rounding is RoundingMode.HALF_UP)


def jump_latency(cfg: CoreConfig) -> int:
    """Cycles from ``i.valid`` to ``o.valid``: the numerator, the reciprocal, the product, the
    shift-add; with ``ram_read_regs`` (§8) also the input register (its inputs come from the state
    and record memories), the θ product apart from the add, and the shift apart from the add; in
    the area build the serial shift (`jump_shift_cycles`)."""
    return recip_latency(cfg) + 2 + 4 * cfg.ram_read_regs + jump_shift_cycles(cfg)


class JumpUnit(wiring.Component):
    """§5.3 for one jump: numerator, clamped difference I⁻ − θ, reciprocal, product, saturation.

    Stages: (with ``cfg.ram_read_regs``) the registered inputs; (0) numerator
    N̂ = sat(rnd(θ̂_w Λ̂_V + Ŝ, f_w)) and d̂ = max(I⁻ − θ̂_I, d̂_min) into the reciprocal unit;
    (1 .. recip_latency) the reciprocal, with N̂ and Λ̂_V carried beside it; the
    product N̂·y; the variable shift by R + e − f_I, the add and the saturation. Fixed latency
    `latency` from ``i.valid`` to ``o.valid``; one jump may enter per cycle, or with ``mul_lane``
    (both products on a borrowed multiplier, docs/core.md §8) one jump at a time.

    Members
    -------
    i : ``In(stream.Signature(jump_in_layout(cfg), always_ready=True))``
    o : ``Out(stream.Signature(jump_out_layout(cfg), always_ready=True))``
    mul : ``Out(mul_signature(*mul_lane))``, only with ``mul_lane``
    """

    @staticmethod
    def recip_bits(cfg: CoreConfig) -> int:
        """Width of d̂ = I⁻ − θ̂_I in [d̂_min, I_max + |θ̂_I|], the reciprocal's input: one bit more than I."""
        return cfg.i_bits + 1

    @staticmethod
    def mul_need(cfg: CoreConfig) -> tuple[int, int]:
        """Signed operand widths of the two products: θ̂_w or y (R bits unsigned), and Λ̂_V or N̂."""
        return max(cfg.w_bits + 1, cfg.recip_bits + 1), cfg.lam_bits

    def __init__(self, cfg: CoreConfig, *, recip_d_bits: int | None = None,
                 mul_lane: tuple[int, int] | None = None):
        self._cfg = cfg
        if mul_lane is not None and cfg.ram_read_regs:
            raise ValueError("JumpUnit: a borrowed multiplier (mul_lane) needs ram_read_regs = 0")
        if cfg.build is Build.AREA and mul_lane is None:
            # The serial shift holds one jump at a time, as the lane does.
            raise ValueError("JumpUnit: the area build's jump takes its products on a borrowed multiplier "
                             "(mul_lane)")
        #: Cycles from ``i.valid`` to ``o.valid`` (`jump_latency`).
        self.latency = jump_latency(cfg)
        super().__init__({
            **recip_ports(cfg, recip_d_bits, need=self.recip_bits(cfg), owner="JumpUnit", what="d̂'s width"),
            **mul_ports(mul_lane, need=self.mul_need(cfg), owner="JumpUnit"),
            "i": In(stream.Signature(jump_in_layout(cfg), always_ready=True)),
            "o": Out(stream.Signature(jump_out_layout(cfg), always_ready=True)),
        })  # fmt: skip

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        recip_i, recip_o = use_recip(m, self, cfg, self.recip_bits(cfg))
        mode = cfg.state_rounding
        split = cfg.ram_read_regs  # §8: the ECP5 build splits the wide stages (jump_latency)
        shared = "mul" in self.signature.members  # §8: the products on the core's lane
        p, valid = self.i.p, self.i.valid
        theta_w = Array(Const(cfg.theta_w_raw(l), cfg.w_bits + 1) for l in range(cfg.n_layers))
        if cfg.ram_read_regs:
            # §8: Λ_V and I⁻ come straight from block RAM; register them before the arithmetic,
            # and θ̂_w of the matrix with them (no mux in front of the multiplier).
            p_r, valid_r, theta_r = Signal.like(p), Signal(), Signal(cfg.w_bits + 1)
            m.d.sync += [p_r.eq(p), valid_r.eq(valid), theta_r.eq(theta_w[p.mat])]
            p, valid = p_r, valid_r

        # Stage 0: numerator (exact MAC sum with the θ term, one rounding, saturation) and d̂.
        x = Signal(signed(err_bits(cfg) + 1 + split))  # split: the rounding constant is in already
        d = Signal(signed(cfg.i_bits + 2))
        m.d.comb += d.eq(p.cur - cfg.theta_i_raw)
        d_in = Signal(cfg.i_bits + 1)
        clamp = Signal()
        m.d.comb += [clamp.eq(d < cfg.recip_min_raw),
                     d_in.eq(Mux(clamp, cfg.recip_min_raw, d[: cfg.i_bits + 1]))]
        if split:
            # (0a) θ̂_w·Λ̂_V in its own stage (a multiplier and its partial-product adder), the MAC
            # sum with the rounding constant beside it, d̂ clamped: (0b) is then one add, constant
            # shifts and the saturation. rnd(x, s) = (x + 2^(s−1)) >> s, so the constant joins Ŝ.
            def half(l):
                s_l = cfg.w_frac[l]
                return (1 << (s_l - 1)) if mode is RoundingMode.HALF_UP and s_l >= 1 else 0

            half_a = Array(Const(half(l), cfg.w_frac[l] + 1) for l in range(cfg.n_layers))
            prod_t = Signal(signed(cfg.w_bits + 1 + cfg.lam_bits), name="prod_theta")
            err_h = Signal(signed(err_bits(cfg) + 1))
            d_r, clamp_r, mat_r, lam_r, valid_a = (Signal.like(d_in), Signal(), Signal.like(p.mat),
                                                    Signal.like(p.lam_v), Signal())
            m.d.sync += [prod_t.eq(theta_r * p.lam_v), err_h.eq(p.err + half_a[p.mat]),
                         d_r.eq(d_in), clamp_r.eq(clamp), mat_r.eq(p.mat), lam_r.eq(p.lam_v),
                         valid_a.eq(valid)]
            m.d.comb += x.eq(prod_t + err_h)
            num_wide = Signal(signed(len(x)))
            with m.Switch(mat_r):
                for l in range(cfg.n_layers):
                    with m.Case(l):
                        f_w = cfg.w_frac[l]
                        m.d.comb += num_wide.eq(x >> f_w if f_w > 0 else x << -f_w)
            num, num_sat = sat_by_bits(num_wide, cfg.lam_bits)
            lam_b, clamp_b, valid_b, d_b = lam_r, clamp_r, valid_a, d_r
        else:
            # θ̂_w·Λ̂_V from the lane when shared (its operands below).
            m.d.comb += x.eq((self.mul.p if shared else theta_w[p.mat] * p.lam_v) + p.err)
            num_wide = Signal(signed(len(x)))
            with m.Switch(p.mat):
                for l in range(cfg.n_layers):
                    with m.Case(l):
                        m.d.comb += num_wide.eq(rnd(x, cfg.w_frac[l], mode))
            num, num_sat = sat(num_wide, cfg.lam_bits)
            lam_b, clamp_b, valid_b, d_b = p.lam_v, clamp, valid, d_in
        m.d.comb += [recip_i.valid.eq(valid_b), recip_i.p.eq(d_b)]
        # N̂, Λ̂_V, the flags and the valid bit travel beside the reciprocal (a shared reciprocal's
        # own valid also marks the loss unit's input).
        carried = data.StructLayout({"num": signed(cfg.lam_bits), "lam_v": signed(cfg.lam_bits),
                                     "lam_sat": 1, "recip_clamp": 1, "valid": 1})
        first = Signal(carried, name="carry0")
        if shared:
            # One jump in flight (the core spaces them cyc_jump > latency cycles apart): its fields
            # are held in one register from stage 0 to the output, only the valid bit is delayed.
            with m.If(valid_b):
                m.d.sync += [first.num.eq(num), first.lam_v.eq(lam_b), first.lam_sat.eq(num_sat),
                             first.recip_clamp.eq(clamp_b)]
            m.d.sync += first.valid.eq(valid_b)
            delayed = first.valid
            for n in range(1, recip_latency(cfg)):
                nxt = Signal(name=f"carry{n}_valid")
                m.d.sync += nxt.eq(delayed)
                delayed = nxt
            c = Signal(carried, name="carried")
            m.d.comb += [c.eq(first), c.valid.eq(delayed)]
        else:
            chain = [first, *(Signal(carried, name=f"carry{n}") for n in range(1, recip_latency(cfg)))]
            m.d.sync += [first.num.eq(num), first.lam_v.eq(lam_b), first.lam_sat.eq(num_sat),
                         first.recip_clamp.eq(clamp_b), first.valid.eq(valid_b)]
            for a, b in zip(chain, chain[1:]):
                m.d.sync += b.eq(a)
            c = chain[-1]

        # Product N̂·y (exact), then the variable shift R + e − f_I (>= 1, config-checked), add, saturate.
        prod = Signal(signed(cfg.lam_bits + cfg.recip_bits + 1))
        shift = Signal(range(cfg.recip_bits + cfg.i_bits + 2))
        shift_m1 = Signal.like(shift)
        lam_v2, flags2 = Signal.like(c.lam_v), Signal(2)
        valid2 = Signal()
        if shared:
            # The product stage N̂·y while its jump is there, else stage 0's θ̂_w·Λ̂_V: one jump in
            # flight at a time (the core spaces them cyc_jump cycles apart).
            m.d.comb += [self.mul.req.eq(valid_b | c.valid),
                         self.mul.a.eq(Mux(c.valid, recip_o.p.y, theta_w[p.mat])),
                         self.mul.b.eq(Mux(c.valid, c.num, p.lam_v))]
        serial = jump_shift_cycles(cfg)
        if serial:
            # Area build: N̂·y shifts right one bit per cycle (arithmetic: floor of a halving, so k
            # of them are the shift by k) while `rem` lasts, for a fixed `serial` cycles; half up
            # stops one bit early and rounds the last bit, ((x >> (s − 1)) + 1) >> 1.
            first_shift = cfg.recip_bits - cfg.i_frac - (mode is RoundingMode.HALF_UP)
            rem = Signal(range(serial + 1))
            left = Signal(range(serial + 2))
            with m.If(c.valid):
                m.d.sync += [prod.eq(self.mul.p), rem.eq(recip_o.p.e + first_shift), left.eq(serial + 1)]
            with m.Elif(left != 0):
                m.d.sync += left.eq(left - 1)
                with m.If(rem != 0):
                    m.d.sync += [prod.eq(prod >> 1), rem.eq(rem - 1)]
            m.d.comb += valid2.eq(left == 1)
        else:
            m.d.sync += [
                prod.eq(self.mul.p if shared else c.num * recip_o.p.y),
                shift.eq(recip_o.p.e + (cfg.recip_bits - cfg.i_frac)),
                shift_m1.eq(recip_o.p.e + (cfg.recip_bits - cfg.i_frac - 1)),
                valid2.eq(c.valid),
            ]
        if shared:  # still held (see above)
            m.d.comb += [lam_v2.eq(c.lam_v), flags2.eq(Cat(c.lam_sat, c.recip_clamp))]
        else:
            m.d.sync += [lam_v2.eq(c.lam_v), flags2.eq(Cat(c.lam_sat, c.recip_clamp))]
        if split:
            # The shifter, the rounding add and the final add each get a stage: half up is
            # ((x >> (s − 1)) + 1) >> 1, exactly (x + 2^(s−1)) >> s.
            t = Signal(signed(len(prod)))
            u = Signal(signed(len(prod)))
            lam_v3, flags3, valid3 = Signal.like(lam_v2), Signal(2), Signal()
            lam_v4, flags4, valid4 = Signal.like(lam_v2), Signal(2), Signal()
            m.d.sync += [t.eq(prod >> (shift_m1 if mode is RoundingMode.HALF_UP else shift)),
                         lam_v3.eq(lam_v2), flags3.eq(flags2), valid3.eq(valid2)]
            m.d.sync += [u.eq((t + 1) >> 1 if mode is RoundingMode.HALF_UP else t),
                         lam_v4.eq(lam_v3), flags4.eq(flags3), valid4.eq(valid3)]
            sum_w = Signal(signed(max(len(u), cfg.lam_bits) + 1))
            m.d.comb += sum_w.eq(lam_v4 + u)
            out, out_sat = sat_by_bits(sum_w, cfg.lam_bits)
            lam_sat_in, clamp_in, valid_out = flags4[0], flags4[1], valid4
        else:
            if serial:
                shifted = (prod + 1) >> 1 if mode is RoundingMode.HALF_UP else prod
            else:
                shifted = rnd_var(prod, shift, shift_m1, mode)
            out, out_sat = sat(lam_v2 + shifted, cfg.lam_bits)
            lam_sat_in, clamp_in, valid_out = flags2[0], flags2[1], valid2
        m.d.sync += [
            self.o.valid.eq(valid_out),
            self.o.p.lam_v.eq(out),
            self.o.p.lam_sat.eq(lam_sat_in | out_sat),
            self.o.p.recip_clamp.eq(clamp_in),
        ]
        return m

