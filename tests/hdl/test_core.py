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
from evcore.hdl.core import Core, Reg, Region
from evcore.tb.core.host import (
    backward_ran,
    encode_uncut,
    first_mismatch,
    first_synapse_mismatch,
    first_train_mismatch,
    read_synapses,
    run_sample,
)

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

    async def start_and_wait(self, train=False, update=False):
        ctx, dut = self.ctx, self.dut
        sig = dut.start_update if update else dut.start_train if train else dut.start
        ctx.set(sig, 1)
        await ctx.tick()
        ctx.set(sig, 0)
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
            if dut.read_latency > 1:  # §8: the read data registered once more
                ctx.set(dut.bus_re, 0)
                await ctx.tick().repeat(dut.read_latency - 1)
            out.append(ctx.get(dut.bus_rdata))
        ctx.set(dut.bus_re, 0)
        return out


async def load_chip(bus, cfg, weights_raw, dead=None):
    """Write the weights (gradient and moment 0) and, if given, the §5.6 dead bits."""
    from evcore.hdl.core import Region, synapse_layout, vmax_layout

    word = synapse_layout(cfg)
    flat = np.concatenate([np.asarray(w).ravel() for w in weights_raw])
    for a, w in enumerate(flat):
        fields = {"w": int(w), "g": 0} | ({"m": 0} if cfg.has_momentum else {})
        await bus.write(Region.SYNAPSE, a, word.const(fields).as_bits())
    for h, d in enumerate(() if dead is None else dead):
        await bus.write(Region.VMAX, h, vmax_layout(cfg).const({"dead": int(d)}).as_bits())


def rtl_run(cfg, weights_raw, steps, ids, counts, labels=None, dead=None, training=True):
    """Write the weights (and the §5.6 dead bits), run each sample (a training sample if `labels`
    is given), return the list of `run_sample` dicts and the synapse words read at the end."""

    dut = Core(cfg, training=training)
    results = []
    synapses = {}

    async def bench(ctx):
        bus = AmaranthBus(ctx, dut)
        await load_chip(bus, cfg, weights_raw, dead)
        for b in range(len(counts)):
            label = None if labels is None else int(labels[b])
            results.append(await run_sample(bus, cfg, steps[b], ids[b], int(counts[b]), label))
        synapses.update(await read_synapses(bus, cfg))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return (results, synapses) if labels is not None else results


def check_against_golden(cfg, weights_raw, inputs, training=True):
    gold = FixedCore(cfg, weights_raw)
    res = gold.run(inputs)
    steps, ids, counts = encode_uncut(cfg, inputs)
    rtl = rtl_run(cfg, weights_raw, steps, ids, counts, training=training)
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


def test_core_repeated_input_spikes_in_one_step():
    """One input spiking three times in one step (§3.1 keeps ties; found by a random search): the
    fan-in sum of a neuron, 3 x 24473 << 5, is beyond one spike per input of the layer below, and
    `fanin_acc_bits` must hold it (a 22-bit accumulator wrapped it and the neurons fell silent)."""
    cfg = CoreConfig(sizes=(1, 3, 2), n_steps=40, dt_s=1e-3, record_capacity=32, input_capacity=8,
                     lr_mant=(1, 1), lr_shift=(1, 1), w_frac=(11, 12), silent_threshold=(1.0, 1.0),
                     early_stop=False)
    weights = [np.array([[24473], [22627], [18649]]), np.array([[9090, 25076, 5389], [17911, 12927, 2252]])]
    times = [0.0089, 0.0114, 0.0166, 0.0210, 0.0231, 0.0278, 0.0280, 0.0283]  # the last three: step 28
    inputs = (np.array([times]), np.zeros((1, 8), dtype=np.int64), np.array([8]))
    steps = np.floor(np.array(times) / cfg.dt_s + 0.5)
    shift = cfg.i_frac - cfg.w_frac[0]
    one_spike = (1 << (cfg.w_bits - 1)) << shift  # the old bound: one spike per input and step
    assert (steps == 28).sum() * (24473 << shift) > one_spike * cfg.sizes[0], "coverage"
    res = check_against_golden(cfg, weights, inputs)
    assert res.layer_counts[0, 0] > 30, "coverage: the strong input keeps the hidden layer spiking"
    check_training_against_golden(cfg, weights, inputs, np.array([0]))


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


