"""Smooth exact gradients in networks of theta (oscillatory QIF) neurons with pseudodynamics,
after Klos & Memmesheimer 2023 (arXiv 2309.14523).

Specified in ``docs/methods.md`` §2; section numbers below refer to it.

Neuron (§2.1): ``tau dV/dt = V (V - 1) + I0 + tau sum_k w_k delta(t - t_k)`` with I0 > 1/4.
With ``c = sqrt(I0 - 1/4)`` and ``V = 1/2 + c tan(phi)`` the phase runs at the constant speed
``omega = c / tau`` between inputs, a spike is ``phi`` reaching pi/2 (V = +inf, reset to -inf,
i.e. the phase moves on into the next branch), and an input kick maps ``tan(phi) -> tan(phi) +
w / c``. Everything is closed form; no root finding and no time step.

The state is the unwrapped phase ``Phi = u + D``: ``u`` is the warped time (speed 1) and ``D``
is piecewise constant, changed only by kicks. Spike n is at ``u = pi/2 + n pi - D``. A kick can
never carry the phase across a spike (its effect vanishes at the spike, tan = inf), so every
spike time is a continuous function of the weights and input times: spikes can only appear or
vanish at the end of the simulated window.

Pseudodynamics (§2.2): after the trial end T the neurons run with a shorter time constant
``tau_pseudo`` (phase speed ``omega_pseudo``), so that every neuron reaches its (pseudo)spike
soon after T; the window ends at ``T + t_pseudo``, the output layer's ``t_out_extra`` later
(long enough that every output neuron spikes in it). An output neuron's first spike time, clipped
to the window end, enters the loss; a spike that leaves the trial becomes a pseudospike and
moves on continuously, so the loss is continuous in the weights and its gradient can add and
remove spikes.

Exact gradient (§2.3): reverse-mode through each neuron's events: ``lambda = dL/dD`` runs back
from the end, gains ``-dL/du_n`` at spike n and at a kick with tan values x- -> x+:
``dL/dw += lambda / (c (1 + x+^2))``, ``dL/du_k = lambda (A - 1)``, ``lambda *= A`` with
``A = (1 + x-^2) / (1 + x+^2)``. Kicks at exactly the same time commute (tan adds); they are
applied as one group.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numba import njit
from numba.typed import List

from .eventprop import ConfigError

__all__ = ["QifParameters", "QifNetwork", "QifResult", "encode_features", "flip_inputs", "single_neuron"]


@dataclass(frozen=True)
class QifParameters:
    """Neuron and trial parameters (docs/methods.md §2.1-2.2); times in trial-time units."""

    #: Constant drive; > 1/4 makes the neuron oscillate (paper: 5/4).
    i0: float = 1.25
    #: Membrane time constant (paper: 6/pi, a free oscillation period of 6 for I0 = 5/4).
    tau: float = 6.0 / math.pi
    #: Initial voltage of every neuron (0: a free neuron first spikes at 3.88 > T).
    v0: float = 0.0
    #: Trial length T (paper: 2).
    t_trial: float = 2.0
    #: Time constant during the pseudodynamics after T (shorter: pseudospikes come soon after T).
    tau_pseudo: float = 1.0 / math.pi
    #: Length of the pseudodynamics window after T; spikes after T + t_pseudo are not simulated.
    t_pseudo: float = 1.0
    #: The output layer's window runs this much longer (§2.2). Its inputs (spikes of the layer
    #: below, inside that layer's window) end before T + t_pseudo; a free phase then reaches its
    #: next spike within pi / omega_pseudo (= 1 with the defaults), so with t_out_extra >= that
    #: every output neuron spikes inside its window and no inhibition can clip its first spike
    #: time (zero gradient). 0: the output window ends with the hidden ones.
    t_out_extra: float = 1.0

    def __post_init__(self):
        if not self.i0 > 0.25:
            raise ConfigError(f"i0 must exceed 1/4 (oscillatory QIF), got {self.i0}")
        for name in ("tau", "t_trial", "tau_pseudo", "t_pseudo"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.t_out_extra >= 0:
            raise ConfigError(f"t_out_extra must be >= 0, got {self.t_out_extra}")

    @property
    def c(self) -> float:
        return math.sqrt(self.i0 - 0.25)

    @property
    def omega(self) -> float:
        """Phase speed in the trial (rad per time unit)."""
        return self.c / self.tau

    @property
    def omega_pseudo(self) -> float:
        return self.c / self.tau_pseudo

    @property
    def phi0(self) -> float:
        return math.atan((self.v0 - 0.5) / self.c)

    @property
    def t_end(self) -> float:
        """End of the hidden layers' window."""
        return self.t_trial + self.t_pseudo

    @property
    def t_end_out(self) -> float:
        """End of the output layer's window: first output spike times are clipped to it."""
        return self.t_end + self.t_out_extra

    def args(self):
        return tuple(float(v) for v in (self.c, self.omega, self.omega_pseudo, self.phi0, self.t_trial,
                                        self.t_end, self.t_end_out))


