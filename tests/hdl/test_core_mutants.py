# amaranth: UnusedElaboratable=no
"""`evcore.hdl.core.Core`: training cases the mutation run found untested (docs/mutation.md).

Three outputs, no early stop, strong weights: outputs k >= 1 jump while the hidden neurons just
below the output block (addresses out_base - k) carry a non-zero adjoint, so an output jump that
read the wrong neuron's Λ would differ from golden (the 3-4-2 tests have Λ = 0 there). And a weight
format finer than I's with half-up rounding (the presets have f_w < f_I, where the fan-in's
rounding is a left shift; the f_w > f_I test uses floor), so the fan-in's rounding term counts.
"""

import numpy as np

from evcore.golden.config import CoreConfig

from .test_core import SMALL, check_against_golden, check_training_against_golden, random_case


def test_core_training_three_outputs_late_hidden_spikes():
    cfg = CoreConfig(**{**SMALL, "sizes": (3, 4, 3), "early_stop": False})
    rng = np.random.default_rng(31)
    weights, inputs = random_case(cfg, rng, n_samples=4, w_scale=32767, max_spikes=7)
    labels = rng.integers(0, cfg.sizes[-1], size=4)
    res = check_training_against_golden(cfg, weights, inputs, labels)
    assert (res.first_step[:, 1:] < cfg.n_steps).any(), "coverage: an output k >= 1 spikes"


def test_core_fine_weights_half_up():
    cfg = CoreConfig(**{**SMALL, "sizes": (2, 3, 1, 2), "w_frac": (16, 10, 12), "w_bits": 20,
                        "i_frac": 14, "input_capacity": 12,
                        "lr_mant": (1, 1, 1), "lr_shift": (1, 1, 1), "silent_threshold": (1.0,) * 3,
                        "state_rounding": "half_up", "early_stop": False, "n_steps": 16})
    rng = np.random.default_rng(7)
    weights, inputs = random_case(cfg, rng, n_samples=3, w_scale=1 << 19, max_spikes=12)
    # Odd weights: rounding f_w = 16 to f_I = 14 drops two bits, half of which round up.
    weights[0] |= 3
    res = check_against_golden(cfg, weights, inputs)
    assert (res.layer_counts > 0).all(), "every layer must spike in every sample"
