"""Hand-computed cases of docs/core.md: one neuron, one input spike; the loss unit; one jump;
edges of the input buffer, record, early stop and the cycle model."""

import math

import numpy as np
import pytest

from evcore.golden.adjoint import jump
from evcore.golden.config import CoreConfig, Flag
from evcore.golden.core import FixedCore, counter_limits, cycle_model, forward_phase_cycles
from evcore.golden.ops import pack_params, recip


def one_neuron_core(w_hidden=1.0, w_out=0.0, **kw):
    cfg = CoreConfig(sizes=(1, 1, 1), w_frac=(11, 12), record_capacity=4, input_capacity=2, **kw)
    return cfg, FixedCore.from_float(cfg, [np.array([[w_hidden]]), np.array([[w_out]])])


def test_one_input_spike_first_steps_by_hand():
    """Defaults: dt 0.25 ms, beta = 64722, alpha = 62340, gamma = 794 (/2**16), V Q6.18, I Q8.16."""
    cfg, core = one_neuron_core(w_hidden=1.0, n_steps=1, early_stop=False)
    # Step 0: V = 0 (nothing to propagate), then I += 1.0: 2048 (Q5.11) << 5 = 65536.
    res = core.run(([0.0], [0]))
    assert (res.final_v[0, 0], res.final_cur[0, 0]) == (0, 65536)
    # Step 1: V = (64722 * 0 + (794 * 65536) << 2 + 2**15) >> 16 = 3176;
    #         I = (62340 * 65536 + 2**15) >> 16 = 62340.
    # Step 2: V = (64722 * 3176 + (794 * 62340) << 2 + 2**15) >> 16
    #           = (205557072 + 197991840 + 32768) >> 16 = 6158;
    #         I = (62340 * 62340 + 2**15) >> 16 = 59300.
    # Step 3: V = (64722 * 6158 + (794 * 59300) << 2 + 2**15) >> 16 = 8955; I = 56408.
    for n_steps, v, i in ((2, 3176, 62340), (3, 6158, 59300), (4, 8955, 56408)):
        _, core = one_neuron_core(w_hidden=1.0, n_steps=n_steps, early_stop=False)
        res = core.run(([0.0], [0]))
        assert (res.final_v[0, 0], res.final_cur[0, 0]) == (v, i), n_steps
    # Half-up rounding of the snapped input time: 0.125 ms is half a step -> step 1.
    assert cfg.input_step([0.124e-3, 0.125e-3, 0.375e-3]).tolist() == [0, 1, 2]


def test_one_input_spike_threshold_step_matches_closed_form():
    """w = 8: V(t) = 8/3 (e^-t/20ms - e^-t/5ms) first reaches 1 between two steps; the core spikes
    at the first step at or after the crossing (§3.2), with I at the spike = round(8 alpha^n)."""
    cfg, core = one_neuron_core(w_hidden=8.0, n_steps=200, early_stop=False)
    res = core.run(([0.0], [0]))
    # Exact crossing time by bisection on the closed form.
    def v(t):
        return 8.0 / 3.0 * (math.exp(-t / 20e-3) - math.exp(-t / 5e-3))
    lo, hi = 0.0, 9.24e-3  # V peaks at 20 ms ln4 / 3 = 9.24 ms
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if v(mid) >= 1.0 else (mid, hi)
    n_cross = math.ceil(hi / cfg.dt_s)
    assert res.rec_count[0] == 1 and res.layer_counts[0, 0] == 1
    assert res.rec_step[0, 0] == n_cross
    assert abs(res.rec_cur[0, 0] / 2**16 - 8.0 * math.exp(-n_cross * cfg.dt_s / 5e-3)) < 1e-3
    assert res.rec_neuron[0, 0] == 0