@njit(cache=True)
def _warp(t, omega, omega_p, t_trial):
    if t <= t_trial:
        return omega * t
    return omega * t_trial + omega_p * (t - t_trial)


@njit(cache=True)
def _unwarp(u, omega, omega_p, t_trial):
    """(time, dt/du) of warped time u."""
    if u <= omega * t_trial:
        return u / omega, 1.0 / omega
    return t_trial + (u - omega * t_trial) / omega_p, 1.0 / omega_p


@njit(cache=True)
def _neuron(in_t, in_w, c, omega, omega_p, phi0, t_trial, t_end, x_minus, x_plus, grp_end, out_t):
    """One neuron driven by time-sorted kicks (in_t, in_w); §2.1.

    Kicks at equal times form one group; x_minus/x_plus[g] are tan(phase) before/after group g,
    grp_end[g] its end index. Spike times (< t_end) go to out_t. Returns (n_groups, n_spikes).
    """
    u_end = _warp(t_end, omega, omega_p, t_trial)
    d = phi0
    n = 0
    n_sp = 0
    k = 0
    g = 0
    n_in = in_t.size
    while k < n_in:
        t_k = in_t[k]
        if t_k >= t_end:
            break
        u_k = _warp(t_k, omega, omega_p, t_trial)
        # Spikes before the kick (a spike exactly at the kick comes first; the kick then has
        # no effect on it either way).
        while True:
            u_sp = 0.5 * math.pi + n * math.pi - d
            if u_sp > u_k or u_sp >= u_end:
                break
            out_t[n_sp] = _unwarp(u_sp, omega, omega_p, t_trial)[0]
            n_sp += 1
            n += 1
        phi_minus = u_k + d
        xm = math.tan(phi_minus)
        xp = xm
        while k < n_in and in_t[k] == t_k:
            xp += in_w[k] / c
            k += 1
        x_minus[g] = xm
        x_plus[g] = xp
        grp_end[g] = k
        g += 1
        d += (n * math.pi + math.atan(xp)) - phi_minus
    while True:
        u_sp = 0.5 * math.pi + n * math.pi - d
        if u_sp >= u_end:
            break
        out_t[n_sp] = _unwarp(u_sp, omega, omega_p, t_trial)[0]
        n_sp += 1
        n += 1
    return g, n_sp


