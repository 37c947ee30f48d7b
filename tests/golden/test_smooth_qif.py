"""golden.smooth_qif against an independent ODE integration, central differences, and learning
tasks (docs/methods.md §2)."""

import math

import numpy as np
import pytest

from evcore.golden.eventprop import ConfigError
from evcore.golden.smooth_qif import QifNetwork, QifParameters, encode_features, single_neuron
from evcore.sw.train import Adam

# A longer pseudodynamics window than the default, so that single neurons spike several times.
P = QifParameters(t_pseudo=2.0)


def _rk4_spike_times(in_times, in_w, p: QifParameters, v_big=1e4, h0=2e-4):
    """Spike times by RK4 on tau dV/dt = V(V-1) + I0 itself (not the phase form), §2.1.

    The step shrinks as 1/V near a spike; from V = v_big to +inf the remaining time is
    tau/(V - 1/2) up to O(V^-3), and the reset goes to -v_big, tau/(V - 1/2) before -inf.
    After T the time constant is tau_pseudo. Kicks add w to V.
    """
    kicks = sorted(zip(in_times, in_w))
    t, v, out = 0.0, p.v0, []

    def tau_at(t):
        return p.tau if t < p.t_trial else p.tau_pseudo

    def f(v, tau):
        return (v * (v - 1.0) + p.i0) / tau

    q = 0
    while t < p.t_end:
        while q < len(kicks) and kicks[q][0] <= t:
            v += kicks[q][1]
            q += 1
        tau = tau_at(t)
        h = h0 / (1.0 + abs(v) / 10.0)
        nxt = min([k[0] for k in kicks[q:]] + [p.t_end] + ([p.t_trial] if t < p.t_trial else []))
        if t + h > nxt:
            h = nxt - t
        if h <= 0:
            t = nxt
            continue
        k1 = f(v, tau)
        k2 = f(v + 0.5 * h * k1, tau)
        k3 = f(v + 0.5 * h * k2, tau)
        k4 = f(v + h * k3, tau)
        v += h * (k1 + 2 * k2 + 2 * k3 + k4) / 6.0
        t += h
        if v > v_big:
            t_sp = t + tau / (v - 0.5)
            out.append(t_sp)
            t, v = t_sp + tau / (v_big + 0.5), -v_big
    return np.array([s for s in out if s < p.t_end])


def test_free_neuron_closed_form():
    # Phase speed pi/6 in the trial, pi after it: at T the phase is phi0 + pi/3; the first
    # (pseudo)spike follows after (pi/2 - phi0 - pi/3) / pi, then one every time unit.
    t1 = P.t_trial + (0.5 * math.pi - P.phi0 - math.pi / 3) / math.pi
    np.testing.assert_allclose(single_neuron([], [], P), [t1, t1 + 1.0], rtol=0, atol=1e-14)


@pytest.mark.parametrize("kicks", [([0.3, 0.9, 1.4], [1.5, -0.4, 2.0]), ([0.0, 0.0, 2.5], [3.0, -1.0, -2.0])])
def test_spike_times_match_ode_integration(kicks):
    exact = single_neuron(*kicks, P)
    ode = _rk4_spike_times(*kicks, P)
    assert len(exact) == len(ode) >= 2
    # RK4 at h ~ 2e-4 and the 1/v_big^3 tail: well below 1e-6.
    np.testing.assert_allclose(exact, ode, rtol=0, atol=1e-6)


def _net(seed=2):
    # Seed and weight scale chosen so that both layers spike in the trial and after it, and
    # no output neuron stays silent up to the window end (its gradient would be 0).
    rng = np.random.default_rng(seed)
    net = QifNetwork.create((6, 5, 3), None, (2.0, 2.0), rng)
    x = np.where(rng.random((3, 6)) < 0.7, rng.uniform(0.0, 1.5, (3, 6)), np.inf)
    return net, x, np.array([0, 2, 1])


def _central_differences(net, x, y, l, h=1e-6, **kw):
    fd = np.zeros_like(net.weights[l])
    for idx in np.ndindex(fd.shape):
        w0 = net.weights[l][idx]
        net.weights[l][idx] = w0 + h
        up = net.run(x, y, **kw).losses.mean()
        net.weights[l][idx] = w0 - h
        down = net.run(x, y, **kw).losses.mean()
        net.weights[l][idx] = w0
        fd[idx] = (up - down) / (2 * h)
    return fd


