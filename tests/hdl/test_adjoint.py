"""`evcore.hdl.adjoint.JumpUnit` in the Amaranth simulator against `evcore.golden.adjoint.jump`.

One jump per cycle streamed through the unit, compared bit for bit at its output `latency`
cycles later: seeded random adjoints, error sums and currents of every magnitude, plus the named
edges of §5.3: I⁻ at, just above and below θ (RECIP_CLAMP), the rails of Λ and of the error sum
(LAM_SAT in the numerator and in the result), zero.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from evcore.golden.adjoint import jump
from evcore.golden.config import CoreConfig, Flag
from evcore.golden.ops import pack_params
from evcore.hdl.adjoint import JumpUnit, err_bits


def golden_jump(cfg, P, lam_v, err, cur, mat):
    out, flags = jump(P, cfg.recip_rom, np.int64(lam_v), np.int64(cfg.theta_w_raw(mat)), np.int64(err),
                      np.int64(cfg.w_frac[mat]), np.int64(cur))
    return {"lam_v": int(out), "lam_sat": int(bool(flags & Flag.LAM_SAT)),
            "recip_clamp": int(bool(flags & Flag.RECIP_CLAMP))}


def rtl_jumps(cfg, cases):
    dut = JumpUnit(cfg)
    got = []

    async def drive(ctx):
        for lam_v, err, cur, mat in cases:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.p, {"lam_v": lam_v, "err": err, "cur": cur, "mat": mat})
            await ctx.tick()
        ctx.set(dut.i.valid, 0)

    async def collect(ctx):
        await ctx.tick().repeat(dut.latency)
        for _ in cases:
            assert ctx.get(dut.o.valid)
            p = ctx.get(dut.o.p)
            got.append({"lam_v": int(p.lam_v), "lam_sat": int(p.lam_sat), "recip_clamp": int(p.recip_clamp)})
            await ctx.tick()
        assert not ctx.get(dut.o.valid)

    sim = Simulator(dut)
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


@pytest.mark.parametrize("cfg", CONFIGS)
def test_jump_unit(cfg):
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
    got = rtl_jumps(cfg, cases)
    for c, w, g in zip(cases, want, got, strict=True):
        assert g == w, f"(lam_v, err, cur, mat) = {c}: golden {w} rtl {g}"
    assert any(w["recip_clamp"] for w in want) and any(w["lam_sat"] for w in want), "coverage"
    assert not all(w["recip_clamp"] for w in want)
