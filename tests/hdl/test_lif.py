"""`evcore.hdl.lif.LifUnit` in the Amaranth simulator against golden's §3.2 arithmetic, bit for bit.

The reference is one neuron of `evcore.golden.lif.forward_sample`, written with the same golden
primitives (`evcore.golden.ops.rshift`, `saturate`); inputs are streamed one per cycle and the
outputs are checked `LifUnit.latency` cycles later. Seeded random states plus named edges: zero,
both rails of V, I and the fan-in sum, and states landing exactly on and one LSB below θ.
"""

import numpy as np
import pytest
from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal
from amaranth.sim import Simulator

from evcore.golden.config import Build, CoreConfig
from evcore.golden.ops import ROUND_CODES, rshift, saturate
from evcore.hdl.lif import LANE_PRODUCTS, LifUnit


def golden_neuron(cfg: CoreConfig, v, cur, acc, zero):
    """§3.2 for one neuron, as in golden.lif.forward_sample (without record/first-spike bookkeeping)."""
    if zero:
        v, cur = 0, 0
    mode = ROUND_CODES[cfg.state_rounding]
    cf, fx = cfg.coef_frac, max(cfg.v_frac, cfg.i_frac)
    x = ((cfg.beta_raw * v) << (fx - cfg.v_frac)) + ((cfg.gamma_raw * cur) << (fx - cfg.i_frac))
    vn, v_sat = saturate(rshift(x, cf + fx - cfg.v_frac, mode), cfg.v_bits)
    i_dec = rshift(cfg.alpha_raw * cur, cf, mode)
    spike = vn >= cfg.theta_v_raw
    cn, i_sat = saturate(i_dec + acc, cfg.i_bits)
    return {"v": 0 if spike else vn, "cur": cn, "v_pre": vn, "cur_dec": i_dec, "spike": int(spike),
            "v_sat": v_sat, "i_sat": i_sat}


def golden_adjoint_neuron(cfg: CoreConfig, lam_v, lam_i, inject):
    """§5.2 with the §5.6 injection for one neuron, as in golden.adjoint.backward_sample's sweep."""
    mode = ROUND_CODES[cfg.state_rounding]
    cf, flag = cfg.coef_frac, 0
    if inject:
        lam_v, flag = saturate(lam_v - cfg.revive_raw, cfg.lam_bits)
    lv = rshift(cfg.beta_raw * lam_v, cf, mode)
    li, f = saturate(rshift(cfg.kgamma_raw * lam_v + cfg.alpha_raw * lam_i, cf, mode), cfg.lam_bits)
    return {"lam_v": lv, "lam_i": li, "lam_sat": flag | f}


FIELDS = ("v", "cur", "v_pre", "cur_dec", "spike", "v_sat", "i_sat")
BWD_FIELDS = ("lam_v", "lam_i", "lam_sat", "spike", "v_sat", "i_sat")


class LaneHarness(Elaboratable):
    """The area build's LifUnit with a lane lent: the product when it asks, junk otherwise."""

    def __init__(self, cfg):
        self.unit = LifUnit(cfg)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = u = self.unit
        junk = Signal(len(u.mul.p), init=0x2BAD5EED & ((1 << len(u.mul.p)) - 1))
        m.d.sync += junk.eq(Cat(junk[1:], junk[0] ^ junk[2]))
        m.d.comb += u.mul.p.eq(Mux(u.mul.req, u.mul.a * u.mul.b, junk))
        return m


def rtl_neurons(cfg, cases, fields=FIELDS):
    """Stream `cases` (forward: (v, cur, acc, zero); backward: dicts with bwd=1) one per cycle (the
    area build: one per LANE_PRODUCTS cycles, each held that long, valid in its first cycle only)."""
    area = cfg.build is Build.AREA
    top = LaneHarness(cfg) if area else LifUnit(cfg)
    dut = top.unit if area else top
    period = LANE_PRODUCTS if area else 1
    got = []

    async def drive(ctx):
        for c in cases:
            ctx.set(dut.i.valid, 1)
            if isinstance(c, dict):
                ctx.set(dut.i.p, {"v": 0, "cur": 0, "acc": 0, "zero": 0} | c)
            else:
                v, cur, acc, zero = c
                ctx.set(dut.i.p, {"v": v, "cur": cur, "acc": acc, "zero": zero})
            await ctx.tick()
            if period > 1:
                ctx.set(dut.i.valid, 0)
                await ctx.tick().repeat(period - 1)
        ctx.set(dut.i.valid, 0)

    async def collect(ctx):
        await ctx.tick().repeat(dut.latency)
        for _ in cases:
            valid, p = ctx.get(dut.o.valid), ctx.get(dut.o.p)
            assert valid
            got.append({k: int(getattr(p, k)) for k in fields})
            await ctx.tick()
            for _ in range(period - 1):
                assert not ctx.get(dut.o.valid)
                await ctx.tick()
        assert not ctx.get(dut.o.valid)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.add_testbench(collect)
    sim.run()
    return got