# Central differences at h = 1e-6: truncation h^2 |L'''| ~ 1e-12 for O(1) derivatives, rounding
# eps |L| / h ~ 1e-10; 1e-7 leaves room for the larger third derivatives near a spike.
FD_ATOL = 1e-7


def test_gradient_matches_central_differences():
    net, x, y = _net()
    _, grads, res = net.gradient(x, y, 0.3, 0.2)
    assert np.all(res.trial_spikes.sum(axis=0) > 0) and np.all(res.pseudo_spikes.sum(axis=0) > 0)
    assert np.all(res.t_out < net.params.t_end)
    for l in range(2):
        fd = _central_differences(net, x, y, l, tau_soft=0.3, alpha=0.2)
        assert np.abs(grads[l]).max() > 1e-3
        np.testing.assert_allclose(grads[l], fd, rtol=0, atol=FD_ATOL)


def test_gradient_with_targets_matches_central_differences():
    net, x, y = _net(3)
    targets = np.full((3, 3), 1.5)
    _, grads, _ = net.gradient(x, y, targets=targets)
    for l in range(2):
        np.testing.assert_allclose(grads[l], _central_differences(net, x, y, l, targets=targets),
                                   rtol=0, atol=FD_ATOL)


def test_outputs_held_silent_by_inhibition_still_get_the_exact_gradient():
    # Hidden neurons spike in the trial and after it; their pseudospikes inhibit the outputs
    # strongly, late in the hidden window (§2.2).
    rng = np.random.default_rng(0)
    w0, w1 = rng.uniform(1.0, 3.0, (3, 4)), -rng.uniform(4.0, 8.0, (4, 2))
    x, y = np.array([[0.3, np.inf, 0.2]]), [1]
    # One window for all layers: both outputs are still silent at its end, t_out is clipped and
    # the gradient is exactly zero - the collapse of docs/methods.md §4.
    one = QifNetwork([w0.copy(), w1.copy()], QifParameters(t_out_extra=0.0))
    _, grads, res = one.gradient(x, y, 0.3, 0.5)
    assert res.pseudo_spikes[0, 0] > 0 and np.all(res.t_out == one.params.t_end)
    assert all(np.all(g == 0) for g in grads)
    # The output window one pseudo-rotation longer (the default): both outputs spike after the
    # hidden window, and the gradient is nonzero and exact.
    net = QifNetwork([w0.copy(), w1.copy()])
    _, grads, res = net.gradient(x, y, 0.3, 0.5)
    assert np.all(res.t_out > net.params.t_end) and np.all(res.t_out < net.params.t_end_out)
    for l in range(2):
        assert np.abs(grads[l]).max() > 1e-2
        fd = _central_differences(net, x, y, l, tau_soft=0.3, alpha=0.5)
        np.testing.assert_allclose(grads[l], fd, rtol=0, atol=FD_ATOL)


def test_every_output_spikes_inside_the_longer_window():
    # Inputs before T + t_pseudo; the free phase then needs at most pi / omega_pseudo = 1 to
    # spike, so no inhibition, however strong, keeps an output silent up to T + t_pseudo + 1.
    p = QifParameters()
    assert p.t_out_extra == pytest.approx(math.pi / p.omega_pseudo)
    for seed in range(50):
        rng = np.random.default_rng(seed)
        net = QifNetwork([rng.normal(0.0, 3.0, (5, 20)), rng.normal(-3.0, 3.0, (20, 3))], p)
        res = net.run(rng.uniform(0.0, p.t_trial, (5, 5)))
        assert res.t_out.max() < p.t_end_out
    # A single layer: its inputs are the (trial) input spikes, the bound holds as well.
    net = QifNetwork([np.full((2, 1), -50.0)], p)
    assert net.run(np.array([[1.9, 1.99]])).t_out[0, 0] < p.t_end_out


