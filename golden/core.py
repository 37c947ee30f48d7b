"""Bit-accurate golden model of the fixed-point EventProp core (docs/core.md).

:class:`FixedCore` holds what the chip holds (weights, gradient and momentum accumulators, the
LFSR, the sticky flags) and offers the float model's interface (``run``, ``loss``, ``gradient``)
plus the on-chip ``update``, so one harness drives float EventProp, this model and later the RTL.
The datapath is integer-only (int64 Numba kernels, one per phase: ``lif`` §3,
``loss`` §4, ``adjoint`` §5, ``update`` §6); floats appear only at the host
boundary: snapping input spike times to steps, quantising float weights, and converting results
back to seconds and dL/dw for comparisons and reports.

Samples are processed one after the other, as the core does: the gradient accumulators saturate
add by add in the order of §5.5, so only a sequential model is exact when they saturate. Each
sample's forward and backward pass is a compiled loop over steps and neurons (about 5,900
training samples/s on one core for Yin-Yang 5-200-3, `make bench`), so vectorising over the
minibatch would buy little.

:func:`train_fixed` trains with the on-chip arithmetic only: the host supplies input spikes,
labels and (once per epoch) the learning-rate register.
"""

from __future__ import annotations

# No Numba on-disk cache (cache=True) in the fixed-point kernels: Numba checks only the file of
# the cached function, so a change in ops.py would leave stale machine code in the
# kernels that call it. Exactness first; compiling costs about 8 s per process.
import math
import time
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from .adjoint import backward_sample
from .config import CoreConfig, Flag
from .eventprop import LifParameters, Network, SpikeBatch, TTFSLoss
from .lif import forward_batch
from .loss import loss_unit
from .ops import P_N_LAYERS, pack_params
from .update import update_weights

__all__ = ["FixedCore", "FixedResult", "counter_limits", "cycle_model", "forward_phase_cycles", "train_fixed",
           "evaluate_fixed", "evaluate_quantised"]


@dataclass
class FixedResult:
    """Everything one forward (and, after ``gradient``, backward) pass exposes, raw and converted.

    Raw fields are what the RTL exposes bit for bit; ``layers``, ``first_spike_times_s`` and
    ``predictions`` mirror :class:`evcore.golden.eventprop.RunResult` for comparisons.
    """

    cfg: CoreConfig
    #: Input spikes as the core saw them: steps and ids (B, K), counts (B,).
    in_step: np.ndarray
    in_id: np.ndarray
    in_count: np.ndarray
    #: Spike record (§3.4): step, global neuron index (0 = first hidden neuron), I at the spike.
    rec_step: np.ndarray
    rec_neuron: np.ndarray
    rec_cur: np.ndarray
    rec_count: np.ndarray
    #: First spike of each output neuron (§3.4): step (n_steps if silent), I and V at that step.
    first_step: np.ndarray
    first_cur: np.ndarray
    first_v: np.ndarray
    #: Final forward state of every neuron (raw V, I), last step run, spikes per layer.
    final_v: np.ndarray
    final_cur: np.ndarray
    n_end: np.ndarray
    spiked: np.ndarray
    layer_counts: np.ndarray
    #: Sticky flags raised by this pass, per sample (config.Flag bits).
    flags: np.ndarray
    #: Cycle estimate of the forward pass per sample (§7).
    cycles_forward: np.ndarray
    #: Running maximum of V of every hidden neuron and its first step (§3.6), (B, n_hidden).
    vmax: np.ndarray | None = None
    vmax_step: np.ndarray | None = None
    # -- filled by FixedCore.gradient -------------------------------------------------------
    #: Softmax probabilities (unsigned Q0.prob_frac) and injected loss terms (lambda format).
    prob: np.ndarray | None = None
    lterm: np.ndarray | None = None
    #: 0 where the label neuron was silent (no gradient, §4.1).
    active: np.ndarray | None = None
    #: Revival injections per sample (§5.6): dead hidden neurons silent in the sample whose V
    #: maximum lies at a step >= 1.
    n_revived: np.ndarray | None = None
    #: Output jumps replayed per sample (§5.5 (c)).
    n_jumps: np.ndarray | None = None
    #: Final (t = 0) adjoint state of the last sample, raw.
    final_lam_v: np.ndarray | None = None
    final_lam_i: np.ndarray | None = None
    cycles_loss: np.ndarray | None = None
    cycles_backward: np.ndarray | None = None
    #: Raw gradient accumulators after the batch (sum over samples), per weight matrix.
    grads_raw: list | None = None
    layers: list = field(default_factory=list)

    @property
    def readout(self) -> str:
        return "ttfs"

    @property
    def batch_size(self) -> int:
        return self.first_step.shape[0]

    @property
    def first_spike_times_s(self) -> np.ndarray:
        """First output spike times in seconds (step * dt), +inf for silent outputs."""
        t = self.first_step * self.cfg.dt_s
        return np.where(self.first_step >= self.cfg.n_steps, np.inf, t)

    @property
    def predictions(self) -> np.ndarray:
        """The earliest first spike; ties at one step go to the larger V at that step, then the
        lower index (§4.5). -1 if every output is silent."""
        n_out = self.first_step.shape[1]
        key = (self.first_step * (1 << 40) - self.first_v) * n_out + np.arange(n_out)
        pred = np.argmin(key, axis=1)
        pred[(self.first_step >= self.cfg.n_steps).all(axis=1)] = -1
        return pred

    def spike_counts(self) -> list[np.ndarray]:
        return [self.layer_counts[:, l] for l in range(self.layer_counts.shape[1])]

    @property
    def cycles(self) -> np.ndarray:
        total = self.cycles_forward.copy()
        if self.cycles_loss is not None:
            total += self.cycles_loss + self.cycles_backward
        return total


