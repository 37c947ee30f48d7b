"""Post-synthesis simulation: the yosys netlist of the core equals golden bit for bit.

The netlist (`evcore.tb.core.postsynth`: the flow's yosys commands, ``write_verilog -noattr``)
runs under Verilator with Yosys's cell models through `PostSynthCore`, i.e. the cocotb module and
job files of `RtlCore`; every exposed value of every sample and, after the update, every synapse
word, the LFSR, the flags and the update cycles are compared with `FixedCore` as in test_core.py.

- `make test`: a small training core (sizes (5, 8, 3), 40 steps) synthesized for the UP5K with its
  synapse memory forced into SPRAM, so SB_SPRAM256KA, SB_RAM40_4K and SB_MAC16 models all run.
- `slow` (`make postsynth`): the same netlist with one LUT inverted, which must be caught; the up5k
  preset, the real device netlist; the ECP5 logic-only netlist, and it with one LUT inverted.
"""

import numpy as np
import pytest

from evcore.golden.config import CoreConfig, Flag
from evcore.golden.core import FixedCore, _init_weights
from evcore.tb.core.host import first_mismatch, first_synapse_mismatch, first_train_mismatch
from evcore.tb.core.postsynth import PostSynthCore, invert_lut
from evcore.tb.core.rtl_core import RtlCore
from evcore.tb.core.test_core import phase_cycles, raw_sample

pytestmark = pytest.mark.sim


def small_config() -> CoreConfig:
    """The up5k preset's arithmetic on a 5-8-3 network with 40 steps of 0.5 ms (fast to simulate)."""
    return CoreConfig.up5k().replace(sizes=(5, 8, 3), n_steps=40, dt_s=0.5e-3, record_capacity=24,
                                     input_capacity=10, batch_size=4)


def random_inputs(cfg, rng, n: int, k: int = 8):
    """`n` samples of up to `k` random input spikes inside the simulated window."""
    times = np.full((n, k), np.inf)
    ids = np.zeros((n, k), dtype=np.int64)
    counts = rng.integers(1, k + 1, size=n)
    for b in range(n):
        times[b, : counts[b]] = np.sort(rng.uniform(0, 0.6 * cfg.t_max_s, size=counts[b]))
        ids[b, : counts[b]] = rng.integers(0, cfg.sizes[0], size=counts[b])
    return times, ids, counts


def paper_weights(cfg, rng):
    return FixedCore.from_float(cfg, _init_weights(cfg, ((1.5, 0.78), (0.93, 0.1)), rng)).weights_raw


def inference_mismatch(cfg, weights, inputs, core) -> str | None:
    """First value of an inference batch where `core` (RtlCore-like) differs from golden, or None."""
    gold = FixedCore(cfg, weights).run(inputs)
    res = core.run(inputs)
    sweep, fan = phase_cycles(cfg, gold)
    for b in range(gold.batch_size):
        bad = first_mismatch(cfg, gold, b, raw_sample(res, b), phase_cycles=(sweep[b], fan[b]))
        if bad:
            return f"inference sample {b}: {bad}"
    return None


def training_mismatch(cfg, weights, inputs, labels, core) -> str | None:
    """One minibatch and its update on `core` and on golden: first differing value, or None."""
    gold_core = FixedCore(cfg, weights)
    _, res = core.train_minibatches([(inputs, labels)])
    _, _, gold = gold_core.gradient(inputs, labels)
    sweep, fan = phase_cycles(cfg, gold)
    for b in range(len(labels)):
        raw = raw_sample(res, b)
        bad = first_mismatch(cfg, gold, b, raw, phase_cycles=(sweep[b], fan[b]), check_state=False)
        bad = bad or first_train_mismatch(cfg, gold, b, raw, last=False)
        if bad:
            return f"training sample {b} (label {labels[b]}): {bad}"
    upd = core.last_updates
    want = {"g_before": np.concatenate([g.ravel() for g in gold.grads_raw])}
    flags = gold_core.update()
    want["w"] = np.concatenate([w.ravel() for w in gold_core.weights_raw])
    want["g"] = np.zeros(cfg.n_synapses)
    if cfg.has_momentum:
        want["m"] = np.concatenate([m.ravel() for m in gold_core.momentum_raw])
    if cfg.optimizer.value == "adam":
        want["v"] = np.concatenate([v.ravel() for v in gold_core.second_moment_raw])
    bad = first_synapse_mismatch(cfg, want, {f: upd[f][0] for f in want})
    if bad:
        return f"after the update: {bad}"
    for name, want_v, got in (("LFSR", gold_core.lfsr_state, int(upd["lfsr"][0])),
                              ("flags", flags, Flag(int(upd["flags"][0]))),
                              ("update cycles", gold_core.update_cycles(), int(upd["cyc_update"][0]))):
        if want_v != got:
            return f"after the update: {name} golden {want_v} netlist {got}"
    if cfg.revive_hidden > 0 and not (upd["dead"][0] == gold_core.dead).all():
        return "after the update: dead bits"
    return None


