"""`RtlCore(cfg)`: the Verilated RTL core behind `FixedCore`'s interface (what exists so far).

    core = FixedCore(cfg, weights_raw)       # golden model
    core = RtlCore(cfg, weights_raw)         # the RTL under Verilator: same calls, same FixedResult

`set_weights_raw`, `run(inputs)` and `gradient(inputs, labels)` behave as `FixedCore`'s; they
return a `FixedResult` whose raw fields were all read from the RTL through its host port (spike
record, first-spike registers, final V and I or Λ, n_end, spikes per layer, flags, the loss unit's
probabilities and terms, the gradient accumulators) and whose ``cycles_forward``,
``cycles_loss`` and ``cycles_backward`` are the RTL's measured cycle counts
(``cycles_sweep``/``cycles_fanout`` per phase are attached as extra attributes). The per-neuron
spike bits ``spiked`` of hidden neurons are the RTL's own with the vmax memory (revive_hidden > 0),
else derived from the record (exact unless it overflowed). The chip's state between calls
(weights, gradient and moment words, the §5.6 dead and fired bits, the §6.5 loss-shaping
counters) is kept here and loaded into each simulator run.

The Verilator model is built once per configuration in ``sim_build/rtlcore-<config id>`` (ccache
makes a fresh build dir cheap) and each `run` is one simulator process: the weights and all
samples go in as one job file, so its start-up (about 2 s) is paid once per batch. Needs the dev
install (pytest, cocotb, Verilator).
"""

from __future__ import annotations

import fcntl
import json
import os
import time

import numpy as np

from evcore.golden.config import CoreConfig, Flag, Optimizer
from evcore.golden.core import FixedCore, FixedResult
from evcore.hdl.core import Core, check_buildable, config_id, synapse_layout
from evcore.tb.core.cocotb_core import OP_INFER, OP_TRAIN, OP_UPDATE
from evcore.tb.core.host import encode_uncut
from evcore.tb.harness import build_dir_for, run_cocotb
from evcore.toolenv import setup_tool_environment

__all__ = ["RtlCore"]