# §8, ram_read_regs = 1: the LIF operands and the fan-out's synapse address, weight and accumulator
# word registered. Layers of exactly FANOUT_RMW_DISTANCE = 3 neurons put a target's next read in the
# cycle of its write (the transparent port), and the sweep's first read right behind the fan-out.
#: The ecp5-85f preset's registered block-RAM reads and the cycles they cost (§8).
RR_FIELDS = {k: getattr(CoreConfig.ecp5_85f(), k)
             for k in ("ram_read_regs", "cyc_sweep_latency", "cyc_jump", "cyc_synapse_rmw")}
REGISTERED = dict(SMALL, sizes=(3, 3, 3), **RR_FIELDS)


@pytest.mark.parametrize("seed", range(2))
def test_core_ram_read_regs(seed):
    """3-3-3 with registered block-RAM reads: forward values and cycle counts equal golden (whose
    cycle model only sees cyc_sweep_latency = 5); seed 1 with the vmax memory, as the
    inference-only build (`training=False`, what `evcore synth --top core-infer` places)."""
    cfg = CoreConfig(**REGISTERED, revive_hidden=1.0 if seed == 1 else 0.0)
    rng = np.random.default_rng(30 + seed)
    weights, inputs = random_case(cfg, rng, n_samples=4, w_scale=32767, max_spikes=7)
    res = check_against_golden(cfg, weights, inputs, training=seed != 1)
    # Back-to-back fan-outs into one layer: several spikes of one step (input or hidden).
    assert (res.layer_counts[:, 0] > 2).any(), "stimulus too weak for back-to-back fan-outs"


def test_core_ram_read_regs_training():
    """The training sample and its backward pass on the registered-read pipeline (the backward
    sweep shares the LIF unit's extra stage)."""
    cfg = CoreConfig(**REGISTERED, revive_hidden=1.0)
    rng = np.random.default_rng(40)
    weights, inputs = random_case(cfg, rng, n_samples=6, w_scale=32767, max_spikes=7)
    labels = rng.integers(0, cfg.sizes[-1], size=6)
    res = check_training_against_golden(cfg, weights, inputs, labels, rng.random(cfg.n_hidden) < 0.5)
    assert any(backward_ran(res, b) for b in range(6)), "no sample ran its backward pass"


@pytest.mark.parametrize(("changes", "message"), [
    (dict(cyc_sweep_latency=5), r"^CoreConfig.cyc_sweep_latency = 5: .* >= 6 with ram_read_regs = 1$"),
    (dict(sizes=(3, 4, 2)), r"^CoreConfig.sizes = \(3, 4, 2\): with ram_read_regs = 1 .* >= 3 neurons"),
    (dict(cyc_jump=13), r"^CoreConfig.cyc_jump = 13: the RTL jump needs >= 14 cycles$"),
    (dict(cyc_synapse_rmw=2),
     r"^CoreConfig.cyc_synapse_rmw = 2: .* in 3 cycles \(one port, the gradient sum"),
])
def test_core_rejects_unbuildable_ram_read_regs(changes, message):
    with pytest.raises(ValueError, match=message):
        Core(CoreConfig(**{**REGISTERED, **changes}))


def check_training_against_golden(cfg, weights_raw, inputs, labels, dead=None):
    """One minibatch of training samples (forward, loss unit, backward) on the RTL against
    `FixedCore.gradient`: every sample's forward values, loss-unit results, backward registers and
    cycle counts, the last sample's final Λ, and every gradient accumulator after the batch."""
    gold = FixedCore(cfg, weights_raw)
    if dead is not None:
        gold.dead = np.asarray(dead, dtype=bool)
    _, _, res = gold.gradient(inputs, np.asarray(labels))
    steps, ids, counts = encode_uncut(cfg, inputs)
    rtl, syn = rtl_run(cfg, weights_raw, steps, ids, counts, labels=labels, dead=dead)
    n_inputs = [(res.in_step[b, : res.in_count[b]] <= res.n_end[b]).sum() for b in range(len(counts))]
    sweep, fan = forward_phase_cycles(cfg, res.n_end, n_inputs, res.layer_counts)
    for b, r in enumerate(rtl):
        bad = first_mismatch(cfg, res, b, r, phase_cycles=(sweep[b], fan[b]), check_state=False)
        bad = bad or first_train_mismatch(cfg, res, b, r, last=b == len(rtl) - 1)
        assert bad is None, f"training sample {b} (label {labels[b]}): {bad}; config {cfg.to_json()}"
    want = {"w": np.concatenate([w.ravel() for w in gold.weights_raw]),
            "g": np.concatenate([g.ravel() for g in res.grads_raw])}
    if cfg.has_momentum:  # the backward pass must leave the moment field alone
        want["m"] = np.concatenate([m.ravel() for m in gold.momentum_raw])
    bad = first_synapse_mismatch(cfg, want, syn)
    assert bad is None, f"after the minibatch: {bad}; config {cfg.to_json()}"
    return res


