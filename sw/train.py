"""Training with the float64 EventProp model: presets, Adam, the epoch loop of every training
method (:func:`epoch_loop`), metrics and plots.

`evcore train yinyang|mnist` runs :func:`train`; the presets follow Wunderlich & Pehle 2021
(see ../shared/REFERENCES.md and docs/eventprop.md §10).
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from numba import njit

from ..golden.eventprop import LifParameters, Network, SpikeBatch, TTFSLoss, VMaxLoss
from .datasets import Dataset, apply_input_dropout, load_dataset

__all__ = ["TrainConfig", "Adam", "train", "epoch_loop", "evaluate", "encode", "fresh_accuracy",
           "load_checkpoint", "load_fixed_checkpoint", "save_fixed_checkpoint", "checkpoint_kind",
           "PRESETS"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; stored in metrics.json and the checkpoint."""

    dataset: str
    sizes: tuple
    readout: str
    #: (mean, std) of the normal initialisation of each weight matrix.
    init: tuple
    params: LifParameters
    #: TTFS loss constants (ttfs readout only).
    tau0_s: float = 0.5e-3
    tau1_s: float = 6.4e-3
    alpha: float = 3e-3
    #: Revival of silent label neurons (docs/eventprop.md §8): a sample whose label neuron
    #: stays silent adds revive * (theta - V max of that neuron) to its loss; 0: no such term.
    revive: float = 0.0
    #: Revival of hidden neurons silent for a whole minibatch (docs/eventprop.md §10a): adds
    #: revive_hidden * (theta - their highest V max) per such neuron to the batch loss; 0: none.
    revive_hidden: float = 0.0
    lr: float = 5e-3
    #: Learning rate multiplied by this after every epoch.
    lr_decay: float = 0.95
    batch_size: int = 32
    epochs: int = 100
    #: Probability of dropping each input spike during training (MNIST: 0.2).
    input_dropout: float = 0.0
    #: Loss shaping against silent neurons (docs/eventprop.md §10): after a minibatch in which
    #: more than this fraction of (sample, neuron) pairs of a layer stayed silent, every input
    #: weight of that layer grows by `silent_bump`. The exact gradient cannot create spikes.
    silent_threshold: tuple = ()
    silent_bump: float = 0.0
    #: Samples per forward call when evaluating.
    eval_batch: int = 1000

    def loss_fn(self):
        if self.readout == "ttfs":
            return TTFSLoss(self.tau0_s, self.tau1_s, self.alpha, self.revive, self.revive_hidden)
        return VMaxLoss(self.revive_hidden)

    def to_json(self) -> dict:
        d = asdict(self)
        d["sizes"] = list(self.sizes)
        d["init"] = [list(p) for p in self.init]
        d["silent_threshold"] = list(self.silent_threshold)
        return d

    @classmethod
    def from_json(cls, d: dict) -> TrainConfig:
        d = dict(d)
        d["params"] = LifParameters(**d["params"])
        d["sizes"] = tuple(d["sizes"])
        d["init"] = tuple(tuple(p) for p in d["init"])
        d["silent_threshold"] = tuple(d.get("silent_threshold", ()))
        return cls(**d)


PRESETS = {
    # 5-200-3, inputs x * 30 ms + bias at 0 ms (REFERENCES.md, Yin-Yang setup).
    "yinyang": TrainConfig(
        dataset="yinyang",
        sizes=(5, 200, 3),
        readout="ttfs",
        init=((1.5, 0.78), (0.93, 0.1)),
        params=LifParameters(tau_mem_s=20e-3, tau_syn_s=5e-3, theta=1.0, t_max_s=0.2),
        # Revival of silent label neurons (not in the paper), chosen on the validation split
        # from 0, 1, 10, 100: docs/results.md.
        revive=10.0,
        # Revival of dead hidden neurons (not in the paper; docs/eventprop.md §10a), chosen from
        # 0, 0.1, 1, 10 on 50,000 fresh validation samples: docs/results.md.
        revive_hidden=1.0,
        lr=5e-3,
        batch_size=32,
        epochs=100,
    ),
    # 784-350-10 with leaky-integrator outputs and the voltage-max loss (REFERENCES.md).
    "mnist": TrainConfig(
        dataset="mnist",
        sizes=(784, 350, 10),
        readout="vmax",
        init=((0.078, 0.045), (0.2, 0.37)),
        params=LifParameters(tau_mem_s=20e-3, tau_syn_s=5e-3, theta=1.0, t_max_s=30e-3),
        lr=5e-3,
        batch_size=5,
        epochs=100,
        input_dropout=0.2,
    ),
}


