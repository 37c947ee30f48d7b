"""Host side of `evcore.hdl.core.Core`'s word port, shared by every driver of the core.

One sample is: clear the flags and the input buffer, push the input spikes, start, wait for the
end of busy, read back every exposed value (registers, record, first spikes, final state). The
coroutine `run_sample` does it through a `bus` object with three async methods, so the same
sequence drives the Amaranth simulator (tests/hdl) and cocotb on Verilator (tb/core):

    await bus.write(region, addr, data)
    await bus.start_and_wait(train=False)      # returns after busy fell
    values = await bus.read_many([(region, addr), ...])

A training sample (`run_sample` with a label) also reads the loss unit's results and the backward
pass's registers; the final state is then (Λ_V, Λ_I) if the backward pass ran. `read_synapses`
reads every synapse word (weight, gradient, moment).
"""

from __future__ import annotations

import numpy as np

from evcore.golden.config import CoreConfig, Flag, Optimizer
from evcore.golden.core import FixedCore
from evcore.hdl.core import (
    Reg,
    Region,
    first_layout,
    lam_layout,
    loss_layout,
    record_layout,
    state_layout,
    synapse_layout,
    vmax_layout,
)
from evcore.hdl.input_buffer import input_entry_layout

__all__ = ["REG_FIELDS", "TRAIN_REG_FIELDS", "encode_uncut", "run_sample", "run_update", "read_synapses",
           "read_silent",
           "first_mismatch",
           "first_train_mismatch", "first_synapse_mismatch", "backward_ran"]

#: Registers read after every sample, as (result key, register).
REG_FIELDS = (
    ("flags", Reg.FLAGS),
    ("n_end", Reg.N_END),
    ("rec_count", Reg.REC_COUNT),
    ("cyc_total", Reg.CYC_TOTAL),
    ("cyc_sweep", Reg.CYC_SWEEP),
    ("cyc_fanout", Reg.CYC_FANOUT),
    ("n_inputs", Reg.N_INPUTS),
    ("in_count", Reg.IN_COUNT),
)
#: Registers read after a training sample, as (result key, register).
TRAIN_REG_FIELDS = (
    ("active", Reg.ACTIVE),
    ("n_jumps", Reg.N_JUMPS),
    ("n_revived", Reg.N_REVIVED),
    ("cyc_loss", Reg.CYC_LOSS),
    ("cyc_backward", Reg.CYC_BACKWARD),
)


def encode_uncut(cfg: CoreConfig, inputs):
    """§3.1 host side without the capacity cut (the RTL's input buffer cuts and raises IN_OVF).

    Returns (steps, ids, counts) as `FixedCore.encode_inputs` would with unlimited capacity.
    """
    probe = FixedCore(cfg)
    steps, ids, counts, _ = probe.encode_inputs(inputs)
    if counts.max(initial=0) < cfg.input_capacity:
        return steps, ids, counts
    wide = FixedCore(cfg.replace(input_capacity=max(cfg.input_capacity, steps.shape[1] + 1) * 64))
    steps, ids, counts, _ = wide.encode_inputs(inputs)
    return steps, ids, counts


