"""Training loop, optimiser, checkpoints and the `evcore` command line."""

import contextlib
import io
import json

import numpy as np
import pytest

from evcore.golden.eventprop import Network
from evcore.sw import cli
from evcore.sw.datasets import Dataset, DatasetError, load_dataset
from evcore.sw.train import PRESETS, Adam, load_checkpoint, train, with_overrides


def test_adam_matches_the_published_update():
    """Kingma & Ba, Algorithm 1, written out independently, on both weight layouts."""
    rng = np.random.default_rng(0)
    weights = [np.asfortranarray(rng.normal(size=(4, 3))), rng.normal(size=(2, 4))]
    ref = [w.copy() for w in weights]
    m = [np.zeros_like(w) for w in ref]
    v = [np.zeros_like(w) for w in ref]
    opt = Adam(weights, lr=1e-2)
    for t in range(1, 30):
        grads = [rng.normal(size=w.shape) for w in ref]
        opt.step(weights, grads)
        for w, g, mt, vt in zip(ref, grads, m, v):
            mt[:] = 0.9 * mt + 0.1 * g
            vt[:] = 0.999 * vt + 0.001 * g**2
            w -= 1e-2 * (mt / (1 - 0.9**t)) / (np.sqrt(vt / (1 - 0.999**t)) + 1e-8)
    for a, b in zip(weights, ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)


def small_yinyang(n_train=256, n_eval=128) -> Dataset:
    full = load_dataset("yinyang")
    return Dataset("yinyang", full.x_train[:n_train], full.y_train[:n_train], full.x_val[:n_eval],
                   full.y_val[:n_eval], full.x_test[:n_eval], full.y_test[:n_eval], 3, full.encoder)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = with_overrides(PRESETS["yinyang"], epochs=4, sizes=(5, 100, 3))
    net, metrics = train(cfg, seed=1, out_dir=out, progress=False, dataset=small_yinyang(512, 128),
                         fresh_samples=3000)
    return out, cfg, net, metrics


def test_training_learns_and_writes_its_outputs(short_run):
    out, cfg, net, metrics = short_run
    assert {p.name for p in out.iterdir()} >= {"checkpoint.npz", "metrics.json", "learning_curve.png",
                                               "progress.json"}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["config"]["sizes"] == [5, 100, 3] and saved["seed"] == 1
    assert len(saved["epochs"]) == 4
    for key in ("train_loss", "train_accuracy", "val_accuracy", "spikes_per_sample", "wall_s"):
        assert key in saved["epochs"][0]
    # Chance is 1/3; four epochs on 512 samples already learn something (0.76 measured).
    assert saved["epochs"][-1]["train_accuracy"] > 0.6
    assert 1 <= saved["best_val_epoch"] <= 4
    best = max(e["val_accuracy"] for e in saved["epochs"])
    assert saved["epochs"][saved["best_val_epoch"] - 1]["val_accuracy"] == best
    assert 0 <= saved["best_val_test_accuracy"] <= 1


def test_checkpoint_round_trip(short_run):
    out, cfg, net, metrics = short_run
    loaded, loaded_cfg = load_checkpoint(out / "checkpoint.npz")
    assert loaded_cfg == cfg
    for a, b in zip(loaded.weights, net.weights):
        np.testing.assert_array_equal(a, b)


def test_same_seed_same_run():
    cfg = with_overrides(PRESETS["yinyang"], epochs=1, sizes=(5, 20, 3))
    data = small_yinyang(64, 32)
    a = train(cfg, seed=3, progress=False, dataset=data, fresh_samples=0)[0]
    b = train(cfg, seed=3, progress=False, dataset=data, fresh_samples=0)[0]
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa, wb)


def test_cli_eval_on_npz(short_run, tmp_path, capsys):
    out, cfg, net, metrics = short_run
    data = small_yinyang()
    npz = tmp_path / "data.npz"
    np.savez(npz, x=data.x_test, y=data.y_test)
    assert cli.main(["eval", str(out / "checkpoint.npz"), "--data", str(npz)]) == 0
    printed = capsys.readouterr().out
    from evcore.sw.train import encode, evaluate
    acc = evaluate(net, encode(data, data.x_test), data.y_test, cfg.loss_fn())[0]
    half = 1.96 * np.sqrt(acc * (1 - acc) / len(data.y_test))
    assert f"accuracy {100 * acc:.2f} % +- {100 * half:.2f} (95 %) on {len(data.y_test)} samples" in printed


def test_fresh_accuracy_is_the_accuracy_on_a_fresh_draw(short_run, capsys):
    out, cfg, net, metrics = short_run
    full = load_dataset("yinyang")
    x, y = full.draw(3000)
    # The draw is new data: none of its points is in the training split.
    assert not set(map(tuple, x[:, :2])) & set(map(tuple, full.x_train[:, :2]))
    from evcore.sw.train import encode, evaluate
    acc = evaluate(net, encode(full, x), y, cfg.loss_fn())[0]
    assert metrics["fresh_accuracy"] == acc and metrics["fresh_samples"] == 3000
    assert cli.main(["eval", str(out / "checkpoint.npz"), "--fresh", "3000"]) == 0
    printed = capsys.readouterr().out
    assert f"3000 fresh yinyang samples (float64 EventProp): accuracy {100 * acc:.2f} %" in printed


