# amaranth: UnusedElaboratable=no
"""`evcore.hdl.core.Core`: training cases the mutation run found untested (docs/mutation.md).

Three outputs, no early stop, strong weights: outputs k >= 1 jump while the hidden neurons just
below the output block (addresses out_base - k) carry a non-zero adjoint, so an output jump that
read the wrong neuron's Λ would differ from golden (the 3-4-2 tests have Λ = 0 there).
"""

import numpy as np

from evcore.golden.config import CoreConfig

from .test_core import SMALL, check_training_against_golden, random_case


def test_core_training_three_outputs_late_hidden_spikes():
    cfg = CoreConfig(**{**SMALL, "sizes": (3, 4, 3), "early_stop": False})
    rng = np.random.default_rng(31)
    weights, inputs = random_case(cfg, rng, n_samples=4, w_scale=32767, max_spikes=7)
    labels = rng.integers(0, cfg.sizes[-1], size=4)
    res = check_training_against_golden(cfg, weights, inputs, labels)
    assert (res.first_step[:, 1:] < cfg.n_steps).any(), "coverage: an output k >= 1 spikes"
