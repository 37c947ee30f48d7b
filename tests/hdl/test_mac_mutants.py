"""`evcore.hdl.mac.Mac`: the two edges the mutation run found untested (docs/mutation.md).

A sum that lands exactly on the negative rail is not an overflow (golden.mac clamps only beyond
it), and a result register that is empty takes the next result even while ``o.ready`` is low
(the documented latency of 2 cycles does not wait for the consumer).
"""

from amaranth.sim import Simulator

from evcore.golden.mac import MacResult, mac_reference, signed_bounds
from evcore.hdl.mac import Mac

from .test_mac import rtl_mac

W = {"a_width": 8, "b_width": 8, "acc_width": 18}


def test_sum_exactly_on_the_negative_rail_is_no_overflow():
    lo, _ = signed_bounds(W["acc_width"])
    # 16 x (-128 * 64) = -2**17 = lo, reached without passing it; then a packet that passes it.
    elements = [(-128, 64, i == 15) for i in range(16)] + [(-128, 64, i == 16) for i in range(17)]
    a, b, last = zip(*elements, strict=True)
    want = mac_reference(a, b, last, **W)
    assert want == [MacResult(lo, False), MacResult(lo, True)]
    assert rtl_mac(elements, W) == want


def test_empty_result_register_ignores_ready():
    dut = Mac(**W)
    seen = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)  # the consumer is not ready, but the result register is empty
        for a, b, last in [(3, 4, 0), (5, 6, 1)]:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.p, {"a": a, "b": b, "last": last})
            assert ctx.get(dut.i.ready)
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(4):
            seen.append((ctx.get(dut.o.valid), ctx.get(dut.o.p)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # `last` transferred in cycle 1: o.valid from cycle 1 + latency on, with the sum, ready or not.
    assert [v for v, _ in seen] == [0, 1, 1, 1]
    assert seen[1][1] == 3 * 4 + 5 * 6