def test_loss_unit_by_hand():
    """Outputs first spike at steps 10, 12 and never (200); label 0; loss scale 2**0 (§4)."""
    cfg = CoreConfig(sizes=(1, 1, 3), w_frac=(11, 12), record_capacity=4, input_capacity=2, loss_scale_log2=0)
    from evcore.golden.loss import loss_unit
    prob = np.zeros(3, dtype=np.int64)
    lterm = np.zeros(3, dtype=np.int64)
    active, flags = loss_unit(pack_params(cfg), cfg.exp_rom, cfg.reg_rom, cfg.recip_rom,
                              np.array([10, 12, 200]), 0, prob, lterm)
    assert (active, flags) == (1, 0)
    # exp ROM: d = 0 -> 32768, d = 2 -> round(32768 / e) = 12055, d = 190 -> last entry 0.
    assert (cfg.exp_rom[0], cfg.exp_rom[2], cfg.exp_rom[-1]) == (32768, 12055, 0)
    s = 32768 + 12055
    y, e = recip(np.int64(s), 16, 7, cfg.recip_rom, cfg.recip_eps_shift)
    assert e == 15 and abs(y - 2**31 / s) <= 1
    # p_k = (E_k y + 2**15) >> (16 + 15 - 15)
    assert prob.tolist() == [(32768 * y + 2**15) >> 16, (12055 * y + 2**15) >> 16, 0]
    assert abs(prob[0] / 2**15 - 1 / (1 + math.exp(-1))) < 2**-14
    c0 = 40 * 2**16  # tau_mem / tau0 in Q8.16, loss scale 2**0
    reg10 = math.floor(3e-3 * 20 / 6.4 * math.exp(10 * 0.25 / 6.4) * 2**16 + 0.5)
    assert cfg.loss_c0_raw == c0 and cfg.reg_rom[10] == reg10 == 908
    assert lterm.tolist() == [((c0 * (int(prob[0]) - 2**15) + 2**14) >> 15) - reg10,
                              (c0 * int(prob[1]) + 2**14) >> 15, 0]
    # Against -tau_mem dL/dt of the float loss: softmax and regulariser terms.
    t = np.array([10, 12]) * cfg.dt_s
    p = np.exp(-t / 0.5e-3) / np.exp(-t / 0.5e-3).sum()
    want = 40 * (p - [1, 0]) - [3e-3 * 20 / 6.4 * math.exp(t[0] / 6.4e-3), 0]
    np.testing.assert_allclose(lterm[:2] / 2**16, want, atol=40 * 2**-13)


def test_loss_unit_masks_silent_label():
    cfg = CoreConfig(sizes=(1, 1, 3), w_frac=(11, 12), record_capacity=4, input_capacity=2)
    from evcore.golden.loss import loss_unit
    prob = np.zeros(3, dtype=np.int64)
    lterm = np.ones(3, dtype=np.int64)
    active, _ = loss_unit(pack_params(cfg), cfg.exp_rom, cfg.reg_rom, cfg.recip_rom,
                          np.array([10, 200, 30]), 1, prob, lterm)
    assert active == 0 and not lterm.any()


def test_jump_by_hand():
    """lam_v^- = lam_v^+ + (theta lam_v^+ + err) / (I - theta), I = 1.5, lam_v^+ = 0.25, err = -1 (§5.3)."""
    cfg = CoreConfig()
    P = pack_params(cfg)
    wf = cfg.w_frac[1]
    lam_v = int(0.25 * 2**16)
    err = int(-1.0 * 2 ** (wf + 16))
    cur = int(1.5 * 2**16)
    out, flags = jump(P, cfg.recip_rom, np.int64(lam_v), np.int64(cfg.theta_w_raw(1)), np.int64(err), wf,
                      np.int64(cur))
    # numerator = (2**12 * 16384 - 2**28 + 2**11) >> 12 = -49152 (= -0.75); d = 0.5 = 32768 -> e = 15,
    # y = 65535 (1/1.0 clipped); delta = (-49152 * 65535 + 2**14) >> 15 = -98302 (-1.49997).
    y, e = recip(np.int64(32768), 16, 7, cfg.recip_rom, cfg.recip_eps_shift)
    assert (y, e) == (65535, 15)
    assert flags == 0 and out == lam_v + ((-49152 * 65535 + 2**14) >> 15) == 16384 - 98302
    # Error bound: |numerator| 0.75 times the unit's 2**(1-R) plus half an output LSB = 2**-15.
    assert abs(out / 2**16 - (0.25 + (0.25 - 1.0) / 0.5)) <= 0.75 * 2**-15 + 2**-17
    # Below recip_min (1/16) the denominator is clamped and RECIP_CLAMP is raised.
    out2, flags2 = jump(P, cfg.recip_rom, np.int64(lam_v), np.int64(cfg.theta_w_raw(1)), np.int64(err), wf,
                        np.int64(cfg.theta_i_raw + 1))
    assert flags2 == int(Flag.RECIP_CLAMP)
    assert abs(out2 / 2**16 - (0.25 - 0.75 * 16)) < 2**-12


