"""The forward core (`evcore.hdl.core.Core`) on Verilator against `evcore.golden.core.FixedCore`.

Every exposed value of every sample is compared bit for bit (spike record entries, first-spike
registers, final V and I of every neuron, n_end, prediction, flags, spikes per layer) and the
measured cycle counters must equal the cycle model of docs/core.md §7 (total and per phase).
On a mismatch the test stops at the first differing quantity and names it with the sample, the
seed and the config; ``WAVES=1`` keeps ``sim_build/rtlcore-<id>/dump.vcd``.

The RTL runs through `evcore.tb.core.rtl_core.RtlCore`, the same object users swap in for
`FixedCore`; one Verilator model per configuration, one simulator process per weight set.
"""

import numpy as np
import pytest

from evcore.golden.config import ConfigError, CoreConfig, Flag
from evcore.golden.core import FixedCore, forward_phase_cycles
from evcore.hdl.adjoint import jump_latency
from evcore.hdl.core import jump_start_cycle, sweep_pipeline_cycles
from evcore.tb.core.host import first_mismatch, first_synapse_mismatch, first_train_mismatch
from evcore.tb.core.rtl_core import RtlCore

pytestmark = pytest.mark.sim


def raw_sample(rtl, b: int) -> dict:
    """Sample b of an RTL `FixedResult` as the raw dict `first_mismatch` reads."""
    raw = {
            "n_end": int(rtl.n_end[b]), "flags": int(rtl.flags[b]), "rec_count": int(rtl.rec_count[b]),
            "in_count": int(rtl.in_count[b]), "rec_step": rtl.rec_step[b], "rec_neuron": rtl.rec_neuron[b],
            "rec_cur": rtl.rec_cur[b], "first_step": rtl.first_step[b], "first_cur": rtl.first_cur[b],
            "first_v": rtl.first_v[b], "final_v": rtl.final_v[b], "final_cur": rtl.final_cur[b],
            "layer_counts": rtl.layer_counts[b], "n_inputs": int(rtl.n_inputs[b]),
            "cyc_total": int(rtl.cycles_forward[b]), "cyc_sweep": int(rtl.cycles_sweep[b]),
            "cyc_fanout": int(rtl.cycles_fanout[b]),
    }  # fmt: skip
    if rtl.vmax is not None:
        raw["vmax"], raw["vmax_step"] = rtl.vmax[b], rtl.vmax_step[b]
    if rtl.prob is not None:  # a training sample
        raw |= {"prob": rtl.prob[b], "lterm": rtl.lterm[b], "active": int(rtl.active[b]),
                "n_jumps": int(rtl.n_jumps[b]), "n_revived": int(rtl.n_revived[b]),
                "cyc_loss": int(rtl.cycles_loss[b]), "cyc_backward": int(rtl.cycles_backward[b]),
                "final_lam_v": rtl.final_lam_v, "final_lam_i": rtl.final_lam_i}
    return raw


def phase_cycles(cfg, gold):
    n_inputs = [(gold.in_step[b, : gold.in_count[b]] <= gold.n_end[b]).sum() for b in range(gold.batch_size)]
    return forward_phase_cycles(cfg, gold.n_end, n_inputs, gold.layer_counts)


def compare(cfg, weights_raw, inputs, what: str):
    """Run golden and RTL on one weight set and batch; fail naming the first differing value."""
    gold = FixedCore(cfg, weights_raw).run(inputs)
    rtl_core = RtlCore(cfg, weights_raw)
    rtl = rtl_core.run(inputs)
    sweep, fan = phase_cycles(cfg, gold)
    for b in range(gold.batch_size):
        raw = raw_sample(rtl, b)
        bad = first_mismatch(cfg, gold, b, raw, phase_cycles=(sweep[b], fan[b]))
        assert bad is None, f"{what}, sample {b}: {bad}; config {cfg.to_dict()}"
    assert (rtl.predictions == gold.predictions).all()  # follows from the registers; checked anyway
    return gold, rtl, rtl_core.last_run