def _fanout_cycles(cfg: CoreConfig, n_inputs, counts):
    """§7: one synapse per cycle, K_in·N_1 + Σ_l S_l·N_{l+1}, per sample (counts (B, >= L-1))."""
    sizes = cfg.sizes
    total = np.asarray(n_inputs) * sizes[1]
    for l in range(1, cfg.n_layers):
        total = total + counts[:, l - 1] * sizes[l + 1]
    return total


def _sweep_cycles(cfg: CoreConfig) -> int:
    """§7: cyc_neuron cycles per neuron (1 in the throughput build) plus the pipeline fill, per layer
    and step."""
    return sum(n * cfg.cyc_neuron + cfg.cyc_sweep_latency for n in cfg.sizes[1:])


def forward_phase_cycles(cfg: CoreConfig, n_end, n_inputs, layer_counts):
    """§7 forward pass by phase, as the RTL counts it: (sweep cycles, fan-out cycles) per sample."""
    sweep = (np.asarray(n_end) + 1) * _sweep_cycles(cfg)
    return sweep, _fanout_cycles(cfg, n_inputs, np.asarray(layer_counts))


def cycle_model(cfg: CoreConfig, n_end, n_inputs, layer_counts, active=None, n_jumps=None, replayed=None):
    """Cycle estimate of §7 from the event counts of a pass (arrays over samples).

    n_end: last step run; n_inputs: input spikes up to n_end; layer_counts (B, L): spikes per
    layer; active: 0 where the backward pass does not run (masked, no revival: §5.6); n_jumps:
    output first spikes replayed; replayed (B, L-1):
    record entries per hidden layer (= layer_counts unless the record overflowed).
    Returns (forward, loss, backward) cycles per sample; backward is 0 where it does not run.
    """
    sizes = cfg.sizes
    layer_counts = np.asarray(layer_counts)
    forward = sum(forward_phase_cycles(cfg, n_end, n_inputs, layer_counts))
    # The loss unit's 2 N_L + cyc_jump cycles (hdl.loss) and the cycle that starts it.
    loss = np.full_like(forward, 2 * sizes[-1] + cfg.cyc_jump + 1)
    if active is None:
        return forward, loss, np.zeros_like(forward)
    replayed = layer_counts[:, :-1] if replayed is None else np.asarray(replayed)
    # Clearing Λ (one neuron per cycle); replay: the scan of the record for each step's block
    # (one cycle per entry), per synapse an error-sum MAC and a gradient read-modify-write, one
    # jump per hidden record entry and per output first spike; the propagation sweep for every
    # step but step 0.
    n_rep = replayed.sum(axis=1)
    backward = (
        sum(sizes[1:])
        + n_rep
        + np.asarray(n_end) * _sweep_cycles(cfg)
        + cfg.cyc_synapse_rmw * _fanout_cycles(cfg, n_inputs, replayed)
        + (n_rep + np.asarray(n_jumps)) * cfg.cyc_jump
    )
    return forward, loss, np.where(np.asarray(active) > 0, backward, 0)


def counter_limits(cfg: CoreConfig) -> dict:
    """§7, "Counter widths": the largest value each per-sample counter of the core can reach, from
    the cycle model at the worst event counts (each neuron spiking at every step, the input buffer
    full, every hidden spike recorded up to `record_capacity`, every output jumping). The RTL
    builds each counter just wide enough for its limit. Keys: the registers' result names
    (``layer_count`` is a list over layers)."""
    sizes, T, L = cfg.sizes, cfg.n_steps, cfg.n_layers
    spikes = [T * n for n in sizes[1:]]  # at most one spike per neuron and step
    n_in = cfg.input_capacity
    fwd_sweep = T * _sweep_cycles(cfg)
    fan = n_in * sizes[1] + sum(spikes[l] * sizes[l + 2] for l in range(L - 1))
    # Backward: per replayed entry of hidden layer l + 1 one scan cycle, its jump and a
    # read-modify-write per target; the record holds at most record_capacity entries, so the
    # costliest entries fill it first.
    entry_cycles = [1 + cfg.cyc_jump + cfg.cyc_synapse_rmw * sizes[l + 2] for l in range(L - 1)]
    per_entry = sorted(zip(entry_cycles, spikes[:-1]), reverse=True)
    room, replay = cfg.record_capacity, 0
    for cost, n in per_entry:
        take = min(room, n)
        replay, room = replay + take * cost, room - take
    backward = (sum(sizes[1:]) + (T - 1) * _sweep_cycles(cfg) + cfg.cyc_synapse_rmw * n_in * sizes[1]
                + replay + sizes[-1] * cfg.cyc_jump)
    return {
        "cyc_total": fwd_sweep + fan,
        "cyc_sweep": fwd_sweep,
        "cyc_fanout": fan,
        "n_inputs": n_in,
        "layer_count": spikes,
        "n_jumps": sizes[-1],
        "cyc_loss": 2 * sizes[-1] + cfg.cyc_jump + 1,
        "cyc_backward": backward,
    }