def edge_cases(cfg):
    v_lo, v_hi = -(1 << (cfg.v_bits - 1)), (1 << (cfg.v_bits - 1)) - 1
    i_lo, i_hi = -(1 << (cfg.i_bits - 1)), (1 << (cfg.i_bits - 1)) - 1
    a_lo, a_hi = -(1 << (cfg.fanin_acc_bits - 1)), (1 << (cfg.fanin_acc_bits - 1)) - 1
    cases = [(0, 0, 0, 0), (v_hi, i_hi, a_hi, 0), (v_lo, i_lo, a_lo, 0), (v_hi, i_hi, a_hi, 1),
             (v_lo, 0, 0, 0), (0, i_hi, 0, 0), (0, i_lo, a_lo, 0), (0, i_hi, i_hi, 0), (0, i_lo, -1, 0)]
    # V' exactly on θ and one LSB below (I = 0): the smallest V with V' >= θ, and its predecessor.
    lo, hi = 0, v_hi
    while lo < hi:
        mid = (lo + hi) // 2
        if golden_neuron(cfg, mid, 0, 0, 0)["v_pre"] >= cfg.theta_v_raw:
            hi = mid
        else:
            lo = mid + 1
    cases += [(lo, 0, 0, 0), (lo - 1, 0, 0, 0)]
    return cases


# (config, V_SAT reachable): with f_V = 14 the V range (±512) dwarfs γ·I_max, so V cannot clamp.
CONFIGS = [
    pytest.param(CoreConfig.up5k(), True, id="up5k"),
    pytest.param(
        CoreConfig.up5k(state_rounding="floor", v_frac=14, i_frac=18, i_bits=26), False, id="floor-fI>fV"
    ),
    pytest.param(CoreConfig.ecp5_85f(), True, id="ecp5-85f"),
    # §8 area build: the three products on the lane, one neuron per three cycles.
    pytest.param(CoreConfig.up5k(build="area"), True, id="up5k-area"),
    pytest.param(CoreConfig.up5k(build="area", state_rounding="floor", v_frac=14, i_frac=18, i_bits=26),
                 False, id="floor-fI>fV-area"),
]


@pytest.mark.parametrize(("cfg", "v_sat_reachable"), CONFIGS)
def test_lif_unit(cfg, v_sat_reachable):
    rng = np.random.default_rng(1)
    n = 300

    def word(bits):  # a random signed word, shifted down to a random magnitude
        return int(rng.integers(-(1 << (bits - 1)), 1 << (bits - 1))) >> int(rng.integers(0, bits))

    rand = [(word(cfg.v_bits), word(cfg.i_bits), word(cfg.fanin_acc_bits), int(rng.random() < 0.05))
            for _ in range(n)]
    cases = edge_cases(cfg) + rand
    want = [golden_neuron(cfg, *c) for c in cases]
    got = rtl_neurons(cfg, cases)
    for c, w, g in zip(cases, want, got, strict=True):
        assert g == w, f"(v, cur, acc, zero) = {c}: golden {w} rtl {g}"
    assert any(w["spike"] for w in want) and any(w["i_sat"] for w in want), "coverage: spike, I_SAT"
    assert any(w["v_sat"] for w in want) == v_sat_reachable, "coverage: V_SAT"


@pytest.mark.parametrize(("cfg", "v_sat_reachable"), CONFIGS)
def test_lif_unit_backward(cfg, v_sat_reachable):
    """The transposed propagator (§5.2) and the revival injection (§5.6), mixed with forward
    neurons in the same stream (the two directions share the pipeline)."""
    if cfg.revive_hidden == 0:
        cfg = cfg.replace(revive_hidden=4)
    rng = np.random.default_rng(2)
    lo, hi = -(1 << (cfg.lam_bits - 1)), (1 << (cfg.lam_bits - 1)) - 1
    r = cfg.revive_raw

    def word():
        return int(rng.integers(lo, hi + 1)) >> int(rng.integers(0, cfg.lam_bits))

    edges = [(0, 0), (hi, hi), (lo, lo), (hi, lo), (lo, hi), (lo + r, 0), (lo + r - 1, 0), (lo, 0), (r, 0)]
    cases = [{"bwd": 1, "lam_v": v, "lam_i": i, "inject": j} for v, i in edges for j in (0, 1)]
    cases += [{"bwd": 1, "lam_v": word(), "lam_i": word(), "inject": int(rng.random() < 0.3)}
              for _ in range(300)]
    quiet = {"spike": 0, "v_sat": 0, "i_sat": 0}
    want = [golden_adjoint_neuron(cfg, c["lam_v"], c["lam_i"], c["inject"]) | quiet for c in cases]
    # Interleave forward neurons that spike and saturate: their flags must not leak into backward ones.
    v_hi = (1 << (cfg.v_bits - 1)) - 1
    fwd = (v_hi, (1 << (cfg.i_bits - 1)) - 1, (1 << (cfg.fanin_acc_bits - 1)) - 1, 0)
    mixed = [x for c in cases for x in (c, fwd)]
    got = rtl_neurons(cfg, mixed, BWD_FIELDS)[::2]
    for c, w, g in zip(cases, want, got, strict=True):
        assert g == w, f"{c}: golden {w} rtl {g}"
    inj_sat = [c["inject"] and c["lam_v"] - r < lo for c in cases]
    assert any(inj_sat), "coverage: LAM_SAT from the injection"
    # Λ_I can clamp only if κγ̂ + α̂ > 2^c (not for these decays: |Λ_I'| < max(|Λ_V|, |Λ_I|)).
    reachable = cfg.kgamma_raw + cfg.alpha_raw > (1 << cfg.coef_frac)
    from_lam_i = any(w["lam_sat"] and not s for w, s in zip(want, inj_sat))
    assert from_lam_i == reachable, "coverage: LAM_SAT from Λ_I"
