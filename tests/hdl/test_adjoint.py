# amaranth: UnusedElaboratable=no
"""`evcore.hdl.adjoint.JumpUnit` in the Amaranth simulator against `evcore.golden.adjoint.jump`.

One jump per cycle streamed through the unit, compared bit for bit at its output `latency`
cycles later: seeded random adjoints, error sums and currents of every magnitude, plus the named
edges of §5.3: I⁻ at, just above and below θ (RECIP_CLAMP), the rails of Λ and of the error sum
(LAM_SAT in the numerator and in the result), zero. Also on the shared multiplier lane (§8),
one jump at a time.
"""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Mux, Signal
from amaranth.sim import Simulator

from evcore.golden.adjoint import jump
from evcore.golden.config import Build, CoreConfig, Flag
from evcore.golden.ops import pack_params
from evcore.hdl.adjoint import JumpUnit, err_bits
from evcore.hdl.mul import lane_bits
from evcore.hdl.recip import Recip


def golden_jump(cfg, P, lam_v, err, cur, mat):
    out, flags = jump(P, cfg.recip_rom, np.int64(lam_v), np.int64(cfg.theta_w_raw(mat)), np.int64(err),
                      np.int64(cfg.w_frac[mat]), np.int64(cur))
    return {"lam_v": int(out), "lam_sat": int(bool(flags & Flag.LAM_SAT)),
            "recip_clamp": int(bool(flags & Flag.RECIP_CLAMP))}


class SharedRecipJump(Elaboratable):
    """A JumpUnit on a Recip it shares, as in the core, with another user that drives the
    reciprocal (valid high, its own d) whenever ``other`` is high."""

    def __init__(self, cfg, d_bits):
        self.jump = JumpUnit(cfg, recip_d_bits=d_bits)
        self.recip = Recip(cfg, d_bits)
        self.other, self.other_d = Signal(), Signal(d_bits)

    def elaborate(self, platform):
        m = Module()
        m.submodules.jump, m.submodules.recip = jmp, rcp = self.jump, self.recip
        m.d.comb += [rcp.i.p.eq(Mux(self.other, self.other_d, jmp.recip_d.p)),
                     rcp.i.valid.eq(self.other | jmp.recip_d.valid),
                     jmp.recip_q.p.eq(rcp.o.p), jmp.recip_q.valid.eq(rcp.o.valid)]
        return m


class LaneJump(Elaboratable):
    """A JumpUnit and its Recip on one borrowed multiplier, the core's lane (§8): the reciprocal
    has it when it asks, the jump otherwise."""

    def __init__(self, cfg):
        d_bits = JumpUnit.recip_bits(cfg)
        lane = lane_bits(JumpUnit.mul_need(cfg), Recip.mul_need(cfg))
        self.jump = JumpUnit(cfg, recip_d_bits=d_bits, mul_lane=lane)
        self.recip = Recip(cfg, d_bits, mul_lane=lane)

    def elaborate(self, platform):
        m = Module()
        m.submodules.jump, m.submodules.recip = jmp, rcp = self.jump, self.recip
        a = Mux(rcp.mul.req, rcp.mul.a, jmp.mul.a)
        b = Mux(rcp.mul.req, rcp.mul.b, jmp.mul.b)
        m.d.comb += [rcp.i.p.eq(jmp.recip_d.p), rcp.i.valid.eq(jmp.recip_d.valid),
                     jmp.recip_q.p.eq(rcp.o.p), jmp.recip_q.valid.eq(rcp.o.valid),
                     rcp.mul.p.eq(a * b), jmp.mul.p.eq(a * b)]
        return m


def rtl_jumps(cfg, cases, shared_d_bits=None, lane=False):
    """The unit's outputs for `cases`, one per cycle; with `shared_d_bits` the unit borrows a
    reciprocal of that width that another user drives in a cycle between any two jumps; with
    `lane` it and its reciprocal borrow one multiplier, and the jumps come one at a time."""
    top = SharedRecipJump(cfg, shared_d_bits) if shared_d_bits else LaneJump(cfg) if lane else None
    dut = top.jump if top else JumpUnit(cfg)
    gap = 1 if shared_d_bits else 0
    if lane:
        gap = dut.latency  # one jump in flight
    got = []

    async def drive(ctx):
        for n, (lam_v, err, cur, mat) in enumerate(cases):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.p, {"lam_v": lam_v, "err": err, "cur": cur, "mat": mat})
            await ctx.tick()
            if gap:
                ctx.set(dut.i.valid, 0)
            if shared_d_bits:
                ctx.set(top.other, 1)
                ctx.set(top.other_d, 1 + (n * 7919) % ((1 << shared_d_bits) - 1))
                await ctx.tick()
                ctx.set(top.other, 0)
            elif gap:
                await ctx.tick().repeat(gap)
        ctx.set(dut.i.valid, 0)

    async def collect(ctx):
        await ctx.tick().repeat(dut.latency)
        for _ in cases:
            assert ctx.get(dut.o.valid)
            p = ctx.get(dut.o.p)
            got.append({"lam_v": int(p.lam_v), "lam_sat": int(p.lam_sat), "recip_clamp": int(p.recip_clamp)})
            await ctx.tick()
            for _ in range(gap):  # the other user's reciprocal is no jump
                assert not ctx.get(dut.o.valid)
                await ctx.tick()
        for _ in range(2 * dut.latency + 2):  # and nothing after the last jump
            assert not ctx.get(dut.o.valid)
            await ctx.tick()

    sim = Simulator(top or dut)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.add_testbench(collect)
    sim.run()
    return got