def test_input_buffer_overflow_and_late_spikes():
    cfg, core = one_neuron_core(w_hidden=1.0, n_steps=10)
    # Three spikes for a buffer of two (IN_OVF, the last in time order is cut); one after the trial.
    res = core.run((np.array([[0.5e-3, 0.0, 1.0e-3, 5.0]]), np.array([[0, 0, 0, 0]])))
    assert res.in_count[0] == 2 and res.in_step[0, :2].tolist() == [0, 2]
    assert Flag(int(res.flags[0])) == Flag.IN_OVF and Flag.IN_OVF in core.flags
    core.clear_flags()
    res = core.run((np.array([[0.0, 5.0]]), np.array([[0, 0]])))
    assert res.in_count[0] == 1 and res.flags[0] == 0


def test_record_overflow_keeps_capacity_and_counts_all_spikes():
    cfg = CoreConfig(sizes=(1, 4, 1), w_frac=(11, 12), record_capacity=4, input_capacity=4, n_steps=200,
                     early_stop=False)
    core = FixedCore.from_float(cfg, [np.full((4, 1), 12.0), np.full((1, 4), 0.1)])
    res = core.run((np.array([[0.0, 2e-3, 4e-3]]), np.array([[0, 0, 0]])))
    assert res.layer_counts[0, 0] > 4
    assert res.rec_count[0] == 4 and Flag.REC_OVF in Flag(int(res.flags[0]))


def test_early_stop_ends_after_last_first_output_spike():
    cfg = CoreConfig(sizes=(1, 2, 2), w_frac=(11, 12), record_capacity=4, input_capacity=2, n_steps=200)
    weights = [np.array([[10.0], [10.0]]), np.array([[8.0, 8.0], [5.0, 5.0]])]
    core = FixedCore.from_float(cfg, weights)
    res = core.run(([0.0], [0]))
    assert (res.first_step[0] < 200).all()
    assert res.n_end[0] == res.first_step[0].max()
    late = FixedCore.from_float(cfg.replace(early_stop=False), weights).run(([0.0], [0]))
    assert late.n_end[0] == 199
    np.testing.assert_array_equal(late.first_step, res.first_step)


def test_cycle_model_by_hand():
    """§7: (n_end + 1) sweeps of sum(n_l + latency) plus one cycle per synapse of each fan-out;
    the loss and backward formulas of §7 with the up5k numbers."""
    cfg = CoreConfig.up5k()
    lat = cfg.cyc_sweep_latency
    fwd, loss, bwd = cycle_model(cfg, np.array([99]), np.array([5]), np.array([[20, 3]]),
                                 active=np.array([1]), n_jumps=np.array([3]))
    sweep = (200 + lat) + (3 + lat)
    assert fwd[0] == 100 * sweep + 5 * 200 + 20 * 3
    assert loss[0] == 2 * 3 + cfg.cyc_jump + 1  # the loss unit's cycles and the one that starts it
    # Λ clear (one cycle per neuron), the record scans (one per entry), the sweeps, the replay.
    replay = cfg.cyc_synapse_rmw * (5 * 200 + 20 * 3) + (20 + 3) * cfg.cyc_jump
    assert bwd[0] == 203 + 20 + 99 * sweep + replay
    _, _, masked = cycle_model(cfg, np.array([99]), np.array([5]), np.array([[20, 3]]),
                               active=np.array([0]), n_jumps=np.array([0]))
    assert masked[0] == 0


