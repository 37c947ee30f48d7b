"""The §1.2/§1.4 helpers of `evcore.hdl.lif` (`rnd`, `sat`) on every input of a small word, against
golden's `rshift` / `saturate`, value and flag bit for bit (docs/mutation.md: kills the mutant that
raises the saturation flag on a value exactly at the rail, which the unit tests never produce)."""

import pytest
from amaranth.hdl import Module, Signal, Value, signed
from amaranth.sim import Simulator

from evcore.golden.config import RoundingMode
from evcore.golden.ops import ROUND_CODES, rshift, saturate
from evcore.hdl.lif import rnd, sat


def _exhaustive(width, build, check):
    """Drive every signed `width`-bit x through the comb expressions `build(x)`; `check(x, values)`."""
    m = Module()
    x = Signal(signed(width))
    outs = build(x)
    sigs = []
    for e in outs:
        s = Signal(Value.cast(e).shape())
        m.d.comb += s.eq(e)
        sigs.append(s)

    async def bench(ctx):
        for v in range(-(1 << (width - 1)), 1 << (width - 1)):
            ctx.set(x, v)
            check(v, [ctx.get(s) for s in sigs])

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("bits", [3, 5, 8])
def test_sat_every_value(bits):
    def check(v, got):
        assert tuple(got) == tuple(int(t) for t in saturate(v, bits)), f"sat({v}, {bits})"

    _exhaustive(bits + 2, lambda x: sat(x, bits), check)


@pytest.mark.parametrize("mode", [RoundingMode.HALF_UP, RoundingMode.FLOOR])
@pytest.mark.parametrize("s", [-2, 0, 1, 3])
def test_rnd_every_value(s, mode):
    def check(v, got):
        assert got[0] == int(rshift(v, s, ROUND_CODES[mode])), f"rnd({v}, {s}, {mode})"

    _exhaustive(7, lambda x: [rnd(x, s, mode)], check)
