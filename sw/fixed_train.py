"""`evcore train yinyang --model fixed`: training with the on-chip arithmetic only.

The host supplies input spikes and labels; forward, loss, backward and update run in the
bit-accurate fixed-point core model (golden/core.py, docs/core.md). The run directory gets the
same files as a float run, in the same metrics schema.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..golden.config import CoreConfig, Flag
from ..golden.core import evaluate_fixed, train_fixed
from ..golden.eventprop import ConfigError, SpikeBatch
from .datasets import load_dataset
from .train import FRESH_SAMPLES, plot_learning_curve, save_fixed_checkpoint

#: Named core configurations (golden/config.py presets) the CLI offers.
CORE_PRESETS = {"up5k": CoreConfig.up5k, "ecp5-85f": CoreConfig.ecp5_85f}


def train_fixed_cli(args, float_cfg) -> int:
    if args.dataset != "yinyang":
        raise ConfigError("--model fixed: the core presets are sized for yinyang (5-200-3)")
    core_cfg = CORE_PRESETS[args.core]()
    epochs = args.epochs or float_cfg.epochs
    out = Path(args.out) if args.out else Path("runs") / f"{args.dataset}-fixed-seed{args.seed}"
    print(f"evcore: training {args.dataset} {'-'.join(map(str, core_cfg.sizes))} on the fixed-point "
          f"core model ({args.core}, {epochs} epochs) -> {out}")
    dataset = load_dataset(args.dataset)
    core, metrics = train_fixed(core_cfg, dataset, epochs, seed=args.seed, progress=not args.quiet,
                                init=float_cfg.init, lr_decay=float_cfg.lr_decay, return_core=True)
    # train_fixed's metrics already use the float runs' keys; the config also names the data set.
    metrics["config"] = {**metrics["config"], "dataset": args.dataset}
    if dataset.has_generator:
        # The trained core on fresh samples of the distribution, as for float runs.
        x, y = dataset.draw(FRESH_SAMPLES)
        metrics["fresh_accuracy"] = evaluate_fixed(core, SpikeBatch(*dataset.encode(x)), y)[0]
        metrics["fresh_samples"] = FRESH_SAMPLES
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    save_fixed_checkpoint(out / "checkpoint.npz", core, args.dataset)
    plot_learning_curve(metrics, out / "learning_curve.png")
    print(f"test accuracy {100 * metrics['test_accuracy']:.2f} % (best validation at epoch "
          f"{metrics['best_val_epoch']}: test {100 * metrics['best_val_test_accuracy']:.2f} %); "
          f"{metrics['wall_time_s']:.1f} s; sticky flags: {Flag(int(metrics['flags'])).name or 'none'}")
    print(f"wrote {out / 'checkpoint.npz'} (raw weights and CoreConfig; `evcore eval` runs it on the core), "
          f"{out / 'metrics.json'}, {out / 'learning_curve.png'}")
    return 0
