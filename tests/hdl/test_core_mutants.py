# amaranth: UnusedElaboratable=no
"""`evcore.hdl.core.Core`: training cases the mutation run found untested (docs/mutation.md).

Three outputs, no early stop, strong weights: outputs k >= 1 jump while the hidden neurons just
below the output block (addresses out_base - k) carry a non-zero adjoint, so an output jump that
read the wrong neuron's Λ would differ from golden (the 3-4-2 tests have Λ = 0 there). And a weight
format finer than I's with half-up rounding (the presets have f_w < f_I, where the fan-in's
rounding is a left shift; the f_w > f_I test uses floor), so the fan-in's rounding term counts.
And a running maximum of V' (§3.6) reached at step 1, from an input at step 0, then pulled down by
an inhibitory input at step 1 (random inputs hardly ever land at step 0). And the host port's
register writes: only a write to IN_COUNT empties the input buffer (the host sequence of the other
tests writes FLAGS and LABEL before it pushes, where a wrong clear goes unseen), and only a write
to LABEL sets the label (not a write elsewhere at the same address), the per-matrix registers
(LR_MANT, SILENT) read back and change only on a write, and the input buffer reads back while idle.
And GRAD_SAT raised by input-spike gradients alone, a one-entry record at the last step, an
empty record after a full one, and a scan that reaches entry 0 below a stale entry of that step.
And a replay whose D̂ = Λ_V − Λ_I
leaves the adjoint word (found by a hill-climbing search over a 1-2-2-2 network, then fixed here),
and one where that is the sample's only LAM_SAT.
"""

import inspect
import sys

import numpy as np
import pytest
from amaranth.sim import Simulator

import evcore.golden.adjoint as golden_adjoint
import evcore.golden.core as golden_core
from evcore.golden.config import CoreConfig, Flag
from evcore.golden.core import FixedCore
from evcore.hdl.core import Core, Reg, Region
from evcore.hdl.input_buffer import input_entry_layout

from .test_core import (
    REGISTERED,
    SMALL,
    AmaranthBus,
    backward_ran,
    check_against_golden,
    check_training_against_golden,
    random_case,
)


def test_core_training_three_outputs_late_hidden_spikes():
    cfg = CoreConfig(**{**SMALL, "sizes": (3, 4, 3), "early_stop": False})
    rng = np.random.default_rng(31)
    weights, inputs = random_case(cfg, rng, n_samples=4, w_scale=32767, max_spikes=7)
    labels = rng.integers(0, cfg.sizes[-1], size=4)
    res = check_training_against_golden(cfg, weights, inputs, labels)
    assert (res.first_step[:, 1:] < cfg.n_steps).any(), "coverage: an output k >= 1 spikes"


def test_core_fine_weights_half_up():
    cfg = CoreConfig(**{**SMALL, "sizes": (2, 3, 1, 2), "w_frac": (16, 10, 12), "w_bits": 20,
                        "i_frac": 14, "input_capacity": 12,
                        "lr_mant": (1, 1, 1), "lr_shift": (1, 1, 1), "silent_threshold": (1.0,) * 3,
                        "state_rounding": "half_up", "early_stop": False, "n_steps": 16})
    rng = np.random.default_rng(7)
    weights, inputs = random_case(cfg, rng, n_samples=3, w_scale=1 << 19, max_spikes=12)
    # Odd weights: rounding f_w = 16 to f_I = 14 drops two bits, half of which round up.
    weights[0] |= 3
    res = check_against_golden(cfg, weights, inputs)
    assert (res.layer_counts > 0).all(), "every layer must spike in every sample"


def test_core_vmax_at_step_one():
    cfg = CoreConfig(**SMALL, revive_hidden=1.0)
    hi = (1 << (cfg.w_bits - 1)) - 1
    w0 = np.zeros((cfg.sizes[1], cfg.sizes[0]), dtype=np.int64)
    w0[:, 0] = hi // 8  # input 0: excitatory, below threshold
    w0[:, 1] = -hi - 1  # input 1: inhibitory
    w1 = np.zeros((cfg.sizes[2], cfg.sizes[1]), dtype=np.int64)
    times = np.array([[0.0, cfg.dt_s], [0.0, np.inf]])
    ids = np.array([[0, 1], [0, 1]])
    res = check_against_golden(cfg, [w0, w1], (times, ids, np.array([2, 1])))
    assert (res.vmax_step[0] == 1).all() and (res.vmax[0] > 0).all(), "coverage: the maximum at step 1"