def rate(core) -> float:
    """Simulated cycles per wall second while the core was busy (samples and updates; the host
    port's traffic, driven from Python one cycle at a time, is left out), over the runs so far."""
    return core.totals["cycles"] / core.busy_s


def run_netlist(cfg, core, seed: int, n_infer: int, n_train: int):
    """Inference samples, then one minibatch of training samples and its update; assert equal."""
    rng = np.random.default_rng(seed)
    weights = paper_weights(cfg, rng)
    core.set_weights_raw(weights)
    bad = inference_mismatch(cfg, weights, random_inputs(cfg, rng, n_infer), core)
    core.busy_s = core.last_run["run_wall_s"]
    assert bad is None, f"{core._node_name()}: {bad}"
    inputs = random_inputs(cfg, rng, n_train)
    labels = rng.integers(0, cfg.sizes[-1], size=n_train)
    bad = training_mismatch(cfg, core.weights_raw, inputs, labels, core)
    core.busy_s += core.last_run["run_wall_s"]
    assert bad is None, f"{core._node_name()}: {bad}"


def report(what, core, rtl_rate=None):
    n = core.netlist
    yosys = f"yosys {n.yosys_s:.0f} s" if n.yosys_s is not None else "netlist cached"
    build = f"Verilator build {core.build_s:.0f} s" if core.build_s is not None else "model cached"
    kinds = ("SB_", "LUT4", "TRELLIS", "CCU2C")
    cells = ", ".join(f"{c} {k}" for k, c in n.cells_by_type.items() if k.startswith(kinds))
    vs = f" (RTL model {rtl_rate / 1e6:.3f} M/s, {rtl_rate / rate(core):.0f}x)" if rtl_rate else ""
    print(f"{what}: {yosys}, {build}; {core.totals['cycles']} cycles at {rate(core) / 1e3:.1f} k "
          f"simulated cycles/s{vs}; {cells}")


def test_ice40_small_netlist():
    """The small training core's iCE40 netlist: 4 inference samples, 4 training samples + the
    update, equal to golden; its netlist holds every hard block whose model is simulated."""
    cfg = small_config()
    core = PostSynthCore(cfg, device="up5k", spram=("synapses",))
    run_netlist(cfg, core, seed=0, n_infer=4, n_train=4)
    cells = core.netlist.cells_by_type
    for block in ("SB_SPRAM256KA", "SB_RAM40_4K", "SB_MAC16", "SB_CARRY", "SB_LUT4"):
        assert cells.get(block, 0) > 0, f"coverage: no {block} in the netlist ({cells})"
    report("iCE40 small netlist", core)


@pytest.mark.slow
def test_ice40_small_netlist_wrong_lut_is_caught():
    """One LUT of the neuron unit inverted in the written netlist: the same run must fail, naming
    the sample and the field (slow: the patched netlist is a Verilator build of its own)."""
    cfg = small_config()
    core = PostSynthCore(cfg, device="up5k", spram=("synapses",), patch=invert_lut)
    with pytest.raises(AssertionError, match=r"(inference|training) sample \d+|after the update") as caught:
        run_netlist(cfg, core, seed=0, n_infer=4, n_train=4)
    print(f"wrong netlist caught: {str(caught.value).splitlines()[0]}")


@pytest.mark.slow
def test_up5k_netlist():
    """The up5k preset (the device netlist: 4 SPRAM, 24 SB_MAC16): 3 inference samples, 2 training
    samples and the update; the RTL model on the same work for the speed ratio."""
    cfg = CoreConfig.up5k().replace(batch_size=2)
    core = PostSynthCore(cfg, device="up5k")
    run_netlist(cfg, core, seed=1, n_infer=3, n_train=2)
    assert core.netlist.cells_by_type.get("SB_SPRAM256KA", 0) == 4
    rtl = RtlCore(cfg)
    run_netlist(cfg, rtl, seed=1, n_infer=3, n_train=2)
    report("up5k netlist", core, rate(rtl))


@pytest.mark.slow
def test_ecp5_small_netlist_logic_only():
    """The small core on ECP5 with synth_ecp5 -nobram -nodsp (no DP16KD/MULT18X18D models)."""
    cfg = small_config()
    core = PostSynthCore(cfg, device="ecp5-85f")
    run_netlist(cfg, core, seed=0, n_infer=4, n_train=4)
    report("ECP5 small netlist (logic only)", core)


@pytest.mark.slow
def test_ecp5_small_netlist_wrong_lut_is_caught():
    """The ECP5 logic-only netlist with one LUT4 of the neuron unit inverted: the same run must fail,
    so the ECP5 comparison can fail (slow: a yosys run and a Verilator build of its own)."""
    cfg = small_config()
    core = PostSynthCore(cfg, device="ecp5-85f", patch=invert_lut)
    with pytest.raises(AssertionError, match=r"(inference|training) sample \d+|after the update") as caught:
        run_netlist(cfg, core, seed=0, n_infer=4, n_train=4)
    print(f"wrong ECP5 netlist caught: {str(caught.value).splitlines()[0]}")
