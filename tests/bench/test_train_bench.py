"""The pure parts of bench/train_bench.py: the per-sample cycle sums, the amortised update, the
agreement summary, the rates and the printed rows (no timing asserted)."""

import json

import numpy as np
import pytest

from evcore.bench.train_bench import (
    LOIHI_MS_PER_SAMPLE,
    cycles_agreement,
    format_loihi_line,
    format_training_row,
    synth_failure,
    training_cycles,
    training_rate,
    update_cycles_per_sample,
)
from evcore.golden.config import CoreConfig
from evcore.golden.core import FixedCore


def test_training_cycles_sum_the_phases():
    got = training_cycles([100, 200], [15, 15], [0, 300])
    assert got.dtype == np.int64 and got.tolist() == [115, 515]
    with pytest.raises(ValueError):
        training_cycles([1, 2], [1], [1, 2])


def test_training_cycles_of_a_golden_gradient_are_its_cycles():
    """The sum is FixedResult.cycles (forward + loss + backward) of a training minibatch."""
    from evcore.sw.datasets import load_dataset
    from evcore.sw.train import encode

    cfg = CoreConfig.up5k()
    rng = np.random.default_rng(1)
    weights = [rng.integers(-(1 << f), 1 << (f + 1), (n_out, n_in))
               for f, n_in, n_out in zip(cfg.w_frac, cfg.sizes, cfg.sizes[1:])]
    ds = load_dataset("yinyang")
    _, _, res = FixedCore(cfg, weights).gradient(encode(ds, ds.x_train[:4]), np.asarray(ds.y_train[:4]))
    assert np.array_equal(training_cycles(res.cycles_forward, res.cycles_loss, res.cycles_backward),
                          res.cycles)


def test_update_cycles_per_sample():
    assert update_cycles_per_sample(3208, 32) == pytest.approx(100.25)
    cfg = CoreConfig.up5k()
    per = update_cycles_per_sample(FixedCore(cfg).update_cycles(), cfg.batch_size)
    want = (2 * cfg.n_synapses + cfg.cyc_sweep_latency) / cfg.batch_size
    assert per == pytest.approx(want)
    with pytest.raises(ValueError):
        update_cycles_per_sample(100, 0)


def test_cycles_agreement():
    a = cycles_agreement([10, 20, 30], [10, 20, 30])
    assert a == {"mean_measured": 20.0, "mean_predicted": 20.0, "n_equal": 3, "n": 3, "all_equal": True}
    b = cycles_agreement([10, 20], [10, 21])
    assert (b["n_equal"], b["all_equal"], b["mean_predicted"]) == (1, False, 15.5)
    with pytest.raises(ValueError):
        cycles_agreement([1, 2], [1])


def test_training_rate():
    rate, us = training_rate(50.0, 100_000)
    assert rate == pytest.approx(500.0) and us == pytest.approx(2000.0)
    with pytest.raises(ValueError):
        training_rate(0.0, 10)
    with pytest.raises(ValueError):
        training_rate(30.0, 0)


def test_format_training_row():
    row = format_training_row("ecp5-85f", {"fmax_mhz": 50.0, "target_mhz": 100.0}, 100_000, "note here")
    assert "50.0 MHz" in row and "500 training samples/s" in row and "2,000 µs" in row
    assert row.endswith("; note here")
    assert "no fmax (run make synth)" in format_training_row("up5k", "run make synth", 1000)
    up5k = format_training_row("up5k", {"fmax_mhz": 30.82, "target_mhz": 24.0}, 30_820)
    assert "30.8 MHz" in up5k and "1,000 training samples/s" in up5k


def test_format_loihi_line_is_figure_beside_figure():
    below = format_loihi_line("ecp5-85f", 1200.0)
    assert "1.20 ms" in below and "below" in below and f"{LOIHI_MS_PER_SAMPLE} ms" in below
    assert "not below" in format_loihi_line("up5k", 2000.0)
    assert "faster" not in below and "speed-up" not in below


def test_synth_failure(tmp_path):
    report = tmp_path / "report.json"
    assert synth_failure(report, "core", "up5k") is None  # no report
    err = "core on up5k: needs 16 DSP blocks, the device has 8"
    report.write_text(json.dumps({"results": [{"top": "core", "device": "up5k", "error": err},
                                              {"top": "core", "device": "ecp5-85f", "fmax_mhz": 42.2}]}))
    assert synth_failure(report, "core", "up5k") == err
    assert synth_failure(report, "core", "ecp5-85f") is None
    report.write_text("{")
    assert synth_failure(report, "core", "up5k") is None


def test_preset_result_path():
    from pathlib import Path

    from evcore.bench.synth_preset import preset_result_path

    got = preset_result_path("ecp5-85f", "up5k", "build/synth")
    assert got == Path("build/synth/core-ecp5-85f-up5k/result.json")