def compare_training(cfg, weights_raw, inputs, labels, what: str, dead=None):
    """`gradient` of one minibatch on golden and RTL: every sample's forward values, loss-unit
    results, backward registers and cycle counts, the last sample's final Λ, every gradient word,
    and the §5.6 fired bits; fail naming the first differing value."""
    gold_core = FixedCore(cfg, weights_raw)
    rtl_core = RtlCore(cfg, weights_raw)
    if dead is not None:
        gold_core.dead = np.asarray(dead, dtype=bool)
        rtl_core.dead = np.asarray(dead, dtype=bool)
    _, g_grads, gold = gold_core.gradient(inputs, labels)
    _, r_grads, rtl = rtl_core.gradient(inputs, labels)
    sweep, fan = phase_cycles(cfg, gold)
    for b in range(gold.batch_size):
        raw = raw_sample(rtl, b)
        bad = first_mismatch(cfg, gold, b, raw, phase_cycles=(sweep[b], fan[b]), check_state=False)
        bad = bad or first_train_mismatch(cfg, gold, b, raw, last=b == gold.batch_size - 1)
        assert bad is None, f"{what}, training sample {b} (label {labels[b]}): {bad}; config {cfg.to_dict()}"
    flat = {"g": np.concatenate([g.ravel() for g in gold.grads_raw])}
    bad = first_synapse_mismatch(cfg, flat, {"g": np.concatenate([g.ravel() for g in rtl.grads_raw])})
    assert bad is None, f"{what}, gradient after the minibatch: {bad}"
    if cfg.revive_hidden > 0:
        assert (rtl_core.fired == gold_core.fired).all(), f"{what}: fired bits (§5.6) differ"
    assert all(np.array_equal(a, b) for a, b in zip(g_grads, r_grads))
    return gold, rtl, rtl_core.last_run


# --- up5k with Yin-Yang ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def yinyang():
    from evcore.sw.datasets import load_dataset

    return load_dataset("yinyang")


def test_up5k_yinyang_trained(yinyang, record_property):
    """A network trained two epochs with the on-chip arithmetic (train_fixed), 200 test samples."""
    from evcore.golden.core import train_fixed

    cfg = CoreConfig.up5k()
    core, metrics = train_fixed(cfg, yinyang, epochs=2, seed=0, progress=False, return_core=True)
    x, y = yinyang.x_test[:200], np.asarray(yinyang.y_test[:200])
    gold, rtl, run = compare(cfg, core.weights_raw, yinyang.encode(x), "up5k trained")
    acc = float((rtl.predictions == y).mean())
    rate = run["cycles"] / run["run_wall_s"]
    record_property("rtl_accuracy", acc)
    record_property("sim_cycles_per_s", rate)
    record_property("mean_cycles_per_inference", float(rtl.cycles_forward.mean()))
    print(f"up5k trained: RTL accuracy {acc:.3f} on 200 test samples (golden test acc "
          f"{metrics['test_accuracy']:.3f}); {rtl.cycles_forward.mean():.0f} cycles/inference; "
          f"{rate / 1e6:.2f} M simulated cycles/s while running")
    assert acc > 0.6, "a trained network should classify"


