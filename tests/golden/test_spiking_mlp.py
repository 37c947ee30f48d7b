"""golden.spiking_mlp against a hand-worked tiny network and the dense ReLU MLP (docs/methods.md §1).

Bounds: an input herding unit fed x in [0, 1] keeps phi in (-1/2, 1/2], so its count after
tau steps is within 1/2 of tau x. A unit fed S_tau = tau a + e_tau with |e_tau| <= E has count
within E + 1/2 of tau relu(a) (signed: of tau a), at every step tau (§1.2). With
E_j = sum_i |W_ij| B_i this gives per-unit bounds B_j layer by layer, independent of n.
"""

import numpy as np
import pytest

from evcore.golden.eventprop import ConfigError
from evcore.golden.spiking_mlp import SpikingMLP, herding_counts, relu_mlp_forward, relu_mlp_update

# Float rounding of potentials summed over at most 10^4 steps of O(1) terms.
FLOAT_SLACK = 1e-8


def _tiny():
    # 2-1-1: input 0 excites, input 1 inhibits the hidden unit; see test_hand_worked_steps.
    return SpikingMLP([np.array([[1.0], [-1.0]]), np.array([[2.0]])], [np.array([0.2]), np.array([-0.5])], 3)


def test_hand_worked_steps():
    """x = (0.6, 0.3), 3 steps, worked by hand:

    step 1: inputs phi (0.6, 0.3) -> input 0 spikes (phi -0.4). hidden 0.2 + 1 = 1.2 -> spike
            (0.2). output -0.5 + 2 = 1.5 -> spike (0.5, not > 0.5).
    step 2: inputs (0.2, 0.6) -> input 1 spikes. hidden 0.2 + 0.2 - 1 = -0.6, rectified: none.
            output 0.5 - 0.5 = 0: none.
    step 3: inputs (0.8, 0.2) -> input 0 spikes. hidden -0.6 + 0.2 + 1 = 0.6 -> spike (-0.4).
            output 0 - 0.5 + 2 = 1.5 -> spike.
    Fan-out operations: per step and layer 1 (bias) + events: (2 + 2) + (2 + 1) + (2 + 2) = 11.
    """
    net = _tiny()
    fwd = net.forward(np.array([0.6, 0.3]))
    assert [c.tolist() for c in fwd.counts] == [[2, 1], [2], [2]]
    assert fwd.ops == 11
    # Hidden gate: count 2 + phi -0.4 > 0.
    assert fwd.gates[1].tolist() == [True]
    # Backward, error 0.4 per step: output psi 0.4, 0.8 -> +1 spike (-0.2), 0.2: one spike at
    # step 2; it adds W2 = 2 to the hidden psi: 2 -> two spikes (0). One fan-out operation.
    back, ops = net.backward(fwd, np.array([0.4]))
    assert [b.tolist() for b in back] == [[2], [1]]
    assert ops == 1
    # Update, lr 0.9: scale 0.9 / 3^2 = 0.1. W2 -= 0.1 * 2 * 1, b2 -= 0.1 * 3 * 1;
    # W1 -= 0.1 * (2, 1) * 2, b1 -= 0.1 * 3 * 2. Multiply-adds: (2 + 1) + (1 + 1).
    assert net.update(fwd, back, 0.9) == 5
    np.testing.assert_allclose(net.weights[1], [[1.8]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(net.biases[1], [-0.8], rtol=0, atol=1e-15)
    np.testing.assert_allclose(net.weights[0], [[0.6], [-1.2]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(net.biases[0], [-0.4], rtol=0, atol=1e-15)


def test_herding_counts_of_constant_input():
    # Signed herding of a constant u: count = round-half-down(n u) as long as |u| <= 1.
    u = np.array([0.3, -0.3, 0.57, -0.95, 0.0, 1.0])
    for n in (1, 7, 100):
        assert np.array_equal(herding_counts(u, n, signed=True), np.ceil(n * u - 0.5).astype(int)
                              * (n * u > 0.5) + np.floor(n * u + 0.5).astype(int) * (n * u < -0.5))
    assert np.array_equal(herding_counts(u, 10, signed=False), [3, 0, 6, 0, 0, 10])


def _random_net(seed=0, sizes=(6, 8, 7, 3)):
    rng = np.random.default_rng(seed)
    net = SpikingMLP.create(sizes, 10, rng)
    for b in net.biases:
        b[:] = rng.normal(0.0, 0.2, b.shape)
    return net, rng.uniform(0.0, 1.0, sizes[0])


def _forward_bounds(net):
    """Per-unit bound B of |count - n relu(a)| for every layer (input first), independent of n."""
    bounds = [np.full(net.sizes[0], 0.5)]
    for w in net.weights:
        bounds.append(np.abs(w).T @ bounds[-1] + 0.5)
    return bounds


def test_forward_converges_to_relu_mlp_at_rate_one_over_n():
    net, x = _random_net()
    ref = relu_mlp_forward(x, net.weights, net.biases)
    bounds = _forward_bounds(net)
    worst = []
    for n in (10, 100, 1000, 10000):
        net.n_steps = n
        fwd = net.forward(x)
        errors = [np.abs(c - n * a) for c, a in zip(fwd.counts, ref)]
        for err, bound in zip(errors, bounds):
            assert np.all(err <= bound + FLOAT_SLACK)
        worst.append(max(float((e / n).max()) for e in errors))
    # The error of count / n falls with n; the bound says at least as fast as B / n.
    assert all(b < a for a, b in zip(worst, worst[1:]))
    assert worst[-1] <= max(float(b.max()) for b in bounds) / 10000


def test_backward_counts_match_dense_backprop_within_herding_bound():
    net, x = _random_net(1)
    net.n_steps = 50
    fwd = net.forward(x)
    err = np.array([0.3, -0.45, 0.15])
    back, ops = net.backward(fwd, err)
    # Dense reference with the same gates: delta_top = n err, delta_l = (W delta_{l+1}) * gate.
    n = net.n_steps
    delta = n * err
    bound = np.full(3, 0.5)
    for l in range(len(net.weights) - 1, -1, -1):
        assert np.all(np.abs(back[l] - delta) <= bound + FLOAT_SLACK)
        if l:
            gate = fwd.gates[l]
            delta = (net.weights[l] @ delta) * gate
            bound = np.where(gate, 0.5 + np.abs(net.weights[l]) @ bound, 0.0)
    assert ops > 0


def test_update_converges_to_relu_mlp_sgd():
    net0, x = _random_net(2)
    label, lr = 1, 0.05
    ref_dw, ref_db = relu_mlp_update(x, label, net0.weights, net0.biases, lr)
    acts = relu_mlp_forward(x, net0.weights, net0.biases)
    fb = _forward_bounds(net0)
    worst = []
    for n in (30, 300, 3000):
        net = SpikingMLP([w.copy() for w in net0.weights], [b.copy() for b in net0.biases], n)
        fwd = net.forward(x)
        # Gates agree with the ReLU's once n |a| exceeds the forward bound (checked, not assumed).
        for l in range(1, len(acts) - 1):
            assert np.array_equal(fwd.gates[l], acts[l] > 0)
        step = net.train_step(x, label, lr)
        assert step.update_ops > 0
        # Backward bound: the spiking output error differs from the ReLU's by at most
        # 1/2 max|o_spk - o_relu| <= 1/2 max B_out / n (softmax Jacobian inf-norm <= 1/2).
        p = np.exp(acts[-1] - acts[-1].max())
        delta = p / p.sum()
        delta[label] -= 1.0
        deltas, bd = [delta], [0.5 + 0.5 * fb[-1].max() + 0 * delta]
        for l in range(len(net0.weights) - 1, 0, -1):
            g = acts[l] > 0
            deltas.insert(0, (net0.weights[l] @ deltas[0]) * g)
            bd.insert(0, np.where(g, 0.5 + np.abs(net0.weights[l]) @ bd[0], 0.0))
        err_n = 0.0
        for l in range(len(net0.weights)):
            dw = net.weights[l] - net0.weights[l]
            # |c d - n^2 h delta| <= B_c (n |delta| + B_d) + n h B_d, times lr / n^2.
            bound = lr / n**2 * (np.outer(fb[l], n * np.abs(deltas[l]) + bd[l])
                                 + n * np.outer(acts[l], bd[l]))
            assert np.all(np.abs(dw - ref_dw[l]) <= bound + FLOAT_SLACK)
            db_bound = lr / n * bd[l]
            assert np.all(np.abs(net.biases[l] - net0.biases[l] - ref_db[l]) <= db_bound + FLOAT_SLACK)
            err_n = max(err_n, float(np.abs(dw - ref_dw[l]).max()))
        worst.append(err_n)
    assert worst[0] > worst[1] > worst[2] > 0


def test_operation_counts_scale_with_events():
    net, _ = _random_net(3, sizes=(20, 30, 4))
    silent = net.forward(np.zeros(20))
    busy = net.forward(np.ones(20))
    # A silent input still costs the bias events: one per step and layer, of fan-out n_out.
    assert silent.counts[0].sum() == 0
    assert silent.ops == net.n_steps * 30 + (net.n_steps + int(np.abs(silent.counts[1]).sum())) * 4
    assert busy.ops == (net.n_steps + 20 * net.n_steps) * 30 + (net.n_steps + int(busy.counts[1].sum())) * 4
    assert net.dense_macs() == {"forward": 20 * 30 + 30 * 4, "backward": 30 * 4, "update": 20 * 30 + 30 * 4}


def test_bad_configs_fail_in_one_line():
    with pytest.raises(ConfigError, match="n_steps must be a positive integer"):
        SpikingMLP.create((3, 2), 0, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="inputs must lie in"):
        SpikingMLP.create((3, 2), 5, np.random.default_rng(0)).forward(np.array([0.5, 1.5, 0.0]))
    with pytest.raises(ConfigError, match="3 input features, the network has 4"):
        SpikingMLP.create((4, 2), 5, np.random.default_rng(0)).forward(np.zeros(3))


def test_state_dict_round_trip():
    net, x = _random_net(4)
    net.back_gain = 3.0
    copy = SpikingMLP.from_state_dict(net.state_dict())
    assert copy.back_gain == 3.0 and copy.n_steps == net.n_steps
    assert [c.tolist() for c in copy.forward(x).counts] == [c.tolist() for c in net.forward(x).counts]


@pytest.mark.slow
def test_mnist_preset_reaches_target():
    """`evcore train mnist --method spiking-mlp`: test error <= 2.5 % (about 4 minutes)."""
    from evcore.sw.methods import preset, train_method

    _, metrics = train_method(preset("spiking-mlp", "mnist"), seed=0, progress=False)
    assert 1.0 - metrics["test_accuracy"] <= 0.025