@njit(cache=True)
def _backward_batch(
    P,
    sizes,
    w_off,
    nrn_off,
    w_frac,
    theta_w,
    W,
    exp_rom,
    reg_rom,
    recip_rom,
    in_step,
    in_id,
    in_cnt,
    rec_step,
    rec_nrn,
    rec_cur,
    rec_cnt,
    first_step,
    first_cur,
    n_end,
    labels,
    G,
    prob,
    lterm,
    active,
    flags,
    n_jumps,
    lam_v,
    lam_i,
    rev_step,
    rev_raw,
    n_revived,
):
    """Loss unit and backward pass of each sample in turn, accumulating into G (§4-§5).

    rev_step (B, n_hidden): step of each sample's revival injection per hidden neuron, -1 for none
    (§5.6). A masked sample (§4.1) still runs its backward pass if it has a revival injection."""
    n_layers = P[P_N_LAYERS]
    n_neur = nrn_off[n_layers]
    for b in range(in_step.shape[0]):
        act, fl = loss_unit(P, exp_rom, reg_rom, recip_rom, first_step[b], labels[b], prob[b], lterm[b])
        active[b] = act
        flags[b] |= fl
        n_rev = 0
        for g in range(rev_step.shape[1]):
            if rev_step[b, g] >= 1:
                n_rev += 1
        n_revived[b] = n_rev
        if not act and n_rev == 0:
            lam_v[:n_neur] = 0
            lam_i[:n_neur] = 0
            continue
        # Inputs used are those the forward pass reached (step <= n_end): backward_sample skips
        # later ones itself.
        fl, n_hid, n_inp, n_jmp = backward_sample(
            P,
            sizes,
            w_off,
            nrn_off,
            w_frac,
            theta_w,
            W,
            recip_rom,
            in_step[b],
            in_id[b],
            in_cnt[b],
            rec_step[b],
            rec_nrn[b],
            rec_cur[b],
            rec_cnt[b],
            first_step[b],
            first_cur[b],
            lterm[b],
            n_end[b],
            lam_v,
            lam_i,
            G,
            act,
            rev_step[b],
            rev_raw,
        )
        flags[b] |= fl
        n_jumps[b] = n_jmp


