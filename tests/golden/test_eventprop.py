"""Float EventProp (golden/eventprop.py) against independent references.

* Gradients against central finite differences of the loss (docs/eventprop.md §11), for random
  networks with 1 to 3 hidden layers and both losses.
* The event-based forward pass against a fine-step RK4 integration (tests/golden/fine_step.py).
* Closed-form cases computed by hand, and the errors a user can provoke.
"""

import math

import numpy as np
import pytest

from evcore.golden.eventprop import (
    ConfigError,
    LifParameters,
    Network,
    SpikeBatch,
    TTFSLoss,
    VMaxLoss,
)

from .fine_step import simulate_layer

PARAMS = LifParameters(tau_mem_s=20e-3, tau_syn_s=5e-3, theta=1.0, t_max_s=60e-3)


def yinyang_like_inputs(rng, n_batch):
    x = rng.uniform(0, 1, (n_batch, 4))
    times = np.concatenate([x * 30e-3, np.zeros((n_batch, 1))], axis=1)
    ids = np.tile(np.arange(5), (n_batch, 1))
    return SpikeBatch.from_arrays(times, ids)


# (sizes, init) of the random networks: 1, 2 and 3 hidden layers.
ARCHITECTURES = [
    ((5, 16, 3), [(2.5, 1.2), (1.2, 0.8)]),
    ((5, 14, 10, 3), [(2.5, 1.2), (0.9, 0.8), (1.2, 0.8)]),
    ((5, 12, 10, 8, 3), [(2.5, 1.2), (0.9, 0.8), (1.1, 0.8), (1.2, 0.8)]),
]


def finite_difference(net, inputs, labels, loss_fn, sample_mask, base_counts, h):
    """Richardson-extrapolated central differences (error O(h^4)) of the masked mean loss.

    With a revival term (TTFSLoss.revive > 0), the masked samples (silent label neuron)
    contribute that term alone (docs/eventprop.md §8). Returns the FD gradient per layer (NaN
    where a perturbation created or deleted a spike: the loss is discontinuous there) and the
    number of such skipped weights.
    """
    n_batch = inputs.batch_size

    def objective():
        result = net.run(inputs)
        counts = result.spike_counts()
        same = all(np.array_equal(a, b) for a, b in zip(counts, base_counts))
        value = net.loss(result, labels, loss_fn)[sample_mask].sum()
        if getattr(loss_fn, "revive", 0.0):
            value += net.revival(result, labels, loss_fn)[~sample_mask].sum()
        # Dead hidden neurons (§10a): a batch term; the set of dead neurons is fixed by the
        # spike counts, which a skipped perturbation changes.
        value += net.hidden_revival(result, loss_fn)
        return value / n_batch, same

    grads, skipped = [], 0
    for w in net.weights:
        fd = np.empty_like(w)
        for idx in np.ndindex(*w.shape):
            values = {}
            ok = True
            w0 = w[idx]
            for step in (h, -h, 2 * h, -2 * h):
                w[idx] = w0 + step
                values[step], same = objective()
                ok &= same
            w[idx] = w0
            if not ok:
                fd[idx] = np.nan
                skipped += 1
                continue
            d1 = (values[h] - values[-h]) / (2 * h)
            d2 = (values[2 * h] - values[-2 * h]) / (4 * h)
            fd[idx] = (4 * d1 - d2) / 3
        grads.append(fd)
    return grads, skipped


def flat(grads) -> np.ndarray:
    return np.concatenate([g.ravel() for g in grads])


def fd_relative_error(net, inputs, labels, loss_fn, sample_mask, result, grads):
    """Relative L2 error of the EventProp gradient against finite_difference over the weights
    whose perturbation kept every spike count; returns (error, weights skipped)."""
    fd, skipped = finite_difference(net, inputs, labels, loss_fn, sample_mask, result.spike_counts(),
                                    h=1e-6)
    ep, ref = flat(grads), flat(fd)
    keep = np.isfinite(ref)
    return np.linalg.norm(ep[keep] - ref[keep]) / np.linalg.norm(ref[keep]), skipped