def test_loss_continuous_where_a_weight_adds_a_spike():
    # One input kick at t = 0.2 to a silent 1-1 network: as its weight grows, the output
    # neuron's first spike moves from the pseudodynamics (t > T) into the trial.
    p = QifParameters()
    x = np.array([[0.2]])
    ws = np.linspace(0.0, 3.0, 3001)
    t_first, losses, grads, trial = [], [], [], []
    for w in ws:
        net = QifNetwork([np.array([[w]])], p)
        loss, g, res = net.gradient(x, [0], targets=[[1.0]])
        t_first.append(res.t_out[0, 0])
        losses.append(loss[0])
        grads.append(g[0][0, 0])
        trial.append(res.trial_spikes[0, 0])
    t_first, losses, grads, trial = map(np.array, (t_first, losses, grads, trial))
    assert trial[0] == 0 and trial[-1] == 1 and t_first[0] > p.t_trial > t_first[-1]
    cross = int(np.argmax(trial > 0))
    # Continuity: neighbouring losses differ by at most max|dL/dw| * dw (mean-value theorem).
    dw = ws[1] - ws[0]
    assert np.abs(np.diff(losses)).max() <= np.abs(grads).max() * dw * (1 + 1e-6)
    local_slope = np.abs(grads[cross - 1 : cross + 1]).max()
    assert abs(losses[cross] - losses[cross - 1]) <= local_slope * dw * (1 + 1e-6)
    # The exact gradient agrees with central differences on both sides of the crossing.
    for q in (cross - 5, cross + 5):
        fd = (losses[q + 1] - losses[q - 1]) / (2 * dw)
        # Second differences at dw = 1e-3 bound the truncation error dw^2 |L'''| / 6.
        assert abs(fd - grads[q]) <= 1e-4
    assert np.all(grads[: cross - 1] < 0)  # raising w moves the spike towards the target


def test_single_neuron_learns_to_move_its_spike_to_a_target():
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 1.5, (1, 5))
    net = QifNetwork([rng.normal(0.0, 0.3, (5, 1))])
    target = 0.9
    t0 = net.run(x, [0], targets=[[target]]).t_out[0, 0]
    opt = Adam(net.weights, 0.02)
    for _ in range(400):
        _, g, res = net.gradient(x, [0], targets=[[target]])
        opt.step(net.weights, g)
    t1 = net.run(x, [0], targets=[[target]]).t_out[0, 0]
    assert abs(t0 - target) > 0.5 and abs(t1 - target) < 1e-3


def test_initially_silent_network_learns():
    from evcore.sw.datasets import load_dataset

    ds = load_dataset("yinyang")
    x = encode_features("yinyang", ds.x_train[:600], P.t_trial)
    y = np.asarray(ds.y_train[:600])
    net = QifNetwork.create((5, 30, 3), None, (0.1, 0.1), np.random.default_rng(0))
    res0 = net.run(x, y)
    assert res0.trial_spikes.sum() == 0  # silent in the trial: only pseudospikes
    opt = Adam(net.weights, 0.02)
    rng = np.random.default_rng(1)
    for _ in range(40):
        perm = rng.permutation(len(y))
        for s in range(0, len(y), 30):
            _, g, _ = net.gradient(x[perm[s : s + 30]], y[perm[s : s + 30]], 0.3, 0.5)
            opt.step(net.weights, g)
    res = net.run(x, y)
    acc = (res.predictions == y).mean()
    # Chance is 1/3 on the class-balanced set; with 600 samples its standard error is 0.019, so
    # 0.75 is 20 of them above chance. The hidden layer has started spiking inside the trial.
    assert acc > 0.75 and res.trial_spikes[:, 0].mean() > 1


def test_state_dict_round_trip_and_old_checkpoints():
    net, x, y = _net()
    clone = QifNetwork.from_state_dict(net.state_dict())
    assert clone.params == net.params
    np.testing.assert_array_equal(clone.run(x, y).t_out, net.run(x, y).t_out)
    # Checkpoints written before t_out_extra existed hold 6 parameters: one window for all layers.
    old = net.state_dict()
    old["params"] = old["params"][:6]
    assert QifNetwork.from_state_dict(old).params.t_out_extra == 0.0