@pytest.mark.parametrize("seed", range(3))
def test_core_training_small_random(seed):
    """3-4-2: a minibatch of training samples; seed 1 with the revival and dead neurons (§5.6)."""
    cfg = CoreConfig(**SMALL, revive_hidden=1.0 if seed == 1 else 0.0)
    rng = np.random.default_rng(10 + seed)
    weights, inputs = random_case(cfg, rng, n_samples=6, w_scale=32767, max_spikes=7)
    labels = rng.integers(0, cfg.sizes[-1], size=6)
    dead = rng.random(cfg.n_hidden) < 0.5 if cfg.revive_hidden > 0 else None
    res = check_training_against_golden(cfg, weights, inputs, labels, dead)
    ran = [backward_ran(res, b) for b in range(6)]
    assert any(ran), "no sample ran its backward pass"
    assert np.abs(np.concatenate([g.ravel() for g in res.grads_raw])).sum() > 0


def test_core_training_two_hidden_revival():
    """Two hidden layers (the §5.5 snapshot rule across layers spiking in one step), floor
    rounding, no early stop, weak weights so that outputs stay silent (masked samples) and most
    hidden neurons are dead: masked samples that still run for their injections (§5.6)."""
    cfg = CoreConfig(**{**SMALL, "sizes": (2, 3, 3, 2), "w_frac": (16, 10, 12), "w_bits": 20,
                        "i_frac": 14, "input_capacity": 12,
                        "lr_mant": (1, 1, 1), "lr_shift": (1, 1, 1), "silent_threshold": (1.0,) * 3,
                        "state_rounding": "floor", "early_stop": False, "n_steps": 16,
                        "revive_hidden": 1.0})
    rng = np.random.default_rng(8)
    weights, inputs = random_case(cfg, rng, n_samples=8, w_scale=1 << 18, max_spikes=12)
    labels = rng.integers(0, cfg.sizes[-1], size=8)
    dead = rng.random(cfg.n_hidden) < 0.7
    res = check_training_against_golden(cfg, weights, inputs, labels, dead)
    assert res.n_revived.sum() > 0, "coverage: revival injections"
    assert any(res.active[b] == 0 and res.n_revived[b] > 0 for b in range(8)), "coverage: masked + injection"
    both = 0  # steps in which both hidden layers spike
    for b in range(8):
        st, nrn = res.rec_step[b, : res.rec_count[b]], res.rec_neuron[b, : res.rec_count[b]]
        both += len(set(st[nrn < 3].tolist()) & set(st[nrn >= 3].tolist()))
    assert both > 0, "coverage: both hidden layers spiking in one step"


@pytest.mark.parametrize(("w_scale", "seed", "flags"),
                         [(20000, 8, "LAM_SAT|GRAD_SAT"), (12000, 20, "RECIP_CLAMP")])
def test_core_training_saturation(w_scale, seed, flags):
    """12-bit adjoint and gradient words (Q4.8): LAM_SAT, GRAD_SAT and RECIP_CLAMP raised as golden
    raises them, with saturated gradient words compared. (The seeds are ones where golden raises
    the flags; a search over 160 draws found these.)"""
    from evcore.golden.config import Flag

    cfg = CoreConfig(**{**SMALL, "lam_bits": 12, "lam_frac": 8, "grad_bits": 12, "loss_scale_log2": -3})
    rng = np.random.default_rng(seed)
    weights, inputs = random_case(cfg, rng, n_samples=8, w_scale=w_scale, max_spikes=7)
    labels = rng.integers(0, cfg.sizes[-1], size=8)
    res = check_training_against_golden(cfg, weights, inputs, labels)
    raised = Flag(int(np.bitwise_or.reduce(res.flags)))
    for name in flags.split("|"):
        assert Flag[name] in raised, f"{name} not exercised: {raised}"


