"""The RTL rows of `make bench`: the forward core (hdl/core.py) under Verilator on Yin-Yang.

- cycles per inference measured on the RTL over N test samples, beside the cycle model of
  docs/core.md §7 (`golden.core.cycle_model` on the golden model's event counts): they are equal
  by contract, both are printed, per sample and as the mean;
- inferences/s on the UP5K and the ECP5-85F at the fmax `evcore synth --top core-infer` achieved
  (the inference-only build; read from its ``result.json`` in ``build/synth/core-infer-<device>/``;
  without one the row says to run the synthesis). The ECP5 row takes the ecp5-85f preset (dt
  0.1 ms, 500 steps), whose cycles come from the cycle model on the same network: the RTL =
  cycle-model check runs on the up5k preset;
- Verilator simulated cycles/s: simulated cycles over the wall time of the runs proper (start to
  busy low, summed over samples), without the model build, the weight load and the bus reads.

The network is the float Yin-Yang preset trained for a few epochs (as `evcore demo` does, shorter)
and quantised with `FixedCore.from_float`. No timing is asserted: the figures are printed.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..golden.config import DEVICES, CoreConfig
from ..golden.core import FixedCore, FixedResult, cycle_model

__all__ = ["bench_rtl", "format_rate_row", "inferences_per_s", "main_figures",
           "predicted_forward_cycles", "read_synth_fmax", "synth_failure"]

#: Where `evcore synth` writes one (top, device) result (synth/flow.py, BUILD_ROOT).
SYNTH_ROOT = Path("build") / "synth"
#: The preset `evcore synth --top core` builds on each device (synth/flow.py CORE_PRESETS).
DEVICE_PRESETS = {"up5k": "up5k", "ecp5-85f": "ecp5_85f"}


#: The forward core's UP5K synthesis (`evcore synth --top core --device up5k --freq 24` on the
#: forward-only core of commit f41e2d1, docs/synth.md; repeated 2026-12-02 from a `git archive` of
#: that commit: 30.82 MHz, seed 1). The training core does not fit the UP5K (24 of 8 DSPs with Adam), so
#: this is the only UP5K fmax there is.
def synth_failure(report_path: str | Path, top: str, device: str) -> str | None:
    """The error `evcore synth` recorded for (top, device) in its ``report.json``, if any (a failed
    run writes no ``result.json``; the report keeps the last run's results)."""
    path = Path(report_path)
    try:
        results = json.loads(path.read_text()).get("results", [])
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    for r in results:
        if r.get("top") == top and r.get("device") == device and "error" in r:
            return str(r["error"])
    return None


def predicted_forward_cycles(res: FixedResult) -> np.ndarray:
    """§7 forward cycles per sample from a pass's event counts (input spikes up to n_end, spikes
    per layer, last step), recomputed with `cycle_model` rather than read from the result."""
    n_inputs = np.array([(res.in_step[b, : res.in_count[b]] <= res.n_end[b]).sum()
                         for b in range(len(res.in_count))], dtype=np.int64)
    forward, _, _ = cycle_model(res.cfg, res.n_end, n_inputs, res.layer_counts)
    return np.asarray(forward, dtype=np.int64)


def inferences_per_s(fmax_mhz: float, mean_cycles: float) -> float:
    """Inferences per second of a core clocked at `fmax_mhz` taking `mean_cycles` per inference."""
    if not (fmax_mhz > 0 and mean_cycles > 0):
        raise ValueError(f"fmax and cycles must be positive, got {fmax_mhz} MHz, {mean_cycles} cycles")
    return fmax_mhz * 1e6 / mean_cycles


def read_synth_fmax(result_path: str | Path, cfg: CoreConfig) -> dict | str:
    """The synthesis figures of ``result.json`` if it is a core built with `cfg`, else the reason
    (a sentence) why there is no figure to use."""
    path = Path(result_path)
    if not path.is_file():
        name = path.parent.name  # <top>-<device>
        device = next((d for d in DEVICES if name.endswith(f"-{d}")), name)
        top = name[: -len(device) - 1] or "core"
        return f"no {path}: run `make synth ARGS=\"--top {top} --device {device}\"`"
    try:
        r = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        return f"{path} is not valid JSON ({err})"
    if "error" in r or "fmax_mhz" not in r:
        return f"{path}: the synthesis failed ({r.get('error', 'no fmax')})"
    built = r.get("component", {}).get("parameters", {}).get("cfg")
    if built != json.loads(cfg.to_json()):
        return f"{path} was synthesised with another configuration: run `make synth` again"
    return {"fmax_mhz": float(r["fmax_mhz"]), "target_mhz": float(r["target_mhz"]),
            "device": r.get("device"), "part": r.get("part"), "path": str(path)}


def format_rate_row(device: str, synth: Mapping | str, mean_cycles: float) -> str:
    """One printed row: inferences/s at the achieved fmax, or why there is none."""
    if isinstance(synth, str):
        return f"  {device:>9}: {mean_cycles:8.0f} cycles/inference; no fmax ({synth})"
    rate = inferences_per_s(synth["fmax_mhz"], mean_cycles)
    return (f"  {device:>9}: {mean_cycles:8.0f} cycles/inference at {synth['fmax_mhz']:.1f} MHz "
            f"(achieved; target {synth['target_mhz']:g}) = {rate:,.0f} inferences/s "
            f"({1e3 / rate:.2f} ms each)")


@functools.lru_cache(maxsize=4)
def _network(epochs: int, seed: int):
    """The float Yin-Yang preset, trained for `epochs` (the demo's schedule, compressed); cached,
    so the inference and the training rows of one bench share it (callers do not modify it)."""
    from ..sw.train import PRESETS, train, with_overrides

    preset = PRESETS["yinyang"]
    cfg = with_overrides(preset, epochs=epochs, lr_decay=preset.lr_decay ** (preset.epochs / epochs))
    net, _ = train(cfg, seed=seed, progress=False)
    return net


def bench_rtl(n_samples: int = 100, epochs: int = 3, seed: int = 0,
              synth_root: str | Path = SYNTH_ROOT) -> dict:
    from ..sw.datasets import load_dataset
    from ..sw.train import encode
    from ..tb.core.rtl_core import RtlCore

    t0 = time.perf_counter()
    net = _network(epochs, seed)
    t_train = time.perf_counter() - t0
    ds = load_dataset("yinyang")
    spikes = encode(ds, ds.x_test[:n_samples])
    labels = np.asarray(ds.y_test[:n_samples])
    cfg = CoreConfig.up5k()
    gold = FixedCore.from_float(cfg, net).run(spikes)
    predicted = predicted_forward_cycles(gold)
    rtl_core = RtlCore.from_float(cfg, net)
    t0 = time.perf_counter()
    rtl = rtl_core.run(spikes)
    t_rtl = time.perf_counter() - t0
    measured = np.asarray(rtl.cycles_forward, dtype=np.int64)
    run = rtl_core.last_run
    figures = {
        "n_samples": n_samples,
        "float_epochs": epochs,
        "train_wall_s": t_train,
        "rtl_accuracy": float((rtl.predictions == labels).mean()),
        "golden_accuracy": float((gold.predictions == labels).mean()),
        "cycles_measured": measured.tolist(),
        "cycles_predicted": predicted.tolist(),
        "cycles_equal": bool(np.array_equal(measured, predicted)),
        "mean_cycles_measured": float(measured.mean()),
        "mean_cycles_predicted": float(predicted.mean()),
        "hidden_spikes_per_sample": float(gold.layer_counts[:, 0].mean()),
        "sim_cycles": run["cycles"],
        "sim_run_wall_s": run["run_wall_s"],
        "sim_cycles_per_s": run["cycles"] / run["run_wall_s"],
        "rtl_call_wall_s": t_rtl,
        "devices": {},
    }
    for device, preset in DEVICE_PRESETS.items():
        dcfg = getattr(CoreConfig, preset)()
        if dcfg == cfg:
            mean, source = figures["mean_cycles_measured"], "RTL"
        else:
            mean = float(predicted_forward_cycles(FixedCore.from_float(dcfg, net).run(spikes)).mean())
            source = "cycle model"
        synth = read_synth_fmax(Path(synth_root) / f"core-infer-{device}" / "result.json", dcfg)
        entry = {"preset": preset, "mean_cycles": mean, "cycles_source": source, "synth": synth}
        if isinstance(synth, dict):
            entry["inferences_per_s"] = inferences_per_s(synth["fmax_mhz"], mean)
        figures["devices"][device] = entry
    return figures


def main_figures(n_samples: int = 100, epochs: int = 3) -> dict:
    f = bench_rtl(n_samples, epochs)
    n = f["n_samples"]
    print(f"\nRTL forward core (hdl/core.py) under Verilator, up5k preset, {n} Yin-Yang test samples "
          f"(float preset trained {f['float_epochs']} epochs in {f['train_wall_s']:.0f} s, quantised; "
          f"RTL accuracy {100 * f['rtl_accuracy']:.1f} %, {f['hidden_spikes_per_sample']:.1f} hidden "
          "spikes/sample)")
    shown = min(n, 8)
    print(f"  cycles per inference, first {shown}: RTL {f['cycles_measured'][:shown]}")
    print(f"  {'':>28}cycle model {f['cycles_predicted'][:shown]}")
    print(f"  mean over {n}: RTL {f['mean_cycles_measured']:.1f}, "
          f"cycle model {f['mean_cycles_predicted']:.1f} "
          f"({'equal on every sample' if f['cycles_equal'] else 'DIFFERENT: run make sim'})")
    print("  inferences/s at the achieved fmax of `evcore synth --top core` (each device's preset):")
    for device, d in f["devices"].items():
        row = format_rate_row(device, d["synth"], d["mean_cycles"])
        note = f"; {d['note']}" if "note" in d else ""
        print(f"{row}  [{d['preset']} preset, cycles: {d['cycles_source']}]{note}")
    print(f"  Verilator: {f['sim_cycles']} simulated cycles in {f['sim_run_wall_s']:.2f} s of runs = "
          f"{f['sim_cycles_per_s'] / 1e6:.3f} M cycles/s (build, weight load and reads excluded; "
          f"the whole RtlCore.run call took {f['rtl_call_wall_s']:.1f} s)")
    return f


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--epochs", type=int, default=3)
    a = p.parse_args()
    main_figures(a.samples, a.epochs)