def test_counter_limits_by_hand():
    """§7 "Counter widths", 3-4-2 over 24 steps, by hand: 14 sweep cycles per step (4 + 4, 2 + 4),
    at most 96 and 48 spikes, 5 input spikes; backward, the 8 record entries at 1 + 8 + 2·2 cycles."""
    cfg = CoreConfig(sizes=(3, 4, 2), n_steps=24, dt_s=1e-3, record_capacity=8, input_capacity=5,
                     lr_mant=(1, 1), lr_shift=(1, 1), w_frac=(11, 12))
    lim = counter_limits(cfg)
    assert lim["cyc_sweep"] == 24 * 14
    assert lim["cyc_fanout"] == 5 * 4 + 96 * 2
    assert lim["cyc_total"] == 24 * 14 + 5 * 4 + 96 * 2
    assert (lim["n_inputs"], lim["layer_count"], lim["n_jumps"]) == (5, [96, 48], 2)
    assert lim["cyc_loss"] == 2 * 2 + 8 + 1
    assert lim["cyc_backward"] == 6 + 23 * 14 + 2 * 5 * 4 + 8 * (1 + 8 + 2 * 2) + 2 * 8
    # Two hidden layers and a short record: the costlier entries (layer 1, 3 targets) come first.
    two = cfg.replace(sizes=(3, 4, 3, 2), w_frac=(11, 12, 12), lr_mant=(1,) * 3, lr_shift=(1,) * 3,
                      silent_threshold=(1.0,) * 3, record_capacity=100)
    sweep = (4 + 4) + (3 + 4) + (2 + 4)
    assert counter_limits(two)["cyc_backward"] == (9 + 23 * sweep + 2 * 5 * 4 + 96 * (1 + 8 + 2 * 3)
                                                   + 4 * (1 + 8 + 2 * 2) + 2 * 8)


@pytest.mark.parametrize("area", [False, True])
def test_counts_stay_within_counter_limits(area):
    """Samples with every weight at its maximum (each neuron spiking as often as it can), the input
    buffer full, no early stop: every count of golden's forward and backward pass is within
    `counter_limits`, and the strongest come near them (the limits are not loose by a bit)."""
    fields = dict(sizes=(3, 4, 2), n_steps=24, dt_s=1e-3, record_capacity=200, input_capacity=5,
                  lr_mant=(1, 1), lr_shift=(1, 1), w_frac=(11, 12), early_stop=False)
    if area:
        fields.update(build="area", cyc_neuron=3, cyc_update_word=43)
    cfg = CoreConfig(**fields)
    lim = counter_limits(cfg)
    top = (1 << (cfg.w_bits - 1)) - 1
    core = FixedCore(cfg, [np.full((b, a), top) for a, b in zip(cfg.sizes, cfg.sizes[1:])])
    rng = np.random.default_rng(3)
    times = np.concatenate([np.zeros((1, 5)), rng.uniform(0, cfg.t_max_s, size=(7, 5))])
    inputs = (times, rng.integers(0, 3, size=(8, 5)), np.full(8, 5))
    _, _, res = core.gradient(inputs, rng.integers(0, 2, size=8))
    n_inputs = (res.in_step <= res.n_end[:, None]).sum(axis=1)
    sweep, fan = forward_phase_cycles(cfg, res.n_end, n_inputs, res.layer_counts)
    counts = {"cyc_sweep": sweep, "cyc_fanout": fan, "cyc_total": res.cycles_forward, "n_inputs": n_inputs,
              "cyc_loss": res.cycles_loss, "cyc_backward": res.cycles_backward}
    for name, got in counts.items():
        assert got.max() <= lim[name], name
        assert got.max() > lim[name] // 2, f"{name}: {got.max()} of {lim[name]}"
    assert (res.layer_counts <= np.array(lim["layer_count"])).all()
    assert (res.layer_counts.max(axis=0) > np.array(lim["layer_count"]) // 2).all()


@pytest.mark.parametrize("bad", [np.array([[0.0]]), np.array([[-3]])])
def test_set_weights_raw_rejects_floats_and_shapes(bad):
    cfg, core = one_neuron_core()
    with pytest.raises(ValueError):
        core.set_weights_raw([bad, np.zeros((2, 2), dtype=np.int64)])
