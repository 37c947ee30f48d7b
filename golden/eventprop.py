"""Exact float64 EventProp for feed-forward networks of current-based LIF neurons.

The model is specified in ``docs/eventprop.md``; section numbers below (``§n``) refer to it.

Forward: every layer is simulated event by event. Between two input events the state (V, I)
follows the closed-form solution of the LIF equations (§2); a threshold crossing is found by a
bracketed Newton/bisection search to full double precision (§3). No time step anywhere.

Backward: the adjoint variables (lambda_V, lambda_I) run from the end of the trial back to 0
in closed form (§4), jump at the neuron's own spikes (§5) and read out the weight gradient at
the input spikes (§6). Because the network is feed-forward, every neuron of a layer is
independent given its input spikes, so the backward pass runs layer by layer from the top, each
layer handing the error of its input spikes to the layer below (§7).

Memory is O(spikes): a layer's output is the time-sorted list of its spikes with the synaptic
current at each spike (what the adjoint jump needs), padded per sample to a common length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange

__all__ = [
    "LifParameters",
    "SpikeBatch",
    "RunResult",
    "TTFSLoss",
    "VMaxLoss",
    "Network",
]

#: Readouts: a spiking LIF output layer read by its first spikes (time-to-first-spike loss), or
#: a non-spiking leaky-integrator output layer read by each neuron's maximum voltage.
READOUTS = ("ttfs", "vmax")


class ConfigError(ValueError):
    """A parameter of the model is out of its valid range."""


@dataclass(frozen=True)
class LifParameters:
    """Neuron and trial parameters shared by every layer (docs/eventprop.md §1)."""

    #: Membrane time constant in seconds (paper: 20 ms).
    tau_mem_s: float = 20e-3
    #: Synaptic time constant in seconds (paper: 5 ms). Must differ from tau_mem_s.
    tau_syn_s: float = 5e-3
    #: Firing threshold (V resets to 0 after a spike).
    theta: float = 1.0
    #: Trial length in seconds; spikes and events at or after it are ignored.
    t_max_s: float = 50e-3

    def __post_init__(self):
        for name in ("tau_mem_s", "tau_syn_s", "theta", "t_max_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"LifParameters.{name} must be a positive finite number, got {value!r}")
        # The closed form (§2) divides by tau_syn - tau_mem.
        if abs(self.tau_mem_s - self.tau_syn_s) < 1e-3 * self.tau_mem_s:
            raise ConfigError(
                "LifParameters: tau_mem_s and tau_syn_s must differ by at least 0.1 % "
                f"(got {self.tau_mem_s} and {self.tau_syn_s})"
            )


@dataclass
class SpikeBatch:
    """Spikes of one layer for a batch of samples, sorted by time within each sample.

    ``times_s`` (B, K) float64, padded with +inf; ``ids`` (B, K) int32 neuron indices, padded
    with -1; ``counts`` (B,) number of valid entries. Layer outputs also carry
    ``current_at_spike`` (B, K): the synaptic current I of the spiking neuron at its spike.
    """

    times_s: np.ndarray
    ids: np.ndarray
    counts: np.ndarray
    current_at_spike: np.ndarray | None = None

    @classmethod
    def from_arrays(cls, times_s, ids, counts=None, n_inputs: int | None = None) -> SpikeBatch:
        """Validate and sort input spikes. Non-finite times are padding; ``counts`` is optional."""
        times_s = np.array(times_s, dtype=np.float64, ndmin=2, copy=True)
        ids = np.array(ids, ndmin=2, copy=True)
        if times_s.shape != ids.shape:
            raise ValueError(f"spike times {times_s.shape} and ids {ids.shape} differ in shape")
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"spike ids must be integers, got dtype {ids.dtype}")
        if counts is not None:
            counts = np.asarray(counts)
            if counts.shape != (times_s.shape[0],):
                raise ValueError(f"counts has shape {counts.shape}, expected ({times_s.shape[0]},)")
            col = np.arange(times_s.shape[1])
            pad = col[None, :] >= counts[:, None]
            times_s[pad] = np.inf
        valid = np.isfinite(times_s)
        if np.any(times_s[valid] < 0):
            raise ValueError("spike times must be >= 0")
        if np.isnan(times_s).any():
            raise ValueError("spike times contain NaN")
        if np.any(ids[valid] < 0) or (n_inputs is not None and np.any(ids[valid] >= n_inputs)):
            raise ValueError(f"spike ids must lie in [0, {n_inputs}) for valid spikes")
        order = np.argsort(np.where(valid, times_s, np.inf), axis=1, kind="stable")
        times_s = np.take_along_axis(times_s, order, axis=1)
        ids = np.take_along_axis(ids, order, axis=1).astype(np.int32)
        counts = np.isfinite(times_s).sum(axis=1).astype(np.int64)
        ids[~np.isfinite(times_s)] = -1
        return cls(times_s, ids, counts)

    @property
    def batch_size(self) -> int:
        return self.times_s.shape[0]

    def __getitem__(self, index) -> SpikeBatch:
        """Select samples (a slice or an index array); keeps the batch dimension."""
        if isinstance(index, (int, np.integer)):
            index = slice(index, index + 1)
        cur = None if self.current_at_spike is None else self.current_at_spike[index]
        return SpikeBatch(self.times_s[index], self.ids[index], self.counts[index], cur)

    def sample(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """The spike times and ids of sample ``b``, without padding."""
        n = int(self.counts[b])
        return self.times_s[b, :n], self.ids[b, :n]

    def fired(self, n_neurons: int) -> np.ndarray:
        """(B, n_neurons) bool: whether neuron j spiked at least once in sample b."""
        out = np.zeros((self.batch_size, n_neurons), dtype=bool)
        rows, cols = np.nonzero(np.arange(self.ids.shape[1])[None, :] < self.counts[:, None])
        out[rows, self.ids[rows, cols]] = True
        return out


@dataclass
class RunResult:
    """Everything the forward pass produced (docs/eventprop.md §8)."""

    #: Spikes of every layer after the input, hidden layers first. For the vmax readout the
    #: last entry is None (the output layer does not spike).
    layers: list
    readout: str
    #: ttfs: first spike time of each output neuron (B, n_out), +inf if it stays silent.
    first_spike_times_s: np.ndarray | None = None
    #: ttfs: index of that spike in ``layers[-1]`` (B, n_out), -1 if silent.
    first_spike_index: np.ndarray | None = None
    #: vmax: maximum voltage of each output neuron over [0, t_max] and where it is reached.
    v_max: np.ndarray | None = None
    t_v_max_s: np.ndarray | None = None
    #: vmax: index of the input spike a maximum is pinned to (a kink), else -1; dV/dt before it.
    v_max_kink_event: np.ndarray | None = None
    v_max_kink_slope: np.ndarray | None = None
    #: The input spikes of the run (the revival term of the TTFS loss, §8, reads the output
    #: layer's input spikes, which are these when there is no hidden layer).
    inputs: SpikeBatch | None = None

    @property
    def predictions(self) -> np.ndarray:
        """Predicted class: earliest first spike (ttfs; -1 if all silent) or largest V max."""
        if self.readout == "ttfs":
            t = self.first_spike_times_s
            pred = np.argmin(t, axis=1)
            pred[~np.isfinite(t).any(axis=1)] = -1
            return pred
        return np.argmax(self.v_max, axis=1)

    def spike_counts(self) -> list[np.ndarray]:
        """Spikes per sample for each spiking layer."""
        return [layer.counts for layer in self.layers if layer is not None]


# ---------------------------------------------------------------------------------------------
# Closed-form neuron (docs/eventprop.md §2-§3). c = tau_syn / (tau_syn - tau_mem).


@njit(cache=True)
def _find_spike(v0, i0, dt, am_dt, as_dt, tau_m, tau_s, theta, c, t_abs):
    """Offset in (0, dt] of the first upward threshold crossing, or -1.0 if there is none.

    V(s) = v0 a_m(s) + i0 c (a_s(s) - a_m(s)) has at most one extremum in the interval (§3), so
    either V(dt) >= theta (exactly one crossing before dt) or the crossing, if any, lies before
    the interior maximum.
    """
    v_end = v0 * am_dt + i0 * c * (as_dt - am_dt)
    if v_end >= theta:
        hi = dt
    else:
        i_end = i0 * as_dt
        # Interior maximum only if dV/dt > 0 at the start and < 0 at the end.
        if not (i0 > v0 and i_end < v_end):
            return -1.0
        ratio = (v0 - i0 * c) / (i0 * (1.0 - c))
        if ratio <= 0.0:
            return -1.0
        s_peak = -math.log(ratio) / (1.0 / tau_s - 1.0 / tau_m)
        if not (0.0 < s_peak < dt):
            return -1.0
        am = math.exp(-s_peak / tau_m)
        v_peak = v0 * am + i0 * c * (math.exp(-s_peak / tau_s) - am)
        if v_peak < theta:
            return -1.0
        hi = s_peak
    # Safeguarded Newton on f(s) = V(s) - theta inside the bracket [lo, hi]; bisection when a
    # Newton step leaves it. Stops at a step below the resolution of the absolute spike time.
    lo = 0.0
    x = hi
    for _ in range(200):
        am = math.exp(-x / tau_m)
        a_s = math.exp(-x / tau_s)
        v = v0 * am + i0 * c * (a_s - am)
        f = v - theta
        if f >= 0.0:
            hi = x
        else:
            lo = x
        slope = (i0 * a_s - v) / tau_m
        if slope > 0.0:
            x_new = x - f / slope
            if not (lo < x_new < hi):
                x_new = 0.5 * (lo + hi)
        else:
            x_new = 0.5 * (lo + hi)
        if abs(x_new - x) <= 4.5e-16 * (t_abs + x_new) or hi - lo <= 4.5e-16 * (t_abs + hi):
            return x_new
        x = x_new
    return x


@njit(cache=True)
def _interval_factors(times_s, k_eff, t_max, tau_m, tau_s):
    """Decay factors of the intervals between input events; shared by all neurons of a layer."""
    am = np.empty(k_eff)
    a_s = np.empty(k_eff)
    dts = np.empty(k_eff)
    for k in range(k_eff):
        t_next = times_s[k + 1] if k + 1 < k_eff else t_max
        dt = t_next - times_s[k]
        dts[k] = dt
        am[k] = math.exp(-dt / tau_m)
        a_s[k] = math.exp(-dt / tau_s)
    return dts, am, a_s


@njit(cache=True)
def _effective_count(times_s, count, t_max):
    """Input events at or after the end of the trial have no effect."""
    k = 0
    while k < count and times_s[k] < t_max:
        k += 1
    return k


@njit(cache=True)
def _spikes_in_interval(v, cur, t0, dt, am_dt, as_dt, tau_m, tau_s, theta, c, j,
                        rec_t, rec_j, rec_i, n_rec):
    """Slow path of one neuron over one interval that may contain spikes (§3).

    Records the spikes (the record may overflow: n_rec counts on) and returns the state at the
    end of the interval and the new record count.
    """
    s = _find_spike(v, cur, dt, am_dt, as_dt, tau_m, tau_s, theta, c, t0)
    if s < 0.0:
        return v * am_dt + cur * c * (as_dt - am_dt), cur * as_dt, n_rec
    cap = rec_t.shape[0]
    t_end = t0 + dt
    while True:
        cur = cur * math.exp(-s / tau_s)
        t0 = t0 + s
        if n_rec < cap:
            rec_t[n_rec] = t0
            rec_j[n_rec] = j
            rec_i[n_rec] = cur
        n_rec += 1
        rem = t_end - t0  # V was reset to 0 at t0
        if rem <= 0.0:
            return 0.0, cur, n_rec
        am_r = math.exp(-rem / tau_m)
        as_r = math.exp(-rem / tau_s)
        s = _find_spike(0.0, cur, rem, am_r, as_r, tau_m, tau_s, theta, c, t0)
        if s < 0.0:
            return cur * c * (as_r - am_r), cur * as_r, n_rec


@njit(cache=True, parallel=True)
def _lif_forward(in_times, in_ids, in_counts, weights_t, tau_m, tau_s, theta, t_max,
                 out_times, out_ids, out_cur, out_counts):
    """Simulate one LIF layer (§2-§3). Writes the time-sorted spikes of every sample.

    weights_t is the transposed weight matrix (n_in, n_out): the loop over neurons is innermost
    so that the common case (no spike in an interval) vectorises. out_counts[b] may exceed the
    capacity out_times.shape[1]; the caller then retries larger.
    """
    n_batch = in_times.shape[0]
    n_out = weights_t.shape[1]
    cap = out_times.shape[1]
    c = tau_s / (tau_s - tau_m)
    for b in prange(n_batch):
        k_eff = _effective_count(in_times[b], in_counts[b], t_max)
        dts, am, a_s = _interval_factors(in_times[b], k_eff, t_max, tau_m, tau_s)
        rec_t = np.empty(cap)
        rec_j = np.empty(cap, dtype=np.int32)
        rec_i = np.empty(cap)
        n_rec = 0
        v = np.zeros(n_out)
        cur = np.zeros(n_out)
        v_end = np.empty(n_out)
        i_end = np.empty(n_out)
        maybe = np.empty(n_out, dtype=np.bool_)
        for k in range(k_eff):
            w_row = weights_t[in_ids[b, k]]
            for j in range(n_out):
                cur[j] += w_row[j]
            dt = dts[k]
            if dt <= 0.0:
                continue  # simultaneous input spikes: add all weights first
            amk = am[k]
            ask = a_s[k]
            n_maybe = 0
            for j in range(n_out):
                v_end[j] = v[j] * amk + cur[j] * c * (ask - amk)
                i_end[j] = cur[j] * ask
                # A crossing needs V(end) >= theta or an interior maximum (§3), which can only
                # reach theta if the current does: V relaxes towards I(s) <= I(0).
                maybe[j] = (v_end[j] >= theta) | ((cur[j] >= theta) & (cur[j] > v[j]) & (i_end[j] < v_end[j]))
                n_maybe += maybe[j]
            if n_maybe > 0:
                for j in range(n_out):
                    if maybe[j]:
                        v_end[j], i_end[j], n_rec = _spikes_in_interval(
                            v[j], cur[j], in_times[b, k], dt, amk, ask, tau_m, tau_s, theta, c, j,
                            rec_t, rec_j, rec_i, n_rec)
            v, v_end = v_end, v
            cur, i_end = i_end, cur
        out_counts[b] = n_rec
        n_keep = min(n_rec, cap)
        # Stable sort by time; neurons were visited in order within each interval but the
        # record interleaves them, so ties keep the order in which spikes were found.
        order = np.argsort(rec_t[:n_keep], kind="mergesort")
        for q in range(n_keep):
            out_times[b, q] = rec_t[order[q]]
            out_ids[b, q] = rec_j[order[q]]
            out_cur[b, q] = rec_i[order[q]]
        for q in range(n_keep, cap):
            out_times[b, q] = np.inf
            out_ids[b, q] = -1
            out_cur[b, q] = 0.0


@njit(cache=True, parallel=True)
def _li_forward(in_times, in_ids, in_counts, weights_t, tau_m, tau_s, t_max, v_max, t_v_max,
                kink_event, kink_slope):
    """Leaky-integrator (non-spiking) layer: maximum of V over [0, t_max] per neuron (§9).

    A maximum at an input spike (a kink: V rises before it, falls after) is pinned to that
    spike: kink_event gets the spike's index and kink_slope dV/dt just before it; else -1.
    """
    n_batch = in_times.shape[0]
    n_out = weights_t.shape[1]
    c = tau_s / (tau_s - tau_m)
    for b in prange(n_batch):
        k_eff = _effective_count(in_times[b], in_counts[b], t_max)
        dts, am, a_s = _interval_factors(in_times[b], k_eff, t_max, tau_m, tau_s)
        for j in range(n_out):
            v = 0.0
            cur = 0.0
            best_v = 0.0
            best_t = 0.0
            best_kink = -1
            best_slope = 0.0
            for k in range(k_eff):
                cur += weights_t[in_ids[b, k], j]
                dt = dts[k]
                if dt <= 0.0:
                    continue
                v_end = v * am[k] + cur * c * (a_s[k] - am[k])
                i_end = cur * a_s[k]
                if cur > v and i_end < v_end:  # interior maximum
                    ratio = (v - cur * c) / (cur * (1.0 - c))
                    if ratio > 0.0:
                        s_peak = -math.log(ratio) / (1.0 / tau_s - 1.0 / tau_m)
                        if 0.0 < s_peak < dt:
                            amp = math.exp(-s_peak / tau_m)
                            v_peak = v * amp + cur * c * (math.exp(-s_peak / tau_s) - amp)
                            if v_peak > best_v:
                                best_v = v_peak
                                best_t = in_times[b, k] + s_peak
                                best_kink = -1
                v = v_end
                cur = i_end
                if v > best_v:
                    best_v = v
                    if k + 1 < k_eff:
                        best_t = in_times[b, k + 1]
                        best_kink = k + 1
                        best_slope = (cur - v) / tau_m
                    else:
                        best_t = t_max
                        best_kink = -1
            v_max[b, j] = best_v
            t_v_max[b, j] = best_t
            kink_event[b, j] = best_kink
            kink_slope[b, j] = best_slope


@njit(cache=True)
def _adjoint_step(lam_v, lam_i, s, tau_m, tau_s, d):
    """Propagate (lambda_V, lambda_I) backward in time by s >= 0 (§4); d = tau_m/(tau_m-tau_s)."""
    am = math.exp(-s / tau_m)
    a_s = math.exp(-s / tau_s)
    return lam_v * am, lam_i * a_s + lam_v * d * (am - a_s)


@njit(cache=True, parallel=True)
def _backward(in_times, in_ids, in_counts, own_times, own_ids, own_cur, own_err, own_counts,
              weights_t, tau_m, tau_s, theta, t_max, li_readout, grad_per_spike, in_err):
    """Adjoint pass of one layer (§4-§7) for every sample, from t_max down to 0.

    Walks the input spikes backwards; between two of them every neuron without an own event
    takes the shared closed-form step (vectorised over neurons), the others replay their own
    events (§5, or the voltage-maximum jump of the leaky readout, §9) in reverse order.
    grad_per_spike (B, K_in, n_out) receives -tau_syn lambda_I,j at every input spike (§6):
    O(spikes) memory, summed into dL/dW by _scatter_gradient. in_err (B, K_in) receives
    sum_j w_ji (lambda_V,j - lambda_I,j) for every input spike: the error term of that
    spike's own jump in the layer below (§5, §7). weights_t is (n_in, n_out).
    """
    n_batch = in_times.shape[0]
    n_out = weights_t.shape[1]
    d = tau_m / (tau_m - tau_s)
    for b in prange(n_batch):
        k_eff = _effective_count(in_times[b], in_counts[b], t_max)
        dts, am, a_s = _interval_factors(in_times[b], k_eff, t_max, tau_m, tau_s)
        lam_v = np.zeros(n_out)
        lam_i = np.zeros(n_out)
        new_v = np.empty(n_out)
        new_i = np.empty(n_out)
        t_cur = np.empty(n_out)
        touched = np.zeros(n_out, dtype=np.bool_)
        g = own_counts[b] - 1  # latest own event not yet replayed (own events are time-sorted)
        for k in range(k_eff - 1, -1, -1):
            t_k = in_times[b, k]
            amk = am[k]
            ask = a_s[k]
            dk = d * (amk - ask)
            for j in range(n_out):
                new_v[j] = lam_v[j] * amk
                new_i[j] = lam_i[j] * ask + lam_v[j] * dk
            if g >= 0 and own_times[b, g] > t_k:
                # Own events in (t_k, t_k+1]: replay them, latest first, per neuron.
                g_first = g
                while g >= 0 and own_times[b, g] > t_k:
                    j = own_ids[b, g]
                    if not touched[j]:
                        touched[j] = True
                        t_cur[j] = t_k + dts[k]
                        new_v[j] = lam_v[j]
                        new_i[j] = lam_i[j]
                    t_ev = own_times[b, g]
                    lv, li = _adjoint_step(new_v[j], new_i[j], max(t_cur[j] - t_ev, 0.0), tau_m, tau_s, d)
                    cur = own_cur[b, g]
                    if li_readout or math.isnan(cur):
                        # Voltage-maximum event: the leaky readout (§9), or the maximum of a
                        # silent label neuron that the TTFS revival term reads (§8).
                        lv = lv - own_err[b, g] / tau_m
                    else:
                        lv = (cur * lv + own_err[b, g]) / (cur - theta)
                    new_v[j] = lv
                    new_i[j] = li
                    t_cur[j] = t_ev
                    g -= 1
                for q in range(g_first, g, -1):
                    j = own_ids[b, q]
                    if touched[j]:
                        touched[j] = False
                        new_v[j], new_i[j] = _adjoint_step(new_v[j], new_i[j], max(t_cur[j] - t_k, 0.0),
                                                           tau_m, tau_s, d)
            lam_v, new_v = new_v, lam_v
            lam_i, new_i = new_i, lam_i
            w_row = weights_t[in_ids[b, k]]
            err = 0.0
            for j in range(n_out):
                grad_per_spike[b, k, j] = -tau_s * lam_i[j]
                err += w_row[j] * (lam_v[j] - lam_i[j])
            in_err[b, k] += err


@njit(cache=True)
def _scatter_gradient(grad_per_spike, in_ids, in_counts, t_max, in_times, grad_t):
    """dL/dW^T[i, :] = sum over samples and input spikes k from neuron i of grad_per_spike[b, k, :]."""
    for b in range(grad_per_spike.shape[0]):
        for k in range(in_counts[b]):
            if in_times[b, k] >= t_max:
                break
            row = grad_t[in_ids[b, k]]
            for j in range(grad_per_spike.shape[2]):
                row[j] += grad_per_spike[b, k, j]


@njit(cache=True)
def _first_spikes(out_times, out_ids, out_counts, n_out, first_t, first_idx):
    for b in range(out_times.shape[0]):
        for j in range(n_out):
            first_t[b, j] = np.inf
            first_idx[b, j] = -1
        for q in range(out_counts[b]):
            j = out_ids[b, q]
            if first_idx[b, j] < 0:
                first_idx[b, j] = q
                first_t[b, j] = out_times[b, q]


# ---------------------------------------------------------------------------------------------
# Losses (docs/eventprop.md §8-§9)


def _check_weight(loss, name: str):
    value = getattr(loss, name)
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ConfigError(f"{type(loss).__name__}.{name} must be a finite number >= 0, got {value!r}")


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class TTFSLoss:
    """Time-to-first-spike cross-entropy with the late-spike regulariser (§8).

    L = -log softmax(-t / tau0)[label] + alpha (exp(t_label / tau1) - 1), t = first spike times.
    A silent output neuron counts as spiking at t_max with zero gradient: no spike, nothing
    for the exact gradient to move. A sample whose label neuron is silent gets no gradient from
    this term (``masked``): descending it would only push the other outputs later, silencing
    the layer; loss shaping (docs/eventprop.md §10) revives silent neurons instead.

    Revival (``revive`` > 0): such a sample adds ``revive * (theta - Vmax_label)``, Vmax_label
    the maximum over [0, t_max] of the silent label neuron's membrane potential, whose exact
    gradient pulls that maximum up towards the threshold (§8). 0 (default): no such term.
    """

    tau0_s: float = 0.5e-3
    tau1_s: float = 6.4e-3
    alpha: float = 3e-3
    revive: float = 0.0
    #: Revival of hidden neurons silent for a whole minibatch (§10a); 0: none.
    revive_hidden: float = 0.0

    readout = "ttfs"

    def __post_init__(self):
        _check_weight(self, "revive")
        _check_weight(self, "revive_hidden")

    def loss_and_time_grad(self, first_t: np.ndarray, labels: np.ndarray, t_max_s: float):
        """Per-sample losses (B,) and dL/dt of each output neuron's first spike (B, n_out)."""
        silent = ~np.isfinite(first_t)
        t = np.where(silent, t_max_s, first_t)
        rows = np.arange(len(labels))
        logp = _log_softmax(-t / self.tau0_s)
        t_label = t[rows, labels]
        losses = -logp[rows, labels] + self.alpha * (np.exp(t_label / self.tau1_s) - 1.0)
        dl_dt = -np.exp(logp) / self.tau0_s
        dl_dt[rows, labels] += 1.0 / self.tau0_s + self.alpha / self.tau1_s * np.exp(t_label / self.tau1_s)
        dl_dt[silent] = 0.0
        dl_dt[silent[rows, labels]] = 0.0
        return losses, dl_dt

    def revival_and_vmax_grad(self, v_max_label: np.ndarray, theta: float):
        """Revival term of samples with a silent label neuron and its dL/dVmax_label (§8)."""
        return self.revive * (theta - v_max_label), np.full_like(v_max_label, -self.revive)


