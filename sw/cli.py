"""The `evcore` command line: demo, train, eval, report, synth, export, import.

User mistakes (a missing file, a malformed data set, a bad option) end in one line on stderr
and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..golden.eventprop import ConfigError

RUNS_DIR = Path("runs")


def _cmd_train(args) -> int:
    if args.seeds is not None and args.method != "eventprop":
        raise ConfigError("--seeds runs EventProp training (float or fixed) as a sweep; give --seed for "
                          f"{args.method}")
    if args.model != "fixed":
        used = {"--backend": args.backend != "golden", "--eval-samples": args.eval_samples is not None,
                "--fresh-samples": args.fresh_samples is not None,  # (--fresh-samples 0 is used too)
                "--resume": args.resume}
        for flag, is_used in used.items():
            if is_used:
                raise ConfigError(f"{flag} applies to --model fixed only")
    if args.method != "eventprop":
        return _train_method(args)
    if args.train_samples is not None and args.model != "fixed":
        raise ConfigError("--train-samples applies to --model fixed and --method spiking-mlp and smooth-qif")
    from .train import PRESETS, train, with_overrides

    cfg = with_overrides(PRESETS[args.dataset], epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         revive=args.revive, revive_hidden=args.revive_hidden)
    if args.revive is not None and cfg.readout != "ttfs":
        raise ConfigError(f"--revive revives silent label neurons of the TTFS readout; {args.dataset} "
                          f"uses the {cfg.readout} readout (--revive-hidden applies to both)")
    if args.model == "fixed":
        if args.revive is not None or args.revive_hidden is not None:
            raise ConfigError("--revive and --revive-hidden are terms of the float training; the "
                              "fixed-point core trains with the paper's loss (docs/core.md)")
        return _train_fixed(args, cfg)
    if args.seeds is not None:
        return _train_seeds(args, cfg)
    out = Path(args.out) if args.out else RUNS_DIR / f"{args.dataset}-float-seed{args.seed}"
    print(f"evcore: training {args.dataset} {'-'.join(map(str, cfg.sizes))} ({cfg.epochs} epochs, "
          f"float64 EventProp) -> {out}")
    _, metrics = train(cfg, seed=args.seed, out_dir=out, progress=not args.quiet)
    _print_summary(metrics, out)
    return 0


def _train_method(args) -> int:
    from .methods import preset, train_method

    if args.model == "fixed":
        raise ConfigError(f"--model fixed: the fixed-point core trains EventProp only, not {args.method}")
    if args.revive is not None or args.revive_hidden is not None:
        raise ConfigError("--revive and --revive-hidden are EventProp loss terms; "
                          f"{args.method} does not use them")
    cfg = preset(args.method, args.dataset, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                 train_samples=args.train_samples)
    out = Path(args.out) if args.out else RUNS_DIR / f"{args.dataset}-{args.method}-seed{args.seed}"
    print(f"evcore: training {args.dataset} {'-'.join(map(str, cfg.sizes))} ({cfg.epochs} epochs, "
          f"{args.method}) -> {out}")
    _, metrics = train_method(cfg, seed=args.seed, out_dir=out, progress=not args.quiet)
    _print_summary(metrics, out)
    print(f"events per sample {metrics['test_events_per_sample']:.0f}, operations per sample "
          f"{metrics['test_ops_per_sample']:.0f}; {metrics['train_epoch_s']:.1f} s per training epoch")
    return 0


def _train_seeds(args, cfg) -> int:
    from .sweep import parse_seeds, train_seeds

    return train_seeds(args, cfg, parse_seeds(args.seeds))


def _train_fixed(args, cfg) -> int:
    if args.seeds is not None:
        return _train_seeds(args, cfg)
    try:
        from .fixed_train import train_fixed_cli
    except ImportError:
        raise ConfigError("--model fixed needs the fixed-point core model (golden/core.py)") from None
    return train_fixed_cli(args, cfg)


def _print_summary(metrics: dict, out: Path):
    last = metrics["epochs"][-1]
    print(f"test accuracy {100 * metrics['test_accuracy']:.2f} % "
          f"(validation {100 * last['val_accuracy']:.2f} %; "
          f"best validation at epoch {metrics['best_val_epoch']}: test "
          f"{100 * metrics['best_val_test_accuracy']:.2f} %); {metrics['wall_time_s']:.1f} s")
    print(f"wrote {out / 'checkpoint.npz'}, {out / 'metrics.json'}, {out / 'learning_curve.png'}")


def _cmd_eval(args) -> int:
    from ..golden.core import evaluate_fixed
    from .datasets import load_dataset, load_npz
    from .methods import eval_method_cli, is_method_checkpoint
    from .train import (
        checkpoint_kind,
        encode,
        evaluate,
        load_checkpoint,
        load_fixed_checkpoint,
        resolve_checkpoint,
    )

    args.checkpoint = str(resolve_checkpoint(args.checkpoint))
    method_run = is_method_checkpoint(args.checkpoint)
    if args.data and args.fresh:
        raise ValueError("--data and --fresh exclude each other: evaluate on a file or on fresh samples")
    if method_run:
        from .methods import load_method_checkpoint

        net, cfg = load_method_checkpoint(args.checkpoint)
        ds_name, n_out, model = cfg.dataset, net.sizes[-1], cfg.method
    elif checkpoint_kind(args.checkpoint) == "fixed":
        core, ds_name = load_fixed_checkpoint(args.checkpoint)
        n_out, model = core.cfg.sizes[-1], "fixed-point core"
    else:
        net, cfg = load_checkpoint(args.checkpoint)
        ds_name, n_out, model = cfg.dataset, net.sizes[-1], "float64 EventProp"
    dataset = load_dataset(ds_name)
    if args.fresh:
        x, y = dataset.draw(args.fresh)
        what = f"{args.fresh} fresh {ds_name} samples"
    elif args.data:
        x, y = load_npz(args.data)
        what = args.data
    else:
        x, y = dataset.x_test, dataset.y_test
        what = f"{ds_name} test split"
    if x.shape[1] != dataset.n_features:
        raise ValueError(f"{what}: {x.shape[1]} features, but the checkpoint was trained on "
                         f"{ds_name} with {dataset.n_features}")
    if y.max(initial=0) >= n_out:
        raise ValueError(f"{what}: label {int(y.max())} out of range for {n_out} output neurons")
    if args.backend != "golden":
        if model != "fixed-point core":
            raise ConfigError(f"--backend {args.backend} runs fixed-point checkpoints only; "
                              f"{args.checkpoint}: {model}")
        from .fixed_train import backend_name, rtl_core_from

        core, model = rtl_core_from(core, args.backend), backend_name(args.backend).removeprefix("the ")
        if args.samples is None and args.backend == "rtl":
            print(f"evcore: {len(y)} samples on the RTL take minutes (--samples N: the first N)")
    if args.samples is not None:
        x, y, what = x[: args.samples], y[: args.samples], f"{what}, first {min(args.samples, len(y))}"
    if method_run:
        return eval_method_cli(args, x, y, what)
    if model == "fixed-point core" or args.backend != "golden":
        acc, loss, spikes, _ = evaluate_fixed(core, encode(dataset, x), y, progress=True, desc="eval")
    else:
        acc, loss, spikes, _ = evaluate(net, encode(dataset, x), y, cfg.loss_fn())
    # 95 % interval of the accuracy on the distribution, from the binomial standard error.
    half_width = 1.96 * np.sqrt(acc * (1 - acc) / len(y))
    print(f"{what} ({model}): accuracy {100 * acc:.2f} % +- {100 * half_width:.2f} (95 %) on {len(y)} "
          f"samples (loss {loss:.4f}, spikes per sample {', '.join(f'{s:.1f}' for s in spikes)})")
    return 0


def _cmd_demo(args) -> int:
    from .train import PRESETS, train, with_overrides

    t0 = time.perf_counter()
    epochs = args.epochs
    preset = PRESETS["yinyang"]
    # The preset's learning-rate schedule compressed to the demo's length: it ends at the same
    # rate (5e-3 x 0.95^100), so the last epoch is as settled as that of the full run.
    lr_decay = preset.lr_decay ** (preset.epochs / epochs)
    cfg = with_overrides(preset, epochs=epochs, lr_decay=lr_decay)
    out = RUNS_DIR / "demo"
    print("evcore demo: exact float64 EventProp on Yin-Yang (5-200-3, time-to-first-spike loss), "
          f"{epochs} epochs, learning rate x{lr_decay:.3f} per epoch")
    net, metrics = train(cfg, seed=0, out_dir=out, progress=not args.quiet)
    _print_summary(metrics, out)
    # Next link of the chain: the same weights quantised into the UP5K core, fixed-point inference.
    from ..golden.config import CoreConfig
    from ..golden.core import evaluate_quantised
    from .datasets import load_dataset

    acc_fixed = evaluate_quantised(CoreConfig.up5k(), net, load_dataset("yinyang"))
    print(f"the same weights quantised into the fixed-point UP5K core (docs/core.md): "
          f"test accuracy {100 * acc_fixed:.2f} %")
    _demo_rtl(net, load_dataset("yinyang"), args.rtl_samples)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; the full 100-epoch run is "
          "`evcore train yinyang`")
    return 0


#: Every value the forward RTL exposes (FixedResult fields), compared with golden in the demo.
RTL_FIELDS = ("rec_count", "rec_step", "rec_neuron", "rec_cur", "first_step", "first_cur", "first_v",
              "final_v", "final_cur", "n_end", "flags", "vmax", "vmax_step", "layer_counts",
              "cycles_forward")


def _demo_rtl(net, dataset, n_samples: int):
    """Third link: the quantised network on the Amaranth RTL under Verilator, against golden."""
    if n_samples <= 0:
        return
    from ..golden.config import CoreConfig
    from ..golden.core import FixedCore
    from ..tb.core.rtl_core import RtlCore
    from ..toolenv import setup_tool_environment
    from .train import encode

    setup_tool_environment()
    cfg = CoreConfig.up5k()
    spikes = encode(dataset, dataset.x_test[:n_samples])
    labels = dataset.y_test[:n_samples]
    print(f"the RTL forward core (hdl/core.py) under Verilator on {n_samples} test samples "
          "(first run builds the model, about a minute) ...", flush=True)
    t0 = time.perf_counter()
    rtl = RtlCore.from_float(cfg, net).run(spikes)
    wall = time.perf_counter() - t0
    gold = FixedCore.from_float(cfg, net).run(spikes)
    bad = [f for f in RTL_FIELDS if not np.array_equal(getattr(gold, f), getattr(rtl, f))]
    n_spikes = int(gold.rec_count.sum() + (gold.first_step < cfg.n_steps).sum())
    cycles = int(rtl.cycles_forward.sum())
    if bad:
        raise RuntimeError(f"RTL differs from the golden model in {', '.join(bad)} (run `make sim`)")
    acc = float((rtl.predictions == labels).mean())
    print(f"RTL = golden bit for bit on every exposed value ({n_spikes} spikes, {cycles} cycles, "
          f"{len(RTL_FIELDS)} fields); RTL accuracy {100 * acc:.1f} % on these samples; "
          f"{wall:.0f} s incl. build, {cycles / 24e6 * 1e3 / n_samples:.2f} ms per inference at 24 MHz")
    _demo_rtl_training(cfg, net, dataset)


def _demo_rtl_training(cfg, net, dataset):
    """The whole training step on chip: one minibatch of Yin-Yang training samples through the
    RTL's forward pass, loss unit, backward pass and Adam update, against golden's train_step."""
    from ..golden.core import FixedCore
    from ..tb.core.rtl_core import RtlCore
    from .train import encode

    n = cfg.batch_size
    spikes = encode(dataset, dataset.x_train[:n])
    labels = np.asarray(dataset.y_train[:n]).astype(np.int64)
    print(f"one minibatch ({n} training samples) trained on the RTL: forward, loss unit, backward pass, "
          f"{cfg.optimizer.value} update ...", flush=True)
    t0 = time.perf_counter()
    rtl = RtlCore.from_float(cfg, net)
    _, rtl_res = rtl.train_step(spikes, labels)
    wall = time.perf_counter() - t0
    gold = FixedCore.from_float(cfg, net)
    _, gold_res = gold.train_step(spikes, labels)
    same = {
        "gradients": all(np.array_equal(a, b) for a, b in zip(gold_res.grads_raw, rtl_res.grads_raw)),
        "weights": all(np.array_equal(a, b) for a, b in zip(gold.weights_raw, rtl.weights_raw)),
        "moments": all(np.array_equal(a, b) for a, b in zip(gold.momentum_raw, rtl.momentum_raw))
        and all(np.array_equal(a, b) for a, b in zip(gold.second_moment_raw, rtl.second_moment_raw)),
        "LFSR": gold.lfsr_state == rtl.lfsr_state,
    }
    if not all(same.values()):
        bad = ", ".join(k for k, v in same.items() if not v)
        raise RuntimeError(f"the RTL's training step differs from the golden model in {bad} (run `make sim`)")
    per_sample = rtl_res.cycles_forward + rtl_res.cycles_loss + rtl_res.cycles_backward
    before = FixedCore.from_float(cfg, net).weights_raw
    moved = int(sum((a != b).sum() for a, b in zip(gold.weights_raw, before)))
    nonzero = int(sum((g != 0).sum() for g in rtl_res.grads_raw))
    print(f"RTL training step = golden bit for bit: {nonzero} non-zero gradient words, {moved} weights moved "
          f"by the update, moments and LFSR equal; {per_sample.mean():.0f} cycles per training sample "
          f"(+{rtl.last_updates['cyc_update'][0] / n:.0f} for the update), "
          f"{(per_sample.mean() + rtl.last_updates['cyc_update'][0] / n) / 24e6 * 1e3:.2f} ms per training "
          f"sample at 24 MHz; {wall:.0f} s")


def _cmd_report(args) -> int:
    """Table of finished runs (their metrics.json), with the mean per data set and model."""
    if args.sweep:
        from .sweep import cmd_report

        return cmd_report(args.sweep, args.figure)
    if args.side_by_side:
        return _side_by_side(args)
    paths = [Path(p) for p in args.runs] or sorted(RUNS_DIR.glob("*/metrics.json"))
    rows = []
    for path in paths:
        path = path / "metrics.json" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (is the run finished?)")
        try:
            m = json.loads(path.read_text())
            n_epochs = len(m["epochs"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise ValueError(f"{path} is not an evcore metrics.json (give run directories or "
                             f"their metrics.json files)") from None
        rows.append((m["config"]["dataset"], m.get("model", "float"), m["seed"], m["test_accuracy"],
                     m.get("fresh_accuracy", np.nan), m.get("best_val_epoch", n_epochs), n_epochs,
                     m["wall_time_s"], path.parent))
    if not rows:
        raise FileNotFoundError(f"no finished runs under {RUNS_DIR}/")
    print(f"{'data set':<9} {'model':<6} {'seed':>4} {'test %':>7} {'fresh %':>7} {'best val':>9} "
          f"{'time s':>7}  run")
    for ds, model, seed, acc, fresh, sel, n, wall, run in rows:
        fresh_text = "-" if np.isnan(fresh) else f"{100 * fresh:.2f}"
        print(f"{ds:<9} {model:<6} {seed:>4} {100 * acc:>7.2f} {fresh_text:>7} {f'{sel}/{n}':>9} "
              f"{wall:>7.0f}  {run}")
    # Runs of one data set and model in one folder belong together (e.g. the seeds of a setup).
    groups = {}
    for ds, model, _, acc, fresh, *_, run in rows:
        groups.setdefault((ds, model, run.parent), []).append((acc, fresh))
    for (ds, model, folder), accs in groups.items():
        if len(accs) > 1:
            test, fresh = np.array(accs).T
            line = (f"{folder}/ {ds} {model}: test mean {100 * test.mean():.2f} % +- "
                    f"{100 * test.std():.2f} over {len(accs)} seeds")
            if not np.isnan(fresh).any():
                line += f"; fresh samples mean {100 * fresh.mean():.2f} %"
            print(line)
    return 0


def _side_by_side(args) -> int:
    from .report import load_rows, markdown_table, plot_accuracy_vs_events, side_by_side

    paths = [Path(p) for p in args.runs] or sorted(RUNS_DIR.glob("**/metrics.json"))
    if not paths:
        raise FileNotFoundError(f"no finished runs under {RUNS_DIR}/")
    groups = side_by_side(load_rows(paths))
    table = markdown_table(groups)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(groups, indent=1))
    if args.figure:
        plot_accuracy_vs_events(groups, args.figure)
        print(f"wrote {args.figure}")
    return 0


def _cmd_sweep(args) -> int:
    from .sweep import cmd_sweep

    return cmd_sweep(args)


def _cmd_board(args) -> int:
    from .driver import board_cli

    return board_cli(args)


def _backend(text: str) -> str:
    from .driver import parse_backend

    return parse_backend(text)


def _cmd_synth(args) -> int:
    from ..synth.flow import run

    return run(args)


def _cmd_export(args) -> int:
    from .nir_graph import export_cli

    return export_cli(args)


def _cmd_import(args) -> int:
    from .nir_graph import import_cli

    return import_cli(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evcore", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a network on yinyang or mnist")
    p.add_argument("dataset", choices=["yinyang", "mnist"])
    p.add_argument("--epochs", type=_positive_int, help="number of epochs (preset: 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", help="several seeds, e.g. 0-9, run as one sweep on a local Dask cluster "
                   "(evcore sweep, docs/sweeps.md); one run directory per seed")
    p.add_argument("--scheduler", metavar="ADDRESS", help="with --seeds: a running Dask cluster instead")
    p.add_argument("--workers", type=_positive_int,
                   help="with --seeds: local worker processes (default: cores)")
    p.add_argument("--lr", type=_positive_float, help="Adam learning rate (preset: 5e-3)")
    p.add_argument("--batch-size", type=_positive_int, help="minibatch size")
    p.add_argument("--revive", type=_non_negative_float,
                   help="weight of the silent-label revival term (docs/eventprop.md §8; yinyang preset: 10)")
    p.add_argument("--revive-hidden", type=_non_negative_float,
                   help="weight of the dead-hidden-neuron revival term (§10a; yinyang preset: 1, 0 = off)")
    p.add_argument("--method", choices=["eventprop", "spiking-mlp", "smooth-qif"], default="eventprop",
                   help="training method (docs/methods.md): EventProp (default), O'Connor & Welling's "
                        "spiking MLP, Klos & Memmesheimer's smooth-QIF exact gradients")
    p.add_argument("--train-samples", type=_positive_int,
                   help="train on the first N training samples only (--model fixed, --method "
                        "spiking-mlp/smooth-qif)")
    p.add_argument("--model", choices=["float", "fixed"], default="float",
                   help="float64 EventProp (default) or the fixed-point core model")
    p.add_argument("--core", choices=["up5k", "ecp5-85f"], default="up5k",
                   help="core configuration for --model fixed (golden/config.py presets)")
    p.add_argument("--backend", type=_backend, default="golden", metavar="golden|rtl|serial:PORT",
                   help="--model fixed: run the core in the bit-accurate model (default), in the RTL "
                        "under Verilator (same results, about 0.2-0.3 s per training sample) or on a "
                        "board over its UART, serial:PORT[@BAUD] (docs/driver.md)")
    p.add_argument("--resume", action="store_true",
                   help="--model fixed: continue an interrupted run from its last epoch (train_state.npz "
                        "in the run directory)")
    p.add_argument("--eval-samples", type=_positive_int,
                   help="--model fixed: validate and test on the first N samples of each split only")
    p.add_argument("--fresh-samples", type=_non_negative_int,
                   help="--model fixed: fresh samples for fresh_accuracy (default 50000; 0 = none)")
    p.add_argument("--out", help="run directory (default runs/<dataset>-<model>-seed<seed>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=_positive_int,
                   help="Numba threads (default: all cores; 1 is faster for small batches on a busy machine)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="accuracy of a checkpoint on its test split or an .npz file")
    p.add_argument("checkpoint")
    p.add_argument("--data", help=".npz with x (N, F) in [0, 1] and y (N,) labels")
    p.add_argument("--fresh", type=_positive_int, metavar="N",
                   help="N fresh samples of the distribution instead (yinyang: its generator)")
    p.add_argument("--backend", type=_backend, default="golden", metavar="golden|rtl|serial:PORT",
                   help="fixed-point checkpoints: the bit-accurate model (default), the RTL (Verilator) "
                        "or a board, serial:PORT[@BAUD]")
    p.add_argument("--samples", type=_positive_int, metavar="N", help="evaluate the first N samples only")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("report", help="table of finished training runs")
    p.add_argument("runs", nargs="*", help="run directories or metrics.json files (default runs/*)")
    p.add_argument("--side-by-side", action="store_true",
                   help="compare the training methods: mean over seeds per data set and method "
                        "(docs/methods.md)")
    p.add_argument("--markdown", help="with --side-by-side: also write the table to this file")
    p.add_argument("--json", help="with --side-by-side: also write the table as JSON")
    p.add_argument("--figure", help="with --side-by-side: plot accuracy against events per sample; "
                   "with --sweep: the accuracy plot (default DIR/sweep.png)")
    p.add_argument("--sweep", metavar="DIR", help="the results of an `evcore sweep` (docs/sweeps.md)")
    p.set_defaults(func=_cmd_report)

    from .sweep import add_arguments as add_sweep_arguments

    p = sub.add_parser("sweep", help="seeds / design-space / random-config sweeps on a Dask cluster")
    add_sweep_arguments(p)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("demo", help="short Yin-Yang training run, then the fixed-point core and the RTL")
    p.add_argument("--epochs", type=_positive_int, default=30)
    p.add_argument("--rtl-samples", type=_non_negative_int, default=100,
                   help="test samples run on the RTL under Verilator and compared with golden (0: skip)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("export", help="write a float or fixed-point checkpoint as a NIR graph (docs/nir.md)")
    p.add_argument("checkpoint", help="checkpoint.npz or its run directory")
    p.add_argument("--nir", required=True, metavar="OUT", help="NIR file to write, e.g. out.nir")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("import", help="read a NIR graph into a float network or the fixed-point core")
    p.add_argument("graph", help="NIR file (Affine/Linear + CubaLIF layers, CubaLI readout optional)")
    p.add_argument("--core", choices=["up5k", "ecp5-85f", "graph"],
                   help="also put it on the fixed-point core: a preset, or the CoreConfig in the graph")
    p.add_argument("--t-max-s", type=_positive_float, metavar="SECONDS",
                   help="trial length of the float network (default: the graph's metadata, else 0.05)")
    p.add_argument("--dataset", help="data set the network reads, for `evcore eval` (default: metadata)")
    p.add_argument("--rtl-samples", type=_non_negative_int, default=0, metavar="N",
                   help="with --core: run N random samples on the RTL under Verilator against golden")
    p.add_argument("--out", help="checkpoint to write (default runs/nir-<name>[-<core>]/checkpoint.npz)")
    p.set_defaults(func=_cmd_import)

    from .driver import add_board_arguments

    p = sub.add_parser("board", help="a board on a serial port: identification word, counters; "
                       "a simulated board (docs/driver.md)")
    add_board_arguments(p)
    p.set_defaults(func=_cmd_board)

    from ..synth.flow import add_arguments as add_synth_arguments

    p = sub.add_parser("synth", help="synthesize and place-and-route a unit for iCE40 UP5K / ECP5")
    add_synth_arguments(p)
    p.set_defaults(func=_cmd_synth)
    return parser


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be >= 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def main(argv=None) -> int:
    from .datasets import DatasetError

    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    try:
        return args.func(args)
    except (DatasetError, ConfigError, ValueError, FileNotFoundError) as err:
        print(f"evcore: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evcore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

