"""`evcore.hdl.loss.LossUnit`: cases the mutation run found untested (docs/mutation.md).

``active`` and ``lam_sat`` held after ``done`` while the label and first-step inputs change (the
docstring's "stable until the next start"; kills the mutant that latches them in every idle
cycle). Power-of-two output counts, where the output index register wraps at n_out (the existing
tests have 1, 3 and 10 outputs; the one-cycle-longer second pass stays equivalent there too).
"""

import pytest
from amaranth.sim import Simulator

from evcore.golden.config import CoreConfig
from evcore.hdl.loss import LossUnit

from .test_loss import LAM_SAT_CONFIGS, cases, check, golden_loss


@pytest.mark.parametrize("sizes", [(4, 8, 2), (4, 20, 4)], ids=["out2", "out4"])
def test_power_of_two_outputs(sizes):
    cfg = CoreConfig.up5k(sizes=sizes)
    check(cfg, cases(cfg, n_random=60))


def test_flags_held_after_done():
    cfg = LAM_SAT_CONFIGS["late"]
    T, n = cfg.n_steps, cfg.sizes[-1]
    steps, label = [T - 1, 0, 0], 0
    want = golden_loss(cfg, steps, label)
    assert want["active"] == 1 and want["lam_sat"] == 1
    dut = LossUnit(cfg)

    async def bench(ctx):
        ctx.set(dut.first_step, steps)
        ctx.set(dut.label, label)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        while not ctx.get(dut.done):
            await ctx.tick()
        assert (ctx.get(dut.active), ctx.get(dut.lam_sat)) == (1, 1)
        # Idle: another label, whose output is silent, and other first steps.
        ctx.set(dut.label, 1)
        ctx.set(dut.first_step, [0, T, 0][:n])
        for cycle in range(5):
            await ctx.tick()
            assert not ctx.get(dut.busy)
            assert (ctx.get(dut.active), ctx.get(dut.lam_sat)) == (1, 1), f"idle cycle {cycle}"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
