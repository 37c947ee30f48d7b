"""Training glue for the two methods beside EventProp: the spiking MLP and smooth-QIF networks.

`evcore train <dataset> --method spiking-mlp|smooth-qif` runs :func:`train_method`. Data sets,
the epoch loop (sw/train.py's epoch_loop), the metrics.json schema, the learning-curve plot and
the checkpoint format are EventProp's; this module supplies each method's training step
(minibatch-1 SGD with event-driven updates for the spiking MLP, minibatch Adam for smooth QIF)
and evaluation. Presets and deviations from the papers: docs/methods.md §3.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..golden.eventprop import ConfigError
from .datasets import Dataset, load_dataset
from .train import Adam, epoch_loop, plot_learning_curve

__all__ = ["METHODS", "MethodConfig", "METHOD_PRESETS", "train_method", "evaluate_method", "build_model",
           "load_method_checkpoint"]

METHODS = ("spiking-mlp", "smooth-qif")


@dataclass(frozen=True)
class MethodConfig:
    """Everything that defines a run of one of the two methods; stored in metrics.json."""

    method: str
    dataset: str
    sizes: tuple
    lr: float
    #: Learning rate multiplied by this after every epoch.
    lr_decay: float
    batch_size: int
    epochs: int
    #: Spiking MLP: herding steps per sample (paper: 10).
    n_steps: int = 10
    #: Spiking MLP: gain of the output error before backward quantisation (docs/methods.md §1.3).
    back_gain: float = 1.0
    #: Smooth QIF: standard deviation of the normal initial weights of each layer.
    init_std: tuple = ()
    #: Smooth QIF: probability of flipping each binarised MNIST pixel during training (paper 0.02).
    input_flip: float = 0.0
    #: Smooth QIF: softmax temperature of the first-spike loss (trial-time units).
    tau_soft: float = 0.1
    #: Smooth QIF: weight of the label neuron's first spike time in the loss (early-spike pressure).
    alpha: float = 0.1
    #: Smooth QIF: trial length and pseudodynamics window (trial-time units; docs/methods.md §2).
    t_trial: float = 2.0
    t_pseudo: float = 1.0
    #: Smooth QIF: the output layer's window is this much longer (docs/methods.md §2.2).
    t_out_extra: float = 1.0
    #: First n training samples only (0: all); for runs that must fit a time budget.
    train_samples: int = 0
    #: Samples per evaluation call.
    eval_batch: int = 1000

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.train_samples < 0:
            raise ConfigError(f"train_samples must be >= 0, got {self.train_samples}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["sizes"] = list(self.sizes)
        d["init_std"] = list(self.init_std)
        return d

    @classmethod
    def from_json(cls, d: dict) -> MethodConfig:
        d = dict(d)
        d["sizes"] = tuple(d["sizes"])
        d["init_std"] = tuple(d["init_std"])
        # Runs from before t_out_extra existed had one window for all layers.
        if d["method"] == "smooth-qif":
            d.setdefault("t_out_extra", 0.0)
        return cls(**d)


METHOD_PRESETS = {
    # 784-200-200-10, minibatch 1, 10 steps (REFERENCES.md, O'Connor & Welling).
    ("spiking-mlp", "mnist"): MethodConfig("spiking-mlp", "mnist", (784, 200, 200, 10), lr=0.01, lr_decay=0.8,
                                           batch_size=1, epochs=10, n_steps=10, back_gain=10.0),
    # Same hidden size as the EventProp Yin-Yang preset. 30 steps: 10 resolve a feature to 0.1
    # only (seed 0: 90.1 % test with 10 steps, 95.5 % with 30).
    ("spiking-mlp", "yinyang"): MethodConfig("spiking-mlp", "yinyang", (4, 200, 3), lr=0.01, lr_decay=0.95,
                                             batch_size=1, epochs=30, n_steps=30, back_gain=10.0),
    # 784-100-100-10, trial T = 2, input flips 0.02 (REFERENCES.md, Klos & Memmesheimer).
    ("smooth-qif", "mnist"): MethodConfig("smooth-qif", "mnist", (784, 100, 100, 10), lr=4e-3, lr_decay=0.9,
                                          batch_size=100, epochs=15, init_std=(0.05, 0.3, 0.3),
                                          input_flip=0.02, t_out_extra=0.0),
    # lr 1e-2 chosen from 4e-3, 1e-2, 2e-2 at 30 epochs (validation 81, 87, 69 %).
    ("smooth-qif", "yinyang"): MethodConfig("smooth-qif", "yinyang", (5, 200, 3), lr=1e-2, lr_decay=0.95,
                                            batch_size=32, epochs=100, init_std=(0.1, 0.1),
                                            tau_soft=0.3, alpha=0.5),
}


def build_model(cfg: MethodConfig, rng: np.random.Generator):
    if cfg.method == "spiking-mlp":
        from ..golden.spiking_mlp import SpikingMLP

        return SpikingMLP.create(cfg.sizes, cfg.n_steps, rng, cfg.back_gain)
    from ..golden.smooth_qif import QifNetwork, QifParameters

    params = QifParameters(t_trial=cfg.t_trial, t_pseudo=cfg.t_pseudo, t_out_extra=cfg.t_out_extra)
    return QifNetwork.create(cfg.sizes, params, cfg.init_std, rng)


def model_inputs(cfg: MethodConfig, dataset: Dataset, x: np.ndarray):
    """Model input of features x: the features for the spiking MLP, input spikes for smooth QIF."""
    if cfg.method == "spiking-mlp":
        return np.ascontiguousarray(x, dtype=np.float64)
    from ..golden.smooth_qif import encode_features

    return encode_features(cfg.dataset, x, cfg.t_trial)


def evaluate_method(cfg: MethodConfig, model, inputs, labels) -> dict:
    """Accuracy, mean loss, spikes per sample and layer, events and operations per sample."""
    labels = np.asarray(labels)
    n = len(labels)
    if cfg.method == "spiking-mlp":
        out, layer_counts, ops = model.output_counts(inputs)
        losses = [model.error(out[s], labels[s])[0] for s in range(n)]
        return {"accuracy": float((out.argmax(axis=1) == labels).mean()), "loss": float(np.mean(losses)),
                "spikes_per_sample": (layer_counts.mean(axis=0)[1:]).tolist(),
                "events_per_sample": float(layer_counts[:, :-1].sum(axis=1).mean()),
                "ops_per_sample": float(ops.mean())}
    correct, loss_sum, spikes, events, ops = 0, 0.0, 0.0, 0.0, 0.0
    for s in range(0, n, cfg.eval_batch):
        y = labels[s : s + cfg.eval_batch]
        res = model.run(inputs[s : s + cfg.eval_batch], y, cfg.tau_soft, cfg.alpha)
        correct += int((res.predictions == y).sum())
        loss_sum += float(res.losses.sum())
        spikes = spikes + res.trial_spikes.sum(axis=0)
        events += float(res.events.sum())
        ops += float(res.ops.sum())
    return {"accuracy": correct / n, "loss": loss_sum / n, "spikes_per_sample": (spikes / n).tolist(),
            "events_per_sample": events / n, "ops_per_sample": ops / n}


class _MethodLearner:
    """One training step and the epoch record of a method, for sw/train.py's epoch_loop."""

    def __init__(self, cfg: MethodConfig, model, opt, x_train, y_train, x_val, y_val):
        self.cfg, self.model, self.opt = cfg, model, opt
        self.x_train, self.y_train, self.x_val, self.y_val = x_train, y_train, x_val, y_val

    def train_batch(self, idx, rng):
        """(loss sum, correct predictions) of one step: one sample for the spiking MLP (its
        update is applied event by event inside the model), a minibatch and Adam for smooth QIF."""
        cfg, model = self.cfg, self.model
        if cfg.method == "spiking-mlp":
            s = idx[0]
            step = model.train_step(self.x_train[s], int(self.y_train[s]), self.opt.lr)
            return step.loss, int(step.prediction == self.y_train[s])
        from ..golden.smooth_qif import flip_inputs

        batch = self.x_train[idx]
        if cfg.input_flip > 0:
            batch = flip_inputs(batch, cfg.input_flip, rng)
        losses, grads, res = model.gradient(batch, self.y_train[idx], cfg.tau_soft, cfg.alpha)
        self.opt.step(model.weights, grads)
        return float(losses.sum()), int((res.predictions == self.y_train[idx]).sum())

    def epoch_fields(self, sums, n_train):
        loss_sum, correct = sums
        val = evaluate_method(self.cfg, self.model, self.x_val, self.y_val)
        return {"train_loss": loss_sum / n_train, "train_accuracy": correct / n_train,
                "val_loss": val["loss"], "val_accuracy": val["accuracy"],
                "spikes_per_sample": val["spikes_per_sample"], "events_per_sample": val["events_per_sample"]}

    def snapshot(self):
        return _copy_state(self.model.state_dict())