@njit(cache=True)
def _neuron_backward(in_t, in_w, c, omega, omega_p, t_trial, x_minus, x_plus, grp_end, n_groups,
                     sp_t, sp_grad, grad_w, grad_in_t):
    """Reverse sweep of one neuron (§2.3): adds dL/dw per kick to grad_w, dL/dt per kick to grad_in_t."""
    lam = 0.0
    s = sp_t.size - 1
    for g in range(n_groups - 1, -1, -1):
        k_start = grp_end[g - 1] if g > 0 else 0
        t_g = in_t[k_start]
        # Own spikes after this group.
        while s >= 0 and sp_t[s] > t_g:
            lam -= sp_grad[s] * _unwarp(_warp(sp_t[s], omega, omega_p, t_trial), omega, omega_p, t_trial)[1]
            s -= 1
        xp = x_plus[g]
        inv_p = 1.0 / (1.0 + xp * xp)
        dudt = omega if t_g <= t_trial else omega_p
        for k in range(k_start, grp_end[g]):
            grad_w[k] += lam * inv_p / c
            # One-sided at exact coincidences: the kick taken as the group's last.
            xk = xp - in_w[k] / c
            grad_in_t[k] += lam * ((1.0 + xk * xk) * inv_p - 1.0) * dudt
        xm = x_minus[g]
        lam *= (1.0 + xm * xm) * inv_p
    return lam


