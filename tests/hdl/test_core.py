# amaranth: UnusedElaboratable=no
"""`evcore.hdl.core.Core` in the Amaranth simulator against `evcore.golden.core.FixedCore`.

Small configurations (the simulator runs Python per cycle), every exposed value compared bit for
bit through the same host sequence the Verilator testbench uses (`evcore.tb.core.host`); the
sweep, fan-out, recorder, first-spike registers, early stop and sequencer are all covered here.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from evcore.golden.config import CoreConfig
from evcore.golden.core import FixedCore, forward_phase_cycles
from evcore.hdl.core import Core
from evcore.tb.core.host import encode_uncut, first_mismatch, run_sample

TIMEOUT_CYCLES = 200_000


class AmaranthBus:
    """The `run_sample` bus on the Amaranth simulator."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut

    async def write(self, region, addr, data):
        ctx, dut = self.ctx, self.dut
        ctx.set(dut.bus_region, region)
        ctx.set(dut.bus_addr, addr)
        ctx.set(dut.bus_wdata, data)
        ctx.set(dut.bus_we, 1)
        await ctx.tick()
        ctx.set(dut.bus_we, 0)

    async def start_and_wait(self):
        ctx, dut = self.ctx, self.dut
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for _ in range(TIMEOUT_CYCLES):
            if not ctx.get(dut.busy):
                return
            await ctx.tick()
        raise AssertionError("core still busy after the timeout")

    async def read_many(self, items):
        ctx, dut = self.ctx, self.dut
        out = []
        for region, addr in items:
            ctx.set(dut.bus_region, region)
            ctx.set(dut.bus_addr, addr)
            ctx.set(dut.bus_re, 1)
            await ctx.tick()
            out.append(ctx.get(dut.bus_rdata))
        ctx.set(dut.bus_re, 0)
        return out


def rtl_run(cfg, weights_raw, steps, ids, counts):
    """Write the weights, run each sample, return the list of `run_sample` dicts."""
    from evcore.hdl.core import Region, synapse_layout

    dut = Core(cfg)
    results = []
    word = synapse_layout(cfg)

    async def bench(ctx):
        bus = AmaranthBus(ctx, dut)
        flat = np.concatenate([np.asarray(w).ravel() for w in weights_raw])
        for a, w in enumerate(flat):
            fields = {"w": int(w), "g": 0} | ({"m": 0} if cfg.has_momentum else {})
            await bus.write(Region.SYNAPSE, a, word.const(fields).as_bits())
        for b in range(len(counts)):
            results.append(await run_sample(bus, cfg, steps[b], ids[b], int(counts[b])))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def check_against_golden(cfg, weights_raw, inputs):
    gold = FixedCore(cfg, weights_raw)
    res = gold.run(inputs)
    steps, ids, counts = encode_uncut(cfg, inputs)
    rtl = rtl_run(cfg, weights_raw, steps, ids, counts)
    n_inputs = [(res.in_step[b, : res.in_count[b]] <= res.n_end[b]).sum() for b in range(len(counts))]
    sweep, fan = forward_phase_cycles(cfg, res.n_end, n_inputs, res.layer_counts)
    for b, r in enumerate(rtl):
        bad = first_mismatch(cfg, res, b, r, phase_cycles=(sweep[b], fan[b]))
        assert bad is None, f"sample {b}: {bad}; config {cfg.to_json()}"
    return res


def random_case(cfg, rng, n_samples, w_scale, max_spikes):
    """Weights uniform in [-w_scale/3, w_scale] (mostly excitatory: the layers spike), clipped to
    the word; up to `max_spikes` input spikes per sample at uniform times (some beyond T)."""
    lo, hi = -(1 << (cfg.w_bits - 1)), (1 << (cfg.w_bits - 1)) - 1
    weights = [
        rng.integers(-w_scale // 3, w_scale + 1, size=(b, a)).clip(lo, hi)
        for a, b in zip(cfg.sizes, cfg.sizes[1:])
    ]
    k = max_spikes
    times = rng.uniform(0, cfg.t_max_s * 1.1, size=(n_samples, k))
    ids = rng.integers(0, cfg.sizes[0], size=(n_samples, k))
    counts = rng.integers(0, k + 1, size=n_samples)
    return weights, (times, ids, counts)


SMALL = dict(sizes=(3, 4, 2), n_steps=24, dt_s=1e-3, record_capacity=8, input_capacity=5,
             lr_mant=(1, 1), lr_shift=(1, 1), w_frac=(11, 12), silent_threshold=(1.0, 1.0))


@pytest.mark.parametrize("seed", range(3))
def test_core_small_random(seed):
    """3-4-2, 24 steps: random weights strong enough to spike and overflow the 8-entry record;
    seed 1 with the vmax memory (§3.6)."""
    cfg = CoreConfig(**SMALL, revive_hidden=1.0 if seed == 1 else 0.0)
    rng = np.random.default_rng(seed)
    weights, inputs = random_case(cfg, rng, n_samples=4, w_scale=32767, max_spikes=7)
    res = check_against_golden(cfg, weights, inputs)
    assert res.layer_counts.sum() > 10, "stimulus too weak to exercise the sweep and fan-out"


def test_core_saturation_and_overflows():
    """Every input spiking at every step with the largest weights: V_SAT, I_SAT, IN_OVF, REC_OVF;
    and an empty sample right after (state, record and counters restart)."""
    cfg = CoreConfig(**{**SMALL, "input_capacity": 30, "n_steps": 12})
    hi = (1 << (cfg.w_bits - 1)) - 1
    weights = [np.full((b, a), hi) for a, b in zip(cfg.sizes, cfg.sizes[1:])]
    weights[1][0, :] = -hi - 1  # output 0 driven hard negative: V saturates low
    k = 36
    times = np.repeat(np.arange(12) * cfg.dt_s, 3)[None, :].repeat(2, axis=0)
    ids = np.tile(np.arange(3), 12)[None, :].repeat(2, axis=0)
    counts = np.array([k, 0])
    res = check_against_golden(cfg, weights, (times, ids, counts))
    from evcore.golden.config import Flag

    raised = Flag(int(res.flags[0]))
    for flag in (Flag.I_SAT, Flag.IN_OVF, Flag.REC_OVF):
        assert flag in raised, f"{flag} not exercised: {raised}"


def test_core_two_hidden_floor():
    """Two hidden layers, floor rounding, no early stop, f_w < f_I and f_w > f_I, saturating weights."""
    cfg = CoreConfig(**{**SMALL, "sizes": (2, 3, 1, 2), "w_frac": (16, 10, 12), "w_bits": 20,
                        "i_frac": 14, "input_capacity": 12,
                        "lr_mant": (1, 1, 1), "lr_shift": (1, 1, 1), "silent_threshold": (1.0,) * 3,
                        "state_rounding": "floor", "early_stop": False, "n_steps": 16,
                        "revive_hidden": 1.0})
    rng = np.random.default_rng(7)
    weights, inputs = random_case(cfg, rng, n_samples=3, w_scale=1 << 19, max_spikes=12)
    res = check_against_golden(cfg, weights, inputs)
    assert (res.n_end == cfg.n_steps - 1).all()
    assert (res.layer_counts > 0).all(), "every layer must spike in every sample"


def test_core_rejects_short_sweep_latency():
    with pytest.raises(ValueError, match=r"^CoreConfig.cyc_sweep_latency = 3: "):
        Core(CoreConfig(**{**SMALL, "cyc_sweep_latency": 3}))