def rtl_minibatches(cfg, weights_raw, batches, dead=None):
    """Train on each (steps, ids, counts, labels) minibatch, then update; returns per minibatch the
    training samples' `run_sample` dicts and `run_update`'s values."""
    from evcore.tb.core.host import run_update

    dut = Core(cfg)
    out = []

    async def bench(ctx):
        bus = AmaranthBus(ctx, dut)
        await load_chip(bus, cfg, weights_raw, dead)
        for steps, ids, counts, labels in batches:
            samples = [await run_sample(bus, cfg, steps[b], ids[b], int(counts[b]), int(labels[b]))
                       for b in range(len(counts))]
            upd = await run_update(bus, cfg)
            # An update does not count in CYC_TOTAL (§7): it still holds the last sample's forward pass.
            (upd["cyc_total"],) = await bus.read_many([(Region.REG, Reg.CYC_TOTAL.value)])
            out.append((samples, upd))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def check_minibatches_against_golden(cfg, weights_raw, batches, dead=None):
    """Every sample of every minibatch as in `check_training_against_golden`, and after every
    update: every weight, gradient (cleared), first and second moment, the LFSR state, the update's
    flags and cycle count, and the dead bits of §5.6."""
    from evcore.golden.config import Flag

    gold = FixedCore(cfg, weights_raw)
    if dead is not None:
        gold.dead = np.asarray(dead, dtype=bool)
    encoded = []
    for inputs, labels in batches:
        steps, ids, counts = encode_uncut(cfg, inputs)
        encoded.append((steps, ids, counts, labels))
    rtl = rtl_minibatches(cfg, weights_raw, encoded, dead)
    for k, ((inputs, labels), (samples, upd)) in enumerate(zip(batches, rtl, strict=True)):
        _, _, res = gold.gradient(inputs, labels)
        for b, r in enumerate(samples):
            bad = first_mismatch(cfg, res, b, r, check_state=False)
            bad = bad or first_train_mismatch(cfg, res, b, r, last=b == len(samples) - 1)
            assert bad is None, f"minibatch {k}, training sample {b}: {bad}; config {cfg.to_json()}"
        gold.clear_flags()
        flags = gold.update()
        want = {"w": np.concatenate([w.ravel() for w in gold.weights_raw]), "g": np.zeros(cfg.n_synapses)}
        if cfg.has_momentum:
            want["m"] = np.concatenate([m.ravel() for m in gold.momentum_raw])
        if "v" in upd:
            want["v"] = np.concatenate([v.ravel() for v in gold.second_moment_raw])
        bad = first_synapse_mismatch(cfg, want, upd)
        assert bad is None, f"after update {k}: {bad}; config {cfg.to_json()}"
        lfsr = (gold.lfsr_state, upd["lfsr"])
        assert lfsr[0] == lfsr[1], f"after update {k}: LFSR golden {lfsr[0]:#x} rtl {lfsr[1]:#x}"
        assert Flag(upd["flags"]) == flags, f"after update {k}: flags {flags!r} rtl {Flag(upd['flags'])!r}"
        if cfg.revive_hidden > 0:
            assert (upd["dead"] == gold.dead).all() and not upd["fired"].any(), f"after update {k}: dead bits"
        assert upd["cyc_update"] == gold.update_cycles(), "update cycles differ from the model"
        assert upd["cyc_total"] == samples[-1]["cyc_total"], "the update counted in CYC_TOTAL (§7)"
    return gold


#: Learning-rate mantissas that move weights in a few minibatches of SMALL, per optimizer.
MINIBATCH_LR = {"adam": (30000, 30000), "lion": (3000, 3000), "sgd": (20000, 20000)}


def minibatches_equal_golden(cfg, seed, n_batches):
    """`n_batches` minibatches of 4 random training samples, an update after each, on the RTL against
    golden (`check_minibatches_against_golden`); the updates must move weights. Returns golden."""
    rng = np.random.default_rng(seed)
    weights, _ = random_case(cfg, rng, n_samples=1, w_scale=20000, max_spikes=7)
    batches = []
    for _ in range(n_batches):
        _, inputs = random_case(cfg, rng, n_samples=4, w_scale=1, max_spikes=7)
        batches.append((inputs, rng.integers(0, cfg.sizes[-1], size=4)))
    w0 = np.concatenate([w.ravel() for w in weights])  # a copy: the golden core updates in place
    gold = check_minibatches_against_golden(cfg, weights, batches)
    moved = np.concatenate([w.ravel() for w in gold.weights_raw]) != w0
    assert moved.any(), "the updates must move weights"
    return gold