@njit(cache=True)
def _sample(in_times, weights, params, label, tau_soft, alpha, target, want_grad, grads):
    """Forward (and backward) of one sample. Returns (loss, prediction, t_out, trial spikes per
    layer, pseudospikes per layer, events, ops).

    Loss (§2.4): cross-entropy of softmax(-t_out / tau_soft) for the label plus alpha t_label
    (pressure towards an early label spike, as in the TTFS loss of EventProp); if target[0] is
    finite instead, 1/2 sum_j (t_out_j - target_j)^2 (moving spikes to target times)."""
    c, omega, omega_p, phi0, t_trial, t_end_hidden, t_end_out = params
    n_layers = len(weights)
    # Input spikes, time-sorted.
    order = np.argsort(in_times, kind="mergesort")
    n_in_sp = 0
    for q in range(in_times.size):
        if in_times[q] < np.inf:
            n_in_sp += 1
    ev_t = in_times[order[:n_in_sp]].copy()
    ev_id = order[:n_in_sp].copy()
    layer_ev_t = List()
    layer_ev_id = List()
    layer_xm = List()
    layer_xp = List()
    layer_ge = List()
    layer_ng = List()
    layer_sp_t = List()
    layer_sp_start = List()
    trial_spikes = np.zeros(n_layers, dtype=np.int64)
    pseudo_spikes = np.zeros(n_layers, dtype=np.int64)
    events = n_in_sp
    ops = 0
    max_spikes = 64
    for l in range(n_layers):
        w = weights[l]
        n_out = w.shape[1]
        t_end = t_end_out if l == n_layers - 1 else t_end_hidden
        k_ev = ev_t.size
        xm = np.zeros((n_out, max(k_ev, 1)))
        xp = np.zeros((n_out, max(k_ev, 1)))
        ge = np.zeros((n_out, max(k_ev, 1)), dtype=np.int64)
        ng = np.zeros(n_out, dtype=np.int64)
        sp_start = np.zeros(n_out + 1, dtype=np.int64)
        sp_buf = np.zeros(n_out * 8 + 8)
        tmp = np.zeros(max_spikes)
        in_w = np.zeros(k_ev)
        n_total = 0
        for j in range(n_out):
            for k in range(k_ev):
                in_w[k] = w[ev_id[k], j]
            while True:
                ng_j, n_sp = _neuron(ev_t, in_w, c, omega, omega_p, phi0, t_trial, t_end,
                                     xm[j], xp[j], ge[j], tmp)
                if n_sp < tmp.size:
                    break
                tmp = np.zeros(2 * tmp.size)
            ng[j] = ng_j
            if n_total + n_sp > sp_buf.size:
                bigger = np.zeros(2 * (n_total + n_sp))
                bigger[:n_total] = sp_buf[:n_total]
                sp_buf = bigger
            sp_buf[n_total : n_total + n_sp] = tmp[:n_sp]
            n_total += n_sp
            sp_start[j + 1] = n_total
            for q in range(n_sp):
                if tmp[q] < t_trial:
                    trial_spikes[l] += 1
                else:
                    pseudo_spikes[l] += 1
        ops += k_ev * n_out
        sp_t = sp_buf[:n_total].copy()
        layer_ev_t.append(ev_t)
        layer_ev_id.append(ev_id)
        layer_xm.append(xm)
        layer_xp.append(xp)
        layer_ge.append(ge)
        layer_ng.append(ng)
        layer_sp_t.append(sp_t)
        layer_sp_start.append(sp_start)
        if l < n_layers - 1:
            # The next layer's input events: every spike of this layer, time-sorted; ev_id holds
            # the neuron, the flat spike index is kept in `flat`.
            owner = np.zeros(n_total, dtype=np.int64)
            for j in range(n_out):
                owner[sp_start[j] : sp_start[j + 1]] = j
            so = np.argsort(sp_t, kind="mergesort")
            ev_t = sp_t[so]
            ev_id = owner[so]
            events += n_total
    # Loss on the output neurons' first spike times, clipped to the window end.
    sp_t = layer_sp_t[n_layers - 1]
    sp_start = layer_sp_start[n_layers - 1]
    n_out = weights[n_layers - 1].shape[1]
    t_out = np.full(n_out, t_end_out)
    for j in range(n_out):
        if sp_start[j + 1] > sp_start[j]:
            t_out[j] = sp_t[sp_start[j]]
    dl_dt = np.zeros(n_out)
    if np.isfinite(target[0]):
        loss = 0.0
        for j in range(n_out):
            loss += 0.5 * (t_out[j] - target[j]) ** 2
            dl_dt[j] = t_out[j] - target[j]
    else:
        z = -t_out / tau_soft
        zmax = z.max()
        p = np.exp(z - zmax)
        p /= p.sum()
        loss = -math.log(max(p[label], 1e-300)) + alpha * t_out[label]
        for j in range(n_out):
            dl_dt[j] = -(p[j] - (1.0 if j == label else 0.0)) / tau_soft
        dl_dt[label] += alpha
    pred = np.argmin(t_out)
    if want_grad:
        # dL/dt of every spike of the top layer: only first spikes inside the window count.
        sp_grad = np.zeros(sp_t.size)
        for j in range(n_out):
            if sp_start[j + 1] > sp_start[j]:
                sp_grad[sp_start[j]] = dl_dt[j]
        for l in range(n_layers - 1, -1, -1):
            w = weights[l]
            gw = grads[l]
            ev_t = layer_ev_t[l]
            ev_id = layer_ev_id[l]
            sp_t = layer_sp_t[l]
            sp_start = layer_sp_start[l]
            k_ev = ev_t.size
            grad_in = np.zeros(k_ev)
            in_w = np.zeros(k_ev)
            gw_k = np.zeros(k_ev)
            for j in range(w.shape[1]):
                for k in range(k_ev):
                    in_w[k] = w[ev_id[k], j]
                    gw_k[k] = 0.0
                a, b = sp_start[j], sp_start[j + 1]
                _neuron_backward(ev_t, in_w, c, omega, omega_p, t_trial, layer_xm[l][j], layer_xp[l][j],
                                 layer_ge[l][j], layer_ng[l][j], sp_t[a:b], sp_grad[a:b], gw_k, grad_in)
                for k in range(k_ev):
                    gw[ev_id[k], j] += gw_k[k]
            if l > 0:
                # Hand dL/dt of the input events back to the spikes of the layer below.
                below_t = layer_sp_t[l - 1]
                below_start = layer_sp_start[l - 1]
                owner = np.zeros(below_t.size, dtype=np.int64)
                for j in range(below_start.size - 1):
                    owner[below_start[j] : below_start[j + 1]] = j
                so = np.argsort(below_t, kind="mergesort")
                sp_grad = np.zeros(below_t.size)
                for k in range(k_ev):
                    sp_grad[so[k]] = grad_in[k]
    return loss, pred, t_out, trial_spikes, pseudo_spikes, events, ops


