# amaranth: UnusedElaboratable=no
"""`evcore.hdl.recip.Recip` in the Amaranth simulator against `evcore.golden.ops.recip`, bit for bit.

Inputs are streamed one per cycle and compared `recip_latency` cycles later with
`golden.ops.recip_array`. Fast: every d < 2**12, every power of two and its neighbours up to
2**d_bits - 1, the mantissa edges 2**(R-1), 2**R - 1, the mantissas whose y clamps to 2**R - 1 and
the ones just above, seeded random mantissas and large d, and every R-bit mantissa for R = 16
and 12 (one per cycle: about 4.5k inputs/s); on a borrowed multiplier (§8) as the core lends
it. Slow: every mantissa with truncated low bits.
"""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Mux, Signal
from amaranth.sim import Simulator

from evcore.golden.config import CoreConfig
from evcore.golden.ops import recip_array
from evcore.hdl.recip import Recip, recip_latency

#: The up5k preset (R = 16, k = 7), a narrower (R = 12, k = 5) and the widest unit the config
#: accepts (R = 20, k = 10).
CONFIGS = {
    "up5k": CoreConfig.up5k(),
    "r12k5": CoreConfig.up5k(recip_bits=12, recip_seed_bits=5),
    "r20k10": CoreConfig.up5k(recip_bits=20, recip_seed_bits=10),
    "ecp5-85f": CoreConfig.ecp5_85f(),  # ram_read_regs: the stage before the seed ROM
}
D_BITS = 24


class LaneRecip(Elaboratable):
    """A Recip on a borrowed multiplier (docs/core.md §8), as in the core: the lane multiplies the
    recip's operands when it asks (``req``) and answers garbage (another user's product) else."""

    def __init__(self, cfg, d_bits):
        self.recip = Recip(cfg, d_bits, mul_lane=Recip.mul_need(cfg))
        self.i, self.o, self.latency = self.recip.i, self.recip.o, self.recip.latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.recip = r = self.recip
        junk = Signal(len(r.mul.p), init=0x5A5A5A5 % (1 << len(r.mul.p)))
        m.d.sync += junk.eq(junk.rotate_left(3) ^ 0x12345)
        m.d.comb += r.mul.p.eq(Mux(r.mul.req, r.mul.a * r.mul.b, junk))
        return m