@pytest.mark.parametrize("readout", ["ttfs", "vmax"])
@pytest.mark.parametrize("arch", range(len(ARCHITECTURES)))
def test_gradient_matches_finite_differences(readout, arch):
    sizes, init = ARCHITECTURES[arch]
    rng = np.random.default_rng(1000 + 10 * arch + (readout == "vmax"))
    loss_fn = TTFSLoss() if readout == "ttfs" else VMaxLoss()
    n_networks, checked, skipped_total, weights_total = 6, 0, 0, 0
    worst = 0.0
    for _attempt in range(40):
        if checked == n_networks:
            break
        net = Network.create(sizes, PARAMS, readout, init, rng)
        inputs = yinyang_like_inputs(rng, 3)
        result = net.run(inputs)
        if readout == "ttfs":
            # Labels among the output neurons that fire: a silent label masks its sample.
            fired = np.isfinite(result.first_spike_times_s)
            if not fired.any():
                continue
            labels = np.array([rng.choice(np.flatnonzero(f)) if f.any() else 0 for f in fired])
        else:
            labels = rng.integers(0, sizes[-1], 3)
        losses, grads, result = net.gradient(inputs, labels, loss_fn)
        sample_mask = np.ones(3, dtype=bool)
        if readout == "ttfs":
            sample_mask = np.isfinite(result.first_spike_times_s[np.arange(3), labels])
        rel, skipped = fd_relative_error(net, inputs, labels, loss_fn, sample_mask, result, grads)
        skipped_total += skipped
        weights_total += sum(w.size for w in net.weights)
        worst = max(worst, rel)
        # Relative error 1e-6 over all weights of the network (the bound); double
        # precision spike times and O(h^4) differences leave ~1e-9 when all is right.
        assert rel <= 1e-6, f"network {checked}: relative error {rel:.3g}"
        checked += 1
    # The check must not pass vacuously.
    assert checked == n_networks, f"only {checked} networks had output spikes"
    assert skipped_total <= 0.1 * weights_total, f"{skipped_total}/{weights_total} weights skipped"
    print(f"{readout} {sizes}: {checked} networks, worst relative error {worst:.2e}, "
          f"{skipped_total}/{weights_total} perturbations changed the spike count")


# The revival term (TTFSLoss.revive, docs/eventprop.md §8) on silent label neurons. Output
# weights are weaker than above, so that a good share of the output neurons stays silent.
REVIVE = 10.0


@pytest.mark.parametrize("arch", range(len(ARCHITECTURES)))
def test_revival_gradient_matches_finite_differences(arch):
    sizes, init = ARCHITECTURES[arch]
    init = init[:-1] + [(0.5, 0.8)]
    rng = np.random.default_rng(2000 + arch)
    loss_fn = TTFSLoss(revive=REVIVE)
    n_networks, checked, skipped_total, weights_total = 6, 0, 0, 0
    n_silent = n_kinks = 0
    worst, least_share = 0.0, np.inf
    for _attempt in range(60):
        if checked == n_networks:
            break
        net = Network.create(sizes, PARAMS, "ttfs", init, rng)
        inputs = yinyang_like_inputs(rng, 3)
        labels = rng.integers(0, sizes[-1], 3)
        losses, grads, result = net.gradient(inputs, labels, loss_fn)
        sample_mask = np.isfinite(result.first_spike_times_s[np.arange(3), labels])
        revival = net.revival(result, labels, loss_fn)
        # Silent labels whose potential never rises (V max = 0 at t = 0) have no gradient:
        # only networks with a silent label neuron that does rise are informative.
        rising = ~sample_mask & (revival < REVIVE * PARAMS.theta)
        if not rising.any():
            continue
        np.testing.assert_array_equal(revival[sample_mask], 0.0)
        # The revival part of the gradient must weigh in the total, else the bound below
        # would not see an error in it.
        ep, base = flat(grads), flat(net.gradient(inputs, labels, TTFSLoss())[1])
        share = np.linalg.norm(ep - base) / np.linalg.norm(ep)
        least_share = min(least_share, share)
        assert share >= 0.01, f"network {checked}: revival is {share:.2g} of the gradient"
        rel, skipped = fd_relative_error(net, inputs, labels, loss_fn, sample_mask, result, grads)
        skipped_total += skipped
        weights_total += sum(w.size for w in net.weights)
        worst = max(worst, rel)
        assert rel <= 1e-6, f"network {checked}: relative error {rel:.3g}"
        n_silent += int(rising.sum())
        n_kinks += int((net._silent_label_maxima(result, labels, loss_fn)[3] >= 0).sum())
        checked += 1
    assert checked == n_networks, f"only {checked} networks had a rising silent label neuron"
    assert n_silent >= n_networks
    assert n_kinks > 0, "no maximum on a kink: the kink term went untested"
    assert skipped_total <= 0.1 * weights_total, f"{skipped_total}/{weights_total} weights skipped"
    print(f"revive {sizes}: {checked} networks, {n_silent}/{3 * checked} samples with a rising silent label "
          f"({n_kinks} maxima on a kink), worst relative error {worst:.2e}, revival share of the "
          f"gradient >= {least_share:.2f}, {skipped_total}/{weights_total} perturbations changed the "
          "spike count")