@pytest.mark.parametrize("seed", [0, 1])
def test_up5k_random_networks(yinyang, seed):
    """The paper's initialisation (normal (1.5, 0.78), (0.93, 0.1)) with Yin-Yang and random inputs;
    with the revival's vmax memory (§3.6)."""
    cfg = CoreConfig.up5k(revive_hidden=0.5)
    rng = np.random.default_rng(seed)
    init = ((1.5, 0.78), (0.93, 0.1))
    w = [rng.normal(mu, sd, size=(b, a)) for (mu, sd), a, b in zip(init, cfg.sizes, cfg.sizes[1:])]
    raw = FixedCore.from_float(cfg, w).weights_raw
    x = yinyang.x_test[rng.choice(len(yinyang.x_test), 20, replace=False)]
    t, i, c = yinyang.encode(x)
    k = 24  # random inputs, some beyond capacity (16) and beyond T
    t2 = rng.uniform(0, cfg.t_max_s * 1.05, size=(20, k))
    i2 = rng.integers(0, cfg.sizes[0], size=(20, k))
    c2 = rng.integers(0, k + 1, size=20)
    width = max(t.shape[1], k)
    times = np.full((40, width), np.inf)
    ids = np.zeros((40, width), dtype=np.int64)
    times[:20, : t.shape[1]], ids[:20, : t.shape[1]] = t, i
    times[20:, :k], ids[20:, :k] = t2, i2
    gold, _, _ = compare(cfg, raw, (times, ids, np.concatenate([c, c2])), f"up5k paper init seed {seed}")
    assert gold.layer_counts[:, 0].sum() > 0


# --- constrained-random configurations --------------------------------------------------------


def random_config(rng) -> CoreConfig:
    """A configuration CoreConfig accepts: 1 or 2 hidden layers, random widths, dt, capacities."""
    while True:
        # §8: registered block-RAM reads (ECP5) need layers of >= 3 neurons, and more cycles of
        # sweep fill and per jump: the least the RTL accepts (hdl.core.check_buildable).
        ram_read_regs = int(rng.random() < 0.4)
        rr_cfg = CoreConfig(ram_read_regs=ram_read_regs)
        low = 3 if ram_read_regs else 1
        n_hidden_layers = int(rng.integers(1, 3))
        sizes = (int(rng.integers(2, 6)), *(int(rng.integers(low, 9)) for _ in range(n_hidden_layers)),
                 int(rng.integers(low, 4)))
        n_w = len(sizes) - 1
        v_bits, i_bits = int(rng.integers(16, 29)), int(rng.integers(16, 29))
        w_bits = int(rng.integers(8, 19))
        n_hidden = sum(sizes[1:-1])
        latency = int(rng.integers(sweep_pipeline_cycles(rr_cfg), 7))
        try:
            return CoreConfig(
                sizes=sizes,
                dt_s=float(rng.choice([0.25e-3, 0.5e-3, 1e-3])),
                n_steps=int(rng.integers(8, 40)),
                coef_frac=int(rng.integers(12, 19)),
                v_bits=v_bits, v_frac=int(rng.integers(v_bits - 10, v_bits - 4)),
                i_bits=i_bits, i_frac=int(rng.integers(i_bits - 10, i_bits - 5)),
                w_bits=w_bits, w_frac=tuple(int(rng.integers(w_bits - 7, w_bits - 2)) for _ in range(n_w)),
                lr_mant=(1,) * n_w, lr_shift=(1,) * n_w, silent_threshold=(1.0,) * n_w,
                record_capacity=int(rng.integers(n_hidden, 3 * n_hidden + 1)),
                input_capacity=int(rng.integers(sizes[0], 3 * sizes[0] + 1)),
                early_stop=bool(rng.random() < 0.5),
                state_rounding=str(rng.choice(["half_up", "floor"])),
                cyc_sweep_latency=latency,
                ram_read_regs=ram_read_regs,
                cyc_jump=jump_start_cycle(rr_cfg) + jump_latency(rr_cfg) + 1,
                cyc_synapse_rmw=2 + ram_read_regs,
                revive_hidden=float(rng.choice([0.0, 1.0])),
            )  # fmt: skip
        except ConfigError:
            continue