@dataclass(frozen=True)
class VMaxLoss:
    """Cross-entropy of the softmax over each output neuron's maximum voltage (§9).

    ``revive_hidden`` > 0 adds the revival of hidden neurons silent for a whole minibatch (§10a).
    """

    revive_hidden: float = 0.0

    readout = "vmax"

    def __post_init__(self):
        _check_weight(self, "revive_hidden")

    def loss_and_vmax_grad(self, v_max: np.ndarray, labels: np.ndarray):
        rows = np.arange(len(labels))
        logp = _log_softmax(v_max)
        losses = -logp[rows, labels]
        grad = np.exp(logp)
        grad[rows, labels] -= 1.0
        return losses, grad


def _merge_vmax_events(own: SpikeBatch, own_err: np.ndarray, rows, times_s, ids, err):
    """A layer's own events plus voltage-maximum events (§8 revival, §10a), for the backward pass.

    Extra event q belongs to sample ``rows[q]`` (a sample may get several): neuron ``ids[q]``
    at ``times_s[q]`` with error ``err[q]``. Its current is NaN, which makes _backward apply the
    voltage-maximum jump (§9) instead of the spike jump (§5). The merged lists stay sorted by
    time (stable: ties keep spikes first).
    """
    rows = np.asarray(rows, dtype=np.int64)
    n_batch = own.batch_size
    per_row = np.bincount(rows, minlength=n_batch)
    width = int(per_row.max(initial=0))
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    # Slot of each extra event within its sample: its rank among that sample's extras.
    slot = np.arange(rows.size) - np.searchsorted(sorted_rows, sorted_rows, side="left")
    extra_t = np.full((n_batch, width), np.inf)
    extra_j = np.full((n_batch, width), -1, dtype=own.ids.dtype)
    extra_cur = np.zeros((n_batch, width))
    extra_e = np.zeros((n_batch, width))
    extra_t[sorted_rows, slot] = np.asarray(times_s)[order]
    extra_j[sorted_rows, slot] = np.asarray(ids)[order]
    extra_cur[sorted_rows, slot] = np.nan
    extra_e[sorted_rows, slot] = np.asarray(err)[order]
    t = np.hstack([own.times_s, extra_t])
    j = np.hstack([own.ids, extra_j])
    cur = np.hstack([own.current_at_spike, extra_cur])
    e = np.hstack([own_err, extra_e])
    by_time = np.argsort(t, axis=1, kind="stable")
    merged = SpikeBatch(np.take_along_axis(t, by_time, axis=1), np.take_along_axis(j, by_time, axis=1),
                        own.counts + per_row, np.take_along_axis(cur, by_time, axis=1))
    return merged, np.take_along_axis(e, by_time, axis=1)