def train_epoch(cfg: MethodConfig, model, opt, inputs, labels, rng, bar=None):
    """One epoch of training steps alone, no validation (bench/run.py times it); returns (loss
    sum, correct predictions). Training runs use epoch_loop."""
    learner = _MethodLearner(cfg, model, opt, inputs, np.asarray(labels), None, None)
    n = len(labels)
    perm = rng.permutation(n)
    loss_sum, correct = 0.0, 0
    for s in range(0, n, cfg.batch_size):
        loss, right = learner.train_batch(perm[s : s + cfg.batch_size], rng)
        loss_sum, correct = loss_sum + loss, correct + right
    return loss_sum, correct


class Sgd:
    """The spiking MLP's plain SGD: its update is applied event by event inside the model."""

    def __init__(self, lr):
        self.lr = lr


def train_method(cfg: MethodConfig, seed: int = 0, out_dir: str | Path | None = None, progress: bool = True,
                 dataset: Dataset | None = None):
    """Train one of the two methods; returns (model, metrics). Writes checkpoint/metrics/plot."""
    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    dataset = dataset or load_dataset(cfg.dataset)
    model = build_model(cfg, rng)
    n_train = cfg.train_samples or len(dataset.y_train)
    if n_train > len(dataset.y_train):
        raise ConfigError(f"train_samples {n_train} exceeds the {len(dataset.y_train)} training samples")
    x_train = model_inputs(cfg, dataset, dataset.x_train[:n_train])
    y_train = np.asarray(dataset.y_train[:n_train])
    x_val = model_inputs(cfg, dataset, dataset.x_val)
    x_test = model_inputs(cfg, dataset, dataset.x_test)
    opt = Sgd(cfg.lr) if cfg.method == "spiking-mlp" else Adam(model.weights, cfg.lr)
    learner = _MethodLearner(cfg, model, opt, x_train, y_train, x_val, dataset.y_val)
    history, best_state, best_epoch = epoch_loop(
        learner, opt, epochs=cfg.epochs, batch_size=cfg.batch_size, n_train=n_train, lr_decay=cfg.lr_decay,
        rng=rng, cfg=cfg, seed=seed, out_dir=out_dir, progress=progress,
        desc=f"train {cfg.dataset} {cfg.method}", t_start=t_start)
    test = evaluate_method(cfg, model, x_test, dataset.y_test)
    best_model = type(model).from_state_dict(best_state)
    best_test = evaluate_method(cfg, best_model, x_test, dataset.y_test)
    metrics = {
        "model": cfg.method,
        "method": cfg.method,
        "config": cfg.to_json(),
        "seed": seed,
        "epochs": history,
        "train_samples": n_train,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_spikes_per_sample": test["spikes_per_sample"],
        "test_events_per_sample": test["events_per_sample"],
        "test_ops_per_sample": test["ops_per_sample"],
        "train_epoch_s": float(np.mean([e["train_epoch_s"] for e in history])),
        "best_val_epoch": best_epoch,
        "best_val_test_accuracy": best_test["accuracy"],
        "fixed_point_core": False,
        "wall_time_s": time.perf_counter() - t_start,
        "host": {"python": platform.python_version(), "machine": platform.machine()},
    }
    if cfg.method == "spiking-mlp":
        metrics["dense_macs_per_sample"] = model.dense_macs()
        metrics["train_ops_per_sample"] = model.training_ops(x_test[:1000], dataset.y_test[:1000])
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / "checkpoint.npz", config=json.dumps(cfg.to_json()), **model.state_dict())
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        plot_learning_curve(metrics, out / "learning_curve.png")
    return model, metrics