@njit(cache=True)
def _batch(in_times, weights, params, labels, tau_soft, alpha, targets, want_grad, grads):
    n = in_times.shape[0]
    n_layers = len(weights)
    n_out = weights[n_layers - 1].shape[1]
    losses = np.zeros(n)
    preds = np.zeros(n, dtype=np.int64)
    t_out = np.zeros((n, n_out))
    trial = np.zeros((n, n_layers), dtype=np.int64)
    pseudo = np.zeros((n, n_layers), dtype=np.int64)
    events = np.zeros(n, dtype=np.int64)
    ops = np.zeros(n, dtype=np.int64)
    for s in range(n):
        r = _sample(in_times[s], weights, params, labels[s], tau_soft, alpha, targets[s], want_grad, grads)
        losses[s] = r[0]
        preds[s] = r[1]
        t_out[s, :] = r[2]
        trial[s, :] = r[3]
        pseudo[s, :] = r[4]
        events[s] = r[5]
        ops[s] = r[6]
    return losses, preds, t_out, trial, pseudo, events, ops


@dataclass
class QifResult:
    """Outputs of a batch."""

    losses: np.ndarray
    predictions: np.ndarray
    #: First spike time of each output neuron, clipped to the window end (N, n_out).
    t_out: np.ndarray
    #: Spikes inside the trial / pseudospikes after it, per sample and layer (N, layers).
    trial_spikes: np.ndarray
    pseudo_spikes: np.ndarray
    #: Spikes sent per sample (input + hidden, pseudospikes included) and kicks applied.
    events: np.ndarray
    ops: np.ndarray


class QifNetwork:
    """Feed-forward network of theta neurons, trained by smooth exact gradients (docs/methods.md §2)."""

    def __init__(self, weights, params: QifParameters | None = None):
        self.params = params or QifParameters()
        if not weights:
            raise ConfigError("at least one weight matrix")
        for l in range(1, len(weights)):
            if weights[l].shape[0] != weights[l - 1].shape[1]:
                raise ConfigError(f"layer {l}: {weights[l].shape[0]} inputs, but layer {l - 1} has "
                                  f"{weights[l - 1].shape[1]} neurons")
        self.weights = [np.ascontiguousarray(w, dtype=np.float64) for w in weights]

    @classmethod
    def create(cls, sizes, params: QifParameters | None, init_std, rng: np.random.Generator) -> QifNetwork:
        """Zero-mean normal weights with the given standard deviation per layer (§2.4)."""
        if len(init_std) != len(sizes) - 1:
            raise ConfigError(f"one init_std per weight matrix: {len(sizes) - 1}, got {len(init_std)}")
        return cls([rng.normal(0.0, s, (a, b)) for a, b, s in zip(sizes, sizes[1:], init_std)], params)

    @property
    def sizes(self) -> tuple:
        return (self.weights[0].shape[0],) + tuple(w.shape[1] for w in self.weights)

    def _call(self, in_times, labels, tau_soft, alpha, want_grad, targets=None):
        in_times = np.ascontiguousarray(np.atleast_2d(in_times), dtype=np.float64)
        if in_times.shape[1] != self.sizes[0]:
            raise ConfigError(f"{in_times.shape[1]} input neurons, the network has {self.sizes[0]}")
        if np.isnan(in_times).any() or (in_times < 0).any():
            raise ConfigError("input spike times must be >= 0 (inf: no spike)")
        labels = np.zeros(len(in_times), dtype=np.int64) if labels is None else np.asarray(labels, np.int64)
        n_out = self.sizes[-1]
        if labels.shape != (len(in_times),) or labels.min(initial=0) < 0 or labels.max(initial=0) >= n_out:
            raise ConfigError(f"one label in 0..{self.sizes[-1] - 1} per sample expected")
        if not tau_soft > 0:
            raise ConfigError(f"tau_soft must be positive, got {tau_soft}")
        if not alpha >= 0:
            raise ConfigError(f"alpha must be >= 0, got {alpha}")
        if targets is None:
            targets = np.full((len(in_times), 1), np.inf)
        else:
            targets = np.ascontiguousarray(np.atleast_2d(targets), dtype=np.float64)
            if targets.shape != (len(in_times), self.sizes[-1]) or not np.isfinite(targets).all():
                raise ConfigError(f"targets: one finite time per sample and output neuron, {self.sizes[-1]} "
                                  "per sample expected")
        grads = List([np.zeros_like(w) for w in self.weights])
        r = _batch(in_times, List(self.weights), self.params.args(), labels, float(tau_soft), float(alpha),
                   targets, want_grad, grads)
        return QifResult(*r), [np.asarray(g) for g in grads]

    def run(self, in_times, labels=None, tau_soft: float = 0.1, alpha: float = 0.0,
            targets=None) -> QifResult:
        return self._call(in_times, labels, tau_soft, alpha, False, targets)[0]

    def gradient(self, in_times, labels, tau_soft: float = 0.1, alpha: float = 0.0, targets=None):
        """(losses (N,), gradient of the mean loss per weight matrix, result).

        With targets (N, n_out) the loss is the squared distance of the first spike times to them."""
        res, grads = self._call(in_times, labels, tau_soft, alpha, True, targets)
        n = len(res.losses)
        return res.losses, [g / n for g in grads], res

    def state_dict(self) -> dict:
        state = {"n_layers": np.int64(len(self.weights)),
                 "params": np.array(list(asdict(self.params).values()))}
        for l, w in enumerate(self.weights):
            state[f"w{l}"] = w
        return state

    @classmethod
    def from_state_dict(cls, state) -> QifNetwork:
        values = [float(v) for v in np.asarray(state["params"])]
        # Checkpoints from before t_out_extra existed ran with one window for all layers.
        if len(values) == 6:
            values.append(0.0)
        params = QifParameters(*values)
        return cls([np.array(state[f"w{l}"]) for l in range(int(state["n_layers"]))], params)


