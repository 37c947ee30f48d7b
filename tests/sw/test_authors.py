"""sw/authors.py reads the authors' pickles right: a pickle in their layout, written from
networks whose accuracies and first spikes this model computed, must agree with itself."""

import pickle

import numpy as np

from evcore.golden.eventprop import Network
from evcore.sw import authors
from evcore.sw.datasets import load_dataset
from evcore.sw.train import PRESETS, encode


def _their_layout(tmp_path, perturb_last_logged=False):
    cfg = PRESETS["yinyang"]
    ds = load_dataset("yinyang")
    test = encode(ds, ds.x_test)
    rng = np.random.default_rng(4)
    # Saved after epochs 0 and 10 and at the end; accuracies logged at the start of epochs 0-11.
    states = [Network.create(cfg.sizes, cfg.params, cfg.readout, cfg.init, rng) for _ in range(3)]
    accuracies = [0.0] * 12
    first_spikes = [None] * 12
    for k, net in enumerate(states[:2]):
        result = net.run(test)
        accuracies[10 * k + 1] = float(np.mean(result.predictions == ds.y_test))
        t = result.first_spike_times_s.copy()
        t[~np.isfinite(t)] = np.nan  # their silent outputs
        first_spikes[10 * k + 1] = t
    if perturb_last_logged:
        first_spikes[11] = first_spikes[11] + 1e-6
        accuracies[11] += 0.002
    weights = [tuple(np.ascontiguousarray(w.T) for w in net.weights) for net in states]  # (n_in, n_out)
    fields = ([], [], accuracies, [0.0] * 12, first_spikes, [], [], [], weights)
    path = tmp_path / "paper"
    path.mkdir()
    with open(path / "yinyang_0.pkl", "wb") as f:
        pickle.dump(fields, f)
    return path


def test_pickles_in_the_authors_layout_agree_with_the_model(tmp_path, capsys):
    assert authors.main([str(_their_layout(tmp_path)), "--fresh", "2000"]) == 0
    out = capsys.readouterr().out
    assert "accuracies equal to the logged ones: 2/2 network states" in out
    assert "fired in one implementation only: 0" in out
    n = int(out.split("output first spikes within 1e-09 s: ")[1].split("/")[0])
    assert n > 0 and f"{n}/{n};" in out


def test_a_disagreement_is_reported(tmp_path, capsys):
    assert authors.main([str(_their_layout(tmp_path, perturb_last_logged=True)), "--fresh", "2000"]) == 0
    out = capsys.readouterr().out
    assert "accuracies equal to the logged ones: 1/2 network states" in out
    line = out.split("output first spikes within 1e-09 s: ")[1].split(";")[0]
    same, total = map(int, line.split("/"))
    assert 0 < same < total