def test_fresh_samples_need_a_generator_and_exclude_data(short_run, tmp_path, capsys):
    out = short_run[0]
    with pytest.raises(DatasetError, match="fixed test split only"):
        Dataset("other", *([np.zeros((2, 4)), np.zeros(2, dtype=int)] * 3), 3, "encode_yinyang").draw(10)
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.zeros((2, 4)), y=np.zeros(2, dtype=int))
    assert cli.main(["eval", str(out / "checkpoint.npz"), "--fresh", "10", "--data", str(npz)]) == 2
    err = capsys.readouterr().err
    assert "exclude each other" in err and err.count("\n") == 1


@pytest.mark.parametrize("make_file, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_text("not a zip"), "not an evcore checkpoint"),
])
def test_cli_bad_checkpoint_is_one_line(tmp_path, capsys, make_file, message):
    path = tmp_path / "ckpt.npz"
    make_file(path)
    assert cli.main(["eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("evcore: error:")


def test_cli_npz_with_wrong_features(short_run, tmp_path, capsys):
    out = short_run[0]
    npz = tmp_path / "wrong.npz"
    np.savez(npz, x=np.zeros((4, 7)), y=np.zeros(4, dtype=int))
    assert cli.main(["eval", str(out / "checkpoint.npz"), "--data", str(npz)]) == 2
    err = capsys.readouterr().err
    assert "7 features" in err and err.count("\n") == 1


def test_network_is_stored_column_major_and_updates_in_place():
    net = Network.create((5, 6, 3), rng=0)
    assert all(w.flags.f_contiguous for w in net.weights)
    before = net.weights[0].copy()
    Adam(net.weights, 0.1).step(net.weights, [np.ones_like(w) for w in net.weights])
    np.testing.assert_allclose(net.weights[0], before - 0.1, atol=1e-6)


@pytest.fixture(scope="module")
def fixed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fixed") / "run"
    argv = ["train", "yinyang", "--model", "fixed", "--epochs", "1", "--quiet", "--out", str(out)]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(argv) == 0
    return out, buf.getvalue()


def test_cli_trains_with_the_fixed_point_core(fixed_run):
    out, printed = fixed_run
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["model"] == "fixed" and saved["config"]["dataset"] == "yinyang"
    assert saved["best_val_epoch"] == 1 and len(saved["epochs"]) == 1
    # One epoch of on-chip training is far above chance (1/3); 94 % measured.
    assert saved["test_accuracy"] > 0.8
    assert (out / "learning_curve.png").is_file()
    assert f"test accuracy {100 * saved['test_accuracy']:.2f} %" in printed
    # The saved weights are the trained core's: they reproduce both headline accuracies.
    from evcore.golden.config import CoreConfig
    from evcore.golden.core import FixedCore, evaluate_fixed
    from evcore.golden.eventprop import SpikeBatch
    core = FixedCore(CoreConfig.up5k(), [np.array(w, dtype=np.int64) for w in saved["weights_raw"]])
    ds = load_dataset("yinyang")
    assert evaluate_fixed(core, SpikeBatch(*ds.encode(ds.x_test)), ds.y_test)[0] == saved["test_accuracy"]
    x, y = ds.draw(saved["fresh_samples"])
    assert evaluate_fixed(core, SpikeBatch(*ds.encode(x)), y)[0] == saved["fresh_accuracy"]


def test_fixed_checkpoint_round_trip(fixed_run):
    from evcore.sw.train import load_fixed_checkpoint

    out, _ = fixed_run
    saved = json.loads((out / "metrics.json").read_text())
    core, ds_name = load_fixed_checkpoint(out / "checkpoint.npz")
    assert ds_name == "yinyang"
    assert core.cfg.to_dict() == {k: v for k, v in saved["config"].items() if k != "dataset"}
    for w, w_saved in zip(core.weights_raw, saved["weights_raw"]):
        np.testing.assert_array_equal(w, np.array(w_saved))


@pytest.mark.parametrize("target", ["checkpoint.npz", "."])
def test_cli_evaluates_a_fixed_run_on_the_core(fixed_run, capsys, target):
    out, _ = fixed_run
    saved = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert cli.main(["eval", str(out / target)]) == 0
    printed = capsys.readouterr().out
    # The test split through the fixed-point core: the run's own headline, to the digit.
    assert "(fixed-point core)" in printed
    assert f"accuracy {100 * saved['test_accuracy']:.2f} %" in printed


def test_cli_report_lists_a_fixed_run(fixed_run, capsys):
    out, _ = fixed_run
    saved = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert cli.main(["report", str(out)]) == 0
    row = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("yinyang")][0]
    assert row.split()[1] == "fixed" and f"{100 * saved['test_accuracy']:.2f}" in row


@pytest.mark.parametrize("target, message", [
    ("metrics.json", "is a metrics file; give the run's checkpoint.npz"),
    ("learning_curve.png", "not an evcore checkpoint"),
    ("missing.npz", "does not exist"),
])
def test_cli_eval_wrong_file_of_a_run_is_one_line(fixed_run, capsys, target, message):
    out, _ = fixed_run
    assert cli.main(["eval", str(out / target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("evcore: error:")


def test_cli_eval_directory_without_checkpoint(tmp_path, capsys):
    assert cli.main(["eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "without a checkpoint.npz" in err


def test_float_and_fixed_loaders_reject_each_others_checkpoints(fixed_run, short_run):
    from evcore.sw.train import load_fixed_checkpoint

    with pytest.raises(ValueError, match="is a fixed-point core checkpoint"):
        load_checkpoint(fixed_run[0] / "checkpoint.npz")
    with pytest.raises(ValueError, match="is a float checkpoint"):
        load_fixed_checkpoint(short_run[0] / "checkpoint.npz")


def test_cli_fixed_model_rejects_mnist(capsys):
    assert cli.main(["train", "mnist", "--model", "fixed", "--epochs", "1"]) == 2
    assert "sized for yinyang" in capsys.readouterr().err


@pytest.mark.sim
def test_demo_runs_float_quantised_core_and_rtl(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo", "--epochs", "1", "--quiet", "--rtl-samples", "3"]) == 0
    out = capsys.readouterr().out
    # The demo compares 15 exposed fields of RTL and golden and says so only if all are equal.
    assert "RTL = golden bit for bit on every exposed value" in out and "on 3 test samples" in out
    saved = json.loads((tmp_path / "runs" / "demo" / "metrics.json").read_text())
    assert f"test accuracy {100 * saved['test_accuracy']:.2f} %" in out
    assert "quantised into the fixed-point UP5K core" in out
    # One epoch carries the whole 100-epoch decay: the run ends at the full run's final rate.
    preset = PRESETS["yinyang"]
    assert saved["epochs"][-1]["lr"] == pytest.approx(preset.lr * preset.lr_decay ** preset.epochs, rel=1e-12)


def _fake_run(folder, seed, test_acc, fresh_acc=None):
    folder.mkdir(parents=True)
    m = {"config": {"dataset": "yinyang"}, "model": "float", "seed": seed, "test_accuracy": test_acc,
         "epochs": [{}] * 5, "best_val_epoch": 3, "wall_time_s": 12.0}
    if fresh_acc is not None:
        m["fresh_accuracy"] = fresh_acc
    (folder / "metrics.json").write_text(json.dumps(m))
    return folder


def test_cli_report_groups_runs_by_folder(tmp_path, capsys):
    a = [_fake_run(tmp_path / "a" / f"s{k}", k, acc, fr)
         for k, (acc, fr) in enumerate([(0.98, 0.981), (0.97, 0.975)])]
    b = [_fake_run(tmp_path / "b" / f"s{k}", k, acc) for k, acc in enumerate([0.90, 0.94])]
    assert cli.main(["report", *map(str, a + b)]) == 0
    out = capsys.readouterr().out
    assert "98.00   98.10" in out and "90.00       -" in out
    assert (f"{tmp_path / 'a'}/ yinyang float: test mean 97.50 % +- 0.50 over 2 seeds; "
            "fresh samples mean 97.80 %") in out
    assert f"{tmp_path / 'b'}/ yinyang float: test mean 92.00 % +- 2.00 over 2 seeds" in out


def test_cli_report_rejects_a_file_that_is_not_metrics(tmp_path, capsys):
    log = tmp_path / "run.log"
    log.write_text("evcore: training ...\n")
    assert cli.main(["report", str(log)]) == 2
    err = capsys.readouterr().err
    assert "is not an evcore metrics.json" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["train", "mnist", "--revive", "1"], "uses the vmax readout"),
    (["train", "yinyang", "--model", "fixed", "--revive-hidden", "1"], "terms of the float training"),
])
def test_cli_revival_options_are_checked(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_revival_option_rejects_negative_values(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "yinyang", "--revive-hidden", "-1"])
    assert exc.value.code == 2 and "must be a number >= 0" in capsys.readouterr().err


def test_cli_revive_hidden_reaches_the_loss(tmp_path, monkeypatch):
    seen = {}

    def fake_train(cfg, seed, out_dir, progress):
        seen["loss"] = cfg.loss_fn()
        raise SystemExit(0)

    monkeypatch.setattr("evcore.sw.train.train", fake_train)
    with pytest.raises(SystemExit):
        cli.main(["train", "yinyang", "--revive-hidden", "0.5", "--out", str(tmp_path / "r")])
    assert seen["loss"].revive_hidden == 0.5 and seen["loss"].revive == PRESETS["yinyang"].revive
