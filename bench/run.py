"""`make bench`: throughput of the golden models, printed as a table.

Float64 EventProp on Yin-Yang (5-200-3, batch 32), in the paper's setup: training samples/s
(forward + backward + Adam) with 1 and 2 threads, forward-only samples/s, and the scaling with
hidden size; then the training rate of the evcore preset (revival terms, more hidden spikes). The
network is first trained for a few epochs so spike counts are at their steady state (about 30
hidden spikes per sample in the paper's setup). Only evcore's own figures are printed, with the
machine they were measured on: a comparison with another implementation means timing both on
one machine, side by side (docs/results.md, "Throughput").
"""

from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np

from ..golden.eventprop import Network, SpikeBatch
from ..sw.datasets import load_dataset
from ..sw.train import PRESETS, Adam, encode, train, with_overrides
from .machine import machine_description


def _epoch_throughput(net: Network, spikes: SpikeBatch, labels, cfg, loss_fn, rng) -> tuple[float, float]:
    opt = Adam(net.weights, 1e-5)  # tiny steps: measure at this weight state
    n = spikes.batch_size
    perm = rng.permutation(n)
    hidden = 0
    t0 = time.perf_counter()
    for s in range(0, n, cfg.batch_size):
        idx = perm[s : s + cfg.batch_size]
        _, grads, result = net.gradient(spikes[idx], labels[idx], loss_fn)
        opt.step(net.weights, grads)
        hidden += int(result.layers[0].counts.sum())
    return n / (time.perf_counter() - t0), hidden / n


def _forward_throughput(net: Network, spikes: SpikeBatch, batch: int) -> float:
    t0 = time.perf_counter()
    for s in range(0, spikes.batch_size, batch):
        net.run(spikes[s : s + batch])
    return spikes.batch_size / (time.perf_counter() - t0)


def _best_training_rate(net: Network, spikes: SpikeBatch, labels, cfg, rng, repeats: int):
    """Best of ``repeats`` training epochs, each from a copy of ``net``: (samples/s, hidden spikes)."""
    return max(_epoch_throughput(Network.from_state_dict(net.state_dict()), spikes, labels, cfg,
                                 cfg.loss_fn(), rng) for _ in range(repeats))


def bench_float(warm_epochs: int, repeats: int) -> dict:
    dataset = load_dataset("yinyang")
    # The paper's setup (no revival terms): about 30 hidden spikes per sample, as in the authors' runs.
    cfg = with_overrides(PRESETS["yinyang"], epochs=warm_epochs, revive=0.0, revive_hidden=0.0)
    loss_fn = cfg.loss_fn()
    spikes = encode(dataset, dataset.x_train)
    labels = np.asarray(dataset.y_train)
    rng = np.random.default_rng(0)
    results = {"warm_epochs": warm_epochs}
    net, _ = train(cfg, seed=0, progress=False, dataset=dataset)
    for threads in (1, 2):
        if threads > numba.config.NUMBA_NUM_THREADS:
            continue
        numba.set_num_threads(threads)
        best = _best_training_rate(net, spikes, labels, cfg, rng, repeats)
        results[f"train_samples_per_s_{threads}t"] = best[0]
        results["hidden_spikes_per_sample"] = best[1]
        results[f"forward_samples_per_s_{threads}t"] = max(
            _forward_throughput(net, spikes, cfg.batch_size) for _ in range(repeats))
    # One thread for the scaling rows: Numba's parallel regions are short (one minibatch), so
    # on a machine busy with other work two threads measure the scheduler, not the model.
    numba.set_num_threads(1)
    scaling = {}
    for n_hidden in (100, 200, 400, 800):
        cfg_h = with_overrides(cfg, sizes=(5, n_hidden, 3), epochs=1)
        net_h, _ = train(cfg_h, seed=0, progress=False, dataset=dataset)
        rate, hidden = max(_epoch_throughput(net_h, spikes, labels, cfg_h, loss_fn, rng)
                           for _ in range(repeats))
        scaling[n_hidden] = {"train_samples_per_s": rate, "hidden_spikes_per_sample": hidden}
    results["hidden_size_scaling"] = scaling
    # The evcore preset keeps hidden neurons alive (docs/eventprop.md §10a): more spikes per
    # sample, so fewer samples per second for the same work per spike.
    cfg_p = with_overrides(PRESETS["yinyang"], epochs=warm_epochs)
    net_p, _ = train(cfg_p, seed=0, progress=False, dataset=dataset)
    preset = {}
    for threads in (1, 2):
        if threads > numba.config.NUMBA_NUM_THREADS:
            continue
        numba.set_num_threads(threads)
        rate, hidden = _best_training_rate(net_p, spikes, labels, cfg_p, rng, repeats)
        preset[f"train_samples_per_s_{threads}t"] = rate
        preset["hidden_spikes_per_sample"] = hidden
    results["preset"] = preset
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    print(f"machine: {machine_description()}")
    print(f"numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads available")
    f = bench_float(args.warm_epochs, args.repeats)
    print("\nFloat64 EventProp, Yin-Yang 5-200-3, batch 32, paper setup "
          f"(after {f['warm_epochs']} epochs: {f['hidden_spikes_per_sample']:.1f} hidden spikes/sample)")
    print(f"  {'threads':>8} {'train samples/s':>16} {'forward samples/s':>18}")
    for t in (1, 2):
        if f"train_samples_per_s_{t}t" in f:
            train_rate, fwd_rate = f[f"train_samples_per_s_{t}t"], f[f"forward_samples_per_s_{t}t"]
            print(f"  {t:>8} {train_rate:>16.0f} {fwd_rate:>18.0f}")
    print("  (to compare with another implementation, time both side by side: docs/results.md)")
    p = f["preset"]
    rates = ", ".join(f"{p[f'train_samples_per_s_{t}t']:.0f} ({t} thread{'s' if t > 1 else ''})"
                      for t in (1, 2) if f"train_samples_per_s_{t}t" in p)
    print(f"  evcore preset with dead-neuron revival ({p['hidden_spikes_per_sample']:.1f} hidden "
          f"spikes/sample): {rates} train samples/s")
    print("\n  hidden size scaling (training, 1 thread, after 1 epoch)")
    print(f"  {'hidden':>8} {'samples/s':>12} {'hidden spikes':>14}")
    for n, r in f["hidden_size_scaling"].items():
        print(f"  {n:>8} {r['train_samples_per_s']:>12.0f} {r['hidden_spikes_per_sample']:>14.1f}")
    figures = {"machine": machine_description(), "float": f}
    try:
        from . import fixed_bench
    except ImportError:
        fixed_bench = None
    if fixed_bench is not None:
        figures["fixed"] = fixed_bench.main_figures()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=1)


if __name__ == "__main__":
    main()
