"""Loss shaping (docs/core.md §6.5) on Verilator through `RtlCore` against `FixedCore`.

Three minibatches of 4 on a 3-4-2 core whose hidden neurons 0, 1 and output 1 never spike: two in
one simulator run (`train_minibatches`), where every update bumps matrix 0; then one split over
two runs (`gradient`, then `update`), where `RtlCore` carries the counters SILENT + l from one
run to the next. Every sample's values, the counters before every update and every weight after
it equal golden's.
"""

import numpy as np
import pytest

from evcore.golden.config import CoreConfig
from evcore.golden.core import FixedCore
from evcore.tb.core.host import first_mismatch, first_synapse_mismatch, first_train_mismatch
from evcore.tb.core.rtl_core import RtlCore
from evcore.tb.core.test_core import phase_cycles, raw_sample

pytestmark = pytest.mark.sim

CFG = dict(sizes=(3, 4, 2), n_steps=24, dt_s=1e-3, record_capacity=8, input_capacity=5, lr_mant=(1, 1),
           lr_shift=(1, 1), w_frac=(11, 12), batch_size=4, silent_threshold=(0.4, 0.4), silent_bump=0.05)


def test_shaping_on_verilator():
    cfg = CoreConfig(**CFG)
    hi = (1 << (cfg.w_bits - 1)) - 1
    w0 = np.full((4, 3), hi, dtype=np.int64)
    w0[:2] = -hi - 1  # hidden 0, 1: never spike; 2, 3: at every input
    w1 = np.zeros((2, 4), dtype=np.int64)
    w1[0, 2:] = hi // 4  # output 0 spikes, output 1 never
    rng = np.random.default_rng(60)
    batches = []
    for _ in range(3):
        times = rng.uniform(0, cfg.t_max_s / 3, size=(4, 3))
        ids = rng.integers(0, 3, size=(4, 3))
        batches.append(((times, ids, rng.integers(1, 4, size=4)), rng.integers(0, 2, size=4)))
    gold, rtl = FixedCore(cfg, [w0, w1]), RtlCore(cfg, [w0, w1])

    def check_update(k, rtl_silent, rtl_w):
        assert list(rtl_silent) == gold._silent.tolist(), f"before update {k}: SILENT golden " \
            f"{gold._silent.tolist()} rtl {list(rtl_silent)}"
        assert gold.bump_layer() == 0, "coverage: matrix 0 bumped"
        gold.update()
        want = {"w": np.concatenate([w.ravel() for w in gold.weights_raw])}
        bad = first_synapse_mismatch(cfg, want, {"w": rtl_w})
        assert bad is None, f"after update {k}: {bad}"

    _, res = rtl.train_minibatches(batches[:2])
    upd = rtl.last_updates
    for k, (inputs, labels) in enumerate(batches[:2]):
        _, _, g = gold.gradient(inputs, labels)
        sweep, fan = phase_cycles(cfg, g)
        for b in range(4):
            raw = raw_sample(res, 4 * k + b)
            bad = first_mismatch(cfg, g, b, raw, phase_cycles=(sweep[b], fan[b]), check_state=False)
            bad = bad or first_train_mismatch(cfg, g, b, raw, last=False)
            assert bad is None, f"minibatch {k}, training sample {b}: {bad}"
        check_update(k, upd["silent"][k], upd["w"][k])
        assert int(upd["cyc_update"][k]) == gold.update_cycles(), "update cycles"
    # One minibatch over two simulator runs: the counters leave the chip with the first and are
    # written back before the second.
    rtl.gradient(*batches[2])
    gold.gradient(*batches[2])
    assert rtl._silent.tolist() == gold._silent.tolist(), "counters after the gradient run"
    rtl.update()
    silent = rtl.last_updates["silent"][0]
    assert silent.tolist() == [8, 4], "by construction: 2 of 4 hidden and 1 of 2 outputs silent, 4 samples"
    check_update(2, silent, np.concatenate([w.ravel() for w in rtl.weights_raw]))