class RtlCore:
    """The RTL forward core (`evcore.hdl.core.Core`) on Verilator with `FixedCore`'s run interface."""

    #: How many minibatches `golden.core.train_fixed` hands to one `train_minibatches` run, and
    #: how many samples `evaluate_fixed` to one `run`: a simulator start-up costs about 5 s, a
    #: minibatch of 32 about 7-10 s of simulation, an inference sample about 0.1 s (up5k).
    minibatches_per_run = 16
    samples_per_run = 250
    #: Compiler optimisation of the model's C++ (make variables; see `_execute`).
    make_opt = "OPT_FAST=-O2"

    def __init__(self, cfg: CoreConfig, weights_raw=None):
        check_buildable(cfg)  # a one-line ValueError before any build
        setup_tool_environment()  # Verilator on PATH, ccache, as under pytest's conftest
        self.cfg = cfg
        self._golden = FixedCore(cfg)  # holds and validates the weights, encodes the inputs
        self._G = np.zeros(cfg.n_synapses, dtype=np.int64)
        self._M = np.zeros(cfg.n_synapses, dtype=np.int64)
        self._V = np.zeros(cfg.n_synapses, dtype=np.int64)  # Adam's v̂, packed (§6.1)
        self.dead = np.zeros(cfg.n_hidden, dtype=bool)
        self.fired = np.zeros(cfg.n_hidden, dtype=bool)
        self.lfsr_state = cfg.lfsr_seed
        #: §6.5: the loss-shaping counters (registers SILENT + l), as golden's ``FixedCore._silent``.
        self._silent = np.zeros(cfg.n_layers, dtype=np.int64)
        #: The learning-rate register (§6.4), written to the core before each run.
        self.lr_mant = np.array(cfg.lr_mant, dtype=np.int64)
        self.flags = Flag(0)
        self.last_run: dict = {}
        #: Over all simulator runs of this object: runs, simulated cycles (samples and updates),
        #: wall seconds of the whole runs (start-up included) and of the simulation loop inside.
        self.totals = {"runs": 0, "cycles": 0, "wall_s": 0.0, "sim_wall_s": 0.0}
        if weights_raw is not None:
            self.set_weights_raw(weights_raw)

    @property
    def weights_raw(self) -> list:
        return self._golden.weights_raw

    def set_weights_raw(self, weights_raw):
        self._golden.set_weights_raw(weights_raw)

    @classmethod
    def from_float(cls, cfg: CoreConfig, net_or_weights) -> RtlCore:
        return cls(cfg, FixedCore.from_float(cfg, net_or_weights).weights_raw)

    def encode_inputs(self, inputs):
        return self._golden.encode_inputs(inputs)

    def loss(self, result: FixedResult, labels, loss_fn=None) -> np.ndarray:
        """`FixedCore.loss`: the host-side TTFS loss of the RTL's first-spike times."""
        return self._golden.loss(result, labels, loss_fn)

    @property
    def grads_raw(self) -> list:
        return self._views(self._G)

    @property
    def momentum_raw(self) -> list:
        return self._views(self._M)

    @property
    def second_moment_raw(self) -> list:
        return self._views(self._V)

    def _views(self, flat) -> list:
        """Per-matrix copies (callers keep them across runs, which rewrite the flat state)."""
        return [v.copy() for v in self._golden._views(flat)]

    def _synapse_words(self) -> np.ndarray:
        layout = synapse_layout(self.cfg)
        w = np.concatenate([m.ravel() for m in self.weights_raw]).astype(np.int64)
        fields = {"w": w, "g": self._G} | ({"m": self._M} if self.cfg.has_momentum else {})
        words = np.zeros(len(w), dtype=object)
        for name, values in fields.items():
            f = layout[name]
            mask = (1 << f.width) - 1
            words = words + ((values.astype(object) & mask) << f.offset)
        # As little-endian bytes, one row per word: a word can be wider than 64 bits (ecp5-85f: 74).
        n_bytes = (layout.size + 7) // 8
        return np.array([list(int(x).to_bytes(n_bytes, "little")) for x in words], dtype=np.uint8)

    def run(self, inputs) -> FixedResult:
        """Forward pass of a batch on the RTL (one sample after the other, as the core runs)."""
        n_b = len(self._golden.encode_inputs(inputs)[2])
        return self._execute(inputs, [(OP_INFER, b) for b in range(n_b)], None)

    def gradient(self, inputs, labels, loss_fn=None):
        """`FixedCore.gradient` on the RTL: forward, loss unit and backward of each sample from
        cleared accumulators. Returns (losses, dL/dW of the batch-mean loss per matrix, FixedResult)."""
        self._golden._check_loss(loss_fn)
        cfg = self.cfg
        labels = self._check_labels(inputs, labels)
        n_b = len(labels)
        self._G[:] = 0
        self._silent[:] = 0  # as golden: one minibatch, counted from cleared counters
        res = self._execute(inputs, [(OP_TRAIN, b) for b in range(n_b)], labels)
        scale = cfg.grad_scale() / max(n_b, 1)
        grads = [g * scale for g in res.grads_raw]
        return self._golden.loss(res, labels), grads, res

    def _check_labels(self, inputs, labels) -> np.ndarray:
        labels = np.asarray(labels)
        self._golden.check_labels(labels, len(self._golden.encode_inputs(inputs)[2]))
        return labels

    def update(self) -> Flag:
        """The on-chip update (§6) from the gradient words; clears them. Returns the flags it raised."""
        empty = (np.zeros((0, 1)), np.zeros((0, 1), dtype=np.int64), np.zeros(0, dtype=np.int64))
        self._execute(empty, [(OP_UPDATE, 0)], None)
        return Flag(int(self.last_updates["flags"][0]))

    def train_step(self, inputs, labels):
        """`FixedCore.train_step` on the RTL: gradient and update of one minibatch, one simulator run.
        Returns (losses, FixedResult); the result's ``grads_raw`` are the gradients the update used."""
        return self.train_minibatches([(inputs, labels)])

    def train_minibatches(self, batches):
        """Train on each (inputs, labels) minibatch in turn, each followed by the update, all in one
        simulator run. Returns (losses, FixedResult) over all samples in order (``grads_raw``: the
        last minibatch's gradients before its update); the state before and after each update
        (g_before, w, g, m, v, lfsr, flags, cyc_update, dead, fired; silent: the §6.5 counters
        before it) is in `last_updates`, arrays over the updates."""
        batches = [(inputs, self._check_labels(inputs, labels)) for inputs, labels in batches]
        if not batches:
            raise ValueError("train_minibatches needs at least one (inputs, labels) minibatch")
        # Inputs as (times, ids, counts) arrays, whether given so or as a SpikeBatch.
        batches = [((x.times_s, x.ids, x.counts) if hasattr(x, "times_s") else x, lab) for x, lab in batches]
        width = max(np.asarray(x[0]).shape[1] for x, _ in batches)
        def padded(a, fill):
            a = np.asarray(a)
            return np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill)

        times = np.concatenate([padded(np.asarray(x[0], dtype=np.float64), np.inf) for x, _ in batches])
        ids = np.concatenate([padded(x[1], 0) for x, _ in batches])
        counts = np.concatenate([np.asarray(x[2]) for x, _ in batches])
        labels = np.concatenate([lab for _, lab in batches])
        ops, b = [], 0
        for _, lab in batches:
            ops += [(OP_TRAIN, b + k) for k in range(len(lab))] + [(OP_UPDATE, 0)]
            b += len(lab)
        self._G[:] = 0
        self._silent[:] = 0
        res = self._execute((times, ids, counts), ops, labels)
        res.grads_raw = self._views(self.last_updates["g_before"][-1])
        return self._golden.loss(res, labels), res

    def _execute(self, inputs, ops, labels) -> FixedResult:
        cfg = self.cfg
        steps, ids, counts, _ = self._golden.encode_inputs(inputs)
        all_steps, all_ids, all_counts = encode_uncut(cfg, inputs)  # the RTL cuts at capacity
        node = self._node_name()
        build_dir = build_dir_for(node)
        build_dir.mkdir(parents=True, exist_ok=True)
        with open(build_dir / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers with the same config share the model
            job, results = build_dir / "job.npz", build_dir / "results.npz"
            job_labels = np.zeros(len(counts), dtype=np.int64) if labels is None else labels.astype(np.int64)
            extra = {"dead": self.dead.astype(np.int64), "fired": self.fired.astype(np.int64)} \
                if cfg.revive_hidden > 0 else {}
            if cfg.optimizer is Optimizer.ADAM:
                extra["v"] = self._V
            np.savez(job, synapse_words=self._synapse_words(), steps=all_steps, ids=all_ids,
                     counts=all_counts, ops=np.array(ops, dtype=np.int64).reshape(-1, 2),
                     labels=job_labels, lfsr=np.int64(self.lfsr_state), lr_mant=self.lr_mant,
                     silent=self._silent, **extra)
            results.unlink(missing_ok=True)
            # -O2 for the model's hot code: measured 0.41 against 0.31 M simulated cycles/s (up5k)
            # for a 5 s longer cold build. Scoped to this build, so other models keep their cache.
            makeflags = os.environ.get("MAKEFLAGS", "")
            os.environ["MAKEFLAGS"] = f"{makeflags} {self.make_opt}".strip()
            t0 = time.perf_counter()
            try:
                self._run_cocotb(job, results, node)
            finally:
                os.environ["MAKEFLAGS"] = makeflags
            raw = dict(np.load(results))
        cycles = sum(int(raw[k].sum()) for k in ("cyc_total", "cyc_loss", "cyc_backward", "upd_cyc_update")
                     if k in raw)
        self.totals["runs"] += 1
        self.totals["cycles"] += cycles
        self.totals["wall_s"] += time.perf_counter() - t0
        self.totals["sim_wall_s"] += float(raw["total_wall_s"])
        self._G = raw["end_g"].astype(np.int64)
        if cfg.has_momentum:
            self._M = raw["end_m"].astype(np.int64)
        if "end_v" in raw:
            self._V = raw["end_v"].astype(np.int64)
        self.lfsr_state = int(raw["end_lfsr"])
        self._silent = raw["end_silent"].astype(np.int64)
        self._golden.set_weights_raw(self._views(raw["end_w"].astype(np.int64)))
        self.last_updates = {k[4:]: raw[k] for k in raw if k.startswith("upd_")}
        for f in self.last_updates.get("flags", ()):
            self.flags |= Flag(int(f))
        if not len(counts):
            return None
        if "end_dead" in raw:
            self.dead, self.fired = raw["end_dead"] > 0, raw["end_fired"] > 0
        return self._result(raw, steps, ids, counts, train=labels is not None)

    def _node_name(self) -> str:
        """The build dir's name: one simulator model per configuration (and kind, in subclasses)."""
        return f"rtlcore-{config_id(self.cfg):08x}"

    def _run_cocotb(self, job, results, node):
        cfg = self.cfg
        run_cocotb(
            Core(cfg),
            toplevel="evcore_core",
            test_module="evcore.tb.core.cocotb_core",
            config={"cfg": json.loads(cfg.to_json()), "job": str(job), "results": str(results)},
            node_id=node,
            # Amaranth writes a `casez` without default for a Switch that leaves some values
            # of an enum (Phase has 5 of 8) or an address out: those cases hold by design.
            # A one-output core has zero-width index signals, which Verilog writes as [-1:0].
            build_args=["-Wno-CASEINCOMPLETE", "-Wno-ASCRANGE"],
            extra_env={"COCOTB_TRUST_INERTIAL_WRITES": "1"},
            fast=True,  # cocotb_core drives and reads the ports only
        )

    def _result(self, raw, steps, ids, counts, train=False) -> FixedResult:
        cfg = self.cfg
        n_b = len(counts)
        n_neur = sum(cfg.sizes[1:])
        spiked = np.zeros((n_b, n_neur), dtype=np.int64)
        for b in range(n_b):
            if "spiked_hidden" in raw:
                spiked[b, : cfg.n_hidden] = raw["spiked_hidden"][b]
            else:
                spiked[b, raw["rec_neuron"][b, : raw["rec_count"][b]]] = 1
            fired = raw["first_step"][b] < cfg.n_steps
            spiked[b, n_neur - cfg.sizes[-1] :] = fired
        res = FixedResult(
            cfg, steps, ids, counts,
            raw["rec_step"], raw["rec_neuron"], raw["rec_cur"], raw["rec_count"],
            raw["first_step"], raw["first_cur"], raw["first_v"],
            raw["final_v"], raw["final_cur"], raw["n_end"], spiked, raw["layer_counts"],
            raw["flags"], raw["cyc_total"],
        )  # fmt: skip
        if "vmax" in raw:  # built only with revive_hidden > 0 (§3.6)
            res.vmax, res.vmax_step = raw["vmax"], raw["vmax_step"]
        else:
            res.vmax = res.vmax_step = None
        if train:
            res.prob, res.lterm, res.active = raw["prob"], raw["lterm"], raw["active"]
            res.n_jumps, res.n_revived = raw["n_jumps"], raw["n_revived"]
            res.cycles_loss, res.cycles_backward = raw["cyc_loss"], raw["cyc_backward"]
            last = n_b - 1
            ran = n_b and (raw["active"][last] > 0 or raw["n_revived"][last] > 0)
            res.final_lam_v = raw["final_lam_v"][last] if ran else np.zeros(n_neur, dtype=np.int64)
            res.final_lam_i = raw["final_lam_i"][last] if ran else np.zeros(n_neur, dtype=np.int64)
            res.grads_raw = self.grads_raw
        res.cycles_sweep = raw["cyc_sweep"]
        res.cycles_fanout = raw["cyc_fanout"]
        res.n_inputs = raw["n_inputs"]
        res.layers = self._golden._spike_batches(res)
        self.flags |= Flag(int(np.bitwise_or.reduce(raw["flags"], initial=0)))
        self.last_run = {k: float(raw[k]) for k in ("run_wall_s", "total_wall_s", "load_wall_s")}
        self.last_run["cycles"] = int(raw["cyc_total"].sum())
        if train:
            self.last_run["cycles"] += int(raw["cyc_loss"].sum() + raw["cyc_backward"].sum())
        return res

    def clear_flags(self):
        self.flags = Flag(0)
