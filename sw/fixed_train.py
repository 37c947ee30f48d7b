"""`evcore train yinyang --model fixed`: training with the on-chip arithmetic only.

The host supplies input spikes and labels; forward, loss, backward and update run in the
bit-accurate fixed-point core model (golden/core.py, docs/core.md) or, with ``--backend rtl``, in
the RTL core under Verilator (tb/core/rtl_core.py RtlCore), which equals the model bit for bit:
the same loop (golden.core.train_fixed), the same metrics.json, plots and checkpoint; with
``--backend serial:PORT`` on a board over its UART (sw/driver.py BoardCore, docs/driver.md). The run
directory gets the same files as a float run, in the same metrics schema, and ``train_state.npz``
after every epoch, from which ``--resume`` continues an interrupted run (`EpochState`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..golden.config import CoreConfig, Flag
from ..golden.core import FixedCore, evaluate_fixed, train_fixed
from ..golden.eventprop import ConfigError, SpikeBatch
from .datasets import load_dataset
from .train import FRESH_SAMPLES, plot_learning_curve, save_fixed_checkpoint

#: Named core configurations (golden/config.py presets) the CLI offers.
CORE_PRESETS = {"up5k": CoreConfig.up5k, "ecp5-85f": CoreConfig.ecp5_85f}
#: Where `--backend` runs the core (and serial:PORT[@BAUD], a board, sw/driver.py).
BACKENDS = ("golden", "rtl", "serial:PORT")


def core_class(backend: str, cfg: CoreConfig):
    """FixedCore, or RtlCore after checking that the RTL builds `cfg` and that the simulation
    tools are installed; a one-line ConfigError otherwise."""
    if backend == "golden":
        return FixedCore
    if backend.startswith("serial:"):
        from .driver import board_factory

        return board_factory(backend)
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


def rtl_core_from(core: FixedCore, backend: str = "rtl"):
    """The RTL core (or a board: serial:PORT) with a FixedCore's config and raw weights
    (`evcore eval --backend ...`)."""
    return core_class(backend, core.cfg)(core.cfg, core.weights_raw)


def backend_name(backend: str) -> str:
    if backend == "golden":
        return "the fixed-point core model"
    if backend == "rtl":
        return "the RTL core under Verilator"
    return f"the board on {backend.split(':', 1)[1]}"


class EpochState:
    """`train_fixed`'s ``epoch_state``: the run's state after each epoch in one .npz (the core's
    memories and registers, `golden.core` RNG, history, best-validation weights), written
    atomically; `load` (with ``resume``) puts it back into the core (onto the board for
    ``serial:``) and the generator. ``run_key`` (config, seed, splits) must match the saved one."""

    def __init__(self, path, run_key: dict, resume: bool):
        self.path, self.resume = Path(path), resume
        self.key = json.dumps(run_key, sort_keys=True)

    def load(self, core, rng):
        from .driver import restore_core_state

        if not self.resume:
            return None
        if not self.path.is_file():
            raise FileNotFoundError(f"--resume: {self.path} does not exist (no interrupted --model fixed run "
                                    f"in {self.path.parent})")
        with np.load(self.path, allow_pickle=False) as z:
            s = {k: z[k] for k in z.files}
        if str(s["run_key"]) != self.key:
            raise ConfigError(f"--resume: {self.path} belongs to another run (config, seed or sample counts "
                              "differ); give the same options or a new --out")
        restore_core_state(core, {k[5:]: v for k, v in s.items() if k.startswith("core_")})
        rng.bit_generator.state = json.loads(str(s["rng"]))
        n_best = int(s["n_best"])
        return {"history": json.loads(str(s["history"])), "best_val": float(s["best_val"]),
                "best_epoch": int(s["best_epoch"]), "wall_s": float(s["wall_s"]),
                "best_weights": [s[f"best_{l}"] for l in range(n_best)] if n_best else None}

    def save(self, core, rng, history, best_val, best_epoch, best_weights, wall_s):
        from .driver import core_state

        best = {f"best_{l}": np.asarray(w) for l, w in enumerate(best_weights or [])}
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, run_key=self.key, rng=json.dumps(rng.bit_generator.state), history=json.dumps(history),
                 best_val=best_val, best_epoch=best_epoch, wall_s=wall_s, n_best=len(best),
                 **{f"core_{k}": v for k, v in core_state(core).items()}, **best)
        os.replace(tmp, self.path)  # an interruption while writing leaves the previous epoch's state


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
    resume = getattr(args, "resume", False)
    print(f"evcore: {'resuming' if resume else 'training'} {args.dataset} "
          f"{'-'.join(map(str, core_cfg.sizes))} on {backend_name(backend)} ({args.core}, {epochs} epochs) "
          f"-> {out}")
    dataset = load_dataset(args.dataset)
    run_key = {"config": core_cfg.to_dict(), "seed": args.seed, "dataset": args.dataset,
               "n_train": args.train_samples, "n_eval": args.eval_samples, "init": float_cfg.init,
               "lr_decay": float_cfg.lr_decay}
    epoch_state = EpochState(out / "train_state.npz", json.loads(json.dumps(run_key)), resume)
    try:
        core, metrics = train_fixed(core_cfg, dataset, epochs, seed=args.seed, progress=not args.quiet,
                                    init=float_cfg.init, lr_decay=float_cfg.lr_decay, return_core=True,
                                    make_core=make_core, n_train=args.train_samples, n_eval=args.eval_samples,
                                    epoch_state=epoch_state)
    except ValueError as err:
        from .driver import LinkError

        if isinstance(err, LinkError) and epoch_state.path.is_file():
            raise LinkError(f"{err}; continue the run with --resume") from None
        raise
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
    if backend.startswith("serial:"):
        s = core.link.stats
        print(f"board: {s['commands']} commands, {s['tx_bytes'] / 1e3:.1f} kB sent, "
              f"{s['rx_bytes'] / 1e3:.1f} kB received, {s['resends']} resends")
    print(f"wrote {out / 'checkpoint.npz'} (raw weights and CoreConfig; `evcore eval` runs it on the core), "
          f"{out / 'metrics.json'}, {out / 'learning_curve.png'}")
    return 0