def _copy_state(state: dict) -> dict:
    return {k: np.array(v, copy=True) for k, v in state.items()}


def load_method_checkpoint(path: str | Path):
    """(model, MethodConfig) of a checkpoint written by :func:`train_method`."""
    with np.load(path, allow_pickle=False) as state:
        cfg = MethodConfig.from_json(json.loads(str(state["config"])))
        model = build_model(cfg, np.random.default_rng(0)).from_state_dict(state)
    return model, cfg


def is_method_checkpoint(path: str | Path) -> bool:
    """Whether a checkpoint was written by :func:`train_method` (its config names a method)."""
    try:
        with np.load(path, allow_pickle=False) as state:
            return "method" in json.loads(str(state["config"]))
    except (KeyError, ValueError, OSError, json.JSONDecodeError):
        return False


def eval_method_cli(args, x, y, what: str) -> int:
    """`evcore eval` of a spiking-MLP or smooth-QIF checkpoint on features x, labels y."""
    model, cfg = load_method_checkpoint(args.checkpoint)
    ev = evaluate_method(cfg, model, model_inputs(cfg, load_dataset(cfg.dataset), x), y)
    half_width = 1.96 * np.sqrt(ev["accuracy"] * (1 - ev["accuracy"]) / len(y))
    print(f"{what}: accuracy {100 * ev['accuracy']:.2f} % +- {100 * half_width:.2f} (95 %) on {len(y)} "
          f"samples ({cfg.method}; loss {ev['loss']:.4f}, events per sample {ev['events_per_sample']:.0f})")
    return 0


def preset(method: str, dataset: str, **overrides) -> MethodConfig:
    """The preset of a method on a data set with the given fields replaced (None ignored)."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    cfg = METHOD_PRESETS[(method, dataset)]
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if cfg.method == "spiking-mlp" and cfg.batch_size != 1:
        raise ConfigError("--method spiking-mlp trains with minibatch 1 (event-driven updates per "
                          "sample, as in the paper); --batch-size does not apply")
    return cfg

