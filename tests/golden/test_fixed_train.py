"""Training with the on-chip arithmetic only (golden.core.train_fixed)."""

import json

import numpy as np
import pytest

from evcore.golden.config import CoreConfig
from evcore.golden.core import FixedCore, evaluate_fixed, train_fixed
from evcore.golden.eventprop import SpikeBatch
from evcore.sw.datasets import load_dataset


@pytest.fixture(scope="module")
def yinyang():
    return load_dataset("yinyang")


def test_short_training_learns_and_is_reproducible(yinyang):
    """Three epochs on 2000 samples: well above chance (a third), identical on a rerun."""
    cfg = CoreConfig.up5k()
    core, m = train_fixed(cfg, yinyang, 3, seed=5, progress=False, n_train=2000, return_core=True)
    assert m["test_accuracy"] > 0.80, m["test_accuracy"]
    assert m["epochs"][-1]["train_loss"] < m["epochs"][0]["train_loss"]
    json.dumps(m)  # JSON-serialisable, raw weights included
    # The reported test accuracy is that of the core as training left it (last epoch), whose
    # weights are the returned ones; the best-validation epoch is reported beside it.
    best = max(e["val_accuracy"] for e in m["epochs"])
    assert m["best_val_accuracy"] == best
    assert m["epochs"][m["best_val_epoch"] - 1]["val_accuracy"] == best
    test = SpikeBatch(*yinyang.encode(yinyang.x_test))
    assert evaluate_fixed(core, test, yinyang.y_test)[0] == m["test_accuracy"]
    # the (times_s, ids, counts) tuple that FixedCore.run takes is accepted as well
    assert evaluate_fixed(core, yinyang.encode(yinyang.x_test), yinyang.y_test)[0] == m["test_accuracy"]
    assert [w.tolist() for w in core.weights_raw] == m["weights_raw"]
    assert 0.0 <= m["best_val_test_accuracy"] <= 1.0
    again = train_fixed(cfg, yinyang, 3, seed=5, progress=False, n_train=2000)
    assert again["weights_raw"] == m["weights_raw"] and again["test_accuracy"] == m["test_accuracy"]


def test_training_from_given_core_keeps_its_weights(yinyang):
    cfg = CoreConfig.up5k()
    core = FixedCore(cfg, [np.zeros((200, 5), dtype=np.int64), np.zeros((3, 200), dtype=np.int64)])
    m = train_fixed(cfg, yinyang, 1, seed=0, progress=False, n_train=64, core=core)
    # All-zero weights: nothing spikes, every sample is masked, nothing is learned.
    assert m["epochs"][0]["train_accuracy"] == 0.0
    assert not any(np.any(w) for w in core.weights_raw)


@pytest.mark.slow
def test_up5k_reaches_the_yinyang_target(yinyang):
    """The issue's target: mean test accuracy of 3 seeds >= 97.0 % with the up5k core (100 epochs)."""
    cfg = CoreConfig.up5k()
    assert cfg.fits("up5k")
    accs = [train_fixed(cfg, yinyang, 100, seed=s, progress=False)["test_accuracy"] for s in range(3)]
    assert np.mean(accs) >= 0.970, accs