class FixedCore:
    """The fixed-point core: weights, accumulators, LFSR and sticky flags of one chip.

    ``FixedCore(cfg, weights_raw)`` takes raw integer weights (list of (n_out, n_in) arrays, as
    the chip stores them); :meth:`from_float` quantises a float network's weights.
    """

    def __init__(self, cfg: CoreConfig, weights_raw=None):
        self.cfg = cfg
        self._P = pack_params(cfg)
        sizes = cfg.sizes
        self._sizes = np.array(sizes, dtype=np.int64)
        counts = [sizes[l] * sizes[l + 1] for l in range(cfg.n_layers)]
        self._w_off = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self._nrn_off = np.concatenate([[0], np.cumsum(sizes[1:])]).astype(np.int64)
        # Right shift that aligns a weight to I (negative: an exact left shift), §3.2.
        self._w_shift = np.array([f - cfg.i_frac for f in cfg.w_frac], dtype=np.int64)
        self._w_frac = np.array(cfg.w_frac, dtype=np.int64)
        self._theta_w = np.array([cfg.theta_w_raw(l) for l in range(cfg.n_layers)], dtype=np.int64)
        n_w = int(sum(counts))
        self._W = np.zeros(n_w, dtype=np.int64)
        self._G = np.zeros(n_w, dtype=np.int64)
        self._M = np.zeros(n_w, dtype=np.int64)
        self._V = np.zeros(n_w, dtype=np.int64)
        self.lfsr_state = int(cfg.lfsr_seed)
        self.flags = Flag(0)
        #: Learning-rate registers (host-writable between minibatches), reset from the config.
        self.lr_mant = np.array(cfg.lr_mant, dtype=np.int64)
        self._lr_shift = np.array(cfg.lr_shift, dtype=np.int64)
        self._silent = np.zeros(cfg.n_layers, dtype=np.int64)
        #: §5.6, per hidden neuron: spiked in a training sample of this minibatch (``fired``), and
        #: silent in every training sample of the previous one (``dead``, set by :meth:`update`).
        #: Both start cleared: before the first update no neuron is known to be dead.
        self.fired = np.zeros(cfg.n_hidden, dtype=bool)
        self.dead = np.zeros(cfg.n_hidden, dtype=bool)
        if weights_raw is not None:
            self.set_weights_raw(weights_raw)

    # -- weights -----------------------------------------------------------------------------

    def _views(self, flat):
        s = self.cfg.sizes
        return [flat[o : o + s[l] * s[l + 1]].reshape(s[l + 1], s[l]) for l, o in enumerate(self._w_off)]

    @property
    def weights_raw(self) -> list:
        """Raw weights per matrix (views into the weight memory; writes go to the core)."""
        return self._views(self._W)

    @property
    def grads_raw(self) -> list:
        return self._views(self._G)

    @property
    def momentum_raw(self) -> list:
        return self._views(self._M)

    @property
    def second_moment_raw(self) -> list:
        """Adam's v per synapse, packed (exponent << v_mant_bits) | mantissa (§6.1)."""
        return self._views(self._V)

    def set_weights_raw(self, weights_raw):
        cfg = self.cfg
        if len(weights_raw) != cfg.n_layers:
            raise ValueError(f"need {cfg.n_layers} weight matrices, got {len(weights_raw)}")
        fmt_lo = -(1 << (cfg.w_bits - 1))
        fmt_hi = (1 << (cfg.w_bits - 1)) - 1
        for l, (dst, src) in enumerate(zip(self.weights_raw, weights_raw)):
            src = np.asarray(src)
            if src.shape != dst.shape:
                raise ValueError(f"weights_raw[{l}] has shape {src.shape}, expected {dst.shape}")
            if not np.issubdtype(src.dtype, np.integer):
                raise ValueError(f"weights_raw[{l}] must be integers, got {src.dtype}")
            if src.size and (src.min() < fmt_lo or src.max() > fmt_hi):
                raise ValueError(f"weights_raw[{l}] exceeds the {cfg.w_bits}-bit weight word")
            dst[...] = src

    @classmethod
    def from_float(cls, cfg: CoreConfig, net_or_weights) -> FixedCore:
        """Quantise float weights (a Network or a list of arrays): round half up, saturate."""
        weights = net_or_weights.weights if isinstance(net_or_weights, Network) else net_or_weights
        raw = [cfg.w_fmt(l).to_raw(w) for l, w in enumerate(weights)]
        return cls(cfg, raw)

    @property
    def weights(self) -> list:
        """The weights as reals."""
        return [self.cfg.w_fmt(l).to_real(w) for l, w in enumerate(self.weights_raw)]

    def lif_parameters(self) -> LifParameters:
        c = self.cfg
        return LifParameters(c.tau_mem_s, c.tau_syn_s, c.theta, c.t_max_s)

    def loss_fn(self) -> TTFSLoss:
        c = self.cfg
        return TTFSLoss(c.tau0_s, c.tau1_s, c.alpha)

    def to_float(self) -> Network:
        """A float Network with this core's (dequantised) weights and neuron parameters."""
        return Network(self.cfg.sizes, self.lif_parameters(), "ttfs", self.weights)

    # -- inputs ------------------------------------------------------------------------------

    def encode_inputs(self, inputs):
        """Host side (§3.1): SpikeBatch or (times_s, ids[, counts]) -> steps, ids, counts, flags.

        Steps are floor(t / dt + 1/2); spikes at or after step n_steps are dropped (they could not
        act within the trial); more than input_capacity spikes raise IN_OVF and are cut.
        """
        if isinstance(inputs, SpikeBatch):
            times, ids, counts = inputs.times_s, inputs.ids, inputs.counts
        else:
            times, ids, *rest = inputs
            times = np.atleast_2d(np.asarray(times, dtype=np.float64))
            ids = np.atleast_2d(np.asarray(ids))
            counts = rest[0] if rest else np.isfinite(times).sum(axis=1)
        counts = np.asarray(counts)
        cfg = self.cfg
        n_b, k = times.shape
        valid = np.arange(k)[None, :] < counts[:, None]
        valid &= np.isfinite(times)
        steps = np.where(valid, cfg.input_step(np.where(valid, times, 0.0)), cfg.n_steps)
        valid &= steps < cfg.n_steps
        if np.any(ids[valid] < 0) or np.any(ids[valid] >= cfg.sizes[0]):
            raise ValueError(f"input ids must lie in [0, {cfg.sizes[0]})")
        steps = np.where(valid, steps, np.iinfo(np.int64).max)
        order = np.argsort(steps, axis=1, kind="stable")
        steps = np.take_along_axis(steps, order, axis=1)
        ids_s = np.take_along_axis(np.where(valid, ids, -1), order, axis=1).astype(np.int64)
        n_valid = valid.sum(axis=1)
        flags = np.where(n_valid > cfg.input_capacity, int(Flag.IN_OVF), 0).astype(np.int64)
        n_valid = np.minimum(n_valid, cfg.input_capacity)
        width = max(1, int(n_valid.max(initial=0)))
        steps = np.ascontiguousarray(steps[:, :width])
        ids_s = np.ascontiguousarray(ids_s[:, :width])
        pad = np.arange(width)[None, :] >= n_valid[:, None]
        steps[pad] = cfg.n_steps
        ids_s[pad] = -1
        return steps, ids_s, n_valid.astype(np.int64), flags

    # -- forward -----------------------------------------------------------------------------

    def run(self, inputs) -> FixedResult:
        """Forward pass (§3) of a batch of any size."""
        cfg = self.cfg
        steps, ids, counts, flags = self.encode_inputs(inputs)
        n_b = steps.shape[0]
        cap = cfg.record_capacity
        n_neur = int(self._nrn_off[-1])
        n_out = cfg.sizes[-1]
        rec_step = np.zeros((n_b, cap), dtype=np.int64)
        rec_nrn = np.zeros((n_b, cap), dtype=np.int64)
        rec_cur = np.zeros((n_b, cap), dtype=np.int64)
        rec_cnt = np.zeros(n_b, dtype=np.int64)
        first_step = np.zeros((n_b, n_out), dtype=np.int64)
        first_cur = np.zeros((n_b, n_out), dtype=np.int64)
        first_v = np.zeros((n_b, n_out), dtype=np.int64)
        spiked = np.zeros((n_b, n_neur), dtype=np.int64)
        layer_counts = np.zeros((n_b, cfg.n_layers), dtype=np.int64)
        final_v = np.zeros((n_b, n_neur), dtype=np.int64)
        final_cur = np.zeros((n_b, n_neur), dtype=np.int64)
        n_end = np.zeros(n_b, dtype=np.int64)
        n_hid = cfg.n_hidden
        vmax = np.zeros((n_b, n_hid), dtype=np.int64)
        vmax_step = np.zeros((n_b, n_hid), dtype=np.int64)
        forward_batch(
            self._P,
            self._sizes,
            self._w_off,
            self._nrn_off,
            self._w_shift,
            self._W,
            steps,
            ids,
            counts,
            rec_step,
            rec_nrn,
            rec_cur,
            rec_cnt,
            first_step,
            first_cur,
            first_v,
            spiked,
            layer_counts,
            final_v,
            final_cur,
            n_end,
            flags,
            vmax,
            vmax_step,
        )
        n_inputs = np.array([(steps[b, : counts[b]] <= n_end[b]).sum() for b in range(n_b)], dtype=np.int64)
        fwd, _, _ = cycle_model(cfg, n_end, n_inputs, layer_counts)
        self.flags |= Flag(int(np.bitwise_or.reduce(flags, initial=0)))
        res = FixedResult(
            cfg,
            steps,
            ids,
            counts,
            rec_step,
            rec_nrn,
            rec_cur,
            rec_cnt,
            first_step,
            first_cur,
            first_v,
            final_v,
            final_cur,
            n_end,
            spiked,
            layer_counts,
            flags,
            fwd,
            vmax,
            vmax_step,
        )
        res.layers = self._spike_batches(res)
        return res

    def _spike_batches(self, res: FixedResult) -> list:
        """The record as float-model SpikeBatches (times = step * dt), hidden layers then outputs."""
        cfg = self.cfg
        out = []
        n_b = res.batch_size
        for l in range(1, cfg.n_layers):
            lo, hi = self._nrn_off[l - 1], self._nrn_off[l]
            width = max(1, int(res.layer_counts[:, l - 1].max(initial=0)))
            width = min(width, cfg.record_capacity)
            times = np.full((n_b, width), np.inf)
            ids = np.full((n_b, width), -1, dtype=np.int32)
            cur = np.zeros((n_b, width))
            counts = np.zeros(n_b, dtype=np.int64)
            for b in range(n_b):
                n = res.rec_count[b]
                sel = (res.rec_neuron[b, :n] >= lo) & (res.rec_neuron[b, :n] < hi)
                c = int(sel.sum())
                times[b, :c] = res.rec_step[b, :n][sel] * cfg.dt_s
                ids[b, :c] = res.rec_neuron[b, :n][sel] - lo
                cur[b, :c] = cfg.i_fmt.to_real(res.rec_cur[b, :n][sel])
                counts[b] = c
            out.append(SpikeBatch(times, ids, counts, cur))
        t = res.first_spike_times_s
        order = np.argsort(t, axis=1, kind="stable")
        ts = np.take_along_axis(t, order, axis=1)
        ids = np.where(np.isfinite(ts), order, -1).astype(np.int32)
        cur = np.take_along_axis(cfg.i_fmt.to_real(res.first_cur), order, axis=1)
        out.append(SpikeBatch(ts, ids, np.isfinite(ts).sum(axis=1), cur))
        return out

    # -- loss and gradient -------------------------------------------------------------------

    def _check_loss(self, loss_fn):
        if loss_fn is None:
            return
        mine = self.loss_fn()
        if (loss_fn.tau0_s, loss_fn.tau1_s, loss_fn.alpha) != (mine.tau0_s, mine.tau1_s, mine.alpha):
            raise ValueError(f"loss_fn {loss_fn} differs from the core's loss constants {mine}")

    def loss(self, result: FixedResult, labels, loss_fn=None) -> np.ndarray:
        """Per-sample TTFS loss of the fixed-point spike times (host-side report, §4.4)."""
        self._check_loss(loss_fn)
        labels = np.asarray(labels)
        return self.loss_fn().loss_and_time_grad(result.first_spike_times_s, labels, self.cfg.t_max_s)[0]

    def check_labels(self, labels, n_b: int):
        """One-line errors for labels that are not `n_b` integers naming output neurons."""
        if labels.shape != (n_b,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be {n_b} integers, got {labels.shape} {labels.dtype}")
        if n_b and (labels.min() < 0 or labels.max() >= self.cfg.sizes[-1]):
            raise ValueError(f"labels must lie in [0, {self.cfg.sizes[-1]})")

    def gradient(self, inputs, labels, loss_fn=None):
        """Forward, loss unit and backward of one minibatch from cleared accumulators (§3-§5).

        Returns (losses (B,), dL/dW of the batch-mean loss per matrix as floats, FixedResult);
        the raw sums stay in the gradient accumulators for :meth:`update`.
        """
        self._check_loss(loss_fn)
        cfg = self.cfg
        labels = np.asarray(labels)
        res = self.run(inputs)
        n_b = res.batch_size
        self.check_labels(labels, n_b)
        self._G[:] = 0
        n_out = cfg.sizes[-1]
        n_neur = int(self._nrn_off[-1])
        prob = np.zeros((n_b, n_out), dtype=np.int64)
        lterm = np.zeros((n_b, n_out), dtype=np.int64)
        active = np.zeros(n_b, dtype=np.int64)
        n_jumps = np.zeros(n_b, dtype=np.int64)
        lam_v = np.zeros(n_neur, dtype=np.int64)
        lam_i = np.zeros(n_neur, dtype=np.int64)
        flags = res.flags.copy()
        n_hid = cfg.n_hidden
        # §5.6: dead (previous minibatch) and silent in this sample -> inject at its V maximum.
        hid_silent = res.spiked[:, :n_hid] == 0
        revive = (cfg.revive_hidden > 0) & self.dead[None, :] & hid_silent
        rev_step = np.ascontiguousarray(np.where(revive, res.vmax_step, -1).astype(np.int64))
        n_revived = np.zeros(n_b, dtype=np.int64)
        _backward_batch(
            self._P,
            self._sizes,
            self._w_off,
            self._nrn_off,
            self._w_frac,
            self._theta_w,
            self._W,
            cfg.exp_rom,
            cfg.reg_rom,
            cfg.recip_rom,
            res.in_step,
            res.in_id,
            res.in_count,
            res.rec_step,
            res.rec_neuron,
            res.rec_cur,
            res.rec_count,
            res.first_step,
            res.first_cur,
            res.n_end,
            labels.astype(np.int64),
            self._G,
            prob,
            lterm,
            active,
            flags,
            n_jumps,
            lam_v,
            lam_i,
            rev_step,
            np.int64(cfg.revive_raw),
            n_revived,
        )
        self.fired |= (~hid_silent).any(axis=0)
        res.n_revived = n_revived
        res.flags = flags
        self.flags |= Flag(int(np.bitwise_or.reduce(flags, initial=0)))
        res.prob, res.lterm, res.active, res.n_jumps = prob, lterm, active, n_jumps
        res.final_lam_v, res.final_lam_i = lam_v, lam_i
        n_inputs = np.array([(res.in_step[b, : res.in_count[b]] <= res.n_end[b]).sum() for b in range(n_b)])
        replayed = np.zeros((n_b, cfg.n_layers - 1), dtype=np.int64)
        for l in range(cfg.n_layers - 1):
            lo, hi = self._nrn_off[l], self._nrn_off[l + 1]
            valid = np.arange(cfg.record_capacity)[None, :] < res.rec_count[:, None]
            replayed[:, l] = (valid & (res.rec_neuron >= lo) & (res.rec_neuron < hi)).sum(axis=1)
        # The backward pass runs for unmasked samples and for masked ones with a revival (§5.6).
        runs = (active > 0) | (n_revived > 0)
        _, res.cycles_loss, res.cycles_backward = cycle_model(
            cfg, res.n_end, n_inputs, res.layer_counts, runs, n_jumps, replayed
        )
        res.grads_raw = [g.copy() for g in self.grads_raw]
        # Loss-shaping counters (§6.5): silent (sample, neuron) pairs per layer in this minibatch.
        self._silent = np.array(
            [
                int((res.spiked[:, self._nrn_off[l] : self._nrn_off[l + 1]] == 0).sum())
                for l in range(cfg.n_layers)
            ],
            dtype=np.int64,
        )
        scale = cfg.grad_scale() / max(n_b, 1)
        grads = [g * scale for g in res.grads_raw]
        return self.loss(res, labels), grads, res

    # -- update ------------------------------------------------------------------------------

    def bump_layer(self) -> int:
        """§6.5: the lowest layer whose silent count exceeds its threshold, or -1."""
        for l, (count, limit) in enumerate(zip(self._silent, self.cfg.silent_count_max)):
            if self.cfg.silent_threshold[l] < 1.0 and count > limit:
                return l
        return -1

    def update(self) -> Flag:
        """The on-chip update (§6) from the gradient accumulators; clears them. Returns new flags."""
        cfg = self.cfg
        bump = np.zeros(cfg.n_layers, dtype=np.int64)
        layer = self.bump_layer()
        if layer >= 0:
            bump[layer] = cfg.silent_bump_raw[layer]
        state, fl = update_weights(
            self._P,
            self._sizes,
            self._w_off,
            self._W,
            self._G,
            self._M,
            self._V,
            self.lr_mant,
            self._lr_shift,
            bump,
            self.cfg.rsqrt_rom,
            np.int64(self.lfsr_state),
        )
        self.lfsr_state = int(state)
        self._silent[:] = 0
        # §5.6: the minibatch's verdict, used by the next minibatch's backward passes.
        self.dead = ~self.fired
        self.fired = np.zeros_like(self.fired)
        self.flags |= Flag(int(fl))
        return Flag(int(fl))

    def update_cycles(self) -> int:
        """§7: `cyc_update_word` cycles per synapse word (throughput build: 2, one read and one write,
        the words streamed through the update's pipeline, whatever `cyc_synapse_rmw` the replay
        needs; area build: the word's sequence) plus the pipeline fill."""
        return self.cfg.cyc_update_word * self.cfg.n_synapses + self.cfg.cyc_sweep_latency

    def train_step(self, inputs, labels):
        """gradient + update of one minibatch. Returns (losses, FixedResult)."""
        losses, _, res = self.gradient(inputs, labels)
        self.update()
        return losses, res

    def clear_flags(self):
        self.flags = Flag(0)


# ---------------------------------------------------------------------------------------------
# Training with the on-chip arithmetic only


class JumpClampCounter:
    """Counts the jumps whose denominator I - theta was clamped to recip_min (RECIP_CLAMP, §5.3),
    from the replayed events of each backward pass: host-side diagnostics, not part of the core."""

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        self.jumps = 0
        self.clamped = 0
        self.neurons: dict[int, int] = {}

    def add(self, res: FixedResult):
        cfg = self.cfg
        lim = cfg.theta_i_raw + cfg.recip_min_raw
        n_hid = cfg.n_hidden
        for b in np.flatnonzero((res.active > 0) | (res.n_revived > 0)):
            n = res.rec_count[b]
            cur, nrn = res.rec_cur[b, :n], res.rec_neuron[b, :n]
            hit = nrn[cur < lim]
            self.jumps += n
            if res.active[b]:
                fired = res.first_step[b] < cfg.n_steps
                self.jumps += int(fired.sum())
                hit = np.concatenate([hit, n_hid + np.flatnonzero(fired & (res.first_cur[b] < lim))])
            self.clamped += hit.size
            for g in hit.tolist():
                self.neurons[g] = self.neurons.get(g, 0) + 1

    def summary(self) -> dict:
        n_hid = self.cfg.n_hidden
        out = {
            "recip_clamp_jumps": self.clamped,
            "recip_clamp_fraction": float(self.clamped / max(self.jumps, 1)),
            "recip_clamp_neurons": len(self.neurons),
            "recip_clamp_output_jumps": sum(c for g, c in self.neurons.items() if g >= n_hid),
        }
        self.jumps, self.clamped, self.neurons = 0, 0, {}
        return out


def weights_at_rails(core: FixedCore) -> dict:
    """Weights at the limits of their word (where W_SAT clamps, §6.4), and how many of them feed
    hidden neurons that are dead (silent for the whole last minibatch, §5.6)."""
    lo, hi = -(1 << (core.cfg.w_bits - 1)), (1 << (core.cfg.w_bits - 1)) - 1
    rails = [(w == lo) | (w == hi) for w in core.weights_raw]
    into_hidden = np.zeros(core.cfg.n_hidden, dtype=np.int64)
    off = 0
    for r in rails[:-1]:
        into_hidden[off : off + r.shape[0]] = r.sum(axis=1)
        off += r.shape[0]
    return {
        "w_at_rails": int(sum(r.sum() for r in rails)),
        "w_at_rails_dead_neurons": int(into_hidden[core.dead].sum()),
        "w_at_rails_neurons": int((into_hidden > 0).sum()) + int(rails[-1].any(axis=1).sum()),
    }


def evaluate_fixed(core: FixedCore, spikes: SpikeBatch | tuple, labels, batch: int | None = None,
                   progress: bool = False, desc: str = "eval"):
    """Accuracy, mean loss, mean spikes per sample and layer, mean forward cycles.

    `core`: a FixedCore or anything with its run/loss interface (the RTL: tb/core/rtl_core.py);
    `batch` samples per `run` (default 1000, or the core's ``samples_per_run``)."""
    from tqdm.auto import tqdm

    if not isinstance(spikes, SpikeBatch):  # (times_s, ids[, counts]) as run() takes them
        spikes = SpikeBatch(*spikes)
    correct = 0
    losses = []  # summed once at the end: the mean does not depend on `batch` to the last bit
    spikes_sum = np.zeros(core.cfg.n_layers)
    cyc = 0.0
    labels = np.asarray(labels)
    batch = batch or getattr(core, "samples_per_run", 1000)  # the RTL: a simulator run each
    bar = tqdm(total=spikes.batch_size, disable=not progress or spikes.batch_size <= batch, unit="sample",
               desc=desc, leave=False, dynamic_ncols=True)
    for s in range(0, spikes.batch_size, batch):
        part = spikes[s : s + batch]
        res = core.run(part)
        y = labels[s : s + batch]
        correct += int((res.predictions == y).sum())
        losses.append(core.loss(res, y))
        spikes_sum += res.layer_counts.sum(axis=0)
        cyc += float(res.cycles_forward.sum())
        bar.update(len(y))
    bar.close()
    n = spikes.batch_size
    loss_sum = float(np.concatenate(losses).sum()) if losses else 0.0
    return correct / n, loss_sum / n, (spikes_sum / n).tolist(), cyc / n


def evaluate_quantised(cfg: CoreConfig, net: Network, dataset, split: str = "test") -> float:
    """Accuracy of float-trained weights quantised into the core (round half up, saturate) and
    run in fixed-point inference on a split of the data set."""
    core = FixedCore.from_float(cfg, net)
    x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
    return evaluate_fixed(core, SpikeBatch(*dataset.encode(x)), y)[0]


def _init_weights(cfg: CoreConfig, init, rng) -> list:
    return [
        rng.normal(m, s, size=(n_out, n_in)) for (m, s), n_in, n_out in zip(init, cfg.sizes, cfg.sizes[1:])
    ]


def train_fixed(
    cfg: CoreConfig,
    dataset,
    epochs: int,
    seed: int = 0,
    progress: bool = True,
    init=((1.5, 0.78), (0.93, 0.1)),
    lr_decay: float = 0.95,
    n_train: int | None = None,
    eval_every: int = 1,
    core: FixedCore | None = None,
    return_core: bool = False,
    make_core=FixedCore,
    n_eval: int | None = None,
    epoch_state=None,
):
    """Train on a data set with the fixed-point core; returns a metrics dict (with the core).

    The host draws the initial weights (normal, ``init`` per matrix), quantises them into the
    core, then per minibatch hands the core input spikes and labels; forward, loss, backward and
    update run in the core model. Once per epoch it rewrites the learning-rate registers,
    lr_mant * lr_decay**epoch. ``n_train`` limits the training set (design-space sweeps).
    As in the float training, the reported test accuracy is that of the epoch with the best
    validation accuracy (the host keeps a copy of those weights); the last epoch's is reported too.
    The metrics are JSON-serialisable (final raw weights included); ``return_core=True`` returns
    (core, metrics).

    ``make_core`` builds the core from the initial float weights (``make_core.from_float``):
    FixedCore, or the RTL under Verilator (tb/core/rtl_core.py RtlCore), which trains
    ``make_core.minibatches_per_run`` minibatches per simulator run (its start-up is seconds) and
    gives the same metrics. ``n_eval`` limits the validation and test splits (short runs).

    ``epoch_state`` (sw/fixed_train.py EpochState) makes the run resumable: after every epoch it
    saves the core's state, the random generator and the history; a state it loads at the start
    (an interrupted run) replaces the initial core and epochs, so the run continues where it
    stopped and ends as the uninterrupted run would, bit for bit.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    if core is None:
        core = make_core.from_float(cfg, _init_weights(cfg, init, rng))
    per_run = getattr(core, "minibatches_per_run", 1)
    x_train, y_train = dataset.x_train, np.asarray(dataset.y_train)
    if n_train is not None:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    train_spikes = SpikeBatch(*dataset.encode(x_train))
    x_val, y_val = dataset.x_val[:n_eval], np.asarray(dataset.y_val)[:n_eval]
    x_test, y_test = dataset.x_test[:n_eval], np.asarray(dataset.y_test)[:n_eval]
    val_spikes = SpikeBatch(*dataset.encode(x_val))
    test_spikes = SpikeBatch(*dataset.encode(x_test))
    n = len(y_train)
    bs = cfg.batch_size
    lr0 = np.array(cfg.lr_mant, dtype=np.float64)
    history = []
    best_val, best_weights, best_epoch = -1.0, None, 0
    n_batches = math.ceil(n / bs)
    start_epoch = 0
    saved = None if epoch_state is None else epoch_state.load(core, rng)
    if saved is not None:
        history, best_val, best_epoch, best_weights = (saved[k] for k in ("history", "best_val", "best_epoch",
                                                                          "best_weights"))
        start_epoch = len(history)
        t0 -= saved["wall_s"]  # wall times go on from the interrupted run's
    bar = tqdm(
        initial=start_epoch * n_batches,
        total=epochs * n_batches,
        disable=not progress,
        unit="batch",
        desc=f"train {dataset.name} (fixed)",
        dynamic_ncols=True,
    )
    for epoch in range(start_epoch, epochs):
        core.lr_mant = np.floor(lr0 * lr_decay**epoch + 0.5).astype(np.int64)
        perm = rng.permutation(n)
        epoch_losses = []  # summed once per epoch, however many minibatches a run takes
        correct = 0
        cycles = 0
        g_max = 0
        clamp = JumpClampCounter(cfg)
        for s in range(0, n, bs * per_run):
            parts = [perm[p : p + bs] for p in range(s, min(s + bs * per_run, n), bs)]
            idx = np.concatenate(parts)
            if per_run == 1:
                losses, _, res = core.gradient(train_spikes[idx], y_train[idx])
                g_max = max(g_max, int(np.abs(core._G).max(initial=0)))
                core.update()
                cycles += core.update_cycles()
            else:  # several minibatches, each with its update, in one run (the RTL)
                losses, res = core.train_minibatches([(train_spikes[p], y_train[p]) for p in parts])
                g_max = max(g_max, int(np.abs(core.last_updates["g_before"]).max(initial=0)))
                cycles += int(core.last_updates["cyc_update"].sum())
            clamp.add(res)
            epoch_losses.append(losses)
            correct += int((res.predictions == y_train[idx]).sum())
            cycles += int(res.cycles.sum())
            bar.update(len(parts))
        loss_sum = float(np.concatenate(epoch_losses).sum())
        entry = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / n,
            "train_accuracy": correct / n,
            "lr_mant": core.lr_mant.tolist(),
            "cycles_per_sample": cycles / n,
            "flags": str(core.flags),
            "wall_s": time.perf_counter() - t0,
            # Headroom diagnostics (not part of the core): bits the accumulators needed.
            "grad_max_bits": g_max.bit_length() + 1,
            "mom_max_bits": int(np.abs(core._M).max(initial=0)).bit_length() + 1,
            # §4 of issue 15: how often RECIP_CLAMP and W_SAT happen, and to which neurons.
            **clamp.summary(),
            **weights_at_rails(core),
        }
        if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            val_acc, val_loss, val_spk, _ = evaluate_fixed(core, val_spikes, y_val, progress=progress,
                                                           desc="validation")
            entry.update({"val_loss": val_loss, "val_accuracy": val_acc, "spikes_per_sample": val_spk})
            bar.set_postfix(loss=f"{loss_sum / n:.3f}", val=f"{100 * val_acc:.1f}%")
            if val_acc > best_val:
                best_val, best_epoch = val_acc, epoch + 1
                best_weights = [w.copy() for w in core.weights_raw]
        history.append(entry)
        if epoch_state is not None:
            epoch_state.save(core, rng, history, best_val, best_epoch, best_weights, time.perf_counter() - t0)
    bar.close()
    # Headline: the core as training left it (the last epoch, the paper's protocol), as on chip.
    test_acc, test_loss, test_spk, test_cyc = evaluate_fixed(core, test_spikes, y_test, progress=progress,
                                                             desc="test")
    # Beside it, as the float training does: the host's copy of the best-validation epoch's
    # weights (selection on the validation split only), evaluated, then the core is restored.
    if best_epoch == epochs:  # the last epoch's weights: the same run again would give the same
        best_val_test_acc = test_acc
    else:
        last_weights = [w.copy() for w in core.weights_raw]
        core.set_weights_raw(best_weights)
        best_val_test_acc = evaluate_fixed(core, test_spikes, y_test, progress=progress, desc="test")[0]
        core.set_weights_raw(last_weights)
    metrics = {
        "model": "fixed",
        "dataset": getattr(dataset, "name", None),
        "config": cfg.to_dict(),
        "seed": seed,
        "init": [list(p) for p in init],
        "lr_decay": lr_decay,
        "epochs": history,
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "test_spikes_per_sample": test_spk,
        "test_forward_cycles_per_sample": test_cyc,
        "best_val_epoch": best_epoch,
        "best_val_accuracy": best_val,
        "best_val_test_accuracy": best_val_test_acc,
        "flags": str(core.flags),
        "wall_time_s": time.perf_counter() - t0,
        "weights_raw": [w.tolist() for w in core.weights_raw],
    }
    return (core, metrics) if return_core else metrics
