"""The pure parts of bench/rtl_bench.py: the cycle prediction, the rate, reading a synthesis result."""

import json

import numpy as np
import pytest

from evcore.bench.rtl_bench import (
    format_rate_row,
    inferences_per_s,
    predicted_forward_cycles,
    read_synth_fmax,
)
from evcore.golden.config import CoreConfig
from evcore.golden.core import FixedCore


def test_inferences_per_s():
    assert inferences_per_s(30.0, 60_000) == pytest.approx(500.0)
    with pytest.raises(ValueError):
        inferences_per_s(0.0, 100)
    with pytest.raises(ValueError):
        inferences_per_s(30.0, 0)


def test_predicted_cycles_equal_the_golden_models():
    """Recomputed from the event counts, the §7 forward cycles are the golden model's own."""
    from evcore.sw.datasets import load_dataset
    from evcore.sw.train import encode

    cfg = CoreConfig.up5k()
    rng = np.random.default_rng(0)
    weights = [rng.integers(-(1 << f), 1 << (f + 1), (n_out, n_in))
               for f, n_in, n_out in zip(cfg.w_frac, cfg.sizes, cfg.sizes[1:])]
    ds = load_dataset("yinyang")
    res = FixedCore(cfg, weights).run(encode(ds, ds.x_test[:6]))
    assert res.layer_counts.sum() > 0  # some spikes, so the fan-out terms are exercised
    assert np.array_equal(predicted_forward_cycles(res), res.cycles_forward)


def _result(tmp_path, cfg, **changes):
    r = {"device": "up5k", "part": "iCE40UP5K-SG48I", "fmax_mhz": 30.82, "target_mhz": 24.0,
         "component": {"parameters": {"cfg": json.loads(cfg.to_json())}}, **changes}
    path = tmp_path / "core-up5k" / "result.json"
    path.parent.mkdir()
    path.write_text(json.dumps(r))
    return path


def test_read_synth_fmax(tmp_path):
    cfg = CoreConfig.up5k()
    got = read_synth_fmax(_result(tmp_path, cfg), cfg)
    assert (got["fmax_mhz"], got["target_mhz"], got["device"]) == (30.82, 24.0, "up5k")


def test_read_synth_fmax_says_why_not(tmp_path):
    cfg = CoreConfig.up5k()
    missing = read_synth_fmax(tmp_path / "core-up5k" / "result.json", cfg)
    assert missing.startswith("no ") and '--top core --device up5k' in missing
    stale = read_synth_fmax(_result(tmp_path, cfg), CoreConfig.ecp5_85f())
    assert "another configuration" in stale


def test_format_rate_row():
    row = format_rate_row("up5k", {"fmax_mhz": 30.0, "target_mhz": 24.0}, 60_000)
    assert "30.0 MHz" in row and "500 inferences/s" in row and "2.00 ms" in row
    assert "no fmax (run make synth)" in format_rate_row("ecp5-85f", "run make synth", 100_000)