def random_batch(cfg, rng, n_random: int):
    """Named cases first: empty, every input at every step (input overflow), one input spiking
    `input_capacity` times in one step (§3.1 keeps ties: the fan-in word's worst case, §3.3), then
    random."""
    n_in, T = cfg.sizes[0], cfg.n_steps
    k = max(n_in * T, 3 * cfg.input_capacity)
    n_b = 3 + n_random
    times = np.full((n_b, k), np.inf)
    ids = np.zeros((n_b, k), dtype=np.int64)
    counts = np.zeros(n_b, dtype=np.int64)
    every = np.repeat(np.arange(T), n_in)[:k] * cfg.dt_s
    times[1, : every.size] = every
    ids[1, : every.size] = np.tile(np.arange(n_in), T)[:k]
    counts[1] = every.size
    times[2, : cfg.input_capacity] = (T // 3) * cfg.dt_s
    counts[2] = cfg.input_capacity
    for b in range(3, n_b):
        c = int(rng.integers(1, 2 * cfg.input_capacity + 1))
        times[b, :c] = rng.uniform(0, cfg.t_max_s, size=c)
        ids[b, :c] = rng.integers(0, n_in, size=c)
        counts[b] = c
    return times, ids, counts


def random_weights(cfg, rng, mode: str):
    lo, hi = -(1 << (cfg.w_bits - 1)), (1 << (cfg.w_bits - 1)) - 1
    out = []
    for a, b in zip(cfg.sizes, cfg.sizes[1:]):
        if mode == "saturating":  # every weight on a rail, mostly the positive one
            out.append(np.where(rng.random((b, a)) < 0.8, hi, lo))
        else:
            out.append(rng.integers(lo // 3, hi + 1, size=(b, a)))
    return out


CONFIG_SEEDS = [11, 12, 13]


@pytest.mark.parametrize("seed", CONFIG_SEEDS)
def test_random_configs(seed):
    """Random config, random and saturating weights, empty / every-input / random samples."""
    rng = np.random.default_rng(seed)
    cfg = random_config(rng)
    raised = Flag(0)
    for mode in ("random", "saturating"):
        weights = random_weights(cfg, rng, mode)
        gold, _, _ = compare(cfg, weights, random_batch(cfg, rng, 6), f"seed {seed} {mode} weights")
        raised |= Flag(int(np.bitwise_or.reduce(gold.flags)))
    assert Flag.IN_OVF in raised, "the every-input sample must overflow the input buffer"


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
def test_random_configs_long(seed):
    test_random_configs(seed)


# --- training: loss unit and backward pass -----------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_up5k_yinyang_gradient(yinyang, seed, record_property):
    """One minibatch (32 Yin-Yang training samples) in the up5k core with the paper's
    initialisation: the whole training step on the RTL equals FixedCore.gradient. Seed 1 with half
    of the hidden neurons dead, so that the revival injects (§5.6)."""
    cfg = CoreConfig.up5k()
    rng = np.random.default_rng(seed)
    init = ((1.5, 0.78), (0.93, 0.1))
    w = [rng.normal(mu, sd, size=(b, a)) for (mu, sd), a, b in zip(init, cfg.sizes, cfg.sizes[1:])]
    raw = FixedCore.from_float(cfg, w).weights_raw
    pick = rng.choice(len(yinyang.x_train), 32, replace=False)
    labels = np.asarray(yinyang.y_train)[pick].astype(np.int64)
    dead = rng.random(cfg.n_hidden) < 0.5 if seed == 1 else None
    gold, rtl, run = compare_training(cfg, raw, yinyang.encode(yinyang.x_train[pick]), labels,
                                      f"up5k gradient seed {seed}", dead)
    assert gold.active.sum() > 0 and np.abs(np.concatenate([g.ravel() for g in gold.grads_raw])).sum() > 0
    if seed == 1:
        assert gold.n_revived.sum() > 0, "coverage: revival injections"
    total = rtl.cycles_forward + rtl.cycles_loss + rtl.cycles_backward
    record_property("mean_cycles_per_training_sample", float(total.mean()))
    print(f"up5k training sample: {total.mean():.0f} cycles on average (forward "
          f"{rtl.cycles_forward.mean():.0f}, loss {rtl.cycles_loss.mean():.0f}, backward "
          f"{rtl.cycles_backward.mean():.0f}); {run['cycles'] / run['run_wall_s'] / 1e6:.2f} M cycles/s")


@pytest.mark.parametrize("seed", CONFIG_SEEDS)
def test_random_configs_training(seed):
    """Random config and weights, random labels: a minibatch of training samples, half of the
    hidden neurons dead where the config has the revival."""
    rng = np.random.default_rng(1000 + seed)
    cfg = random_config(rng)
    weights = random_weights(cfg, rng, "random")
    times, ids, counts = random_batch(cfg, rng, 6)
    labels = rng.integers(0, cfg.sizes[-1], size=len(counts))
    dead = rng.random(cfg.n_hidden) < 0.5 if cfg.revive_hidden > 0 else None
    compare_training(cfg, weights, (times, ids, counts), labels, f"seed {seed} training", dead)


def train_run_equals_golden(cfg, dataset, n_batches: int, batch: int, seed: int, what: str):
    """`n_batches` minibatches of Yin-Yang training samples from the paper's initialisation (as
    train_fixed), each followed by the update, on golden and on the RTL in one simulator run:
    every sample's values and cycles, and after every update every weight, gradient (before and
    after), moment, v̂, the LFSR, flags, update cycles and dead bits must be equal."""
    from evcore.golden.core import _init_weights

    rng = np.random.default_rng(seed)
    init = ((1.5, 0.78), (0.93, 0.1))  # the paper's, as train_fixed's default
    weights = FixedCore.from_float(cfg, _init_weights(cfg, init, rng)).weights_raw
    order = rng.permutation(len(dataset.x_train))[: n_batches * batch]
    gold_core, rtl_core = FixedCore(cfg, weights), RtlCore(cfg, weights)
    batches = []
    for k in range(n_batches):
        idx = order[k * batch : (k + 1) * batch]
        labels = np.asarray(dataset.y_train)[idx].astype(np.int64)
        batches.append((dataset.encode(dataset.x_train[idx]), labels))
    _, rtl = rtl_core.train_minibatches(batches)
    upd = rtl_core.last_updates
    b0 = 0
    for k, (inputs, labels) in enumerate(batches):
        _, _, gold = gold_core.gradient(inputs, labels)
        sweep, fan = phase_cycles(cfg, gold)
        for b in range(len(labels)):
            raw = raw_sample(rtl, b0 + b)
            bad = first_mismatch(cfg, gold, b, raw, phase_cycles=(sweep[b], fan[b]), check_state=False)
            bad = bad or first_train_mismatch(cfg, gold, b, raw, last=False)
            assert bad is None, f"{what}, minibatch {k}, training sample {b}: {bad}"
        b0 += len(labels)
        want = {"g_before": np.concatenate([g.ravel() for g in gold.grads_raw])}
        flags = gold_core.update()
        want["w"] = np.concatenate([w.ravel() for w in gold_core.weights_raw])
        want["g"] = np.zeros(cfg.n_synapses)
        if cfg.has_momentum:
            want["m"] = np.concatenate([m.ravel() for m in gold_core.momentum_raw])
        if cfg.optimizer.value == "adam":
            want["v"] = np.concatenate([v.ravel() for v in gold_core.second_moment_raw])
        bad = first_synapse_mismatch(cfg, want, {f: upd[f][k] for f in want})
        assert bad is None, f"{what}, after update {k}: {bad}"
        assert int(upd["lfsr"][k]) == gold_core.lfsr_state, f"{what}, after update {k}: LFSR"
        assert Flag(int(upd["flags"][k])) == flags, f"{what}, after update {k}: flags"
        assert int(upd["cyc_update"][k]) == gold_core.update_cycles(), f"{what}: update cycles"
        if cfg.revive_hidden > 0:
            assert (upd["dead"][k] == gold_core.dead).all(), f"{what}, after update {k}: dead bits"
    return gold_core, rtl_core


def test_up5k_yinyang_training_run(yinyang, record_property):
    """256 Yin-Yang training samples (8 minibatches of 32) trained on the up5k RTL with Adam and
    stochastic rounding from the paper's initialisation: every weight equals golden after every
    update (and everything else train_run_equals_golden lists)."""
    cfg = CoreConfig.up5k()
    gold, rtl = train_run_equals_golden(cfg, yinyang, 8, 32, seed=0, what="up5k 256 samples")
    assert gold.dead.any(), "coverage: neurons declared dead by an update (§5.6)"
    run = rtl.last_run
    record_property("sim_cycles_per_s", run["cycles"] / run["run_wall_s"])
    print(f"up5k: 256 training samples + 8 updates on the RTL, {run['cycles']} cycles, "
          f"{run['cycles'] / run['run_wall_s'] / 1e6:.2f} M simulated cycles/s")


@pytest.mark.parametrize("optimizer", ["lion", "sgd"])
def test_up5k_yinyang_training_other_optimizers(yinyang, optimizer):
    """Two minibatches of 32 with Lion and with SGD (momentum) in the up5k core."""
    cfg = CoreConfig.up5k().replace(optimizer=optimizer)
    train_run_equals_golden(cfg, yinyang, 2, 32, seed=1, what=f"up5k {optimizer}")


def test_up5k_area_build_yinyang_training(yinyang):
    """The up5k preset as an area build (§8): two minibatches of 32 with Adam, the neuron unit's
    products (one neuron per three cycles) and the update (§6.6) on the multiplier lane: every
    sample's values and cycles, every weight, moment, v̂ and the update's cycles equal golden."""
    from evcore.hdl.core import min_cyc_jump, multiplier_lane
    from evcore.hdl.update_seq import word_cycles

    cfg = CoreConfig.up5k(build="area", cyc_neuron=3)
    cfg = cfg.replace(cyc_update_word=word_cycles(cfg, multiplier_lane(cfg)), cyc_jump=min_cyc_jump(cfg))
    train_run_equals_golden(cfg, yinyang, 2, 32, seed=3, what="up5k area build")


@pytest.mark.slow
def test_up5k_yinyang_training_epoch(yinyang):
    """A whole epoch (5000 samples, 156 minibatches in one simulator run) on the RTL, every update
    equal to golden; then the test split on the RTL-trained RTL core, equal to golden's.
    Not run since the fast build; expect the CLI epoch's figures (README: 19 min of CPU at 0.30 M
    simulated cycles per CPU second, 24-43 min wall under load). The CLI's
    `evcore train yinyang --model fixed --backend rtl --epochs 1` runs the same with progress."""
    from evcore.golden.core import evaluate_fixed

    cfg = CoreConfig.up5k()
    n = len(yinyang.x_train) // cfg.batch_size
    gold, rtl = train_run_equals_golden(cfg, yinyang, n, cfg.batch_size, seed=0, what="up5k epoch")
    x, y = yinyang.encode(yinyang.x_test), np.asarray(yinyang.y_test)
    acc, loss, *_ = evaluate_fixed(gold, x, y)
    assert evaluate_fixed(rtl, x, y)[:2] == (acc, loss)
    t = rtl.totals
    print(f"up5k: one epoch trained on the RTL (= golden, every update): test accuracy {100 * acc:.1f} % "
          f"on the RTL; {t['cycles'] / 1e6:.0f} M cycles in {t['wall_s']:.0f} s of simulator runs")


def test_ecp5_85f_yinyang_training(yinyang):
    """The ecp5-85f preset (74-bit synapse word, dt 0.1 ms, 500 steps): one minibatch of 8 and
    its update on the RTL equal golden."""
    cfg = CoreConfig.ecp5_85f().replace(batch_size=8)
    train_run_equals_golden(cfg, yinyang, 1, 8, seed=2, what="ecp5-85f")
