"""`evcore train yinyang --model fixed`: training with the on-chip arithmetic only.

The host supplies input spikes and labels; forward, loss, backward and update run in the
bit-accurate fixed-point core model (golden/core.py, docs/core.md) or, with ``--backend rtl``, in
the RTL core under Verilator (tb/core/rtl_core.py RtlCore), which equals the model bit for bit:
the same loop (golden.core.train_fixed), the same metrics.json, plots and checkpoint. The run
directory gets the same files as a float run, in the same metrics schema.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..golden.config import CoreConfig, Flag
from ..golden.core import FixedCore, evaluate_fixed, train_fixed
from ..golden.eventprop import ConfigError, SpikeBatch
from .datasets import load_dataset
from .train import FRESH_SAMPLES, plot_learning_curve, save_fixed_checkpoint

#: Named core configurations (golden/config.py presets) the CLI offers.
CORE_PRESETS = {"up5k": CoreConfig.up5k, "ecp5-85f": CoreConfig.ecp5_85f}
#: Where `--backend` runs the core.
BACKENDS = ("golden", "rtl")


def core_class(backend: str, cfg: CoreConfig):
    """FixedCore, or RtlCore after checking that the RTL builds `cfg` and that the simulation
    tools are installed; a one-line ConfigError otherwise."""
    if backend == "golden":
        return FixedCore
    if backend != "rtl":
        raise ConfigError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    try:
        from ..hdl.core import check_buildable
        from ..tb.core.rtl_core import RtlCore
    except ImportError as err:
        raise ConfigError(f"--backend rtl needs the dev install (cocotb, Verilator): {err}") from None
    try:
        check_buildable(cfg)
    except ValueError as err:
        raise ConfigError(f"--backend rtl: the RTL cannot build this core config: {err}") from None
    return RtlCore


def train_rtl(cfg: CoreConfig, dataset, epochs: int, seed: int = 0, progress: bool = True, **kw):
    """`train_fixed` on the RTL (RtlCore under Verilator): the sweep runner's ``rtl`` model
    (sw/sweep.py). Returns (core, metrics) as ``train_fixed(..., return_core=True)``."""
    return train_fixed(cfg, dataset, epochs, seed=seed, progress=progress, return_core=True,
                       make_core=core_class("rtl", cfg), **kw)


def rtl_core_from(core: FixedCore):
    """The RTL core with a FixedCore's config and raw weights (`evcore eval --backend rtl`)."""
    return core_class("rtl", core.cfg)(core.cfg, core.weights_raw)


def train_fixed_cli(args, float_cfg) -> int:
    if args.dataset != "yinyang":
        raise ConfigError("--model fixed: the core presets are sized for yinyang (5-200-3)")
    changes = {} if args.batch_size is None else {"batch_size": args.batch_size}
    core_cfg = CORE_PRESETS[args.core](**changes)
    backend = getattr(args, "backend", "golden")
    make_core = core_class(backend, core_cfg)
    epochs = args.epochs or float_cfg.epochs
    fresh = FRESH_SAMPLES if args.fresh_samples is None else args.fresh_samples
    out = Path(args.out) if args.out else Path("runs") / f"{args.dataset}-fixed-seed{args.seed}"
    where = "the fixed-point core model" if backend == "golden" else "the RTL core under Verilator"
    print(f"evcore: training {args.dataset} {'-'.join(map(str, core_cfg.sizes))} on {where} "
          f"({args.core}, {epochs} epochs) -> {out}")
    dataset = load_dataset(args.dataset)
    core, metrics = train_fixed(core_cfg, dataset, epochs, seed=args.seed, progress=not args.quiet,
                                init=float_cfg.init, lr_decay=float_cfg.lr_decay, return_core=True,
                                make_core=make_core, n_train=args.train_samples, n_eval=args.eval_samples)
    # train_fixed's metrics already use the float runs' keys; the config also names the data set.
    metrics["config"] = {**metrics["config"], "dataset": args.dataset}
    metrics["backend"] = backend
    if dataset.has_generator and fresh:
        # The trained core on fresh samples of the distribution, as for float runs.
        x, y = dataset.draw(fresh)
        metrics["fresh_accuracy"] = evaluate_fixed(core, SpikeBatch(*dataset.encode(x)), y,
                                                   progress=not args.quiet, desc="fresh samples")[0]
        metrics["fresh_samples"] = fresh
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    save_fixed_checkpoint(out / "checkpoint.npz", core, args.dataset)
    plot_learning_curve(metrics, out / "learning_curve.png")
    print(f"test accuracy {100 * metrics['test_accuracy']:.2f} % (best validation at epoch "
          f"{metrics['best_val_epoch']}: test {100 * metrics['best_val_test_accuracy']:.2f} %); "
          f"{metrics['wall_time_s']:.1f} s; sticky flags: {Flag(int(metrics['flags'])).name or 'none'}")
    if backend == "rtl":
        t = core.totals
        print(f"RTL: {t['runs']} simulator runs, {t['cycles'] / 1e6:.1f} M simulated cycles in "
              f"{t['wall_s']:.0f} s "
              f"({t['cycles'] / max(t['wall_s'], 1e-9) / 1e6:.3f} M cycles/s; inside the simulation loops "
              f"{t['cycles'] / max(t['sim_wall_s'], 1e-9) / 1e6:.3f} M cycles/s)")
    print(f"wrote {out / 'checkpoint.npz'} (raw weights and CoreConfig; `evcore eval` runs it on the core), "
          f"{out / 'metrics.json'}, {out / 'learning_curve.png'}")
    return 0