async def run_sample(bus, cfg: CoreConfig, steps, ids, count: int, label: int | None = None,
                     read_state: bool = True) -> dict:
    """Run one sample on the core (a training sample if `label` is given); returns the raw values
    it exposes (ints and int arrays). `read_state` = False leaves out the final state (V, I or Λ)
    and the vmax memory (most of the words, for a driver on a slow link: sw/driver.py)."""
    entry = input_entry_layout(cfg)
    train = label is not None
    await bus.write(Region.REG, Reg.FLAGS.value, (1 << len(Flag)) - 1)
    await bus.write(Region.REG, Reg.IN_COUNT.value, 0)
    if train:
        await bus.write(Region.REG, Reg.LABEL.value, int(label))
    for n in range(count):
        await bus.write(Region.INPUT, 0, entry.const({"step": int(steps[n]), "id": int(ids[n])}).as_bits())
    await bus.start_and_wait(train=train)
    layers = [(f"layer_count{l}", Reg.LAYER_COUNT.value + l) for l in range(cfg.n_layers)]
    fields = [(k, r.value) for k, r in REG_FIELDS + (TRAIN_REG_FIELDS if train else ())] + layers
    values = await bus.read_many([(Region.REG, a) for _, a in fields])
    out = {k: int(v) for (k, _), v in zip(fields, values)}
    rec_l, first_l, state_l = record_layout(cfg), first_layout(cfg), state_layout(cfg)
    rec_addrs = [(Region.RECORD, a) for a in range(out["rec_count"])]
    rec = [rec_l.from_bits(v) for v in await bus.read_many(rec_addrs)]
    n_out = cfg.sizes[-1]
    first = [first_l.from_bits(v) for v in await bus.read_many([(Region.FIRST, a) for a in range(n_out)])]
    n_neur = sum(cfg.sizes[1:])
    state_raw = await bus.read_many([(Region.STATE, a) for a in range(n_neur if read_state else 0)])
    state = [state_l.from_bits(v & ((1 << state_l.size) - 1)) for v in state_raw]
    out["rec_step"] = np.array([e.step for e in rec], dtype=np.int64)
    out["rec_neuron"] = np.array([e.nrn for e in rec], dtype=np.int64)
    out["rec_cur"] = np.array([e.cur for e in rec], dtype=np.int64)
    out["first_step"] = np.array([e.step for e in first], dtype=np.int64)
    out["first_cur"] = np.array([e.cur for e in first], dtype=np.int64)
    out["first_v"] = np.array([e.v for e in first], dtype=np.int64)
    out["layer_counts"] = np.array([out.pop(k) for k, _ in layers], dtype=np.int64)
    if read_state:
        out["final_v"] = np.array([e.v for e in state], dtype=np.int64)
        out["final_cur"] = np.array([e.cur for e in state], dtype=np.int64)
    if cfg.revive_hidden > 0 and read_state:  # the vmax memory exists (§3.6)
        vl = vmax_layout(cfg)
        vm = [vl.from_bits(v) for v in await bus.read_many([(Region.VMAX, a) for a in range(cfg.n_hidden)])]
        out["vmax"] = np.array([e.vmax for e in vm], dtype=np.int64)
        out["vmax_step"] = np.array([e.vstep for e in vm], dtype=np.int64)
        out["spiked_hidden"] = np.array([e.spiked for e in vm], dtype=np.int64)
        out["dead"] = np.array([e.dead for e in vm], dtype=np.int64)
        out["fired_hidden"] = np.array([e.fired for e in vm], dtype=np.int64)
    if train:
        out["silent"] = np.array(await read_silent(bus, cfg), dtype=np.int64)
        ll = loss_layout(cfg)
        lw = [ll.from_bits(v) for v in await bus.read_many([(Region.LOSS, a) for a in range(n_out)])]
        out["prob"] = np.array([e.prob for e in lw], dtype=np.int64)
        out["lterm"] = np.array([e.lterm for e in lw], dtype=np.int64)
    if train and read_state:
        lam = [lam_layout(cfg).from_bits(v & ((1 << lam_layout(cfg).size) - 1)) for v in state_raw]
        out["final_lam_v"] = np.array([e.lam_v for e in lam], dtype=np.int64)
        out["final_lam_i"] = np.array([e.lam_i for e in lam], dtype=np.int64)
    return out


async def run_update(bus, cfg: CoreConfig, lr_mant=None, read_back: bool = True) -> dict:
    """The update (§6) at the end of a minibatch, with learning-rate mantissas `lr_mant` (default:
    leave the registers as they are); returns its cycles, the flags it raised, the LFSR state and
    (unless `read_back` is False) every synapse word (w, g, m) and, for Adam, v̂ afterwards, and the
    loss-shaping counters before it (``silent``, §6.5)."""
    await bus.write(Region.REG, Reg.FLAGS.value, (1 << len(Flag)) - 1)
    silent = await read_silent(bus, cfg)  # what the update's loss shaping decides from (§6.5)
    if lr_mant is not None:
        for mat, mant in enumerate(lr_mant):
            await bus.write(Region.REG, Reg.LR_MANT.value + mat, int(mant))
    await bus.start_and_wait(update=True)
    regs = (Reg.CYC_UPDATE, Reg.FLAGS, Reg.LFSR)
    cyc, flags, lfsr = await bus.read_many([(Region.REG, r.value) for r in regs])
    out = {"cyc_update": int(cyc), "flags": int(flags), "lfsr": int(lfsr),
           "silent": np.array(silent, dtype=np.int64)}
    if not read_back:
        return out
    out |= await read_synapses(bus, cfg)
    if cfg.revive_hidden > 0:
        vl = vmax_layout(cfg)
        raw = await bus.read_many([(Region.VMAX, h) for h in range(cfg.n_hidden)])
        words = [vl.from_bits(v) for v in raw]
        out["dead"] = np.array([w.dead for w in words], dtype=bool)
        out["fired"] = np.array([w.fired for w in words], dtype=bool)
    if cfg.optimizer is Optimizer.ADAM:
        out["v"] = np.array(await bus.read_many([(Region.ADAM_V, a) for a in range(cfg.n_synapses)]),
                            dtype=np.int64)
    return out