REVIVE_HIDDEN = 2.0


@pytest.mark.parametrize("readout", ["ttfs", "vmax"])
@pytest.mark.parametrize("arch", range(len(ARCHITECTURES)))
def test_hidden_revival_gradient_matches_finite_differences(readout, arch):
    """§10a: revival of hidden neurons silent for a whole batch, with live neurons beside them.

    Wider initial weights leave some neurons of every hidden layer silent for all three samples
    while the others spike; in deeper layers the dead neurons' maxima move with the spikes of
    the layer below, and some sit on a kink (§9), so all three paths of the term are checked.
    """
    sizes, init = ARCHITECTURES[arch]
    init = [(1.5, 2.0)] + [(m, s + 0.6) for m, s in init[1:-1]] + [init[-1]]
    rng = np.random.default_rng(3000 + 10 * arch + (readout == "vmax"))
    loss_fn = (TTFSLoss(revive_hidden=REVIVE_HIDDEN) if readout == "ttfs"
               else VMaxLoss(revive_hidden=REVIVE_HIDDEN))
    plain = TTFSLoss() if readout == "ttfs" else VMaxLoss()
    n_networks, worst, skipped_total, weights_total = 4, 0.0, 0, 0
    n_dead = np.zeros(len(sizes) - 2, dtype=int)
    n_kinks = 0
    for checked in range(n_networks):
        net = Network.create(sizes, PARAMS, readout, init, rng)
        inputs = yinyang_like_inputs(rng, 3)
        labels = rng.integers(0, sizes[-1], 3)
        losses, grads, result = net.gradient(inputs, labels, loss_fn)
        dead = net.dead_neurons(result)
        for d in dead:
            n_dead[d.layer] += d.neurons.size
            n_kinks += int((d.kink_event >= 0).sum())
            # Dead and live neurons side by side, else the test would check one path only.
            assert d.neurons.size < sizes[d.layer + 1]
        if readout == "ttfs":
            sample_mask = np.isfinite(result.first_spike_times_s[np.arange(3), labels])
        else:
            sample_mask = np.ones(3, dtype=bool)
        plain_losses, plain_grads, _ = net.gradient(inputs, labels, plain)
        np.testing.assert_array_equal(losses, plain_losses)
        ep, base = flat(grads), flat(plain_grads)
        assert np.linalg.norm(ep - base) >= 0.01 * np.linalg.norm(ep), "revival too small to be checked"
        rel, skipped = fd_relative_error(net, inputs, labels, loss_fn, sample_mask, result, grads)
        skipped_total += skipped
        weights_total += sum(w.size for w in net.weights)
        worst = max(worst, rel)
        assert rel <= 1e-6, f"network {checked}: relative error {rel:.3g}"
    assert np.all(n_dead > 0), f"dead neurons per hidden layer {n_dead}: a layer went untested"
    assert n_kinks > 0, "no dead neuron's maximum on a kink: the kink term went untested"
    assert skipped_total <= 0.1 * weights_total, f"{skipped_total}/{weights_total} weights skipped"
    print(f"revive_hidden {readout} {sizes}: dead neurons per layer {n_dead.tolist()} ({n_kinks} on a "
          f"kink), worst relative error {worst:.2e}, {skipped_total}/{weights_total} skipped")