def single_neuron(in_times, in_w, params: QifParameters | None = None) -> np.ndarray:
    """Spike times (within the hidden layers' window) of one neuron driven by the given kicks (for
    tests and docs)."""
    p = params or QifParameters()
    in_times = np.asarray(in_times, dtype=np.float64)
    order = np.argsort(in_times, kind="mergesort")
    k = max(in_times.size, 1)
    out = np.zeros(1024)
    _, n = _neuron(in_times[order], np.asarray(in_w, dtype=np.float64)[order], *p.args()[:6],
                   np.zeros(k), np.zeros(k), np.zeros(k, dtype=np.int64), out)
    return out[:n].copy()


#: Binarisation threshold of MNIST pixels (features in [0, 1]).
MNIST_BINARY_THRESHOLD = 0.5


def encode_features(dataset: str, x: np.ndarray, t_trial: float) -> np.ndarray:
    """Input spike time per input neuron (inf: silent), (N, n_in) (docs/methods.md §2.4).

    MNIST: binarised pixels (> 0.5) spike at t = 0. Yin-Yang: feature k spikes at x_k T / 2,
    neuron 4 is a bias spike at 0.
    """
    x = np.asarray(x, dtype=np.float64)
    if dataset == "mnist":
        return np.where(x > MNIST_BINARY_THRESHOLD, 0.0, np.inf)
    if dataset == "yinyang":
        return np.concatenate([x * (0.5 * t_trial), np.zeros((len(x), 1))], axis=1)
    raise ConfigError(f"no smooth-QIF input encoding for data set {dataset!r}")


def flip_inputs(in_times: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Flip each binary input (spike at 0 <-> silent) with probability p (MNIST augmentation)."""
    flip = rng.random(in_times.shape) < p
    return np.where(flip, np.where(np.isinf(in_times), 0.0, np.inf), in_times)
