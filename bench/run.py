"""`make bench`: throughput of the golden models, printed as a table.

Float64 EventProp on Yin-Yang (5-200-3, batch 32), in the paper's setup: training samples/s
(forward + backward + Adam) with 1 and 2 threads, forward-only samples/s, and the scaling with
hidden size; then the training rate of the evcore preset (revival terms, more hidden spikes). The
network is first trained for a few epochs so spike counts are at their steady state (about 30
hidden spikes per sample in the paper's setup). Then the fixed-point golden model (fixed_bench.py)
and the RTL forward core under Verilator (rtl_bench.py: cycles per inference against the cycle
model, inferences/s at the synthesised fmax, simulated cycles/s) and its training rows
(train_bench.py: cycles per training sample on the RTL against the cycle model, training samples/s
at the synthesised fmax beside Loihi's published figure, the golden model's training samples/s).
Last, the sweep engine (sweep_bench.py): one small sweep in-process and on 1 and 2 Dask workers.
Only evcore's own figures are measured, printed with the machine they were measured on: a
comparison with another implementation means timing both on one machine, side by side
(docs/results.md, "Throughput"); Loihi's figure is its published one, printed beside ours.
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


def _method_rate(cfg, model, inputs, labels, rng) -> tuple[float, float]:
    """Training samples/s of one epoch of a method (sw/methods.py) and its events per sample."""
    from ..sw.methods import Sgd, evaluate_method, train_epoch
    from ..sw.train import Adam

    class _NoBar:
        def update(self, n):
            pass

    opt = Sgd(1e-5) if cfg.method == "spiking-mlp" else Adam(model.weights, 1e-5)
    t0 = time.perf_counter()
    train_epoch(cfg, model, opt, inputs, labels, rng, _NoBar())
    rate = len(labels) / (time.perf_counter() - t0)
    ev = evaluate_method(cfg, model, inputs[:1000], labels[:1000])
    return rate, ev["events_per_sample"], ev["ops_per_sample"]


def bench_methods(repeats: int) -> dict:
    """The spiking MLP and smooth QIF on Yin-Yang, one thread: training samples/s against hidden
    size, each after one training epoch (docs/methods.md §5)."""
    from ..sw.methods import model_inputs, preset, train_method

    numba.set_num_threads(1)
    dataset = load_dataset("yinyang")
    labels = np.asarray(dataset.y_train)
    results = {}
    for method in ("spiking-mlp", "smooth-qif"):
        scaling = {}
        for n_hidden in (100, 200, 400, 800):
            base = preset(method, "yinyang")
            sizes = (base.sizes[0], n_hidden, base.sizes[-1])
            cfg = preset(method, "yinyang", sizes=sizes, epochs=1, init_std=base.init_std or None)
            model, _ = train_method(cfg, seed=0, progress=False, dataset=dataset)
            inputs = model_inputs(cfg, dataset, dataset.x_train)
            rng = np.random.default_rng(0)
            best = max((_method_rate(cfg, model, inputs, labels, rng) for _ in range(repeats)),
                       key=lambda r: r[0])
            scaling[n_hidden] = {"train_samples_per_s": best[0], "events_per_sample": best[1],
                                 "ops_per_sample": best[2]}
        results[method] = scaling
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return results


def _print_methods(m: dict):
    print("\nSpiking MLP (minibatch 1) and smooth QIF (batch 32) on Yin-Yang, training, 1 thread, "
          "after 1 epoch")
    print(f"  {'method':>12} {'hidden':>7} {'samples/s':>10} {'events/sample':>14} {'ops/sample':>11} "
          f"{'ns per op':>10}")
    for method, scaling in m.items():
        for n, r in scaling.items():
            ns = 1e9 / (r["train_samples_per_s"] * r["ops_per_sample"])
            print(f"  {method:>12} {n:>7} {r['train_samples_per_s']:>10.0f} {r['events_per_sample']:>14.1f} "
                  f"{r['ops_per_sample']:>11.0f} {ns:>10.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--methods-only", action="store_true",
                        help="only the spiking-MLP and smooth-QIF rows (docs/methods.md)")
    parser.add_argument("--rtl-only", action="store_true",
                        help="only the RTL rows: cycles per inference on the Verilated core, inferences/s "
                             "at the synthesised fmax, simulated cycles/s (bench/rtl_bench.py), then the "
                             "training rows unless --train-samples 0")
    parser.add_argument("--train-only", action="store_true",
                        help="only the RTL training rows: cycles per training sample on the Verilated core, "
                             "training samples/s at the synthesised fmax (bench/train_bench.py)")
    parser.add_argument("--train-samples", type=int, default=64,
                        help="Yin-Yang training samples run on the RTL (default 64 = 2 minibatches; "
                             "0 skips the training rows)")
    parser.add_argument("--rtl-samples", type=int, default=100,
                        help="Yin-Yang test samples run on the RTL (default 100; 0 skips the RTL rows)")
    parser.add_argument("--sweep-only", action="store_true",
                        help="only the sweep row: a small sweep at 1 and 2 Dask workers "
                             "(bench/sweep_bench.py)")
    args = parser.parse_args(argv)
    if args.sweep_only:
        from . import sweep_bench

        figures = {"sweep": sweep_bench.main_figures()}
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(figures, fh, indent=1)
        return

    print(f"machine: {machine_description()}")
    print(f"numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads available")
    if args.rtl_only or args.train_only:
        from . import rtl_bench, train_bench

        figures = {"machine": machine_description()}
        if args.rtl_only:
            figures["rtl"] = rtl_bench.main_figures(max(1, args.rtl_samples))
        if args.train_only or args.train_samples > 0:
            figures["rtl_train"] = train_bench.main_figures(max(1, args.train_samples))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(figures, fh, indent=1)
        return
    if args.methods_only:
        m = bench_methods(args.repeats)
        _print_methods(m)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"methods": m}, fh, indent=1)
        return
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
    figures["methods"] = bench_methods(args.repeats)
    _print_methods(figures["methods"])
    try:
        from . import fixed_bench
    except ImportError:
        fixed_bench = None
    if fixed_bench is not None:
        figures["fixed"] = fixed_bench.main_figures()
    if args.rtl_samples > 0:
        # The RTL rows need the dev install (cocotb, Verilator) that `make install` provides.
        from . import rtl_bench

        figures["rtl"] = rtl_bench.main_figures(args.rtl_samples)
    if args.train_samples > 0:
        from . import train_bench

        figures["rtl_train"] = train_bench.main_figures(args.train_samples)
    from . import sweep_bench

    figures["sweep"] = sweep_bench.main_figures()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=1)


if __name__ == "__main__":
    main()
