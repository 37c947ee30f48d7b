"""`evcore train yinyang --model fixed --backend rtl` and `evcore eval --backend rtl`: the RTL core
under Verilator (tb/core/rtl_core.py) behind the same training loop as the fixed-point model.

The reference is the same command with ``--backend golden`` (golden/core.py FixedCore, which the
RTL equals bit for bit, tb/core/test_core.py): metrics.json must be equal field for field (wall
times aside; the losses and accuracies are computed on the host from the cores' integers, so they
are equal to the last bit too) and so must the checkpoint's raw weights. A short run: 64 training
samples in minibatches of 16, two minibatches per simulator run (so the chip state crosses a
run boundary), 24 validation and test samples, 16 fresh ones, 12 per inference run.
"""

import json

import numpy as np
import pytest

from evcore.golden.config import CoreConfig
from evcore.golden.eventprop import ConfigError
from evcore.sw import cli

SHORT = ["train", "yinyang", "--model", "fixed", "--epochs", "1", "--train-samples", "64",
         "--batch-size", "16", "--eval-samples", "24", "--fresh-samples", "16", "--quiet"]
WALL_TIME_KEYS = {"wall_s", "wall_time_s", "train_epoch_s"}


def without_wall_times(metrics: dict) -> dict:
    out = {k: v for k, v in metrics.items() if k not in WALL_TIME_KEYS | {"backend"}}
    out["epochs"] = [{k: v for k, v in e.items() if k not in WALL_TIME_KEYS} for e in metrics["epochs"]]
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from evcore.tb.core.rtl_core import RtlCore

    root = tmp_path_factory.mktemp("backend")
    with pytest.MonkeyPatch.context() as mp:
        # Other groupings than golden's (one minibatch, 1000 samples per call): the float sums of
        # the losses must not depend on them.
        mp.setattr(RtlCore, "minibatches_per_run", 2)
        mp.setattr(RtlCore, "samples_per_run", 12)
        for backend in ("golden", "rtl"):
            assert cli.main([*SHORT, "--backend", backend, "--out", str(root / backend)]) == 0
    return root


@pytest.mark.sim
def test_rtl_training_run_equals_golden(runs):
    gold = json.loads((runs / "golden" / "metrics.json").read_text())
    rtl = json.loads((runs / "rtl" / "metrics.json").read_text())
    assert (gold["backend"], rtl["backend"]) == ("golden", "rtl")
    assert rtl["epochs"][0]["wall_s"] > 0 and rtl["wall_time_s"] > 0
    assert rtl["fresh_samples"] == 16 and len(rtl["epochs"]) == 1
    assert without_wall_times(rtl) == without_wall_times(gold)
    with np.load(runs / "golden" / "checkpoint.npz") as g, np.load(runs / "rtl" / "checkpoint.npz") as r:
        assert sorted(g.files) == sorted(r.files)
        for name in g.files:
            assert np.array_equal(g[name], r[name]), name
        assert str(r["core_config"]) == CoreConfig.up5k(batch_size=16).to_json()
    # Four minibatches of training moved the weights away from their initial draw.
    assert gold["weights_raw"] != json.loads(json.dumps(_initial_weights()))
    assert (runs / "rtl" / "learning_curve.png").stat().st_size > 0


def _initial_weights() -> list:
    from evcore.golden.core import FixedCore, _init_weights
    from evcore.sw.train import PRESETS

    cfg = CoreConfig.up5k(batch_size=16)
    rng = np.random.default_rng(0)
    core = FixedCore.from_float(cfg, _init_weights(cfg, PRESETS["yinyang"].init, rng))
    return [w.tolist() for w in core.weights_raw]


@pytest.mark.sim
def test_rtl_eval_equals_golden(runs, capsys):
    ckpt = str(runs / "golden" / "checkpoint.npz")
    capsys.readouterr()
    assert cli.main(["eval", ckpt, "--samples", "20"]) == 0
    gold = capsys.readouterr().out.strip().splitlines()[-1]
    assert cli.main(["eval", ckpt, "--samples", "20", "--backend", "rtl"]) == 0
    rtl = capsys.readouterr().out.strip().splitlines()[-1]
    assert "(fixed-point core)" in gold and "(RTL core under Verilator)" in rtl and "on 20 samples" in rtl
    assert rtl.replace("RTL core under Verilator", "fixed-point core") == gold


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "yinyang", "--backend", "rtl"], "--backend applies to --model fixed only"),
        (["train", "yinyang", "--eval-samples", "5"], "--eval-samples applies to --model fixed only"),
        (["train", "yinyang", "--fresh-samples", "0", "--method", "smooth-qif"], "--fresh-samples applies"),
        (["train", "yinyang", "--train-samples", "5"], "--train-samples applies to --model fixed"),
    ],
)
def test_backend_options_outside_the_fixed_model_are_one_line_errors(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"evcore: error: {message}") and err.count("\n") == 1


def test_rtl_backend_rejects_a_config_the_rtl_cannot_build():
    from evcore.sw.fixed_train import core_class

    message = r"^--backend rtl: the RTL cannot build .*cyc_sweep_latency = 3"
    with pytest.raises(ConfigError, match=message) as info:
        core_class("rtl", CoreConfig.up5k(cyc_sweep_latency=3))
    assert "\n" not in str(info.value)
    # Loss shaping (§6.5) is in the RTL since issue 17.
    assert core_class("rtl", CoreConfig.up5k(silent_threshold=(0.5, 1.0))).__name__ == "RtlCore"