def test_bad_configs_fail_in_one_line():
    with pytest.raises(ConfigError, match="i0 must exceed 1/4"):
        QifParameters(i0=0.2)
    with pytest.raises(ConfigError, match="t_out_extra must be >= 0"):
        QifParameters(t_out_extra=-1.0)
    net = QifNetwork([np.zeros((3, 2))])
    with pytest.raises(ConfigError, match="2 input neurons, the network has 3"):
        net.run(np.zeros((1, 2)))
    with pytest.raises(ConfigError, match="input spike times must be >= 0"):
        net.run(np.full((1, 3), -1.0))
    with pytest.raises(ConfigError, match="one label in 0..1"):
        net.run(np.zeros((1, 3)), [2])


@pytest.mark.slow
def test_mnist_preset_reaches_target():
    """`evcore train mnist --method smooth-qif`: test accuracy >= 97.0 % (about 30 minutes)."""
    from evcore.sw.methods import preset, train_method

    _, metrics = train_method(preset("smooth-qif", "mnist"), seed=0, progress=False)
    assert metrics["test_accuracy"] >= 0.97


def test_train_method_writes_the_run_and_its_checkpoint_reproduces_it(tmp_path):
    # A short smooth-QIF run through sw/train.py's epoch loop (the one loop of every method).
    import json

    from evcore.sw.methods import evaluate_method, load_method_checkpoint, model_inputs, preset, train_method

    cfg = preset("smooth-qif", "yinyang", epochs=2, train_samples=96)
    model, metrics = train_method(cfg, seed=4, out_dir=tmp_path, progress=False)
    for name in ("metrics.json", "progress.json", "checkpoint.npz", "learning_curve.png"):
        assert (tmp_path / name).is_file()
    assert json.loads((tmp_path / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    # EventProp's history fields (sw/train.py), plus the events per sample.
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "spikes_per_sample", "lr",
                "train_epoch_s", "wall_s", "events_per_sample"):
        assert key in metrics["epochs"][-1]
    assert metrics["epochs"][-1]["lr"] == pytest.approx(cfg.lr * cfg.lr_decay**2)
    loaded, cfg2 = load_method_checkpoint(tmp_path / "checkpoint.npz")
    assert cfg2 == cfg and loaded.params == model.params
    from evcore.sw.datasets import load_dataset

    ds = load_dataset("yinyang")
    test = evaluate_method(cfg2, loaded, model_inputs(cfg2, ds, ds.x_test), ds.y_test)
    assert test["accuracy"] == metrics["test_accuracy"] and test["loss"] == metrics["test_loss"]
    # Same seed, same run (times aside).
    _, again = train_method(cfg, seed=4, progress=False)
    strip = [{k: v for k, v in e.items() if not k.endswith("_s")} for e in metrics["epochs"]]
    assert strip == [{k: v for k, v in e.items() if not k.endswith("_s")} for e in again["epochs"]]


def test_side_by_side_report_of_the_stored_runs(tmp_path):
    # `evcore report --side-by-side` over the committed smooth-QIF metrics: one row per data set
    # and setting, mean and (population) standard deviation of the seeds' test accuracies.
    import json
    from pathlib import Path

    from evcore.sw.report import load_rows, markdown_table, plot_accuracy_vs_events, side_by_side

    paths = sorted(Path(__file__).parents[2].glob("docs/results/*-smooth-qif-seed*.json"))
    assert len(paths) >= 2
    groups = side_by_side(load_rows(paths))
    for g in groups:
        acc = [json.loads(p.read_text())["test_accuracy"] for p in paths if p.name.startswith(g["dataset"])]
        assert g["seeds"] == len(acc) and g["test_accuracy_mean"] == pytest.approx(np.mean(acc), abs=1e-12)
        assert g["test_accuracy_std"] == pytest.approx(np.std(acc), abs=1e-12)
    assert {g["dataset"] for g in groups} == {p.name.split("-")[0] for p in paths}
    yinyang = next(g for g in groups if g["dataset"] == "yinyang")
    assert yinyang["sizes"] == "5-200-3, output window +1"
    assert f"| {100 * yinyang['test_accuracy_mean']:.2f} ± " in markdown_table(groups)
    plot_accuracy_vs_events(groups, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 10_000