async def read_silent(bus, cfg: CoreConfig) -> list:
    """The loss-shaping counters SILENT + l of every layer (§6.5; 0 for a layer not shaped)."""
    addrs = [(Region.REG, Reg.SILENT.value + l) for l in range(cfg.n_layers)]
    return [int(v) for v in await bus.read_many(addrs)]


async def read_synapses(bus, cfg: CoreConfig) -> dict:
    """Every synapse word, as flat arrays in memory order: w, g and (if the config has it) m."""
    layout = synapse_layout(cfg)
    words = await bus.read_many([(Region.SYNAPSE, a) for a in range(cfg.n_synapses)])
    views = [layout.from_bits(v) for v in words]
    out = {"w": np.array([v.w for v in views], dtype=np.int64),
           "g": np.array([v.g for v in views], dtype=np.int64)}
    if cfg.has_momentum:
        out["m"] = np.array([v.m for v in views], dtype=np.int64)
    return out


def first_mismatch(cfg: CoreConfig, golden, b: int, rtl: dict, *, phase_cycles=None,
                   check_state: bool = True) -> str | None:
    """The first exposed value of sample `b` where `rtl` (a `run_sample` dict) differs from the
    golden `FixedResult`, as one line naming it; None if every value is equal.

    `phase_cycles` = (sweep, fanout) cycles of §7 for this sample (golden.core.forward_phase_cycles);
    the total must also equal golden's ``cycles_forward``. `check_state` = False skips the final
    (V, I) (after a backward pass the state memory holds Λ).
    """
    g = golden
    n_rec = int(g.rec_count[b])
    scalars = [
        ("n_end", int(g.n_end[b]), rtl["n_end"]),
        ("flags", Flag(int(g.flags[b])).name, Flag(rtl["flags"]).name),
        ("rec_count", n_rec, rtl["rec_count"]),
        ("in_count", int(g.in_count[b]), rtl["in_count"]),
    ]
    for name, want, got in scalars:
        if want != got:
            return f"{name}: golden {want} rtl {got}"
    # Record entries in production order: (step, layer, neuron) name where the first one differs.
    offs = np.cumsum([0, *cfg.sizes[1:]])
    for e in range(n_rec):
        for field in ("rec_step", "rec_neuron", "rec_cur"):
            want, got = int(getattr(g, field)[b, e]), int(rtl[field][e])
            if want != got:
                nrn = int(g.rec_neuron[b, e])
                layer = int(np.searchsorted(offs, nrn, side="right"))
                return (
                    f"record entry {e} (golden step {int(g.rec_step[b, e])}, layer {layer}, "
                    f"neuron {nrn - offs[layer - 1]}) field {field}: golden {want} rtl {got}"
                )
    for j in range(cfg.sizes[-1]):
        for field in ("first_step", "first_cur", "first_v"):
            want, got = int(getattr(g, field)[b, j]), int(rtl[field][j])
            if want != got:
                return f"output {j} {field}: golden {want} rtl {got}"
    for gi in range(offs[-1] if check_state else 0):
        layer = int(np.searchsorted(offs, gi, side="right"))
        for field in ("final_v", "final_cur"):
            want, got = int(getattr(g, field)[b, gi]), int(rtl[field][gi])
            if want != got:
                where = f"layer {layer} neuron {gi - offs[layer - 1]}"
                return f"final state {where} {field}: golden {want} rtl {got}"
    for l in range(cfg.n_layers):
        want, got = int(g.layer_counts[b, l]), int(rtl["layer_counts"][l])
        if want != got:
            return f"spikes of layer {l + 1}: golden {want} rtl {got}"
    if "vmax" in rtl:
        for h in range(cfg.n_hidden):
            for field in ("vmax", "vmax_step"):
                want, got = int(getattr(g, field)[b, h]), int(rtl[field][h])
                if want != got:
                    layer = int(np.searchsorted(offs, h, side="right"))
                    return f"{field} of layer {layer} neuron {h - offs[layer - 1]}: golden {want} rtl {got}"
    n_inputs = int((g.in_step[b, : g.in_count[b]] <= g.n_end[b]).sum())
    if n_inputs != rtl["n_inputs"]:
        return f"input spikes fanned: golden {n_inputs} rtl {rtl['n_inputs']}"
    if int(g.cycles_forward[b]) != rtl["cyc_total"]:
        return f"forward cycles: model {int(g.cycles_forward[b])} rtl {rtl['cyc_total']}"
    if phase_cycles is not None:
        for name, want, got in zip(("sweep", "fan-out"), phase_cycles, (rtl["cyc_sweep"], rtl["cyc_fanout"])):
            if int(want) != got:
                return f"{name} cycles: model {int(want)} rtl {got}"
    return None


