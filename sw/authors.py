"""Cross-check against the authors' published Yin-Yang networks (Wunderlich & Pehle 2021).

The authors' repository (github.com/eventprop/eventprop) ships, in ``paper/yinyang_{0..9}.pkl``,
the logged test accuracies and output first-spike times of every epoch of their 10 published
runs, and the weights after epochs 0, 10, ..., 90 and at the end. This script evaluates those
weights with evcore's forward pass on the published test split (which evcore's Yin-Yang
generator reproduces bit for bit) and compares:

* accuracy: their logged accuracy of the state after epoch e is the one they measured at the
  start of epoch e + 1;
* output first-spike times, sample by sample (their implementation against this one);
* dead hidden neurons (silent for every training sample) over training (docs/eventprop.md §10a);
* accuracy of their final networks on the distribution itself (fresh samples).

Their label numbers are those of the published files; their output neuron k is label k.
Nothing here is part of the test suite: it needs the pickles. Usage::

    git clone https://github.com/eventprop/eventprop /path/eventprop
    python -m evcore.sw.authors /path/eventprop/paper
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

from ..golden.eventprop import Network
from .datasets import load_dataset
from .train import FRESH_SAMPLES, PRESETS, encode, evaluate

# Field order of the authors' TTFS pickles (their ttfs_training.py, get_data_for_pickling).
_TEST_ACCURACIES, _TEST_FIRST_SPIKES, _WEIGHTS = 2, 4, 8
SAVE_EVERY_EPOCHS = 10
SAME_TIME_S = 1e-9


def load_run(path: Path) -> dict:
    with open(path, "rb") as f:
        fields = pickle.load(f)
    return {"test_accuracies": list(map(float, fields[_TEST_ACCURACIES])),
            "test_first_spikes": fields[_TEST_FIRST_SPIKES], "weights": fields[_WEIGHTS]}


def network(weights) -> Network:
    """Their (n_in, n_out) weight matrices as an evcore network with the Yin-Yang preset."""
    cfg = PRESETS["yinyang"]
    return Network(cfg.sizes, cfg.params, cfg.readout, [np.asarray(w, dtype=np.float64).T for w in weights])


def dead_hidden(net: Network, spikes) -> int:
    """Hidden neurons that fire for none of the samples."""
    return int((~net.run(spikes).layers[0].fired(net.sizes[1]).any(axis=0)).sum())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paper_dir", type=Path, help="the authors' paper/ folder with yinyang_*.pkl")
    parser.add_argument("--fresh", type=int, default=FRESH_SAMPLES, help="fresh samples for the last column")
    args = parser.parse_args(argv)
    paths = sorted(args.paper_dir.glob("yinyang_*.pkl"))
    if not paths:
        raise SystemExit(f"no yinyang_*.pkl in {args.paper_dir}")
    ds = load_dataset("yinyang")
    loss_fn = PRESETS["yinyang"].loss_fn()
    test, train = encode(ds, ds.x_test), encode(ds, ds.x_train)
    x_fresh, y_fresh = ds.draw(args.fresh)
    fresh = encode(ds, x_fresh)
    totals = dict(states=0, same_acc=0, times=0, same_times=0, fired_mismatch=0)
    finals = []
    print(f"{'run':>4} {'states':>6} {'same acc':>8} {'same t1':>9} {'dead hidden (epochs 0,10,..,end)':<40} "
          f"{'test %':>6} {'fresh %':>7}")
    for path in paths:
        run = load_run(path)
        same_acc = same_t = n_t = 0
        dead = []
        for k, weights in enumerate(run["weights"]):
            net = network(weights)
            dead.append(dead_hidden(net, train))
            logged_epoch = SAVE_EVERY_EPOCHS * k + 1  # accuracy logged at the start of the next epoch
            if k == len(run["weights"]) - 1 or logged_epoch >= len(run["test_accuracies"]):
                continue
            result = net.run(test)
            acc = float(np.mean(result.predictions == ds.y_test))
            same_acc += round(1000 * acc) == round(1000 * run["test_accuracies"][logged_epoch])
            theirs = np.asarray(run["test_first_spikes"][logged_epoch], dtype=np.float64)
            theirs = np.where(np.isnan(theirs), np.inf, theirs)
            ours = result.first_spike_times_s
            both = np.isfinite(ours) & np.isfinite(theirs)
            totals["fired_mismatch"] += int((np.isfinite(ours) != np.isfinite(theirs)).sum())
            same_t += int((np.abs(ours[both] - theirs[both]) <= SAME_TIME_S).sum())
            n_t += int(both.sum())
            totals["states"] += 1
        final = network(run["weights"][-1])
        test_acc = evaluate(final, test, ds.y_test, loss_fn)[0]
        fresh_acc = evaluate(final, fresh, y_fresh, loss_fn)[0]
        finals.append((test_acc, fresh_acc))
        totals["same_acc"] += same_acc
        totals["times"] += n_t
        totals["same_times"] += same_t
        print(f"{path.stem:>4} {len(run['weights']) - 1:>6} {same_acc:>8} {same_t / max(n_t, 1):>9.5f} "
              f"{','.join(map(str, dead)):<40} {100 * test_acc:>6.1f} {100 * fresh_acc:>7.2f}")
    finals = np.array(finals)
    print(f"accuracies equal to the logged ones: {totals['same_acc']}/{totals['states']} network states")
    print(f"output first spikes within {SAME_TIME_S:g} s: {totals['same_times']}/{totals['times']}; "
          f"fired in one implementation only: {totals['fired_mismatch']}")
    print(f"final networks: test {100 * finals[:, 0].mean():.2f} +- {100 * finals[:, 0].std():.2f} %, "
          f"{args.fresh} fresh samples {100 * finals[:, 1].mean():.2f} +- {100 * finals[:, 1].std():.2f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