CONFIGS = [
    pytest.param(CoreConfig.up5k(), id="up5k"),
    pytest.param(CoreConfig.up5k(state_rounding="floor", sizes=(4, 12, 6, 3), w_frac=(11, 12, 10),
                                 lr_mant=(1, 1, 1), lr_shift=(1, 1, 1), silent_threshold=(1.0,) * 3),
                 id="floor-2hidden"),
    pytest.param(CoreConfig.ecp5_85f(), id="ecp5-85f"),
    # The split stages of ram_read_regs (§8) with floor rounding: the constants of half up are gone.
    pytest.param(CoreConfig.ecp5_85f(state_rounding="floor", sizes=(4, 12, 6, 3), w_frac=(13, 14, 12),
                                      lr_mant=(1, 1, 1), lr_shift=(1, 1, 1), silent_threshold=(1.0,) * 3),
                 id="floor-2hidden-split"),
]


#: The area build (§8): the product's shift is serial, one bit per cycle (lane only).
AREA_CONFIGS = [
    pytest.param(CoreConfig.up5k(build="area", cyc_neuron=3, cyc_update_word=43, cyc_jump=29),
                 id="up5k-area"),
    # Floor rounding (the whole shift serial) and f_I = 15 (R − f_I = 1: a shift's constant part).
    pytest.param(CoreConfig.up5k(build="area", cyc_neuron=3, cyc_update_word=43, cyc_jump=32, i_frac=15,
                                 state_rounding="floor", sizes=(4, 12, 6, 3), w_frac=(11, 12, 10),
                                 lr_mant=(1, 1, 1), lr_shift=(1, 1, 1), silent_threshold=(1.0,) * 3),
                 id="floor-2hidden-area"),
]


@pytest.mark.parametrize("shared", [False, True, "lane"], ids=["own-recip", "shared-recip", "lane"])
@pytest.mark.parametrize("cfg", CONFIGS + AREA_CONFIGS)
def test_jump_unit(cfg, shared):
    """Bit for bit against golden; with a shared reciprocal (the core's, §8) wider than d̂ and
    driven by another user between the jumps, the same results and no extra output; on the
    shared multiplier lane (§8, ram_read_regs = 0 only) the same."""
    if shared == "lane" and cfg.ram_read_regs:
        msg = r"^JumpUnit: a borrowed multiplier \(mul_lane\) needs ram_read_regs = 0$"
        with pytest.raises(ValueError, match=msg):
            JumpUnit(cfg, mul_lane=JumpUnit.mul_need(cfg))
        return
    if shared != "lane" and cfg.build is Build.AREA:
        msg = r"^JumpUnit: the area build's jump takes its products on a borrowed multiplier \(mul_lane\)$"
        with pytest.raises(ValueError, match=msg):
            JumpUnit(cfg, recip_d_bits=JumpUnit.recip_bits(cfg) + 3 if shared else None)
        return
    P = pack_params(cfg)
    rng = np.random.default_rng(3)
    lam_hi = (1 << (cfg.lam_bits - 1)) - 1
    e_bits = err_bits(cfg) - 2  # the error sums a MAC can produce stay well inside the word
    i_hi = (1 << (cfg.i_bits - 1)) - 1
    th, dmin = cfg.theta_i_raw, cfg.recip_min_raw

    def word(bits):
        return int(rng.integers(-(1 << (bits - 1)), 1 << (bits - 1))) >> int(rng.integers(0, bits))

    mats = range(cfg.n_layers)
    cases = []
    for mat in mats:
        for cur in (th, th + dmin - 1, th + dmin, th + dmin + 1, i_hi, -i_hi - 1, th + 1, 0):
            for lam_v, err in ((0, 0), (lam_hi, 0), (-lam_hi - 1, 0), (0, (1 << e_bits) - 1),
                               (0, -(1 << e_bits)), (1, 1), (-lam_hi - 1, -(1 << e_bits))):
                cases.append((lam_v, err, cur, mat))
    for _ in range(400):
        cur = th + dmin + word(cfg.i_bits - 1) if rng.random() < 0.8 else word(cfg.i_bits)
        cur = max(-i_hi - 1, min(i_hi, cur))
        cases.append((word(cfg.lam_bits), word(e_bits), cur, int(rng.integers(0, cfg.n_layers))))
    want = [golden_jump(cfg, P, *c) for c in cases]
    if shared == "lane":
        got = rtl_jumps(cfg, cases, lane=True)
    else:
        got = rtl_jumps(cfg, cases, JumpUnit.recip_bits(cfg) + 3 if shared else None)
    for c, w, g in zip(cases, want, got, strict=True):
        assert g == w, f"(lam_v, err, cur, mat) = {c}: golden {w} rtl {g}"
    assert any(w["recip_clamp"] for w in want) and any(w["lam_sat"] for w in want), "coverage"
    assert not all(w["recip_clamp"] for w in want)


def test_shared_recip_too_narrow_is_one_line():
    cfg = CoreConfig.up5k()
    with pytest.raises(ValueError, match=r"^JumpUnit: recip_d_bits = 24 < 25 "):
        JumpUnit(cfg, recip_d_bits=cfg.i_bits)