@dataclass(frozen=True)
class DeadNeurons:
    """Hidden neurons of one layer silent for every sample of a batch, and their revival (§10a).

    For each such neuron j: the sample whose voltage maximum is the highest (``rows``), that
    maximum and its time, and the kink it may sit on (input spike index and dV/dt before it).
    """

    layer: int
    neurons: np.ndarray
    rows: np.ndarray
    v_max: np.ndarray
    t_v_max_s: np.ndarray
    kink_event: np.ndarray
    kink_slope: np.ndarray


# ---------------------------------------------------------------------------------------------
# Network


@dataclass
class Network:
    """A feed-forward network: ``weights[l]`` has shape (sizes[l+1], sizes[l])."""

    sizes: tuple
    params: LifParameters = field(default_factory=LifParameters)
    readout: str = "ttfs"
    weights: list = field(default_factory=list)

    def __post_init__(self):
        self.sizes = tuple(int(n) for n in self.sizes)
        if len(self.sizes) < 2 or min(self.sizes) < 1:
            raise ConfigError(f"sizes must list at least two positive layer sizes, got {self.sizes}")
        if self.readout not in READOUTS:
            raise ConfigError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if not self.weights:
            self.weights = [np.zeros((n_out, n_in)) for n_in, n_out in zip(self.sizes, self.sizes[1:])]
        # Stored column-major: weights[l].T is then a C-contiguous (n_in, n_out) view, the
        # layout the kernels read (one input spike fans out to a contiguous row).
        self.weights = [np.asfortranarray(w, dtype=np.float64) for w in self.weights]
        for l, w in enumerate(self.weights):
            expected = (self.sizes[l + 1], self.sizes[l])
            if w.shape != expected:
                raise ConfigError(f"weights[{l}] has shape {w.shape}, expected {expected}")
        self._capacity = [4 * n for n in self.sizes[1:]]

    @classmethod
    def create(cls, sizes, params: LifParameters | None = None, readout: str = "ttfs",
               init=None, rng=None) -> Network:
        """Random network; ``init`` lists (mean, std) of the normal initialisation per layer."""
        sizes = tuple(sizes)
        rng = np.random.default_rng(rng)
        if init is None:
            init = [(1.0 / n, 1.0 / math.sqrt(n)) for n in sizes[:-1]]
        if len(init) != len(sizes) - 1:
            raise ConfigError(f"init needs {len(sizes) - 1} (mean, std) pairs, got {len(init)}")
        weights = [rng.normal(m, s, size=(n_out, n_in))
                   for (m, s), n_in, n_out in zip(init, sizes, sizes[1:])]
        return cls(sizes, params or LifParameters(), readout, weights)

    # -- forward ---------------------------------------------------------------------------

    def _check_inputs(self, inputs: SpikeBatch):
        if not isinstance(inputs, SpikeBatch):
            raise TypeError("inputs must be a SpikeBatch (see SpikeBatch.from_arrays)")
        valid = inputs.ids[np.arange(inputs.times_s.shape[1])[None, :] < inputs.counts[:, None]]
        if valid.size and (valid.min() < 0 or valid.max() >= self.sizes[0]):
            raise ValueError(f"input spike ids must lie in [0, {self.sizes[0]})")

    def _weights_t(self, l: int) -> np.ndarray:
        """(n_in, n_out) C-contiguous view of weights[l]; a copy only if a user replaced it."""
        w_t = self.weights[l].T
        return w_t if w_t.flags.c_contiguous else np.ascontiguousarray(w_t)

    def _lif_layer(self, l: int, inputs: SpikeBatch) -> SpikeBatch:
        p = self.params
        n_batch = inputs.batch_size
        while True:
            cap = self._capacity[l]
            times = np.empty((n_batch, cap))
            ids = np.empty((n_batch, cap), dtype=np.int32)
            cur = np.empty((n_batch, cap))
            counts = np.empty(n_batch, dtype=np.int64)
            _lif_forward(inputs.times_s, inputs.ids, inputs.counts, self._weights_t(l),
                         p.tau_mem_s, p.tau_syn_s, p.theta, p.t_max_s, times, ids, cur, counts)
            needed = int(counts.max(initial=0))
            if needed <= cap:
                return SpikeBatch(times, ids, counts, cur)
            # Every spike counts: grow the record and simulate again rather than drop spikes.
            self._capacity[l] = 2 * needed

    def _leaky_maxima(self, below: SpikeBatch, weights_t: np.ndarray):
        """V max over [0, t_max] of leaky integrators driven by ``below`` through ``weights_t``
        (n_in, n): the §9 readout, and the trajectory of any neuron that never fired (§8, §10a).
        Returns (V max, its time, kink event, dV/dt before the kink), each (B, n)."""
        p = self.params
        shape = (below.batch_size, weights_t.shape[1])
        v_max, t_v_max, kink_slope = np.empty(shape), np.empty(shape), np.empty(shape)
        kink_event = np.empty(shape, dtype=np.int64)
        _li_forward(below.times_s, below.ids, below.counts, weights_t, p.tau_mem_s, p.tau_syn_s,
                    p.t_max_s, v_max, t_v_max, kink_event, kink_slope)
        return v_max, t_v_max, kink_event, kink_slope

    def run(self, inputs: SpikeBatch) -> RunResult:
        """Forward pass: the spikes of every layer and the readout (§2-§3, §8-§9)."""
        self._check_inputs(inputs)
        layers = []
        x = inputs
        n_spiking = len(self.weights) - (1 if self.readout == "vmax" else 0)
        for l in range(n_spiking):
            x = self._lif_layer(l, x)
            layers.append(x)
        if self.readout == "ttfs":
            n_out = self.sizes[-1]
            first_t = np.empty((inputs.batch_size, n_out))
            first_idx = np.empty((inputs.batch_size, n_out), dtype=np.int64)
            _first_spikes(x.times_s, x.ids, x.counts, n_out, first_t, first_idx)
            return RunResult(layers, "ttfs", first_spike_times_s=first_t, first_spike_index=first_idx,
                             inputs=inputs)
        v_max, t_v_max, kink_event, kink_slope = self._leaky_maxima(x, self._weights_t(-1))
        layers.append(None)
        return RunResult(layers, "vmax", v_max=v_max, t_v_max_s=t_v_max,
                         v_max_kink_event=kink_event, v_max_kink_slope=kink_slope, inputs=inputs)

    # -- loss and gradient -----------------------------------------------------------------

    def _check_loss(self, loss_fn):
        if loss_fn.readout != self.readout:
            raise ConfigError(f"{type(loss_fn).__name__} needs readout {loss_fn.readout!r}, "
                              f"network has {self.readout!r}")

    def _check_labels(self, labels, n_batch) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.shape != (n_batch,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be {n_batch} integers, got shape {labels.shape} {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.sizes[-1]):
            raise ValueError(f"labels must lie in [0, {self.sizes[-1]})")
        return labels

    def loss(self, result: RunResult, labels, loss_fn) -> np.ndarray:
        """Per-sample losses (B,) of a forward result."""
        self._check_loss(loss_fn)
        labels = self._check_labels(labels, len(result.layers[0].counts) if result.layers[0] is not None
                                    else result.v_max.shape[0])
        if self.readout == "ttfs":
            losses = loss_fn.loss_and_time_grad(result.first_spike_times_s, labels, self.params.t_max_s)[0]
            return losses + self.revival(result, labels, loss_fn)
        return loss_fn.loss_and_vmax_grad(result.v_max, labels)[0]

    def revival(self, result: RunResult, labels, loss_fn) -> np.ndarray:
        """The revival part of the per-sample TTFS losses (B,): zero where the label fired (§8)."""
        self._check_loss(loss_fn)
        if self.readout != "ttfs":
            return np.zeros(result.v_max.shape[0])
        labels = self._check_labels(labels, result.first_spike_times_s.shape[0])
        out = np.zeros(len(labels))
        revival = self._silent_label_maxima(result, labels, loss_fn)
        if revival is not None:
            rows, v_max = revival[:2]
            out[rows] = loss_fn.revival_and_vmax_grad(v_max, self.params.theta)[0]
        return out

    def _silent_label_maxima(self, result: RunResult, labels: np.ndarray, loss_fn):
        """Samples whose label neuron is silent and that neuron's voltage maximum (§8 revival).

        A silent neuron was never reset, so its V(t) is the leaky-integrator trajectory of the
        output layer's input spikes: its maximum is the §9 readout. Returns None when the loss
        has no revival term or every label neuron fired, else (rows, V max, time of the maximum,
        kink event, dV/dt before the kink), one entry per such sample.
        """
        if not loss_fn.revive:
            return None
        rows = np.flatnonzero(result.first_spike_index[np.arange(len(labels)), labels] < 0)
        if rows.size == 0:
            return None
        below = (result.layers[-2] if len(result.layers) > 1 else result.inputs)[rows]
        v_max, t_v_max, kink_event, kink_slope = self._leaky_maxima(below, self._weights_t(-1))
        r, j = np.arange(rows.size), labels[rows]
        return rows, v_max[r, j], t_v_max[r, j], kink_event[r, j], kink_slope[r, j]

    def dead_neurons(self, result: RunResult) -> list[DeadNeurons]:
        """Per hidden LIF layer, its neurons that stayed silent for every sample (§10a)."""
        dead = []
        for l in range(len(self.weights) - 1):
            spikes = result.layers[l]
            neurons = np.flatnonzero(~spikes.fired(self.sizes[l + 1]).any(axis=0))
            if neurons.size == 0 or spikes.batch_size == 0:
                continue
            # Silent all along: never reset, so V is the leaky-integrator trajectory (§9).
            below = result.inputs if l == 0 else result.layers[l - 1]
            v_max, t_v_max, kink_event, kink_slope = self._leaky_maxima(
                below, np.ascontiguousarray(self._weights_t(l)[:, neurons]))
            rows = np.argmax(v_max, axis=0)
            q = np.arange(neurons.size)
            dead.append(DeadNeurons(l, neurons, rows, v_max[rows, q], t_v_max[rows, q],
                                    kink_event[rows, q], kink_slope[rows, q]))
        return dead

    def hidden_revival(self, result: RunResult, loss_fn) -> float:
        """The hidden-revival term of a batch, revive_hidden * sum over dead neurons of
        (theta - their highest V max) (§10a); the batch loss is mean(losses) + this / B."""
        self._check_loss(loss_fn)
        if not loss_fn.revive_hidden:
            return 0.0
        return float(sum(loss_fn.revive_hidden * (self.params.theta - d.v_max).sum()
                         for d in self.dead_neurons(result)))

    def gradient(self, inputs: SpikeBatch, labels, loss_fn):
        """Forward and adjoint pass. Returns (losses (B,), dL/dW per layer, RunResult).

        The gradient is that of the batch loss: the mean of the per-sample losses, plus
        ``hidden_revival(result, loss_fn) / B`` when the loss revives dead hidden neurons (§10a).
        """
        self._check_loss(loss_fn)
        result = self.run(inputs)
        n_batch = inputs.batch_size
        labels = self._check_labels(labels, n_batch)
        p = self.params
        # Maxima pinned to an input spike of the output layer move with it (§9): (sample, spike
        # index, dL/dt_spike) added to that spike's error.
        kinks = None
        if self.readout == "ttfs":
            losses, dl_dt = loss_fn.loss_and_time_grad(result.first_spike_times_s, labels, p.t_max_s)
            out = result.layers[-1]
            own = out
            own_err = np.zeros_like(out.times_s)
            fired = result.first_spike_index >= 0
            bi, ji = np.nonzero(fired)
            own_err[bi, result.first_spike_index[bi, ji]] = dl_dt[bi, ji] / n_batch
            revival = self._silent_label_maxima(result, labels, loss_fn)
            if revival is not None:
                # Silent label neurons (§8): the voltage-maximum readout of §9 on their maxima.
                rows, v_max, t_v_max, kink_event, kink_slope = revival
                rev_loss, dl_dv = loss_fn.revival_and_vmax_grad(v_max, p.theta)
                losses[rows] += rev_loss
                own, own_err = _merge_vmax_events(own, own_err, rows, t_v_max, labels[rows], dl_dv / n_batch)
                q = np.flatnonzero(kink_event >= 0)
                kinks = rows[q], kink_event[q], dl_dv[q] / n_batch * kink_slope[q]
        else:
            losses, dl_dv = loss_fn.loss_and_vmax_grad(result.v_max, labels)
            n_out = self.sizes[-1]
            # One own event per output neuron: the time of its voltage maximum, in time order.
            order = np.argsort(result.t_v_max_s, axis=1, kind="stable")
            own = SpikeBatch(np.take_along_axis(result.t_v_max_s, order, axis=1),
                             order.astype(np.int32), np.full(n_batch, n_out, dtype=np.int64),
                             np.zeros((n_batch, n_out)))
            own_err = np.take_along_axis(dl_dv, order, axis=1) / n_batch
            bi, ji = np.nonzero(result.v_max_kink_event >= 0)
            kinks = (bi, result.v_max_kink_event[bi, ji],
                     dl_dv[bi, ji] / n_batch * result.v_max_kink_slope[bi, ji])
        # Dead hidden neurons (§10a): a voltage-maximum event with dL/dVmax = -revive_hidden / B
        # in their own layer, in the sample where that maximum is the highest.
        dead = {d.layer: d for d in self.dead_neurons(result)} if loss_fn.revive_hidden else {}
        layer_kinks = {len(self.weights) - 1: kinks} if kinks is not None else {}
        for l, d in dead.items():
            q = np.flatnonzero(d.kink_event >= 0)
            layer_kinks[l] = (d.rows[q], d.kink_event[q], -loss_fn.revive_hidden / n_batch * d.kink_slope[q])
        grads = [None] * len(self.weights)
        for l in range(len(self.weights) - 1, -1, -1):
            below = inputs if l == 0 else result.layers[l - 1]
            n_in_spikes = below.times_s.shape[1]
            weights_t = self._weights_t(l)
            grad_per_spike = np.empty((n_batch, n_in_spikes, self.weights[l].shape[0]))
            in_err = np.zeros_like(below.times_s)
            if l in dead:
                d = dead[l]
                own, own_err = _merge_vmax_events(own, own_err, d.rows, d.t_v_max_s, d.neurons,
                                                  np.full(d.neurons.size, -loss_fn.revive_hidden / n_batch))
            if l in layer_kinks:
                # A maximum pinned to an input spike moves with it: dVmax/dt_spike = dV/dt^- (§9).
                np.add.at(in_err, layer_kinks[l][:2], layer_kinks[l][2])
            li = self.readout == "vmax" and l == len(self.weights) - 1
            _backward(below.times_s, below.ids, below.counts, own.times_s, own.ids,
                      own.current_at_spike, own_err, own.counts, weights_t,
                      p.tau_mem_s, p.tau_syn_s, p.theta, p.t_max_s, li, grad_per_spike, in_err)
            grad_t = np.zeros_like(weights_t)
            _scatter_gradient(grad_per_spike, below.ids, below.counts, p.t_max_s, below.times_s, grad_t)
            grads[l] = grad_t.T  # same column-major layout as weights[l]
            own, own_err = below, in_err
        return losses, grads, result

    # -- persistence -----------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "sizes": np.array(self.sizes),
            "readout": np.array(self.readout),
            "params": np.array([self.params.tau_mem_s, self.params.tau_syn_s, self.params.theta,
                                self.params.t_max_s]),
            **{f"w{l}": w for l, w in enumerate(self.weights)},
        }

    @classmethod
    def from_state_dict(cls, state) -> Network:
        tau_m, tau_s, theta, t_max = (float(v) for v in state["params"])
        sizes = tuple(int(n) for n in state["sizes"])
        weights = [np.array(state[f"w{l}"]) for l in range(len(sizes) - 1)]
        return cls(sizes, LifParameters(tau_m, tau_s, theta, t_max), str(state["readout"]), weights)
