"""The RTL training rows of `make bench`: training samples of the trained Yin-Yang network on the
Verilated core (hdl/core.py: forward, loss unit, backward), beside the cycle model and the golden
fixed-point model.

- cycles per training sample measured on the RTL (`RtlCore.gradient` per minibatch: forward +
  loss + backward, the RTL's cycle counters) beside the cycle model of docs/core.md §7
  (`FixedCore.gradient` on the same minibatches: ``cycles_forward + cycles_loss +
  cycles_backward`` from `golden.core.cycle_model`): equal by contract; both means are printed
  and whether every sample agrees (and whether the gradient accumulators agree bit for bit);
- the weight update per minibatch amortised per sample: measured on the RTL (`RtlCore.update`),
  beside ``FixedCore.update_cycles() / batch_size``;
- training samples/s and µs per training sample on the UP5K and the ECP5-85F at the fmax
  `evcore synth --top core` achieved (``build/synth/core-<device>/result.json``, read as
  rtl_bench.py does). The training core does not fit the UP5K yet (24 of 8 DSPs with Adam): that row is
  at the forward core's fmax when the training core's synthesis has failed, and says so. The
  ECP5 row of `evcore synth` takes the ecp5-85f preset (500 steps of 0.1 ms), whose cycles come
  from the cycle model on the same network; a third row is the up5k preset itself synthesised
  for the ECP5-85F (bench/synth_preset.py): the RTL's measured cycles at that core's fmax;
- beside them the only published on-chip backprop figure for a spiking network, Loihi's 1.5 ms
  per MNIST training sample (Renner et al. 2024), as published figure against ours (a far larger
  network: not a measured speed-up);
- the golden fixed-point model's training samples/s on this machine (`FixedCore.train_step`:
  gradient + update, over the same samples, after a Numba warm-up);
- Verilator simulated cycles/s of the training run (runs proper: start to busy low).

The network is the one of the RTL inference rows (rtl_bench._network: the float Yin-Yang preset
trained a few epochs, quantised with `FixedCore.from_float`); the samples are the first N of the
Yin-Yang *training* split with their labels; the weights stay fixed over the N samples (gradients
only, no update between minibatches, in both models). No timing is asserted: figures are printed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..golden.config import CoreConfig
from ..golden.core import FixedCore
from .rtl_bench import (
    DEVICE_PRESETS,
    SYNTH_ROOT,
    _network,
    read_synth_fmax,
    synth_failure,
)
from .synth_preset import preset_result_path

__all__ = ["LOIHI_MS_PER_SAMPLE", "bench_train", "cycles_agreement",
           "format_loihi_line", "format_training_row", "main_figures", "synth_failure",
           "training_cycles", "training_rate", "update_cycles_per_sample"]

#: Renner et al. 2024 (on-chip EventProp-style backprop on Loihi): 1.5 ms per MNIST training sample.
LOIHI_MS_PER_SAMPLE = 1.5

def training_cycles(forward, loss, backward) -> np.ndarray:
    """Cycles per training sample: forward + loss unit + backward, per sample (int64)."""
    f, lo, b = (np.asarray(x, dtype=np.int64) for x in (forward, loss, backward))
    if not (f.shape == lo.shape == b.shape):
        raise ValueError(f"phase arrays differ in shape: {f.shape}, {lo.shape}, {b.shape}")
    return f + lo + b


def update_cycles_per_sample(update_cycles: int, batch_size: int) -> float:
    """The update of one minibatch amortised over its samples."""
    if batch_size < 1 or update_cycles < 0:
        raise ValueError(f"need batch_size >= 1 and update_cycles >= 0, got {batch_size}, {update_cycles}")
    return update_cycles / batch_size


def cycles_agreement(measured, predicted) -> dict:
    """Means of both, and how many samples agree."""
    m, p = np.asarray(measured, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    if m.shape != p.shape or m.size == 0:
        raise ValueError(f"need two equal non-empty shapes, got {m.shape} and {p.shape}")
    n_equal = int((m == p).sum())
    return {"mean_measured": float(m.mean()), "mean_predicted": float(p.mean()),
            "n_equal": n_equal, "n": int(m.size), "all_equal": n_equal == m.size}


def training_rate(fmax_mhz: float, cycles_per_sample: float) -> tuple[float, float]:
    """(training samples/s, µs per training sample) at `fmax_mhz`."""
    if not (fmax_mhz > 0 and cycles_per_sample > 0):
        raise ValueError(f"fmax and cycles must be positive, got {fmax_mhz} MHz, {cycles_per_sample} cycles")
    return fmax_mhz * 1e6 / cycles_per_sample, cycles_per_sample / fmax_mhz


def format_training_row(device: str, synth: Mapping | str, cycles_per_sample: float, note: str = "") -> str:
    """One printed row: training samples/s and µs per sample at the fmax, or why there is none."""
    tail = f"; {note}" if note else ""
    if isinstance(synth, str):
        return f"  {device:>9}: {cycles_per_sample:8.0f} cycles/training sample; no fmax ({synth}){tail}"
    rate, us = training_rate(synth["fmax_mhz"], cycles_per_sample)
    return (f"  {device:>9}: {cycles_per_sample:8.0f} cycles/training sample at {synth['fmax_mhz']:.1f} MHz "
            f"= {rate:,.0f} training samples/s ({us:,.0f} µs each){tail}")


def format_loihi_line(device: str, us_per_sample: float) -> str:
    """Published figure against ours, per training sample (no speed-up claimed)."""
    loihi_us = LOIHI_MS_PER_SAMPLE * 1e3
    side = "below" if us_per_sample < loihi_us else "not below"
    return (f"  {device:>9}: {us_per_sample / 1e3:.2f} ms per Yin-Yang training sample, {side} Loihi's "
            f"published {LOIHI_MS_PER_SAMPLE} ms per MNIST training sample (Renner et al. 2024)")


def _golden_rate(cfg: CoreConfig, weights_raw, batches, repeats: int) -> float:
    """Best-of-`repeats` training samples/s of FixedCore.train_step over `batches`, each repeat
    from the same weights and state, after one warm-up pass (Numba JIT)."""
    n = sum(len(lab) for _, lab in batches)
    best = 0.0
    for r in range(repeats + 1):
        core = FixedCore(cfg, weights_raw)
        t0 = time.perf_counter()
        for spikes, lab in batches:
            core.train_step(spikes, lab)
        dt = time.perf_counter() - t0
        if r > 0:  # the first pass compiles the kernels
            best = max(best, n / dt)
    return best


def bench_train(n_samples: int = 64, epochs: int = 3, seed: int = 0, repeats: int = 3,
                synth_root: str | Path = SYNTH_ROOT) -> dict:
    from ..sw.datasets import load_dataset
    from ..sw.train import encode
    from ..tb.core.rtl_core import RtlCore

    t0 = time.perf_counter()
    hits = _network.cache_info().hits
    net = _network(epochs, seed)
    t_train = time.perf_counter() - t0
    net_shared = _network.cache_info().hits > hits
    ds = load_dataset("yinyang")
    spikes = encode(ds, ds.x_train[:n_samples])
    labels = np.asarray(ds.y_train[:n_samples], dtype=np.int64)
    cfg = CoreConfig.up5k()
    bs = cfg.batch_size
    batches = [(spikes[s : s + bs], labels[s : s + bs]) for s in range(0, n_samples, bs)]

    gold = FixedCore.from_float(cfg, net)
    rtl_core = RtlCore(cfg, gold.weights_raw)
    measured, predicted, phases, grads_equal = [], [], [], True
    sim_cycles, sim_wall, t_rtl = 0, 0.0, 0.0
    for b_spikes, b_labels in batches:
        _, _, g = gold.gradient(b_spikes, b_labels)
        t1 = time.perf_counter()
        _, _, r = rtl_core.gradient(b_spikes, b_labels)
        t_rtl += time.perf_counter() - t1
        measured.append(training_cycles(r.cycles_forward, r.cycles_loss, r.cycles_backward))
        predicted.append(training_cycles(g.cycles_forward, g.cycles_loss, g.cycles_backward))
        phases.append([np.asarray(x, dtype=np.int64) for x in
                       (r.cycles_forward, r.cycles_loss, r.cycles_backward)])
        grads_equal &= all(np.array_equal(a, b) for a, b in zip(r.grads_raw, g.grads_raw))
        sim_cycles += rtl_core.last_run["cycles"]
        sim_wall += rtl_core.last_run["run_wall_s"]
    measured, predicted = np.concatenate(measured), np.concatenate(predicted)
    agree = cycles_agreement(measured, predicted)
    fwd, loss, bwd = (np.concatenate([p[i] for p in phases]) for i in range(3))
    upd = update_cycles_per_sample(gold.update_cycles(), bs)
    # The update on the RTL (from the last minibatch's gradients): its measured cycle count.
    rtl_core.update()
    upd_rtl = int(rtl_core.last_updates["cyc_update"][0])
    figures = {
        "n_samples": n_samples, "batch_size": bs, "float_epochs": epochs, "train_wall_s": t_train,
        "network_shared": net_shared,
        "cycles_measured": measured.tolist(), "cycles_predicted": predicted.tolist(), **agree,
        "grads_equal": bool(grads_equal),
        "mean_forward": float(fwd.mean()), "mean_loss": float(loss.mean()),
        "mean_backward": float(bwd.mean()),
        "update_cycles_per_minibatch": gold.update_cycles(), "update_cycles_per_sample_model": upd,
        "update_cycles_rtl": upd_rtl,
        "sim_cycles": sim_cycles, "sim_run_wall_s": sim_wall, "sim_cycles_per_s": sim_cycles / sim_wall,
        "rtl_call_wall_s": t_rtl,
        "golden_train_samples_per_s": _golden_rate(cfg, gold.weights_raw, batches, repeats),
        "devices": {},
    }
    rows = [(device, preset, Path(synth_root) / f"core-{device}" / "result.json")
            for device, preset in DEVICE_PRESETS.items()]
    # The up5k preset (the configuration measured on the RTL above) synthesised for the ECP5.
    rows.append(("ecp5-85f", "up5k", preset_result_path("ecp5-85f", "up5k", synth_root)))
    for device, preset, result_path in rows:
        dcfg = getattr(CoreConfig, preset)()
        if dcfg == cfg:
            mean, source = agree["mean_measured"], "RTL"
        else:
            dcore = FixedCore.from_float(dcfg, net)
            mean = float(np.concatenate([training_cycles(r.cycles_forward, r.cycles_loss, r.cycles_backward)
                                         for r in (dcore.gradient(s, lab)[2] for s, lab in batches)]).mean())
            source = "cycle model"
        per_sample = mean + update_cycles_per_sample(FixedCore(dcfg).update_cycles(), dcfg.batch_size)
        synth = read_synth_fmax(result_path, dcfg)
        note = "training core (forward, loss, backward; no update unit yet)"
        if result_path.parent.name != f"core-{device}" and isinstance(synth, str) and synth.startswith("no "):
            synth = (f"no {result_path}: run `python -m evcore.bench.synth_preset --preset {preset} "
                     f"--device {device}`")
        if device == "up5k" and isinstance(synth, str):
            # The training core does not fit: the inference-only build's fmax, an upper bound.
            why = synth_failure(Path(synth_root) / "report.json", "core", device) or synth
            infer = read_synth_fmax(Path(synth_root) / "core-infer-up5k" / "result.json", dcfg)
            if isinstance(infer, Mapping):
                note = (f"at the inference-only core's fmax ({infer['path']}), an upper bound: the "
                        f"training core does not fit the UP5K yet ({why})")
                synth = infer
        entry = {"device": device, "preset": preset, "mean_cycles_gradient": mean, "cycles_source": source,
                 "cycles_per_sample_with_update": per_sample, "synth": synth, "note": note}
        if isinstance(synth, Mapping):
            rate, us = training_rate(synth["fmax_mhz"], per_sample)
            entry["train_samples_per_s"], entry["us_per_sample"] = rate, us
        figures["devices"][f"{device} ({preset} preset)"] = entry
    return figures


def main_figures(n_samples: int = 64, epochs: int = 3) -> dict:
    f = bench_train(n_samples, epochs)
    n = f["n_samples"]
    trained = " (the inference rows' network)" if f["network_shared"] else f" in {f['train_wall_s']:.0f} s"
    print(f"\nRTL training core (hdl/core.py: forward, loss, backward) under Verilator, up5k preset, "
          f"{n} Yin-Yang training samples in minibatches of {f['batch_size']} (float preset trained "
          f"{f['float_epochs']} epochs{trained}, quantised; weights fixed)")
    shown = min(n, 6)
    print(f"  cycles per training sample (forward + loss + backward), first {shown}: "
          f"RTL {f['cycles_measured'][:shown]}")
    print(f"  {'':>54}cycle model {f['cycles_predicted'][:shown]}")
    verdict = "equal on every sample" if f["all_equal"] else f"DIFFERENT on {f['n'] - f['n_equal']} samples"
    print(f"  mean over {n}: RTL {f['mean_measured']:.1f}, cycle model {f['mean_predicted']:.1f} ({verdict}; "
          f"gradient accumulators {'equal' if f['grads_equal'] else 'DIFFERENT'}); RTL phases: forward "
          f"{f['mean_forward']:.1f}, loss {f['mean_loss']:.1f}, backward {f['mean_backward']:.1f}")
    same = "= model" if f["update_cycles_rtl"] == f["update_cycles_per_minibatch"] else "!= model"
    print(f"  update: {f['update_cycles_rtl']} cycles per minibatch on the RTL ({same} "
          f"{f['update_cycles_per_minibatch']}) = {f['update_cycles_per_sample_model']:.1f} per sample")
    print("  training samples/s at the achieved fmax of `evcore synth --top core` "
          "(gradient cycles + the model's update per sample):")
    for d in f["devices"].values():
        print(f"{format_training_row(d['device'], d['synth'], d['cycles_per_sample_with_update'], d['note'])}"
              f"  [{d['preset']} preset, gradient cycles: {d['cycles_source']}]")
    for d in f["devices"].values():
        if "us_per_sample" in d:
            print(format_loihi_line(f"{d['device']} ({d['preset']})", d["us_per_sample"]))
    print("  (Yin-Yang 5-200-3 is a far smaller network than Loihi's MNIST network: published figure "
          "beside ours, not a measured speed-up)")
    print(f"  golden fixed-point model (FixedCore.train_step: gradient + update), this machine: "
          f"{f['golden_train_samples_per_s']:,.0f} training samples/s (best of 3 after a warm-up)")
    print(f"  Verilator: {f['sim_cycles']} simulated cycles in {f['sim_run_wall_s']:.2f} s of training runs "
          f"= "
          f"{f['sim_cycles_per_s'] / 1e6:.3f} M cycles/s (build, loads and reads excluded; the "
          f"RtlCore.gradient calls took {f['rtl_call_wall_s']:.1f} s)")
    return f


if __name__ == "__main__":
    from .machine import machine_description

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    a = p.parse_args()
    print(f"machine: {machine_description()}")
    main_figures(a.samples, a.epochs)
