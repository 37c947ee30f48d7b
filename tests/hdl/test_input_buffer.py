"""`evcore.hdl.input_buffer.InputBuffer` against a list model: appends, the capacity cut with
IN_OVF (§3.1), clear, and both read ports (transparent to a push in the same cycle)."""

import numpy as np
from amaranth.sim import Simulator

from evcore.golden.config import CoreConfig
from evcore.hdl.input_buffer import InputBuffer


def test_input_buffer():
    cfg = CoreConfig.up5k()
    cap = cfg.input_capacity
    dut = InputBuffer(cfg)
    rng = np.random.default_rng(3)

    async def bench(ctx):
        for n_push in (0, 3, cap, cap + 4):
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            model, n_ovf = [], 0
            for _ in range(n_push):
                e = {"step": int(rng.integers(0, cfg.n_steps)), "id": int(rng.integers(0, cfg.sizes[0]))}
                ctx.set(dut.push.valid, 1)
                ctx.set(dut.push.p, e)
                n_ovf += ctx.get(dut.ovf)
                if len(model) < cap:
                    assert not ctx.get(dut.ovf)
                    model.append(e)
                # Read the entry being pushed (transparency) on `cur`, its predecessor on `nxt`.
                ctx.set(dut.cur_addr, min(len(model) - 1, cap - 1))
                ctx.set(dut.nxt_addr, max(len(model) - 2, 0))
                await ctx.tick()
                ctx.set(dut.push.valid, 0)
                if model:
                    cur = ctx.get(dut.cur)
                    assert {"step": cur.step, "id": cur.id} == model[min(len(model) - 1, cap - 1)]
            assert n_ovf == max(0, n_push - cap)
            assert ctx.get(dut.count) == len(model)
            for a, e in enumerate(model):
                ctx.set(dut.nxt_addr, a)
                await ctx.tick()
                nxt = ctx.get(dut.nxt)
                assert {"step": nxt.step, "id": nxt.id} == e

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
