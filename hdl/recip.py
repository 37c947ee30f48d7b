"""Reciprocal unit (docs/core.md §2.3), built from a `CoreConfig` alone.

The RTL twin of `evcore.golden.ops.recip`: 1/d ~= y * 2**-(R + e) for an integer d >= 1, one
input per cycle, fixed latency `recip_latency` (4, or 5 with ``ram_read_regs``), no back-pressure.
"""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from evcore.golden.config import CoreConfig, RoundingMode

from .lif import rnd
from .mul import mul_ports

__all__ = ["Recip", "recip_latency", "recip_out_layout", "recip_ports", "use_recip", "eps_t_bits"]


def recip_out_layout(cfg: CoreConfig, d_bits: int) -> data.StructLayout:
    """y: the R-bit mantissa of 1/d; e: bitlength(d) - 1, so that 1/d ~= y * 2**-(R + e)."""
    return data.StructLayout({"y": unsigned(cfg.recip_bits), "e": range(d_bits)})


def _recip_streams(cfg: CoreConfig, d_bits: int) -> tuple[stream.Signature, stream.Signature]:
    """The signatures of `Recip`'s input (d) and output ((y, e)) streams."""
    return (stream.Signature(unsigned(d_bits), always_ready=True),
            stream.Signature(recip_out_layout(cfg, d_bits), always_ready=True))


def recip_ports(cfg: CoreConfig, d_bits: int | None, *, need: int, owner: str, what: str) -> dict:
    """The members of a unit that borrows a `Recip` from its parent instead of holding one (the
    loss unit and the jump unit run in different phases and share the core's, docs/core.md §8):
    ``recip_d`` drives the reciprocal's input, ``recip_q`` receives its output. None: no members
    (the unit holds its own). `need` is the width of the unit's d (`what`); a narrower shared unit is an
    error."""
    if d_bits is None:
        return {}
    if d_bits < need:
        raise ValueError(f"{owner}: recip_d_bits = {d_bits} < {need} ({what})")
    d_sig, q_sig = _recip_streams(cfg, d_bits)
    return {"recip_d": Out(d_sig), "recip_q": In(q_sig)}


def use_recip(m: Module, unit: wiring.Component, cfg: CoreConfig, d_bits: int):
    """(input, output) streams of the reciprocal `unit` uses: its ``recip_d`` / ``recip_q`` members
    when it has them (shared), else those of a `Recip` of its own, added to `m` as ``recip``."""
    if "recip_d" in unit.signature.members:
        return unit.recip_d, unit.recip_q
    m.submodules.recip = recip = Recip(cfg, d_bits)
    return recip.i, recip.o


def _eps_t_range(cfg: CoreConfig) -> tuple[int, int]:
    """Exact (min, max) of the truncated Newton residual eps_t over every mantissa (sizes its word)."""
    r, k = cfg.recip_bits, cfg.recip_seed_bits
    mant = np.arange(1 << (r - 1), 1 << r, dtype=np.int64)
    y0 = cfg.recip_rom[(mant >> (r - 1 - k)) - (1 << k)]
    eps_t = ((1 << (2 * r - 1)) - mant * y0) >> cfg.recip_eps_shift
    return int(eps_t.min()), int(eps_t.max())


def eps_t_bits(cfg: CoreConfig) -> int:
    """Signed width of the truncated residual eps_t, the second Newton product's operand."""
    lo, hi = _eps_t_range(cfg)
    return max(Shape.cast(range(lo, hi + 1)).width, 2)


def _leading_one(bits):
    """(any bit set, index of the highest set bit) of a Value, as a balanced tree of muxes."""
    if len(bits) == 1:
        return bits[0], Const(0, 0)
    half = 1 << ((len(bits) - 1).bit_length() - 1)  # low part: a power of two, >= the high part
    lg = half.bit_length() - 1
    any_lo, idx_lo = _leading_one(bits[:half])
    any_hi, idx_hi = _leading_one(bits[half:])
    # idx_hi < half: half + idx_hi is a concatenation, not an adder.
    return any_lo | any_hi, Mux(any_hi, Cat(idx_hi, Const(0, lg - len(idx_hi)), Const(1, 1)), idx_lo)


def recip_latency(cfg: CoreConfig) -> int:
    """Cycles from a d to its (y, e): 4, and 5 with ``ram_read_regs`` (§8: the leading-one
    detector and shifter get a stage of their own, before the seed ROM)."""
    return 4 + cfg.ram_read_regs