def test_register_writes_hit_only_their_register():
    cfg = CoreConfig(**SMALL)
    dut = Core(cfg)
    entry = input_entry_layout(cfg)
    seen = []

    async def bench(ctx):
        bus = AmaranthBus(ctx, dut)

        async def count():
            return (await bus.read_many([(Region.REG, Reg.IN_COUNT.value)]))[0]

        for n in range(2):
            await bus.write(Region.INPUT, 0, entry.const({"step": n, "id": 1}).as_bits())
        seen.append(await count())
        await bus.write(Region.REG, Reg.LABEL.value, 1)
        await bus.write(Region.REG, Reg.FLAGS.value, 0)
        seen.append(await count())
        await bus.write(Region.REG, Reg.IN_COUNT.value, 0)
        seen.append(await count())
        # The label, then a synapse word and a register read at the label's address.
        await bus.write(Region.SYNAPSE, Reg.LABEL.value, 0)
        seen.append((await bus.read_many([(Region.REG, Reg.LABEL.value)]))[0])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [2, 2, 0, 1]


def test_per_matrix_registers_read_back_and_change_only_on_a_write():
    """Each matrix's LR_MANT and each shaped layer's SILENT counter read back what was written to
    them (distinct values, so a neighbour's address shows), and a read, whatever the host drives
    on the write-data lines meanwhile, changes nothing (docs/protocol.md)."""
    cfg = CoreConfig(**{**SMALL, "silent_threshold": (0.5, 0.5)})
    dut = Core(cfg)
    regs = [Reg.LR_MANT.value, Reg.LR_MANT.value + 1, Reg.SILENT.value, Reg.SILENT.value + 1]
    values = [5, 9, 1234, 777]
    seen = []

    async def bench(ctx):
        bus = AmaranthBus(ctx, dut)
        for reg, v in zip(regs, values):
            await bus.write(Region.REG, reg, v)
        ctx.set(dut.bus_wdata, 3)  # stale data on the bus during the reads
        seen.extend(await bus.read_many([(Region.REG, reg) for reg in regs for _ in range(2)]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [v for v in values for _ in range(2)]


def test_input_buffer_reads_back_while_idle():
    """docs/protocol.md: the INPUT region reads back every entry written, in any order, while the
    core is idle (the input buffer's look-ahead port serves host reads then)."""
    cfg = CoreConfig(**SMALL)
    dut = Core(cfg)
    entry = input_entry_layout(cfg)
    words = [entry.const({"step": 2 * n + 1, "id": n % cfg.sizes[0]}).as_value().value for n in range(4)]
    seen = []

    async def bench(ctx):
        bus = AmaranthBus(ctx, dut)
        for w in words:
            await bus.write(Region.INPUT, 0, w)
        seen.extend(await bus.read_many([(Region.INPUT, a) for a in (3, 0, 2, 1, 1)]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [words[a] for a in (3, 0, 2, 1, 1)]


#: 12-bit adjoints and accumulators with little headroom (Q5.7, loss scale 2^-2) and up to 12
#: input spikes: an input synapse's gradient reaches the rail while no hidden one does (seed 383 of
#: a search over `random_case`), so GRAD_SAT is raised by the input-spike gradients alone (§5.4).
IN_GRAD_SAT_CFG = dict(SMALL, grad_bits=12, lam_bits=12, lam_frac=7, loss_scale_log2=-2, input_capacity=12,
                       early_stop=False)


def test_core_grad_sat_from_input_spikes_alone():
    cfg = CoreConfig(**IN_GRAD_SAT_CFG)
    rng = np.random.default_rng(383)
    weights, inputs = random_case(cfg, rng, n_samples=2, w_scale=32767, max_spikes=12)
    labels = rng.integers(0, 2, size=2)
    res = check_training_against_golden(cfg, weights, inputs, labels)
    rail = 1 << (cfg.grad_bits - 1)
    assert np.bitwise_or.reduce(res.flags) & Flag.GRAD_SAT, "coverage: GRAD_SAT"
    assert (np.abs(res.grads_raw[0]) >= rail - 1).any(), "coverage: an input gradient at the rail"
    assert np.abs(res.grads_raw[1]).max() < rail - 64, "coverage: no hidden gradient near the rail"


def test_core_single_record_entry_at_the_last_step():
    """A masked sample whose backward pass runs for a revival injection (§5.6) and whose record
    holds one entry, at the sample's last step: the backward pass's first decision (at CLEAR's end)
    replays that entry (its cycles count, though every Λ is still 0 then)."""
    cfg = CoreConfig(**SMALL, revive_hidden=1.0)
    w0 = np.zeros((4, 3), dtype=np.int64)
    w0[0, 0], w0[1, 1] = 31868, 3125  # hidden 0 spikes once, late; hidden 1 stays below threshold
    w1 = np.array([[16700, 12827, 13539, 29930], [1194, 24721, 18387, -10804]], dtype=np.int64)
    inputs = (np.array([[0.020577702638101665, 0.0008060538073311446]]), np.array([[0, 1]]), np.array([2]))
    dead = np.array([False, True, True, True])
    res = check_training_against_golden(cfg, [w0, w1], inputs, np.array([0]), dead)
    assert res.rec_count[0] == 1 and res.rec_step[0, 0] == res.n_end[0], "coverage: one entry, at n_end"
    assert res.active[0] == 0 and res.n_revived[0] > 0, "coverage: masked, backward run by a revival"


def test_core_empty_record_after_a_full_one():
    """A sample that fills the 8-entry record, its last entry at step 23, then a masked sample with
    no hidden spike whose backward pass runs for a revival (§5.6) and starts at step 23: the record
    is empty, and its stale last entry (of the sample before) must not be replayed."""
    cfg = CoreConfig(**SMALL, revive_hidden=1.0)
    w0 = np.array([[0, 0, 9229], [0, 3125, 8100], [0, 0, 10093], [0, 0, 9306]], dtype=np.int64)
    w1 = np.array([[16700, 12827, 13539, 29930], [1194, 24721, 18387, -10804]], dtype=np.int64)
    t0 = [0.013914789469485763, 0.015259142150321647, 0.018975137431100447, 0.022212532158052405,
          0.022949698107641366]
    times = np.array([t0, [0.0008060538073311446] + [np.inf] * 4])
    inputs = (times, np.array([[2] * 5, [1] + [0] * 4]), np.array([5, 1]))
    dead = np.array([False, True, True, True])
    res = check_training_against_golden(cfg, [w0, w1], inputs, np.array([0, 0]), dead)
    assert res.rec_count[0] == cfg.record_capacity and res.rec_step[0, -1] == res.n_end[1], "coverage"
    assert res.rec_count[1] == 0 and res.n_revived[1] > 0, "coverage: empty record, a revival"


def test_core_scan_stops_at_record_entry_0():
    """Seed 1134 of a search over `random_case`: sample 0 fills the 8-entry record, sample 1 records
    fewer entries, its first at the step of sample 0's last (stale) entry: the backward scan of that
    step's block must stop at entry 0, not wrap to the stale entry (§5.5)."""
    cfg = CoreConfig(**SMALL)
    rng = np.random.default_rng(1134)
    weights, inputs = random_case(cfg, rng, n_samples=2, w_scale=32767, max_spikes=5)
    labels = rng.integers(0, 2, size=2)
    res = check_training_against_golden(cfg, weights, inputs, labels)
    assert res.rec_count[0] == cfg.record_capacity and 1 <= res.rec_count[1] < cfg.record_capacity
    assert res.rec_step[1, 0] == res.rec_step[0, -1] and res.active[1], "coverage: the stale entry's step"


#: A 1-2-2-2 network with 12-bit adjoints in which a second-layer neuron's Λ_V changes sign at a
#: grazing spike while its Λ_I still holds the other sign near the rail: the replay of a first-layer
#: spike a step earlier then reads D̂ = Λ_V − Λ_I beyond the word (LAM_SAT, §5.4).
D_SAT_CFG = dict(sizes=(1, 2, 2, 2), n_steps=40, dt_s=1e-3, record_capacity=32, input_capacity=8,
                 lr_mant=(1, 1, 1), lr_shift=(1, 1, 1), w_frac=(11, 12, 12), silent_threshold=(1.0,) * 3,
                 lam_bits=12, lam_frac=8, grad_bits=12, loss_scale_log2=-3, early_stop=False)
D_SAT_WEIGHTS = [[[7801], [8136]], [[-16152, -14529], [25797, 378]], [[-14943, 15338], [-4223, 29177]]]
D_SAT_TIMES_S = [0.002490674278752497, 0.0034022836724274265, 0.009986449364947483, 0.01951460891789856,
                 0.019978130734124105]


def _golden_d_saturations(monkeypatch, cfg, weights, inputs, labels, flag=True):
    """The D̂ values golden's replay saturates, seen by running its backward pass as Python with a
    recording `saturate` at the D̂ line (numba's compiled code cannot be watched); with
    ``flag=False`` that line's saturation raises no flag (its value is still clamped)."""
    fn = golden_adjoint.backward_sample.py_func
    lines, first = inspect.getsourcelines(fn)
    d_line = first + next(i for i, text in enumerate(lines) if "saturate(lam_v[gk] - lam_i[gk]" in text)
    seen, plain = [], golden_adjoint.saturate

    def recording(x, bits):
        out = plain(x, bits)
        if out[1] and sys._getframe(1).f_lineno == d_line:
            seen.append(int(x))
            if not flag:
                return out[0], False
        return out

    monkeypatch.setattr(golden_adjoint, "saturate", recording)
    monkeypatch.setattr(golden_core, "backward_sample", fn)
    monkeypatch.setattr(golden_core, "_backward_batch", golden_core._backward_batch.py_func)
    _, _, res = FixedCore(cfg, weights).gradient(inputs, labels)
    return seen, res


def _one_sample_case(cfg_fields, weights, times_s):
    """(cfg, weights, inputs, labels) of one training sample of input 0's spikes, label 0."""
    inputs = (np.array([times_s]), np.zeros((1, len(times_s)), dtype=np.int64), np.array([len(times_s)]))
    return CoreConfig(**cfg_fields), [np.array(w, dtype=np.int64) for w in weights], inputs, np.array([0])


def test_core_replay_saturates_d_hat(monkeypatch):
    cfg, weights, inputs, labels = _one_sample_case(D_SAT_CFG, D_SAT_WEIGHTS, D_SAT_TIMES_S)
    with monkeypatch.context() as mp:
        seen, res = _golden_d_saturations(mp, cfg, weights, inputs, labels)
    rail = 1 << (cfg.lam_bits - 1)
    assert seen and all(not -rail <= x < rail for x in seen), "coverage: golden's replay saturates no D̂"
    assert res.flags[0] & Flag.LAM_SAT
    check_training_against_golden(cfg, weights, inputs, labels)


#: The case above with a coarser Λ (f_Λ = 6), a stronger loss term (2^-1) and one weight and the
#: input times moved (a random search around it, golden only): the replay's D̂ saturation is then
#: the only LAM_SAT source of the sample.
D_ONLY_CFG = dict(D_SAT_CFG, lam_frac=6, loss_scale_log2=-1)
D_ONLY_WEIGHTS = [[[7801], [8136]], [[-16152, -14529], [25797, 378]], [[-14943, 15338], [-4223, 32511]]]
D_ONLY_TIMES_S = [0.001566916197148462, 0.0033052912087856846, 0.009683484318039367, 0.019924587753138042,
                  0.020276873375102512]


def test_core_lam_sat_from_the_replay_d_hat_alone(monkeypatch):
    """LAM_SAT raised by D̂'s saturation in the replay and by nothing else: golden with that one
    flag suppressed (the value still saturated) raises no LAM_SAT. Kills a D̂ check moved from
    the replay's write cycles to IN_GRAD's (docs/mutation.md)."""
    cfg, weights, inputs, labels = _one_sample_case(D_ONLY_CFG, D_ONLY_WEIGHTS, D_ONLY_TIMES_S)
    with monkeypatch.context() as mp:
        seen, res = _golden_d_saturations(mp, cfg, weights, inputs, labels)
    with monkeypatch.context() as mp:
        _, res_quiet = _golden_d_saturations(mp, cfg, weights, inputs, labels, flag=False)
    assert seen and res.flags[0] & Flag.LAM_SAT, "coverage: a D̂ saturation"
    assert not res_quiet.flags[0] & Flag.LAM_SAT, "coverage: LAM_SAT has another source"
    check_training_against_golden(cfg, weights, inputs, labels)


def test_core_record_first_bit_of_a_sample_starting_at_the_last_ones_step():
    """ram_read_regs (§8): record entry 0 is its step's first even when the sample before ended its
    record at that same step (the register of the last recorded step still holds it): the second
    sample is the first shifted so that its first spike falls at the first's last spike step."""
    cfg = CoreConfig(**REGISTERED)
    rng = np.random.default_rng(0)
    weights, (t, ids, c) = random_case(cfg, rng, n_samples=1, w_scale=32767, max_spikes=5)
    one = FixedCore(cfg, weights).run((t, ids, c))
    n = int(one.rec_count[0])
    first, last = int(one.rec_step[0, 0]), int(one.rec_step[0, n - 1])
    shifted = t.copy()
    shifted[0, : c[0]] += (last - first) * cfg.dt_s
    inputs = (np.concatenate([t, shifted]), np.concatenate([ids, ids]), np.array([c[0], c[0]]))
    labels = np.array([0, 1])
    res = check_training_against_golden(cfg, weights, inputs, labels)
    assert n >= 2 and last != first and int(res.rec_step[1, 0]) == last, "coverage: the steps meet"
    assert backward_ran(res, 1), "coverage: the second sample's backward pass scans its record"


@pytest.mark.parametrize("registered", [False, True], ids=["plain", "ram_read_regs"])
def test_host_reads_one_per_cycle_across_regions(registered):
    """Core's host port: the address may change after the ``bus_re`` cycle, so a read in every
    cycle, each at another region than the one before (block RAM, register, input buffer), returns
    what the same reads return one at a time; the region mux follows the read's own region."""
    cfg = CoreConfig(**(REGISTERED if registered else SMALL))
    dut = Core(cfg)
    entry = input_entry_layout(cfg)
    items = [(Region.SYNAPSE, 1), (Region.REG, Reg.LR_MANT.value), (Region.INPUT, 0), (Region.SYNAPSE, 2),
             (Region.REG, Reg.LR_MANT.value + 1), (Region.INPUT, 1), (Region.SYNAPSE, 0),
             (Region.REG, Reg.ID.value)]
    slow, fast = [], []

    async def bench(ctx):
        bus = AmaranthBus(ctx, dut)
        for a, w in enumerate((0x15, 0x2A, 0x33)):
            await bus.write(Region.SYNAPSE, a, w)
        await bus.write(Region.REG, Reg.LR_MANT.value, 5)
        await bus.write(Region.REG, Reg.LR_MANT.value + 1, 9)
        for n in range(2):
            await bus.write(Region.INPUT, 0, entry.const({"step": 3 + n, "id": n + 1}).as_value().value)
        slow.extend(await bus.read_many(items))
        lat = dut.read_latency
        for i in range(len(items) + lat - 1):
            region, addr = items[i] if i < len(items) else (Region.STATE, 0)
            ctx.set(dut.bus_region, region)
            ctx.set(dut.bus_addr, addr)
            ctx.set(dut.bus_re, i < len(items))
            await ctx.tick()
            if i + 1 >= lat:
                fast.append(ctx.get(dut.bus_rdata))
        ctx.set(dut.bus_re, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(set(slow)) == len(slow), "the read-back values must differ to tell the reads apart"
    assert fast == slow
