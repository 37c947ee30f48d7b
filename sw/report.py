"""Side-by-side comparison of the training methods from metrics.json files (docs/methods.md §4).

`evcore report --side-by-side RUN...` groups runs by data set and method, averages their test
accuracy over seeds and prints a markdown table; `--figure` adds accuracy against events per
sample. Definitions, the same for every method:

* spikes / sample: spikes of hidden and output neurons inside the trial (test split);
* events / sample: spikes sent over synapses, input spikes included (smooth QIF: pseudospikes
  included, since they are simulated and sent; spiking MLP: every herding spike of the input
  and hidden units);
* operations / sample: events x fan-out of the forward pass (spiking MLP: bias events too);
* time / epoch: wall time of one epoch on this machine, validation included (from the per-epoch
  ``wall_s`` of the metrics file).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["load_rows", "side_by_side", "markdown_table", "plot_accuracy_vs_events"]

#: Methods the fixed-point core (golden/core.py, hdl/) can train today.
FIXED_POINT_TRAINABLE = {"eventprop": "yes", "spiking-mlp": "no", "smooth-qif": "no"}


def _method(m: dict) -> str:
    return m.get("method", "eventprop" if m.get("model", "float") == "float" else m["model"])


def _eventprop_events(m: dict) -> tuple[float, float]:
    """(events, operations) per test sample of an EventProp run: its input spikes from the data
    set's encoding, plus the hidden spikes, each times the fan-out of its layer."""
    from .datasets import load_dataset

    cfg = m["config"]
    dataset = load_dataset(cfg["dataset"])
    _, _, counts = dataset.encode(dataset.x_test)
    n_input = float(np.mean(counts))
    sizes = cfg["sizes"]
    spikes = m["test_spikes_per_sample"]
    n_hidden_layers = len(sizes) - 2
    hidden = spikes[:n_hidden_layers]
    events = n_input + sum(hidden)
    ops = n_input * sizes[1] + sum(h * sizes[l + 2] for l, h in enumerate(hidden))
    return events, ops


def load_rows(paths) -> list[dict]:
    rows = []
    for path in paths:
        path = Path(path)
        path = path / "metrics.json" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (is the run finished?)")
        try:
            m = json.loads(path.read_text())
            m["config"]["dataset"], m["epochs"][-1]["wall_s"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, IndexError):
            raise ValueError(f"{path} is not an evcore metrics.json") from None
        method = _method(m)
        if method not in FIXED_POINT_TRAINABLE:
            raise ValueError(f"{path}: model {m.get('model')!r} is not one of the compared methods")
        if "test_events_per_sample" in m:
            events, ops = m["test_events_per_sample"], m["test_ops_per_sample"]
        else:
            events, ops = _eventprop_events(m)
        n_epochs = len(m["epochs"])
        rows.append({
            "dataset": m["config"]["dataset"], "method": method, "seed": m["seed"], "path": str(path),
            # The spiking MLP's step count is part of its architecture: n steps per sample.
            "sizes": "-".join(map(str, m["config"]["sizes"]))
            + (f", n = {m['config']['n_steps']}" if method == "spiking-mlp" else "")
            # Smooth QIF's output window (docs/methods.md §2.2; absent in older runs: 0).
            + (f", output window +{m['config']['t_out_extra']:g}"
               if method == "smooth-qif" and m["config"].get("t_out_extra", 0.0) > 0 else ""),
            "epochs": n_epochs,
            # Set only for runs on a subset of the training split.
            "train_samples": m["config"].get("train_samples") or None,
            "test_accuracy": m["test_accuracy"], "spikes": float(sum(m["test_spikes_per_sample"])),
            "events": float(events), "ops": float(ops), "epoch_s": m["epochs"][-1]["wall_s"] / n_epochs,
        })
    return rows


def side_by_side(rows: list[dict]) -> list[dict]:
    """One entry per (data set, method, architecture, epochs): the mean over its seeds."""
    groups: dict = {}
    for r in rows:
        key = (r["dataset"], r["method"], r["sizes"], r["epochs"], r["train_samples"] or 0)
        groups.setdefault(key, []).append(r)
    out = []
    for (dataset, method, sizes, epochs, n_train), rs in sorted(groups.items()):
        acc = np.array([r["test_accuracy"] for r in rs])
        out.append({
            "dataset": dataset, "method": method, "sizes": sizes, "epochs": epochs, "train_samples": n_train,
            "seeds": len(rs), "test_accuracy_mean": float(acc.mean()), "test_accuracy_std": float(acc.std()),
            "spikes": float(np.mean([r["spikes"] for r in rs])),
            "events": float(np.mean([r["events"] for r in rs])),
            "ops": float(np.mean([r["ops"] for r in rs])),
            "epoch_s": float(np.mean([r["epoch_s"] for r in rs])),
            "fixed_point": FIXED_POINT_TRAINABLE[method],
        })
    return out


def markdown_table(groups: list[dict]) -> str:
    lines = ["| data set | method | network | epochs | seeds | test % (mean) | spikes / sample | "
             "events / sample | operations / sample | time / epoch | fixed-point core trains it |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for g in groups:
        acc = f"{100 * g['test_accuracy_mean']:.2f}"
        if g["seeds"] > 1:
            acc += f" ± {100 * g['test_accuracy_std']:.2f}"
        epochs = str(g["epochs"])
        if g["train_samples"]:
            epochs += f" ({g['train_samples']} samples)"
        lines.append(f"| {g['dataset']} | {g['method']} | {g['sizes']} | {epochs} | {g['seeds']} | {acc} | "
                     f"{g['spikes']:.0f} | {g['events']:.0f} | {g['ops']:.3g} | {g['epoch_s']:.1f} s | "
                     f"{g['fixed_point']} |")
    return "\n".join(lines)


def plot_accuracy_vs_events(groups: list[dict], path: str | Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
    markers = {"eventprop": "o", "spiking-mlp": "s", "smooth-qif": "^"}
    colors = {"eventprop": "C0", "spiking-mlp": "C3", "smooth-qif": "C2"}
    for ax, dataset in zip(axes, ("yinyang", "mnist")):
        seen = set()
        for g in (g for g in groups if g["dataset"] == dataset):
            # A second row of the same method (another setting) gets an open marker.
            face = "white" if g["method"] in seen else colors[g["method"]]
            seen.add(g["method"])
            ax.errorbar(g["events"], 100 * g["test_accuracy_mean"], yerr=100 * g["test_accuracy_std"],
                        marker=markers[g["method"]], color=colors[g["method"]], mfc=face, ls="none",
                        capsize=3,
                        label=f"{g['method']} {g['sizes']}, {g['epochs']} ep, {g['seeds']} seed(s)")
        ax.set_xscale("log")
        ax.set_xlabel("events per test sample (spikes sent, input included)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(dataset)
        # Below the axes: inside, the legend can hide a point.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