def test_hidden_revival_by_hand():
    """Sample 0: input 0 spikes at t = 0 into two hidden neurons; the one with w = 3 stays
    silent (threshold weight 6.35) with V max = 3 (a_m - a_s) / 3 at a_m = 4^(-1/3); sample 1:
    only input 1 spikes, which reaches neither. The batch term is revive_hidden (theta - that V max), and its
    gradient on the dead neuron's weight is -revive_hidden / B times V max / w."""
    w_dead, w_live, revive = 3.0, 9.0, 0.5
    net = Network((2, 2, 1), PARAMS, "ttfs",
                  [np.array([[w_dead, 0.0], [w_live, 0.0]]), np.array([[0.0, 8.0]])])
    inputs = SpikeBatch.from_arrays([[0.0], [0.0]], [[0], [1]])
    loss_fn = TTFSLoss(revive_hidden=revive)
    losses, grads, result = net.gradient(inputs, np.array([0, 0]), loss_fn)
    dead = net.dead_neurons(result)
    assert len(dead) == 1 and dead[0].neurons.tolist() == [0] and dead[0].rows.tolist() == [0]
    v_max = w_dead * (4 ** (-1 / 3) - 4 ** (-4 / 3)) / 3
    assert net.hidden_revival(result, loss_fn) == pytest.approx(revive * (1.0 - v_max), rel=1e-14)
    np.testing.assert_allclose(grads[0][0, 0], -revive / 2 * v_max / w_dead, rtol=1e-12)
    # No dead neuron: the gradient is bit for bit that without the term.
    alive = Network((2, 2, 1), PARAMS, "ttfs", [np.array([[9.0, 0.0], [9.0, 0.0]]), np.array([[8.0, 8.0]])])
    a = alive.gradient(inputs, np.array([0, 0]), loss_fn)[1]
    b = alive.gradient(inputs, np.array([0, 0]), TTFSLoss())[1]
    for ga, gb in zip(a, b):
        np.testing.assert_array_equal(ga, gb)
    with pytest.raises(ConfigError, match="revive_hidden must be"):
        VMaxLoss(revive_hidden=float("nan"))


def test_forward_matches_fine_step_integration():
    rng = np.random.default_rng(7)
    sizes, init = (5, 12, 6), [(2.5, 1.2), (1.2, 0.8)]
    net = Network.create(sizes, PARAMS, "ttfs", init, rng)
    inputs = yinyang_like_inputs(rng, 4)
    result = net.run(inputs)
    n_compared = 0
    for b in range(inputs.batch_size):
        times, ids = inputs.sample(b)
        for layer, w in enumerate(net.weights):
            ref = simulate_layer(times, ids, w, PARAMS.tau_mem_s, PARAMS.tau_syn_s, PARAMS.theta,
                                 PARAMS.t_max_s, dt=5e-6)
            got_t, got_j = result.layers[layer].sample(b)
            assert len(ref) == len(got_t), f"sample {b} layer {layer}: {len(got_t)} spikes, ref {len(ref)}"
            ref_t = np.array([t for t, _ in ref])
            ref_j = np.array([j for _, j in ref])
            np.testing.assert_array_equal(got_j, ref_j)
            # RK4 at 5 us has a local error ~ (5e-6 / 5e-3)^5 relative; the cubic Hermite crossing
            # is O(dt^4): both far below 1 ns. A wrong closed form or root would be off by >> 1 us.
            np.testing.assert_allclose(got_t, ref_t, rtol=0, atol=1e-9)
            n_compared += len(ref)
            times, ids = got_t, got_j  # the next layer sees this layer's (exact) spikes
    assert n_compared > 20


