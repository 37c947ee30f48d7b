"""Throughput of the bit-accurate fixed-point golden model and the modelled core (make bench).

Yin-Yang 5-200-3 with the up5k preset, batch 32, after a few warm-up epochs of on-chip training
(spike counts at their steady state): golden-model training samples/s (forward, loss unit,
backward, Adam update, all integer Numba kernels) and forward-only samples/s, and the cycle
model of docs/core.md §7 per training sample and per inference, converted to samples/s at an
assumed core clock.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ..golden.config import CoreConfig
from ..golden.core import train_fixed
from ..golden.eventprop import SpikeBatch
from ..sw.datasets import load_dataset

__all__ = ["bench_fixed", "main_figures"]

#: Clock assumed for the samples/s of the modelled core (a placeholder until synthesis reports one).
ASSUMED_CLOCK_HZ = 24e6


def bench_fixed(warm_epochs: int = 2, repeats: int = 2, cfg: CoreConfig | None = None) -> dict:
    cfg = cfg or CoreConfig.up5k()
    ds = load_dataset("yinyang")
    core, _ = train_fixed(cfg, ds, warm_epochs, seed=0, progress=False, return_core=True)
    spikes = SpikeBatch(*ds.encode(ds.x_train))
    labels = np.asarray(ds.y_train)
    rng = np.random.default_rng(0)
    n = spikes.batch_size
    best_train = 0.0
    cycles = {"forward": 0.0, "loss": 0.0, "backward": 0.0, "update": 0.0}
    hidden = 0.0
    for _ in range(repeats):
        perm = rng.permutation(n)
        saved = [w.copy() for w in core.weights_raw]
        acc = dict.fromkeys(cycles, 0.0)
        hid = 0
        t0 = time.perf_counter()
        for s in range(0, n, cfg.batch_size):
            idx = perm[s:s + cfg.batch_size]
            _, res = core.train_step(spikes[idx], labels[idx])
            acc["forward"] += float(res.cycles_forward.sum())
            acc["loss"] += float(res.cycles_loss.sum())
            acc["backward"] += float(res.cycles_backward.sum())
            acc["update"] += core.update_cycles()
            hid += int(res.layer_counts[:, 0].sum())
        best_train = max(best_train, n / (time.perf_counter() - t0))
        cycles = {k: v / n for k, v in acc.items()}
        hidden = hid / n
        core.set_weights_raw(saved)
    best_fwd = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for s in range(0, n, 1000):
            core.run(spikes[s:s + 1000])
        best_fwd = max(best_fwd, n / (time.perf_counter() - t0))
    train_cyc = sum(cycles.values())
    return {
        "config": "up5k",
        "warm_epochs": warm_epochs,
        "golden_train_samples_per_s": best_train,
        "golden_forward_samples_per_s": best_fwd,
        "hidden_spikes_per_sample": hidden,
        "core_cycles_per_training_sample": cycles,
        "core_cycles_per_training_sample_total": train_cyc,
        "assumed_clock_hz": ASSUMED_CLOCK_HZ,
        "core_train_samples_per_s_at_assumed_clock": ASSUMED_CLOCK_HZ / train_cyc,
        "core_forward_samples_per_s_at_assumed_clock": ASSUMED_CLOCK_HZ / cycles["forward"],
    }


def main_figures(warm_epochs: int = 2, repeats: int = 2) -> dict:
    f = bench_fixed(warm_epochs, repeats)
    c = f["core_cycles_per_training_sample"]
    print(f"\nFixed-point core, Yin-Yang 5-200-3, up5k preset, batch 32 (after {warm_epochs} epochs of "
          f"on-chip training: {f['hidden_spikes_per_sample']:.1f} hidden spikes/sample)")
    print(f"  golden model: {f['golden_train_samples_per_s']:>8.0f} training samples/s, "
          f"{f['golden_forward_samples_per_s']:>8.0f} forward samples/s")
    print(f"  modelled core (docs/core.md §7): {f['core_cycles_per_training_sample_total']:.0f} cycles per "
          f"training sample (forward {c['forward']:.0f}, loss {c['loss']:.0f}, backward {c['backward']:.0f}, "
          f"update {c['update']:.0f})")
    print(f"  at an assumed {f['assumed_clock_hz'] / 1e6:.0f} MHz: "
          f"{f['core_train_samples_per_s_at_assumed_clock']:.0f} training samples/s, "
          f"{f['core_forward_samples_per_s_at_assumed_clock']:.0f} inferences/s")
    return f


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--warm-epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    main_figures(a.warm_epochs, a.repeats)