class Recip(wiring.Component):
    """§2.3 for one d per cycle: leading-one detector, normalise, seed ROM, one Newton step, clamp.

    Stages (each ends in a register; ``latency`` = 4 cycles from ``i.valid`` to ``o.valid``, 5
    with ``ram_read_regs``, where stage 1 ends in a register before the ROM read as well):

    1. leading-one detector (a balanced tree) e = bitlength(d) - 1, mantissa
       m = d * 2**(R-1-e) (truncated), the seed ROM read addressed by the k bits below m's
       leading one (a synchronous block-RAM read);
    2. p1 = m * y0 (16x16 product, registered);
    3. eps_t = (2**(2R-1) - p1) >> (R-k+1), only its low bits (|eps| is small), and
       p2 = y0 * eps_t (16x16 product, registered);
    4. y = min(y0 + rnd_half_up(p2, 2R-1-(R-k+1)), 2**R - 1).

    With ``mul_lane`` (docs/core.md §8, "Shared multipliers") the two products are taken from a
    borrowed multiplier (`hdl.mul`: ``mul.req`` in stages 2 and 3), so inputs must then come at
    least 2 cycles apart.

    Members
    -------
    i : ``In(stream.Signature(unsigned(d_bits), always_ready=True))``, d >= 1 (d = 0: undefined)
    o : ``Out(stream.Signature(recip_out_layout(cfg, d_bits), always_ready=True))``
    mul : ``Out(mul_signature(*mul_lane))``, only with ``mul_lane``
    """

    @staticmethod
    def mul_need(cfg: CoreConfig) -> tuple[int, int]:
        """Signed operand widths of the two products: a mantissa or y0 (R bits unsigned), and
        y0 or the residual."""
        return cfg.recip_bits + 1, max(cfg.recip_bits + 1, eps_t_bits(cfg))

    def __init__(self, cfg: CoreConfig, d_bits: int, *, mul_lane: tuple[int, int] | None = None):
        if d_bits < 1:
            raise ValueError(f"Recip: d_bits = {d_bits} must be >= 1")
        self._cfg = cfg
        self.d_bits = d_bits
        #: Cycles from ``i.valid`` to ``o.valid`` (`recip_latency`).
        self.latency = recip_latency(cfg)
        d_sig, q_sig = _recip_streams(cfg, d_bits)
        super().__init__({"i": In(d_sig), "o": Out(q_sig),
                          **mul_ports(mul_lane, need=self.mul_need(cfg), owner="Recip")})

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        r, k, sh = cfg.recip_bits, cfg.recip_seed_bits, cfg.recip_eps_shift
        d = self.i.p

        # Stage 1: leading-one detector as a balanced tree (log depth, not a priority chain).
        e_comb = Signal(range(self.d_bits))
        m.d.comb += e_comb.eq(_leading_one(d)[1])
        # m = floor(d * 2**(R-1-e)) covers both cases of §2.3 step 2 in one shifter.
        mant_comb = Signal(r)
        m.d.comb += mant_comb.eq((d << (r - 1)) >> e_comb)
        valid_in = self.i.valid
        if cfg.ram_read_regs:
            # §8: the detector and shifter end in a register of their own, before the seed ROM.
            mant_0, e_0, valid_0 = Signal(r), Signal.like(e_comb), Signal()
            m.d.sync += [mant_0.eq(mant_comb), e_0.eq(e_comb), valid_0.eq(valid_in)]
            mant_comb, e_comb, valid_in = mant_0, e_0, valid_0
        m.submodules.seed_rom = rom = memory.Memory(
            shape=unsigned(r), depth=1 << k, init=[int(v) for v in cfg.recip_rom]
        )
        seed = rom.read_port()
        m.d.comb += seed.addr.eq(mant_comb[r - 1 - k : r - 1])
        mant1 = Signal(r)
        e1 = Signal.like(e_comb)
        valid1 = Signal()
        m.d.sync += [mant1.eq(mant_comb), e1.eq(e_comb), valid1.eq(valid_in)]
        y0_1 = seed.data

        # Stage 2: the first product (exact, 2R bits).
        p1 = Signal(2 * r)
        y0_2 = Signal(r)
        e2 = Signal.like(e_comb)
        valid2 = Signal()
        shared = "mul" in self.signature.members

        def stage(valid, product, own_product, carried):
            """One product stage: its own multiplier, or the borrowed one's product loaded only with
            the stage's input (flip-flop enables: the lane serves others in between, and a held d
            must still hold (y, e), as the loss unit needs)."""
            if shared:
                with m.If(valid):
                    m.d.sync += [product.eq(self.mul.p), *carried]
            else:
                m.d.sync += [product.eq(own_product), *carried]

        stage(valid1, p1, mant1 * y0_1, [y0_2.eq(y0_1), e2.eq(e1)])
        m.d.sync += valid2.eq(valid1)

        # Stage 3: residual and the second product. eps = 2**(2R-1) - p1 is exact and small, so
        # its low bits suffice (2**(2R-1) vanishes modulo 2**eps_bits): a negation, no wide adder.
        et_bits = eps_t_bits(cfg)
        eps_bits = et_bits + sh
        assert eps_bits <= 2 * r - 1, "the residual word must not reach 2**(2R-1)"
        eps = Signal(signed(eps_bits))
        m.d.comb += eps.eq(-p1[:eps_bits])
        eps_t = Signal(signed(et_bits))
        m.d.comb += eps_t.eq(eps >> sh)
        p2 = Signal(signed(r + et_bits))
        y0_3 = Signal(r)
        e3 = Signal.like(e_comb)
        valid3 = Signal()
        stage(valid2, p2, y0_2 * eps_t, [y0_3.eq(y0_2), e3.eq(e2)])
        m.d.sync += valid3.eq(valid2)
        if shared:
            # Stage 2's product m·y0, else stage 3's y0·eps_t (one input per 2 cycles at most).
            m.d.comb += [self.mul.req.eq(valid1 | valid2),
                         self.mul.a.eq(Mux(valid1, mant1, y0_2)),
                         self.mul.b.eq(Mux(valid1, y0_1, eps_t))]

        # Stage 4: Newton update (always half up: §2.3 names the rounding), clamp to R bits.
        y1 = Signal(signed(r + 2))
        m.d.comb += y1.eq(y0_3 + rnd(p2, 2 * r - 1 - sh, RoundingMode.HALF_UP))
        y_max = (1 << r) - 1
        m.d.sync += [
            self.o.p.y.eq(Mux(y1 > y_max, y_max, y1)),
            self.o.p.e.eq(e3),
            self.o.valid.eq(valid3),
        ]
        return m