def test_single_input_spike_closed_form():
    """One input spike of weight w at t0: V(t) = w c (e^{-s/tau_s} - e^{-s/tau_m}), s = t - t0."""
    w, t0 = 10.0, 2e-3
    net = Network((1, 1), PARAMS, "ttfs", [np.array([[w]])])
    result = net.run(SpikeBatch.from_arrays([[t0]], [[0]]))
    t_spike = result.first_spike_times_s[0, 0]
    tau_m, tau_s = PARAMS.tau_mem_s, PARAMS.tau_syn_s
    c = tau_s / (tau_s - tau_m)

    def v(t):
        s = t - t0
        return w * c * (math.exp(-s / tau_s) - math.exp(-s / tau_m))

    assert abs(v(t_spike) - PARAMS.theta) < 1e-14
    grid = np.linspace(t0, t_spike, 2000)[:-1]
    assert max(v(t) for t in grid) < PARAMS.theta  # it is the first crossing
    # The current recorded at the spike is the decayed input current.
    expected_i = w * math.exp(-(t_spike - t0) / tau_s)
    assert result.layers[0].current_at_spike[0, 0] == pytest.approx(expected_i, rel=1e-14)


def test_subthreshold_input_does_not_spike():
    # V(s) = w c (e^{-s/5ms} - e^{-s/20ms}) with c = -1/3 peaks at s = ln(4) / (150 / s), where
    # e^{-s/20ms} - e^{-s/5ms} = 4^(-1/3) - 4^(-4/3) = 0.47247...; so the threshold weight is 3/0.47247.
    w_peak = 3.0 / (4 ** (-1 / 3) - 4 ** (-4 / 3))
    for w, n_expected in ((0.999 * w_peak, 0), (1.001 * w_peak, 1)):
        net = Network((1, 1), PARAMS, "ttfs", [np.array([[w]])])
        result = net.run(SpikeBatch.from_arrays([[0.0]], [[0]]))
        assert result.layers[0].counts[0] == n_expected


def test_every_spike_counts_beyond_initial_capacity():
    """A strongly driven neuron fires many times; the record grows instead of dropping spikes."""
    w = np.array([[60.0]])
    net = Network((1, 1), PARAMS, "ttfs", [w])
    result = net.run(SpikeBatch.from_arrays([[0.0]], [[0]]))
    ref = simulate_layer([0.0], [0], w, PARAMS.tau_mem_s, PARAMS.tau_syn_s, PARAMS.theta,
                         PARAMS.t_max_s, dt=2e-6)
    got_t, _ = result.layers[0].sample(0)
    assert len(got_t) == len(ref) > 4  # initial capacity is 4 spikes per neuron
    np.testing.assert_allclose(got_t, [t for t, _ in ref], atol=1e-9)


def test_simultaneous_inputs_sum():
    """Two spikes at the same time act like one of the summed weight."""
    single = Network((1, 1), PARAMS, "ttfs", [np.array([[2.5]])]).run(SpikeBatch.from_arrays([[1e-3]], [[0]]))
    double = Network((2, 1), PARAMS, "ttfs", [np.array([[1.0, 1.5]])]).run(
        SpikeBatch.from_arrays([[1e-3, 1e-3]], [[0, 1]]))
    assert double.first_spike_times_s[0, 0] == pytest.approx(single.first_spike_times_s[0, 0], abs=1e-15)


def test_ttfs_loss_by_hand():
    loss = TTFSLoss(tau0_s=1e-3, tau1_s=5e-3, alpha=0.1)
    t = np.array([[2e-3, 3e-3, np.inf]])
    losses, dl_dt = loss.loss_and_time_grad(t, np.array([0]), t_max_s=10e-3)
    z = np.array([-2.0, -3.0, -10.0])
    expected = -(z[0] - np.log(np.exp(z).sum())) + 0.1 * (math.exp(2e-3 / 5e-3) - 1)
    assert losses[0] == pytest.approx(expected, rel=1e-12)
    p = np.exp(z) / np.exp(z).sum()
    assert dl_dt[0, 0] == pytest.approx((1 - p[0]) / 1e-3 + 0.1 / 5e-3 * math.exp(0.4), rel=1e-12)
    assert dl_dt[0, 1] == pytest.approx(-p[1] / 1e-3, rel=1e-12)
    assert dl_dt[0, 2] == 0.0  # silent neuron: nothing to move
    # Silent label neuron: the sample is masked.
    _, dl_dt = loss.loss_and_time_grad(t, np.array([2]), t_max_s=10e-3)
    assert not dl_dt.any()


