# amaranth: UnusedElaboratable=no
"""Loss shaping (docs/core.md §6.5) in `evcore.hdl.core.Core` against `evcore.golden.core.FixedCore`.

Minibatches of training samples, each followed by the update, in the Amaranth simulator: after
every training sample the counters SILENT + l equal the silent (sample, neuron) pairs golden's
`FixedResult.spiked` gives for the minibatch so far, before every update they equal golden's
`FixedCore._silent`, and after it every weight, moment, v̂, the LFSR, the flags and the update's
cycle count equal golden's (whose `bump_layer` chose the bump). Weights built so that the counts
are known: hidden neurons 0 and 1 never spike (inhibitory weights), 2 and 3 spike at every input,
output 0 spikes and output 1 never does, so per sample 2 of 4 hidden and 1 of 2 output neurons
are silent: in a minibatch of 4, 8 of 16 and 4 of 8.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from evcore.golden.config import CoreConfig, Flag
from evcore.golden.core import FixedCore
from evcore.hdl.core import Core
from evcore.tb.core.host import (
    encode_uncut,
    first_mismatch,
    first_synapse_mismatch,
    first_train_mismatch,
    read_silent,
    run_sample,
    run_update,
)

from .test_core import REGISTERED, SMALL, AmaranthBus, load_chip, random_case

#: SMALL with minibatches of 4 (silent_count_max = floor(threshold · 4 · N_l)) and a bump of
#: 0.05: 102 LSB in matrix 0 (f_w = 11), 205 in matrix 1, far above the learning rate's steps.
SHAPED = dict(SMALL, batch_size=4, silent_bump=0.05)


def half_silent_weights(cfg):
    """The first half (rounded down) of the hidden neurons inhibited, the rest excited by every
    input; output 0 excited by the excited hidden neurons, the other outputs by nothing."""
    hi = (1 << (cfg.w_bits - 1)) - 1
    n_in, n_hid, n_out = cfg.sizes
    w0 = np.full((n_hid, n_in), hi, dtype=np.int64)
    w0[: n_hid // 2] = -hi - 1
    w1 = np.zeros((n_out, n_hid), dtype=np.int64)
    w1[0, n_hid // 2 :] = hi // 4
    return [w0, w1]


def early_inputs(cfg, rng, n_samples):
    """1-3 input spikes per sample in the first third of the trial: hidden 2 and 3 always spike."""
    times = rng.uniform(0, cfg.t_max_s / 3, size=(n_samples, 3))
    ids = rng.integers(0, cfg.sizes[0], size=(n_samples, 3))
    return times, ids, rng.integers(1, 4, size=n_samples)


def rtl_shaping_run(cfg, weights_raw, batches, dead=None, infer_after=None):
    """Train on each encoded (steps, ids, counts, labels) minibatch, then update. With
    `infer_after` = b, an inference sample (minibatch 0's sample 0 again) runs after training
    sample b of minibatch 0, and the counters are read before and after it."""
    dut = Core(cfg)
    out, around_infer = [], []

    async def bench(ctx):
        bus = AmaranthBus(ctx, dut)
        await load_chip(bus, cfg, weights_raw, dead)
        for k, (steps, ids, counts, labels) in enumerate(batches):
            samples = []
            for b in range(len(counts)):
                samples.append(await run_sample(bus, cfg, steps[b], ids[b], int(counts[b]), int(labels[b])))
                if k == 0 and b == infer_after:
                    around_infer.append(await read_silent(bus, cfg))
                    await run_sample(bus, cfg, steps[0], ids[0], int(counts[0]))
                    around_infer.append(await read_silent(bus, cfg))
            upd = await run_update(bus, cfg)
            upd["silent_after"] = await read_silent(bus, cfg)
            out.append((samples, upd))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out, around_infer


def silent_pairs(cfg, res, upto):
    """Silent (sample, neuron) pairs of each shaped layer in samples 0..upto of a golden result
    (0 for a layer that is not shaped: the RTL builds no counter there)."""
    offs = np.cumsum([0, *cfg.sizes[1:]])
    return [int((res.spiked[: upto + 1, offs[l] : offs[l + 1]] == 0).sum()) if cfg.silent_threshold[l] < 1
            else 0 for l in range(cfg.n_layers)]


def check_shaping(cfg, weights_raw, batches, dead=None, infer_after=None, counts=None):
    """Every minibatch on the RTL against golden (see the module docstring); returns golden's
    bump layer (-1: none) of every update; `counts` gets golden's counters before each."""
    gold = FixedCore(cfg, weights_raw)
    if dead is not None:
        gold.dead = np.asarray(dead, dtype=bool)
    encoded = [(*encode_uncut(cfg, inputs), labels) for inputs, labels in batches]
    rtl, around_infer = rtl_shaping_run(cfg, weights_raw, encoded, dead, infer_after)
    if infer_after is not None:
        assert around_infer[0] == around_infer[1], f"an inference sample changed the counters: {around_infer}"
    bumped = []
    for k, ((inputs, labels), (samples, upd)) in enumerate(zip(batches, rtl, strict=True)):
        _, _, res = gold.gradient(inputs, labels)
        for b, r in enumerate(samples):
            bad = first_mismatch(cfg, res, b, r, check_state=False)
            bad = bad or first_train_mismatch(cfg, res, b, r, last=b == len(samples) - 1)
            assert bad is None, f"minibatch {k}, training sample {b}: {bad}; config {cfg.to_json()}"
            want = silent_pairs(cfg, res, b)
            for l in range(cfg.n_layers):
                assert r["silent"][l] == want[l], (
                    f"minibatch {k}, after training sample {b}: SILENT + {l} (layer {l + 1}) golden "
                    f"{want[l]} rtl {r['silent'][l]}")
        shaped = np.array(cfg.silent_threshold) < 1
        want = np.where(shaped, gold._silent, 0)
        assert upd["silent"].tolist() == want.tolist(), (
            f"before update {k}: SILENT golden {want.tolist()} rtl {upd['silent'].tolist()}")
        bumped.append(gold.bump_layer())
        if counts is not None:
            counts.append(gold._silent.tolist())
        gold.clear_flags()
        flags = gold.update()
        want = {"w": np.concatenate([w.ravel() for w in gold.weights_raw]), "g": np.zeros(cfg.n_synapses)}
        if cfg.has_momentum:
            want["m"] = np.concatenate([m.ravel() for m in gold.momentum_raw])
        if "v" in upd:
            want["v"] = np.concatenate([v.ravel() for v in gold.second_moment_raw])
        bad = first_synapse_mismatch(cfg, want, upd)
        which = f"matrix {bumped[-1]}" if bumped[-1] >= 0 else "no matrix"
        assert bad is None, f"after update {k} (golden bumps {which}): {bad}"
        assert (gold.lfsr_state, Flag(upd["flags"])) == (upd["lfsr"], flags), f"after update {k}: LFSR, flags"
        assert upd["cyc_update"] == gold.update_cycles(), "the update's cycles differ from the model"
        assert upd["silent_after"] == [0] * cfg.n_layers, f"after update {k}: counters not cleared"
        if cfg.revive_hidden > 0:
            assert (upd["dead"] == gold.dead).all(), f"after update {k}: dead bits"
    return bumped


def half_silent_batches(cfg, rng, n_batches):
    return [(early_inputs(cfg, rng, 4), rng.integers(0, 2, size=4)) for _ in range(n_batches)]


@pytest.mark.parametrize(("registered", "revive"), [(False, 0.0), (True, 0.0), (True, 1.0)])
def test_shaping_bumps_the_lowest_layer(registered, revive):
    """Thresholds 0.4: layer 1 has 8 > floor(6.4) silent pairs, layer 2 4 > floor(3.2): both are
    over, the lower is bumped (matrix 0 grows by 102 LSB), twice. An inference sample in the
    minibatch leaves the counters alone; masked samples (label 1: silent) count. `registered`:
    3-3-3 with ram_read_regs = 1 (the spiked bit's read registered, §8, from the spiked memory or
    the vmax word), thresholds 0.3: 4 of 12 silent pairs > floor(3.6) and 8 of 12."""
    base = dict(REGISTERED, batch_size=4, silent_bump=0.05) if registered else SHAPED
    cfg = CoreConfig(**{**base, "silent_threshold": (0.3, 0.3) if registered else (0.4, 0.4)},
                     revive_hidden=revive)
    rng = np.random.default_rng(50)
    batches = half_silent_batches(cfg, rng, 2)
    assert (batches[0][1] == 1).any(), "coverage: a masked sample"
    assert check_shaping(cfg, half_silent_weights(cfg), batches, infer_after=1) == [0, 0]


def test_shaping_bumps_outputs_with_revival():
    """With the vmax memory (its spiked bit) and dead neurons: layer 1 has 8 <= floor(9.6), layer
    2 4 > floor(3.2): the outputs' matrix is bumped."""
    cfg = CoreConfig(**{**SHAPED, "silent_threshold": (0.6, 0.4)}, revive_hidden=1.0)
    rng = np.random.default_rng(51)
    dead = np.array([True, False, True, False])
    assert check_shaping(cfg, half_silent_weights(cfg), half_silent_batches(cfg, rng, 2), dead) == [1, 1]


@pytest.mark.parametrize(("revive", "threshold", "bumped"), [(0.0, 0.5, -1), (1.0, 0.5, -1), (1.0, 0.49, 0)])
def test_shaping_threshold_is_strict(revive, threshold, bumped):
    """8 silent pairs in layer 1 against floor(0.5 · 16) = 8: no bump (golden's count > limit,
    not >=); against floor(0.49 · 16) = 7: bumped. With and without the vmax memory."""
    cfg = CoreConfig(**{**SHAPED, "silent_threshold": (threshold, 1.0)}, revive_hidden=revive)
    rng = np.random.default_rng(52)
    batches = half_silent_batches(cfg, rng, 1)
    assert cfg.silent_count_max[0] == (8 if threshold == 0.5 else 7)
    assert check_shaping(cfg, half_silent_weights(cfg), batches) == [bumped]


def test_shaping_two_hidden_layers_no_bump():
    """Two hidden layers, only the middle one shaped (the others read 0), random weights strong
    enough that no layer is over its limit: counted exactly, nothing bumped."""
    cfg = CoreConfig(**{**SHAPED, "sizes": (2, 3, 3, 2), "w_frac": (11, 11, 12), "lr_mant": (1, 1, 1),
                        "lr_shift": (1, 1, 1), "silent_threshold": (1.0, 0.9, 1.0), "input_capacity": 8})
    rng = np.random.default_rng(53)
    weights, _ = random_case(cfg, rng, n_samples=1, w_scale=32767, max_spikes=6)
    batches = [(random_case(cfg, rng, n_samples=4, w_scale=1, max_spikes=6)[1], rng.integers(0, 2, size=4))
               for _ in range(2)]
    counts = []
    assert check_shaping(cfg, weights, batches, counts=counts) == [-1, -1]
    assert all(0 < c[1] <= cfg.silent_count_max[1] for c in counts), f"coverage: silent pairs {counts}"


def test_shaping_counters_over_the_host_link():
    """docs/protocol.md: SILENT + l is read/write over the byte link; a layer that is not shaped
    has no counter (reads 0 after a write); SILENT + L is no register."""
    from evcore.hdl.core import Reg, Region
    from evcore.hdl.protocol import Op, Status, command

    from .test_protocol import simulate

    cfg = CoreConfig(**{**SHAPED, "silent_threshold": (0.5, 1.0)})
    seen = []

    async def bench(link, dut):
        for l in range(cfg.n_layers):
            await link.write(Region.REG, Reg.SILENT.value + l, 1234 + l)
        seen.extend(await link.read_many([(Region.REG, Reg.SILENT.value + l) for l in range(cfg.n_layers)]))
        raw = command(link.frame, Op.WRITE, region=Region.REG, addr=Reg.SILENT.value + cfg.n_layers, data=1)
        seen.append((await link.transact(raw))[0])

    simulate(cfg, bench)
    assert seen == [1234, 0, Status.BAD_ADDRESS]