def backward_ran(golden, b: int) -> bool:
    """Whether sample b's backward pass runs (§4.1, §5.6): not masked, or with an injection."""
    return bool(golden.active[b] > 0 or (golden.n_revived is not None and golden.n_revived[b] > 0))


def first_train_mismatch(cfg: CoreConfig, golden, b: int, rtl: dict, *, last: bool) -> str | None:
    """Like `first_mismatch` for what a training sample adds: loss unit results, backward registers
    and cycle counts and, for the batch's `last` sample (golden keeps only its final Λ), the final
    state: (Λ_V, Λ_I) if the backward pass ran, else the forward's (V, I)."""
    scalars = [
        ("active (§4.1)", int(golden.active[b]), rtl["active"]),
        ("output jumps", int(golden.n_jumps[b]), rtl["n_jumps"]),
        ("revival injections", int(golden.n_revived[b]), rtl["n_revived"]),
    ]
    for name, want, got in scalars:
        if want != got:
            return f"{name}: golden {want} rtl {got}"
    for k in range(cfg.sizes[-1]):
        for field in ("prob", "lterm"):
            want, got = int(getattr(golden, field)[b, k]), int(rtl[field][k])
            if want != got:
                return f"loss unit output {k} {field}: golden {want} rtl {got}"
    if last:
        offs = np.cumsum([0, *cfg.sizes[1:]])
        pairs = (("final_lam_v", "final_lam_v"), ("final_lam_i", "final_lam_i")) if backward_ran(golden, b) \
            else (("final_v", "final_v"), ("final_cur", "final_cur"))
        for gi in range(offs[-1]):
            layer = int(np.searchsorted(offs, gi, side="right"))
            for gf, rf in pairs:
                ref = getattr(golden, gf)
                want = int(ref[gi] if ref.ndim == 1 else ref[b, gi])
                got = int(rtl[rf][gi])
                if want != got:
                    where = f"layer {layer} neuron {gi - offs[layer - 1]}"
                    return f"final {gf} of {where}: golden {want} rtl {got}"
    for name, want, got in (("loss cycles", golden.cycles_loss[b], rtl["cyc_loss"]),
                            ("backward cycles", golden.cycles_backward[b], rtl["cyc_backward"])):
        if int(want) != got:
            return f"{name}: model {int(want)} rtl {got}"
    return None


def first_synapse_mismatch(cfg: CoreConfig, want: dict, got: dict) -> str | None:
    """The first synapse field (w, g, m) that differs, named by matrix, row (target) and column
    (source); `want`/`got` hold flat arrays in memory order."""
    offs = np.cumsum([0] + [a * b for a, b in zip(cfg.sizes, cfg.sizes[1:])])
    for field in want:
        diff = np.flatnonzero(np.asarray(want[field]) != np.asarray(got[field]))
        if diff.size:
            a = int(diff[0])
            mat = int(np.searchsorted(offs, a, side="right")) - 1
            row, col = divmod(a - int(offs[mat]), cfg.sizes[mat])
            return (f"synapse {a} (matrix {mat}, target {row}, source {col}) field {field}: "
                    f"golden {int(want[field][a])} rtl {int(got[field][a])} ({diff.size} differ)")
    return None