def rtl_recip(cfg: CoreConfig, d_bits: int, ds, lane: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Stream ds through a Recip one per cycle (with `lane`: on a borrowed multiplier, one per 2
    cycles, d held between); return its (y, e) arrays in input order."""
    dut = LaneRecip(cfg, d_bits) if lane else Recip(cfg, d_bits)
    gap = 2 if lane else 1
    ds = [int(d) for d in ds]
    ys, es = [], []

    async def drive(ctx):
        for d in ds:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.p, d)
            await ctx.tick()
            if gap > 1:
                ctx.set(dut.i.valid, 0)
                await ctx.tick().repeat(gap - 1)
        ctx.set(dut.i.valid, 0)

    async def collect(ctx):
        await ctx.tick().repeat(dut.latency)
        for _ in ds:
            assert ctx.get(dut.o.valid)
            ys.append(ctx.get(dut.o.p.y))
            es.append(ctx.get(dut.o.p.e))
            for _ in range(gap):
                await ctx.tick()
                if gap > 1 and not ctx.get(dut.o.valid):  # held d, no input: (y, e) hold
                    assert (ctx.get(dut.o.p.y), ctx.get(dut.o.p.e)) == (ys[-1], es[-1])
        assert not ctx.get(dut.o.valid)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.add_testbench(collect)
    sim.run()
    return np.array(ys, dtype=np.int64), np.array(es, dtype=np.int64)


def check(cfg: CoreConfig, d_bits: int, ds, lane: bool = False):
    ds = np.asarray(ds, dtype=np.int64)
    y, e = rtl_recip(cfg, d_bits, ds, lane)
    y_ref, e_ref = recip_array(cfg, ds)
    bad = np.flatnonzero((y != y_ref) | (e != e_ref))
    assert bad.size == 0, [(int(ds[i]), int(y[i]), int(y_ref[i]), int(e[i]), int(e_ref[i])) for i in bad[:10]]


def edge_inputs(cfg: CoreConfig, d_bits: int, n_random: int, seed: int = 1) -> np.ndarray:
    r = cfg.recip_bits
    top = (1 << d_bits) - 1
    edges = set(range(1, min(1 << 12, top + 1)))
    for b in range(d_bits + 1):
        edges.update(v for v in ((1 << b) - 1, 1 << b, (1 << b) + 1) if 1 <= v <= top)
    edges.update({1 << (r - 1), (1 << r) - 1, top})
    # Mantissas whose y clamps to 2**R - 1 and the first ones above them (where the clamp stops).
    mant = np.arange(1 << (r - 1), 1 << r, dtype=np.int64)
    y, _ = recip_array(cfg, mant)
    clamped = mant[y == (1 << r) - 1]
    edges.update(int(v) for v in clamped)
    edges.update(int(v) + 1 for v in clamped[-4:])
    edges.update(int(v) + 2 for v in clamped[-4:])
    rng = np.random.default_rng(seed)
    rand_mant = rng.integers(1 << (r - 1), 1 << r, size=n_random)
    rand_big = rng.integers(1 << r, top + 1, size=n_random)
    # Large d with each mantissa shifted up: the truncated bits below the mantissa vary.
    return np.concatenate([np.array(sorted(edges), dtype=np.int64), rand_mant, rand_big])


def test_latency_is_small():
    assert recip_latency(CONFIGS["up5k"]) == 4
    assert recip_latency(CONFIGS["ecp5-85f"]) == 5  # the seed ROM's address registered (§8)


@pytest.mark.parametrize("name", CONFIGS)
def test_recip_edges_and_random(name):
    cfg = CONFIGS[name]
    check(cfg, D_BITS, edge_inputs(cfg, D_BITS, n_random=4000))


@pytest.mark.parametrize("name", ["up5k", "r12k5", "r20k10"])
def test_recip_on_a_shared_multiplier(name):
    """§8: the two products from a borrowed lane that answers other products between them; every
    mantissa (R = 12) or the edges, and (y, e) held while d is."""
    cfg = CONFIGS[name]
    r = cfg.recip_bits
    ds = np.arange(1 << (r - 1), 1 << r) if r <= 12 else edge_inputs(cfg, D_BITS, n_random=1500)
    check(cfg, D_BITS, ds, lane=True)


def test_recip_lane_too_narrow_is_one_line():
    cfg = CONFIGS["up5k"]
    with pytest.raises(ValueError, match=r"^Recip: multiplier lane 16 x 24 bits < 17 x 17 needed$"):
        Recip(cfg, D_BITS, mul_lane=(16, 24))


@pytest.mark.parametrize("name", ["up5k", "r12k5"])
def test_recip_every_mantissa(name):
    """All 2**(R-1) mantissas (d in [2**(R-1), 2**R)): 2**15 for up5k, about 7 s."""
    cfg = CONFIGS[name]
    r = cfg.recip_bits
    check(cfg, D_BITS, np.arange(1 << (r - 1), 1 << r))


@pytest.mark.parametrize("d_bits", [1, 5, 16, 33])
def test_recip_other_input_widths(d_bits):
    cfg = CONFIGS["up5k"]
    top = (1 << d_bits) - 1
    rng = np.random.default_rng(d_bits)
    ds = np.unique(np.concatenate([[1, top], [1 << b for b in range(d_bits)], rng.integers(1, top + 1, 500)]))
    check(cfg, d_bits, ds)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["up5k", "r20k10"])
def test_recip_every_mantissa_truncated(name):
    """Every mantissa with 4 truncated low bits (all ones, e = R + 3); R = 20: 2**19 inputs."""
    cfg = CONFIGS[name]
    r = cfg.recip_bits
    mant = np.arange(1 << (r - 1), 1 << r, dtype=np.int64)
    check(cfg, D_BITS, (mant << 4) + 0xF)
