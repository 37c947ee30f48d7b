"""`evcore.hdl.lfsr` against `evcore.golden.lfsr`: the linear map and the register, draw for draw."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from evcore.golden.config import CoreConfig
from evcore.golden.lfsr import Lfsr as GoldenLfsr
from evcore.golden.lfsr import lfsr_draw
from evcore.hdl.lfsr import Lfsr, draw_masks


def apply(masks, state):
    out = 0
    for k, mk in enumerate(masks):
        out |= (bin(state & mk).count("1") & 1) << k
    return out


@pytest.mark.parametrize(("bits", "taps", "sr"), [(32, 0x80200003, 16), (32, 0x80200003, 1),
                                                  (32, 0x80200003, 32), (16, 0xB400, 7)])
def test_masks_equal_golden_draws(bits, taps, sr):
    nxt, drw = draw_masks(bits, taps, sr)
    rng = np.random.default_rng(0)
    for state in [1, (1 << bits) - 1, *(int(x) for x in rng.integers(1, 1 << bits, 200))]:
        s2, r = lfsr_draw(np.int64(state), np.int64(taps), sr)
        assert apply(nxt, state) == int(s2) and apply(drw, state) == int(r)


@pytest.mark.parametrize("cfg", [CoreConfig.up5k(), CoreConfig.up5k(sr_bits=5)], ids=["sr16", "sr5"])
def test_lfsr_register(cfg):
    """The register draws golden's sequence; holds without `advance`; a host write reloads it."""
    dut = Lfsr(cfg)
    n = 300
    gold = GoldenLfsr(cfg.lfsr_taps, cfg.lfsr_seed, cfg.lfsr_bits)
    want = [int(x) for x in gold.draws(sum(k % 3 != 2 for k in range(n)), cfg.sr_bits)]
    seed2 = 0x12345678 & ((1 << cfg.lfsr_bits) - 1)
    gold2 = GoldenLfsr(cfg.lfsr_taps, seed2, cfg.lfsr_bits)
    want2 = [int(x) for x in gold2.draws(20, cfg.sr_bits)]

    async def bench(ctx):
        assert ctx.get(dut.state) == cfg.lfsr_seed
        for k in range(n):
            ctx.set(dut.advance, k % 3 != 2)  # every third cycle holds
            if k % 3 != 2:
                assert ctx.get(dut.draw) == want.pop(0)
            await ctx.tick()
        ctx.set(dut.advance, 0)
        ctx.set(dut.we, 1)
        ctx.set(dut.wdata, seed2)
        await ctx.tick()
        ctx.set(dut.we, 0)
        ctx.set(dut.advance, 1)
        for r in want2:
            assert ctx.get(dut.draw) == r
            await ctx.tick()
        assert ctx.get(dut.state) == gold2.state

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not want