@pytest.mark.parametrize("optimizer", ["adam", "lion", "sgd"])
def test_core_minibatches_and_updates(optimizer):
    """3-4-2, three minibatches of 4 training samples with an update after each, for every
    optimizer (stochastic rounding, §6.4), with the revival: the dead bits set by the first update
    change the next minibatch's backward passes (§5.6)."""
    fields = {**SMALL, "lr_mant": MINIBATCH_LR[optimizer], "lr_shift": (12, 12)}
    cfg = CoreConfig(**fields, optimizer=optimizer, revive_hidden=1.0)
    gold = minibatches_equal_golden(cfg, seed=21, n_batches=3)
    assert gold.dead.any() and not gold.dead.all(), "coverage: the dead set after an update"


@pytest.mark.parametrize("optimizer", ["adam", "lion", "sgd"])
def test_core_area_build_minibatches_and_updates(optimizer):
    """The area build (§8): the same minibatches and updates with the sequenced update on the
    multiplier lane (§6.6), every weight, moment and v̂ and the update's cycles equal golden's
    (cyc_update_word x N + cyc_sweep_latency)."""
    fields = {**SMALL, "lr_mant": MINIBATCH_LR[optimizer], "lr_shift": (12, 12)}
    cfg = area_cfg(**fields, optimizer=optimizer, revive_hidden=1.0)
    minibatches_equal_golden(cfg, seed=22, n_batches=2)


@pytest.mark.parametrize(("changes", "message"), [
    (dict(build="area"), r"^CoreConfig.cyc_neuron = 1: the area build's neuron unit takes its 3 products"),
    (dict(build="area", cyc_neuron=3),
     r"^CoreConfig.cyc_update_word = 2: the area build's update needs >= \d+ cycles"),
    (dict(build="area", cyc_neuron=3, cyc_update_word=64),  # the jump's serial shift (§5.3)
     r"^CoreConfig.cyc_jump = 8: the RTL jump needs >= 29 cycles$"),
    (dict(cyc_update_word=3), r"^CoreConfig.cyc_update_word = 3: the throughput build's update takes 2"),
    (dict(cyc_neuron=3), r"^CoreConfig.cyc_neuron = 3: the throughput build sweeps one neuron per cycle"),
])
def test_core_rejects_unbuildable_area_fields(changes, message):
    with pytest.raises(ValueError, match=message):
        Core(CoreConfig(**SMALL, **changes))


def area_cfg(cyc_neuron=3, **fields):
    """A small config as an area build: the neuron unit and the update on the lane (§8)."""
    from evcore.hdl.core import min_cyc_jump, multiplier_lane
    from evcore.hdl.update_seq import word_cycles

    cfg = CoreConfig(**fields, build="area", cyc_neuron=cyc_neuron)
    return cfg.replace(cyc_update_word=word_cycles(cfg, multiplier_lane(cfg)), cyc_jump=min_cyc_jump(cfg))


@pytest.mark.parametrize(("seed", "cyc_neuron"), [(0, 3), (1, 3), (2, 4)])
def test_core_area_build_forward(seed, cyc_neuron):
    """The area build's sweep (one neuron per three cycles; per four: the neuron unit idles a cycle
    per neuron) against golden, inference samples: every value and the sweep's cycles (cyc_neuron
    per neuron, §7)."""
    cfg = area_cfg(cyc_neuron, **SMALL)
    rng = np.random.default_rng(50 + seed)
    weights, inputs = random_case(cfg, rng, n_samples=6, w_scale=32767, max_spikes=7)
    check_against_golden(cfg, weights, inputs, training=True)


def test_core_area_build_training_two_hidden():
    """Two hidden layers, revival, a minibatch of training samples on the area build."""
    cfg = area_cfg(**{**SMALL, "sizes": (3, 4, 3, 2), "w_frac": (11, 12, 12), "lr_mant": (1, 1, 1),
                      "lr_shift": (1, 1, 1), "silent_threshold": (1.0,) * 3}, revive_hidden=1.0)
    rng = np.random.default_rng(60)
    weights, inputs = random_case(cfg, rng, n_samples=6, w_scale=32767, max_spikes=7)
    labels = rng.integers(0, cfg.sizes[-1], size=6)
    res = check_training_against_golden(cfg, weights, inputs, labels, rng.random(cfg.n_hidden) < 0.5)
    assert any(backward_ran(res, b) for b in range(6)), "no sample ran its backward pass"