def test_revival_by_hand():
    """A silent output neuron: V max by hand at an interior peak and on a kink, and its gradient.

    Sample 0: w0 = 3 at t = 0 alone (below the threshold weight 6.35); V = w0 (a_m - a_s) / 3
    peaks at a_m = 4^(-1/3), a_s = 4^(-4/3). Sample 1: the same plus w1 = -10 at 2 ms, while V
    still rises: V max = V(2 ms) = w0 (e^(-0.1) - e^(-0.4)) / 3, pinned to that spike. Both
    maxima are linear in w0 and independent of w1.
    """
    w0, w1, revive = 3.0, -10.0, 0.7
    net = Network((2, 1), PARAMS, "ttfs", [np.array([[w0, w1]])])
    inputs = SpikeBatch.from_arrays([[0.0, np.inf], [0.0, 2e-3]], [[0, 0], [0, 1]])
    labels = np.array([0, 0])
    v_max = np.array([w0 * (4 ** (-1 / 3) - 4 ** (-4 / 3)) / 3, w0 * (math.exp(-0.1) - math.exp(-0.4)) / 3])
    loss_fn = TTFSLoss(revive=revive)
    losses, grads, result = net.gradient(inputs, labels, loss_fn)
    assert not np.isfinite(result.first_spike_times_s).any()
    np.testing.assert_allclose(net.revival(result, labels, loss_fn), revive * (1.0 - v_max), rtol=1e-14)
    surrogate = net.loss(result, labels, TTFSLoss())
    np.testing.assert_allclose(losses, surrogate + revive * (1.0 - v_max), rtol=1e-14)
    np.testing.assert_array_equal(net.loss(result, labels, loss_fn), losses)
    # dL/dw0 = -revive mean(V max / w0); w1 moves no maximum (it only bends V after the kink).
    np.testing.assert_allclose(grads[0][0, 0], -revive * np.mean(v_max / w0), rtol=1e-12)
    assert abs(grads[0][0, 1]) < 1e-15
    # Without the revival term the silent label masks both samples.
    assert not net.gradient(inputs, labels, TTFSLoss())[1][0].any()
    with pytest.raises(ConfigError, match="revive must be"):
        TTFSLoss(revive=-1.0)


def test_state_dict_round_trip():
    net = Network.create((5, 7, 3), PARAMS, "vmax", rng=3)
    clone = Network.from_state_dict(net.state_dict())
    assert clone.sizes == net.sizes and clone.params == net.params and clone.readout == "vmax"
    for a, b in zip(clone.weights, net.weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, message", [
    ({"tau_mem_s": -1.0}, "tau_mem_s must be a positive finite number"),
    ({"theta": float("nan")}, "theta must be a positive finite number"),
    ({"tau_mem_s": 5e-3, "tau_syn_s": 5e-3}, "must differ"),
])
def test_bad_parameters_are_rejected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LifParameters(**kwargs)


def test_bad_inputs_are_rejected():
    net = Network.create((5, 4, 3), PARAMS, rng=0)
    with pytest.raises(ValueError, match="must be >= 0"):
        SpikeBatch.from_arrays([[-1e-3]], [[0]])
    with pytest.raises(ValueError, match="differ in shape"):
        SpikeBatch.from_arrays([[0.0, 1.0]], [[0]])
    with pytest.raises(ValueError, match=r"lie in \[0, 5\)"):
        net.run(SpikeBatch.from_arrays([[0.0]], [[7]]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        net.gradient(SpikeBatch.from_arrays([[0.0]], [[1]]), [3], TTFSLoss())
    with pytest.raises(ConfigError, match="needs readout 'vmax'"):
        net.gradient(SpikeBatch.from_arrays([[0.0]], [[1]]), [0], VMaxLoss())
    with pytest.raises(ConfigError, match=r"weights\[0\] has shape"):
        Network((5, 4), PARAMS, "ttfs", [np.zeros((5, 4))])
