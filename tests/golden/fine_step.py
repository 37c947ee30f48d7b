"""An independent fine-step integrator of LIF layers, used only as a test reference.

It shares nothing with golden/eventprop.py: classic RK4 on the two ODEs with a fixed step,
steps split at every input spike, threshold crossings located by cubic Hermite interpolation
between steps (values and slopes at both ends) and refined by bisection on that cubic.
"""

import numpy as np


def _deriv(v, i, tau_m, tau_s):
    return (-v + i) / tau_m, -i / tau_s


def _rk4(v, i, h, tau_m, tau_s):
    k1v, k1i = _deriv(v, i, tau_m, tau_s)
    k2v, k2i = _deriv(v + 0.5 * h * k1v, i + 0.5 * h * k1i, tau_m, tau_s)
    k3v, k3i = _deriv(v + 0.5 * h * k2v, i + 0.5 * h * k2i, tau_m, tau_s)
    k4v, k4i = _deriv(v + h * k3v, i + h * k3i, tau_m, tau_s)
    return v + h / 6 * (k1v + 2 * k2v + 2 * k3v + k4v), i + h / 6 * (k1i + 2 * k2i + 2 * k3i + k4i)


def _hermite_root(t0, h, v0, d0, v1, d1, theta):
    """Time in [t0, t0+h] where the cubic Hermite interpolant of V first reaches theta."""
    def cubic(s):
        s2, s3 = s * s, s * s * s
        return ((2 * s3 - 3 * s2 + 1) * v0 + (s3 - 2 * s2 + s) * h * d0
                + (-2 * s3 + 3 * s2) * v1 + (s3 - s2) * h * d1)
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if cubic(mid) >= theta:
            hi = mid
        else:
            lo = mid
    return t0 + hi * h


def simulate_layer(in_times, in_ids, weights, tau_m, tau_s, theta, t_max, dt):
    """Spikes (sorted list of (time, neuron)) of one LIF layer for one sample."""
    n_out = weights.shape[0]
    v = np.zeros(n_out)
    cur = np.zeros(n_out)
    spikes = []
    events = sorted((t, k) for t, k in zip(in_times, in_ids) if t < t_max)
    boundaries = [t for t, _ in events] + [t_max]
    t = 0.0
    e = 0
    for t_next in boundaries:
        # Integrate from t to t_next in equal substeps of at most dt.
        n_sub = max(1, int(np.ceil((t_next - t) / dt))) if t_next > t else 0
        h = (t_next - t) / n_sub if n_sub else 0.0
        for _ in range(n_sub):
            v_new, i_new = _rk4(v, cur, h, tau_m, tau_s)
            crossed = np.nonzero((v_new >= theta) & (v < theta))[0]
            for j in crossed:
                d0 = (-v[j] + cur[j]) / tau_m
                d1 = (-v_new[j] + i_new[j]) / tau_m
                t_spike = _hermite_root(t, h, v[j], d0, v_new[j], d1, theta)
                spikes.append((t_spike, int(j)))
                # Restart neuron j from the reset at the spike time to the end of the step.
                vj, ij = 0.0, cur[j] * np.exp(-(t_spike - t) / tau_s)
                vj_end, ij_end = _rk4(np.array([vj]), np.array([ij]), t + h - t_spike, tau_m, tau_s)
                v_new[j], i_new[j] = vj_end[0], ij_end[0]
            v, cur = v_new, i_new
            t += h
        t = t_next
        # Apply every input spike at this boundary.
        while e < len(events) and events[e][0] <= t_next and t_next < t_max:
            cur = cur + weights[:, events[e][1]]
            e += 1
    spikes.sort()
    return spikes