@njit(cache=True, error_model="numpy")
def _adam_update(w, g, m, v, lr, beta1, beta2, eps, c1, c2):
    # One fused pass: numpy's eight temporaries cost 1 ms per MNIST minibatch of 5.
    # error_model="numpy" drops the per-division zero check so that the loop vectorises.
    for q in range(w.size):
        m[q] = beta1 * m[q] + (1.0 - beta1) * g[q]
        v[q] = beta2 * v[q] + (1.0 - beta2) * g[q] * g[q]
        w[q] -= lr * (m[q] / c1) / (math.sqrt(v[q] / c2) + eps)


class Adam:
    """Adam (Kingma & Ba) over a list of weight arrays, updated in place."""

    def __init__(self, weights, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = [np.zeros(w.size) for w in weights]
        self.v = [np.zeros(w.size) for w in weights]
        self.t = 0

    def step(self, weights, grads):
        self.t += 1
        c1 = 1.0 - self.beta1**self.t
        c2 = 1.0 - self.beta2**self.t
        for w, g, m, v in zip(weights, grads, self.m, self.v):
            # Flat views in w's own memory order (the network stores weights column-major).
            order = "F" if w.flags.f_contiguous else "C"
            if not (w.flags.c_contiguous or w.flags.f_contiguous):
                raise ValueError("Adam needs contiguous weight arrays")
            _adam_update(w.reshape(-1, order=order), np.asarray(g).reshape(-1, order=order), m, v,
                         self.lr, self.beta1, self.beta2, self.eps, c1, c2)


def encode(dataset: Dataset, x: np.ndarray) -> SpikeBatch:
    """Input spikes of a data set's features."""
    times_s, ids, counts = dataset.encode(x)
    return SpikeBatch(times_s, ids, counts)


def label_fired(result, labels) -> np.ndarray:
    """Samples whose label neuron fired (always all for the vmax readout).

    A silent label neuron has no spike time; its loss is a surrogate at t_max (docs/eventprop.md
    §8) that grows like exp(t_max / tau1), so reported losses average over the other samples
    and the silent fraction is reported beside them.
    """
    if result.readout != "ttfs":
        return np.ones(len(labels), dtype=bool)
    return np.isfinite(result.first_spike_times_s[np.arange(len(labels)), labels])


def evaluate(net: Network, spikes: SpikeBatch, labels: np.ndarray, loss_fn, batch: int = 1000):
    """Accuracy, mean loss, mean spikes per sample and layer, and the silent-label fraction."""
    correct = 0
    loss_sum = 0.0
    n_fired = 0
    spike_sum = None
    for s in range(0, spikes.batch_size, batch):
        part = spikes[s : s + batch]
        result = net.run(part)
        y = labels[s : s + batch]
        correct += int((result.predictions == y).sum())
        fired = label_fired(result, y)
        loss_sum += float(net.loss(result, y, loss_fn)[fired].sum())
        n_fired += int(fired.sum())
        counts = np.array([c.sum() for c in result.spike_counts()], dtype=np.float64)
        spike_sum = counts if spike_sum is None else spike_sum + counts
    n = spikes.batch_size
    return correct / n, loss_sum / max(n_fired, 1), (spike_sum / n).tolist(), 1.0 - n_fired / n


#: Fresh samples for the accuracy on the distribution itself (data sets with a generator): the
#: binomial standard error at 98 % is 0.06 points, against 0.44 on a 1000-sample test split.
FRESH_SAMPLES = 50_000


def fresh_accuracy(net: Network, dataset: Dataset, loss_fn, batch: int = 1000,
                   n_samples: int = FRESH_SAMPLES) -> float:
    """Accuracy on n fresh samples of the data set's distribution (same draw for every call)."""
    x, y = dataset.draw(n_samples)
    return evaluate(net, encode(dataset, x), y, loss_fn, batch)[0]


def _silent_fraction(result, layer: int, n_neurons: int) -> float:
    return 1.0 - result.layers[layer].fired(n_neurons).mean()


def epoch_loop(learner, opt, *, epochs: int, batch_size: int, n_train: int, lr_decay: float,
               rng: np.random.Generator, cfg, seed: int, out_dir, progress: bool, desc: str, t_start: float):
    """The one epoch loop of every training method (EventProp here, the spiking MLP and smooth
    QIF in sw/methods.py): shuffle, minibatches, learning-rate decay, validation, the history
    records of metrics.json, the best-validation state, progress bar and progress.json.

    ``learner`` supplies ``train_batch(idx, rng)`` (one optimiser step on the training samples
    idx; returns the batch's contributions to the epoch sums, added element-wise),
    ``epoch_fields(sums, n_train)`` (the epoch's training and validation fields of the history
    record, validation included) and ``snapshot()`` (a copy of the weights). Returns (history,
    best snapshot, best epoch).
    """
    from tqdm.auto import tqdm

    history = []
    best_val, best_state, best_epoch = -1.0, None, 0
    bar = tqdm(total=epochs * n_train, disable=not progress, unit="sample", desc=desc, dynamic_ncols=True)
    for epoch in range(epochs):
        t_epoch = time.perf_counter()
        perm = rng.permutation(n_train)
        sums = None
        for s in range(0, n_train, batch_size):
            idx = perm[s : s + batch_size]
            part = learner.train_batch(idx, rng)
            sums = list(part) if sums is None else [a + b for a, b in zip(sums, part)]
            bar.update(len(idx))
        epoch_s = time.perf_counter() - t_epoch
        opt.lr *= lr_decay
        record = {"epoch": epoch + 1, **learner.epoch_fields(sums, n_train), "lr": opt.lr,
                  "train_epoch_s": epoch_s, "wall_s": time.perf_counter() - t_start}
        history.append(record)
        if record["val_accuracy"] > best_val:
            best_val, best_state, best_epoch = record["val_accuracy"], learner.snapshot(), epoch + 1
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{100 * record['val_accuracy']:.1f}%")
        if out_dir is not None:
            write_progress(out_dir, cfg, seed, history)
    bar.close()
    return history, best_state, best_epoch


class _EventPropLearner:
    """EventProp's minibatch step and epoch record for :func:`epoch_loop`."""

    def __init__(self, cfg: TrainConfig, net: Network, opt: Adam, dataset: Dataset):
        self.cfg, self.net, self.opt, self.dataset = cfg, net, opt, dataset
        self.loss_fn = cfg.loss_fn()
        self.train_spikes = encode(dataset, dataset.x_train)
        self.val_spikes = encode(dataset, dataset.x_val)
        self.y_train = np.asarray(dataset.y_train)
        self.n_spiking = len(cfg.sizes) - 1 - (1 if cfg.readout == "vmax" else 0)

    def train_batch(self, idx, rng):
        """(loss sum over label-fired samples, label-fired samples, correct predictions)."""
        cfg, net = self.cfg, self.net
        batch = self.train_spikes[idx]
        if cfg.input_dropout > 0:
            batch = SpikeBatch(*apply_input_dropout(batch.times_s, batch.ids, batch.counts,
                                                    cfg.input_dropout, rng))
        losses, grads, result = net.gradient(batch, self.y_train[idx], self.loss_fn)
        self.opt.step(net.weights, grads)
        # Loss shaping: bump the layer whose neurons are too often silent (§10).
        for layer, threshold in enumerate(cfg.silent_threshold[: self.n_spiking]):
            if threshold < 1.0 and _silent_fraction(result, layer, cfg.sizes[layer + 1]) > threshold:
                net.weights[layer] += cfg.silent_bump
                break
        fired = label_fired(result, self.y_train[idx])
        return (float(losses[fired].sum()), int(fired.sum()),
                int((result.predictions == self.y_train[idx]).sum()))

    def epoch_fields(self, sums, n_train):
        loss_sum, n_fired, correct = sums
        val_acc, val_loss, val_spikes_per_layer, val_silent = evaluate(
            self.net, self.val_spikes, self.dataset.y_val, self.loss_fn, self.cfg.eval_batch)
        return {"train_loss": loss_sum / max(n_fired, 1), "train_accuracy": correct / n_train,
                "train_silent_label_fraction": 1.0 - n_fired / n_train, "val_loss": val_loss,
                "val_accuracy": val_acc, "val_silent_label_fraction": val_silent,
                "spikes_per_sample": val_spikes_per_layer}

    def snapshot(self):
        return [w.copy(order="K") for w in self.net.weights]


def train(cfg: TrainConfig, seed: int = 0, out_dir: str | Path | None = None, progress: bool = True,
          dataset: Dataset | None = None, fresh_samples: int = FRESH_SAMPLES):
    """Train a network; returns (network, metrics dict). Writes checkpoint/metrics/plot to out_dir.

    For a data set with a generator, the metrics also hold the final network's accuracy on
    ``fresh_samples`` fresh samples (0: skip).
    """
    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    dataset = dataset or load_dataset(cfg.dataset)
    net = Network.create(cfg.sizes, cfg.params, cfg.readout, cfg.init, rng)
    opt = Adam(net.weights, cfg.lr)
    learner = _EventPropLearner(cfg, net, opt, dataset)
    loss_fn = learner.loss_fn
    test_inputs = encode(dataset, dataset.x_test)
    history, best_weights, best_epoch = epoch_loop(
        learner, opt, epochs=cfg.epochs, batch_size=cfg.batch_size, n_train=len(learner.y_train),
        lr_decay=cfg.lr_decay, rng=rng, cfg=cfg, seed=seed, out_dir=out_dir, progress=progress,
        desc=f"train {cfg.dataset}", t_start=t_start)
    # Headline: the last epoch, the paper's protocol. Beside it, the epoch with the best
    # validation accuracy (selection on the validation split only) and its test accuracy.
    test_acc, test_loss, test_spikes, test_silent = evaluate(net, test_inputs, dataset.y_test, loss_fn,
                                                             cfg.eval_batch)
    best_net = Network(net.sizes, net.params, net.readout, best_weights)
    best_acc = evaluate(best_net, test_inputs, dataset.y_test, loss_fn, cfg.eval_batch)[0]
    fresh = None
    if dataset.has_generator and fresh_samples > 0:
        fresh = fresh_accuracy(net, dataset, loss_fn, cfg.eval_batch, fresh_samples)
    metrics = {
        "model": "float",
        "config": cfg.to_json(),
        "seed": seed,
        "epochs": history,
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "test_spikes_per_sample": test_spikes,
        "test_silent_label_fraction": test_silent,
        "train_epoch_s": float(np.mean([e["train_epoch_s"] for e in history])),
        "best_val_epoch": best_epoch,
        "best_val_test_accuracy": best_acc,
        **({"fresh_accuracy": fresh, "fresh_samples": fresh_samples} if fresh is not None else {}),
        "wall_time_s": time.perf_counter() - t_start,
        "host": {"python": platform.python_version(), "machine": platform.machine()},
    }
    if out_dir is not None:
        save_run(net, cfg, metrics, out_dir)
    return net, metrics


def write_progress(out_dir: str | Path, cfg, seed: int, history: list):
    """progress.json after every epoch, so an interrupted long run (MNIST: minutes per epoch)
    leaves its curve behind. ``cfg`` is any run configuration with ``to_json()``."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "progress.json").write_text(json.dumps({"config": cfg.to_json(), "seed": seed,
                                                             "epochs": history}, indent=1))


def save_run(net: Network, cfg: TrainConfig, metrics: dict, out_dir: str | Path):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "checkpoint.npz", config=json.dumps(cfg.to_json()), **net.state_dict())
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    plot_learning_curve(metrics, out / "learning_curve.png")


def _open_checkpoint(path: str | Path):
    """The arrays of an evcore checkpoint, with one-line errors for the usual wrong paths."""
    path = Path(path)
    if path.is_dir():
        if not (path / "checkpoint.npz").is_file():
            raise FileNotFoundError(f"{path} is a directory without a checkpoint.npz (is the run finished?)")
        path = path / "checkpoint.npz"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".json":
        raise ValueError(f"{path} is a metrics file; give the run's checkpoint.npz "
                         f"({path.parent / 'checkpoint.npz'}) or its directory")
    try:
        with np.load(path, allow_pickle=False) as state:
            return path, {k: state[k] for k in state.files}
    except (ValueError, OSError, EOFError):
        raise ValueError(f"{path} is not an evcore checkpoint (not an .npz file written by "
                         f"`evcore train`)") from None


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file a user means (a run directory stands for its checkpoint.npz), checked."""
    return _open_checkpoint(path)[0]


def load_checkpoint(path: str | Path) -> tuple[Network, TrainConfig]:
    """Network and training configuration of a float checkpoint written by :func:`train`."""
    path, state = _open_checkpoint(path)
    if "core_config" in state:
        raise ValueError(f"{path} is a fixed-point core checkpoint; load it with load_fixed_checkpoint")
    try:
        cfg = TrainConfig.from_json(json.loads(str(state["config"])))
        net = Network.from_state_dict(state)
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{path} is not an evcore checkpoint ({err})") from None
    return net, cfg


def save_fixed_checkpoint(path: str | Path, core, dataset: str):
    """The trained core's raw weights and the CoreConfig it was trained with (one .npz)."""
    arrays = {f"weights_raw_{l}": np.asarray(w, dtype=np.int64) for l, w in enumerate(core.weights_raw)}
    np.savez(path, core_config=core.cfg.to_json(), dataset=dataset, **arrays)


def load_fixed_checkpoint(path: str | Path):
    """(FixedCore, data set name) of a checkpoint written by `evcore train --model fixed`."""
    from ..golden.config import CoreConfig
    from ..golden.core import FixedCore

    path, state = _open_checkpoint(path)
    if "core_config" not in state:
        raise ValueError(f"{path} is a float checkpoint; load it with load_checkpoint")
    try:
        cfg = CoreConfig.from_json(str(state["core_config"]))
        weights = [state[f"weights_raw_{l}"] for l in range(cfg.n_layers)]
        return FixedCore(cfg, weights), str(state["dataset"])
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{path} is not a valid fixed-point checkpoint ({err})") from None


def checkpoint_kind(path: str | Path) -> str:
    """"fixed" or "float"."""
    return "fixed" if "core_config" in _open_checkpoint(path)[1] else "float"


def plot_learning_curve(metrics: dict, path: str | Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [e["epoch"] for e in metrics["epochs"]]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(epochs, [e["train_loss"] for e in metrics["epochs"]], label="train")
    ax_loss.plot(epochs, [e["val_loss"] for e in metrics["epochs"]], label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_acc.plot(epochs, [100 * e["train_accuracy"] for e in metrics["epochs"]], label="train")
    ax_acc.plot(epochs, [100 * e["val_accuracy"] for e in metrics["epochs"]], label="validation")
    ax_acc.axhline(100 * metrics["test_accuracy"], color="k", ls=":",
                   label=f"test {100 * metrics['test_accuracy']:.2f} % (last epoch)")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_ylim(max(0, 100 * min(e["val_accuracy"] for e in metrics["epochs"]) - 5), 100)
    ax_acc.legend(loc="lower right")
    cfg = metrics["config"]
    fig.suptitle(f"{cfg['dataset']} {'-'.join(map(str, cfg['sizes']))}, {metrics.get('model', 'float')} "
                 f"model, seed {metrics['seed']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def with_overrides(cfg: TrainConfig, **kw) -> TrainConfig:
    """The preset with the given fields replaced (None values ignored)."""
    return replace(cfg, **{k: v for k, v in kw.items() if v is not None})

