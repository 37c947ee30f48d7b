"""Spiking MLP of herding (sigma-delta) units, after O'Connor & Welling 2016 (arXiv 1602.08323).

Specified in ``docs/methods.md`` §1; section numbers below refer to it.

A ReLU MLP ``h_l = relu(h_{l-1} @ W_l + b_l)`` (linear output layer) is run for ``n_steps``
steps on a constant input. Every unit is a herding quantiser (§1.1): its potential ``phi``
accumulates the input it receives and, while ``phi > 1/2``, it emits a spike and subtracts 1.
Hidden units are rectified (positive spikes only), output units and every backward unit signed
(``phi < -1/2`` emits a negative spike and adds 1). A unit's spike count over the steps divided
by ``n_steps`` approximates the ReLU MLP's activation to within ``B / n_steps`` (§1.2 derives B).

Event-driven: a spike of unit i adds row ``W[i, :]`` to the next layer's potentials (fan-out
operations); a step without input events does no work for that layer besides the bias, which
is an always-on input unit (one event per step). The backward pass quantises the output error
``softmax(count / n_steps) - onehot(label)`` into signed spikes the same way and sends them down
through ``W^T`` to the units that were active in the forward pass (§1.3). The weight update is
``-lr / n_steps^2`` per pair of a forward spike of i and a backward spike of j (§1.4), i.e. the
outer product of the counts: one multiply-add per pair of units with non-zero counts.

Weights are stored fan-out major, ``W[l]`` of shape (n_in, n_out), so a spike's work is one
contiguous row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from numba.typed import List

from .eventprop import ConfigError

__all__ = ["SpikingMLP", "ForwardResult", "relu_mlp_forward", "relu_mlp_update", "herding_counts"]


@njit(cache=True)
def _herd(phi, signed, out_counts, events, n_events):
    """Emit the spikes of units with potential phi (§1.1); append (unit, sign) pairs to events."""
    for j in range(phi.size):
        while phi[j] > 0.5:
            phi[j] -= 1.0
            out_counts[j] += 1
            events[n_events, 0] = j
            events[n_events, 1] = 1
            n_events += 1
        if signed:
            while phi[j] < -0.5:
                phi[j] += 1.0
                out_counts[j] -= 1
                events[n_events, 0] = j
                events[n_events, 1] = -1
                n_events += 1
    return n_events


@njit(cache=True)
def _grow(events, n_needed):
    if n_needed <= events.shape[0]:
        return events
    bigger = np.zeros((max(2 * events.shape[0], n_needed), 2), dtype=np.int64)
    bigger[: events.shape[0]] = events
    return bigger


@njit(cache=True)
def _max_spikes_per_step(phi, extra):
    # Upper bound of the spikes a herding step can emit: |phi| + 1/2 per unit (for the buffer).
    total = 0
    for j in range(phi.size):
        total += int(abs(phi[j]) + extra) + 1
    return total


@njit(cache=True)
def _forward(x, weights, biases, n_steps):
    """Counts and backward gates of every layer (input first) and the forward fan-out operations (§1.2)."""
    n_layers = len(weights)
    counts = List()
    phis = List()
    counts.append(np.zeros(x.size, dtype=np.int64))
    phis.append(np.zeros(x.size))
    for l in range(n_layers):
        counts.append(np.zeros(weights[l].shape[1], dtype=np.int64))
        phis.append(np.zeros(weights[l].shape[1]))
    events = np.zeros((64, 2), dtype=np.int64)
    next_events = np.zeros((64, 2), dtype=np.int64)
    ops = 0
    for _ in range(n_steps):
        phi_in = phis[0]
        for i in range(x.size):
            phi_in[i] += x[i]
        events = _grow(events, _max_spikes_per_step(phi_in, 0.5))
        n_events = _herd(phi_in, False, counts[0], events, 0)
        for l in range(n_layers):
            w = weights[l]
            b = biases[l]
            phi = phis[l + 1]
            n_out = phi.size
            # The bias is an input unit that spikes at every step: one event of fan-out n_out.
            for j in range(n_out):
                phi[j] += b[j]
            ops += n_out
            for e in range(n_events):
                i = events[e, 0]
                s = events[e, 1]
                for j in range(n_out):
                    phi[j] += s * w[i, j]
            ops += n_events * n_out
            next_events = _grow(next_events, _max_spikes_per_step(phi, 0.5))
            n_next = _herd(phi, l == n_layers - 1, counts[l + 1], next_events, 0)
            events, next_events = next_events, events
            n_events = n_next
    # Gate of the backward pass (§1.3): the unit's accumulated input count + phi was positive,
    # i.e. the ReLU of its mean input is. Spike counts alone would keep units whose early
    # overshoot spiked although their mean input is negative.
    gates = List()
    for l in range(n_layers + 1):
        gates.append((counts[l] + phis[l]) > 0.0)
    return counts, gates, ops


@njit(cache=True)
def _backward(err, weights, gates, n_steps):
    """Signed backward counts of every non-input layer and the fan-out operations (§1.3).

    err is the per-step error of the output units; a backward spike of unit k of layer l+1 adds
    W[l][:, k] to the backward potentials of the gated-on units of layer l.
    """
    n_layers = len(weights)
    back = List()
    psis = List()
    for l in range(n_layers):
        back.append(np.zeros(weights[l].shape[1], dtype=np.int64))
        psis.append(np.zeros(weights[l].shape[1]))
    events = np.zeros((64, 2), dtype=np.int64)
    next_events = np.zeros((64, 2), dtype=np.int64)
    ops = 0
    top = n_layers - 1
    for _ in range(n_steps):
        psi = psis[top]
        for k in range(psi.size):
            psi[k] += err[k]
        events = _grow(events, _max_spikes_per_step(psi, 0.5))
        n_events = _herd(psi, True, back[top], events, 0)
        for l in range(top, 0, -1):
            w = weights[l]
            active = gates[l]
            psi = psis[l - 1]
            for e in range(n_events):
                k = events[e, 0]
                s = events[e, 1]
                for j in range(psi.size):
                    if active[j]:
                        psi[j] += s * w[j, k]
            ops += n_events * psi.size
            next_events = _grow(next_events, _max_spikes_per_step(psi, 0.5))
            n_events = _herd(psi, True, back[l - 1], next_events, 0)
            events, next_events = next_events, events
    return back, ops


@njit(cache=True)
def _update(weights, biases, counts, back, n_steps, lr):
    """W[l][i, j] -= lr/n^2 * c_i * d_j over the pairs of non-zero counts; biases as a unit of
    count n_steps (§1.4). Returns the number of multiply-adds."""
    scale = lr / (n_steps * n_steps)
    ops = 0
    for l in range(len(weights)):
        w = weights[l]
        c = counts[l]
        d = back[l]
        nz = np.nonzero(d)[0]
        for i in range(c.size):
            if c[i] != 0:
                ci = scale * c[i]
                for q in range(nz.size):
                    j = nz[q]
                    w[i, j] -= ci * d[j]
                ops += nz.size
        b = biases[l]
        for q in range(nz.size):
            b[nz[q]] -= scale * n_steps * d[nz[q]]
        ops += nz.size
    return ops


@njit(cache=True)
def _forward_batch(x, weights, biases, n_steps):
    n = x.shape[0]
    n_out = weights[len(weights) - 1].shape[1]
    out = np.zeros((n, n_out), dtype=np.int64)
    n_layers = len(weights)
    layer_counts = np.zeros((n, n_layers + 1), dtype=np.int64)
    ops = np.zeros(n, dtype=np.int64)
    for s in range(n):
        counts, _, ops[s] = _forward(x[s], weights, biases, n_steps)
        out[s] = counts[n_layers]
        for l in range(n_layers + 1):
            layer_counts[s, l] = np.abs(counts[l]).sum()
    return out, layer_counts, ops


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class ForwardResult:
    """Spike counts of one sample per layer (input first; the output's are signed)."""

    counts: list
    #: Backward gate per layer (input first): accumulated input of the unit > 0.
    gates: list
    #: Fan-out operations (events x fan-out, bias included) of the forward pass.
    ops: int

    @property
    def output(self) -> np.ndarray:
        return self.counts[-1]


@dataclass
class StepResult:
    """What one training step of one sample did."""

    loss: float
    prediction: int
    forward: ForwardResult
    #: Signed backward counts per non-input layer.
    back: list
    #: Operations: forward and backward fan-out, weight-update multiply-adds.
    forward_ops: int
    backward_ops: int
    update_ops: int


class SpikingMLP:
    """Herding-unit MLP with event-driven forward, backward and update (docs/methods.md §1)."""

    def __init__(self, weights, biases, n_steps: int, back_gain: float = 1.0):
        if int(n_steps) != n_steps or n_steps < 1:
            raise ConfigError(f"n_steps must be a positive integer, got {n_steps}")
        if not back_gain > 0:
            raise ConfigError(f"back_gain must be positive, got {back_gain}")
        if len(weights) != len(biases) or not weights:
            raise ConfigError("one bias vector per weight matrix, at least one layer")
        for l, (w, b) in enumerate(zip(weights, biases)):
            if w.ndim != 2 or b.shape != (w.shape[1],):
                raise ConfigError(f"layer {l}: weights (n_in, n_out) and biases (n_out,) expected, "
                                  f"got {w.shape} and {b.shape}")
            if l and w.shape[0] != weights[l - 1].shape[1]:
                raise ConfigError(f"layer {l}: {w.shape[0]} inputs, but layer {l - 1} has "
                                  f"{weights[l - 1].shape[1]} units")
        self.n_steps = int(n_steps)
        #: The output error is multiplied by this before it is quantised into backward spikes and
        #: the update divided by it (§1.3): finer backward quantisation for more backward events.
        self.back_gain = float(back_gain)
        self.weights = List([np.ascontiguousarray(w, dtype=np.float64) for w in weights])
        self.biases = List([np.ascontiguousarray(b, dtype=np.float64) for b in biases])

    @classmethod
    def create(cls, sizes, n_steps: int, rng: np.random.Generator, back_gain: float = 1.0) -> SpikingMLP:
        """He-normal weights, zero biases."""
        if len(sizes) < 2 or min(sizes) < 1:
            raise ConfigError(f"sizes must list at least two positive layer sizes, got {sizes}")
        weights = [rng.normal(0.0, np.sqrt(2.0 / n_in), (n_in, n_out))
                   for n_in, n_out in zip(sizes, sizes[1:])]
        return cls(weights, [np.zeros(n) for n in sizes[1:]], n_steps, back_gain)

    @property
    def sizes(self) -> tuple:
        return (self.weights[0].shape[0],) + tuple(w.shape[1] for w in self.weights)

    def dense_macs(self) -> dict:
        """Multiply-accumulates of the same dense ReLU MLP per sample (forward, backward, update)."""
        pairs = [w.shape[0] * w.shape[1] for w in self.weights]
        return {"forward": sum(pairs), "backward": sum(pairs[1:]), "update": sum(pairs)}

    def _check_x(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape[-1] != self.sizes[0]:
            raise ConfigError(f"{x.shape[-1]} input features, the network has {self.sizes[0]}")
        if x.min(initial=0) < 0 or x.max(initial=0) > 1:
            raise ConfigError("inputs must lie in [0, 1] (one herding spike per step at most)")
        return x

    def forward(self, x: np.ndarray) -> ForwardResult:
        counts, gates, ops = _forward(self._check_x(x), self.weights, self.biases, self.n_steps)
        return ForwardResult(list(counts), list(gates), int(ops))

    def output_counts(self, x: np.ndarray):
        """(output counts (N, n_out), absolute spike counts (N, layers + 1), forward ops (N,))."""
        return _forward_batch(self._check_x(np.atleast_2d(x)), self.weights, self.biases, self.n_steps)

    def error(self, output_counts: np.ndarray, label: int) -> tuple[float, np.ndarray]:
        """Cross-entropy of softmax(count / n_steps) and its gradient with respect to the output."""
        p = _softmax(output_counts / self.n_steps)
        loss = -float(np.log(max(p[label], 1e-300)))
        err = p.copy()
        err[label] -= 1.0
        return loss, err

    def backward(self, fwd: ForwardResult, err: np.ndarray):
        """Signed backward counts per non-input layer for the per-step output error err (§1.3)."""
        back, ops = _backward(np.asarray(err, dtype=np.float64), self.weights, List(fwd.gates), self.n_steps)
        return list(back), int(ops)

    def update(self, fwd: ForwardResult, back: list, lr: float) -> int:
        """Event-driven SGD step W -= lr / n^2 * outer(counts, back); returns multiply-adds (§1.4)."""
        return int(_update(self.weights, self.biases, List(fwd.counts), List(back), self.n_steps, lr))

    def train_step(self, x: np.ndarray, label: int, lr: float) -> StepResult:
        """Forward, backward and the event-driven weight update of one sample (minibatch 1)."""
        fwd = self.forward(x)
        loss, err = self.error(fwd.output, label)
        back, back_ops = self.backward(fwd, self.back_gain * err)
        update_ops = self.update(fwd, back, lr / self.back_gain)
        return StepResult(loss, int(np.argmax(fwd.output)), fwd, back, fwd.ops, back_ops, int(update_ops))

    def training_ops(self, x: np.ndarray, labels) -> dict:
        """Mean operations of a training step per sample (forward and backward fan-out, update
        multiply-adds) at the current weights, measured with learning rate 0 (weights unchanged)."""
        x = self._check_x(np.atleast_2d(x))
        total = np.zeros(3)
        for s in range(len(x)):
            step = self.train_step(x[s], int(labels[s]), 0.0)
            total += (step.forward_ops, step.backward_ops, step.update_ops)
        fwd, back, upd = total / len(x)
        return {"forward": fwd, "backward": back, "update": upd}

    def state_dict(self) -> dict:
        state = {"n_steps": np.int64(self.n_steps), "n_layers": np.int64(len(self.weights)),
                 "back_gain": np.float64(self.back_gain)}
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            state[f"w{l}"], state[f"b{l}"] = w, b
        return state

    @classmethod
    def from_state_dict(cls, state) -> SpikingMLP:
        n = int(state["n_layers"])
        return cls([np.array(state[f"w{l}"]) for l in range(n)], [np.array(state[f"b{l}"]) for l in range(n)],
                   int(state["n_steps"]), float(state["back_gain"]))


def herding_counts(u: np.ndarray, n_steps: int, signed: bool) -> np.ndarray:
    """Spike counts of herding units fed the constant input u for n steps (plain numpy, §1.1)."""
    phi = np.zeros_like(np.asarray(u, dtype=np.float64))
    counts = np.zeros(phi.shape, dtype=np.int64)
    for _ in range(n_steps):
        phi += u
        # The number of `while` iterations of §1.1: ceil(phi - 1/2) up, floor(phi + 1/2) down.
        k = np.where(phi > 0.5, np.ceil(phi - 0.5), 0.0)
        if signed:
            k = np.where(phi < -0.5, np.floor(phi + 0.5), k)
        counts += k.astype(np.int64)
        phi -= k
    return counts


def relu_mlp_forward(x, weights, biases) -> list:
    """Activations of the ReLU MLP (input first, linear output): the dense reference."""
    acts = [np.asarray(x, dtype=np.float64)]
    for l, (w, b) in enumerate(zip(weights, biases)):
        a = acts[-1] @ w + b
        acts.append(a if l == len(weights) - 1 else np.maximum(a, 0.0))
    return acts


def relu_mlp_update(x, label, weights, biases, lr):
    """SGD step of the ReLU MLP with softmax cross-entropy: (delta W list, delta b list)."""
    acts = relu_mlp_forward(x, weights, biases)
    delta = _softmax(acts[-1])
    delta[label] -= 1.0
    dw, db = [], []
    for l in range(len(weights) - 1, -1, -1):
        dw.insert(0, -lr * np.outer(acts[l], delta))
        db.insert(0, -lr * delta)
        if l:
            delta = (weights[l] @ delta) * (acts[l] > 0)
    return dw, db
