"""Host side of `evcore.hdl.core.Core`'s word port, shared by every driver of the core.

One sample is: clear the flags and the input buffer, push the input spikes, start, wait for the
end of busy, read back every exposed value (registers, record, first spikes, final state). The
coroutine `run_sample` does it through a `bus` object with three async methods, so the same
sequence drives the Amaranth simulator (tests/hdl) and cocotb on Verilator (tb/core):

    await bus.write(region, addr, data)
    await bus.start_and_wait()                 # returns after busy fell
    values = await bus.read_many([(region, addr), ...])
"""

from __future__ import annotations

import numpy as np

from evcore.golden.config import CoreConfig, Flag
from evcore.golden.core import FixedCore
from evcore.hdl.core import Reg, Region, first_layout, record_layout, state_layout, vmax_layout
from evcore.hdl.input_buffer import input_entry_layout

__all__ = ["REG_FIELDS", "encode_uncut", "run_sample"]

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


async def run_sample(bus, cfg: CoreConfig, steps, ids, count: int) -> dict:
    """Run one sample on the core; returns the raw values it exposes (ints and int arrays)."""
    entry = input_entry_layout(cfg)
    await bus.write(Region.REG, Reg.FLAGS.value, (1 << len(Flag)) - 1)
    await bus.write(Region.REG, Reg.IN_COUNT.value, 0)
    for n in range(count):
        await bus.write(Region.INPUT, 0, entry.const({"step": int(steps[n]), "id": int(ids[n])}).as_bits())
    await bus.start_and_wait()
    layers = [(f"layer_count{l}", Reg.LAYER_COUNT.value + l) for l in range(cfg.n_layers)]
    fields = [(k, r.value) for k, r in REG_FIELDS] + layers
    values = await bus.read_many([(Region.REG, a) for _, a in fields])
    out = {k: int(v) for (k, _), v in zip(fields, values)}
    rec_l, first_l, state_l = record_layout(cfg), first_layout(cfg), state_layout(cfg)
    rec_addrs = [(Region.RECORD, a) for a in range(out["rec_count"])]
    rec = [rec_l.from_bits(v) for v in await bus.read_many(rec_addrs)]
    n_out = cfg.sizes[-1]
    first = [first_l.from_bits(v) for v in await bus.read_many([(Region.FIRST, a) for a in range(n_out)])]
    n_neur = sum(cfg.sizes[1:])
    state = [state_l.from_bits(v) for v in await bus.read_many([(Region.STATE, a) for a in range(n_neur)])]
    out["rec_step"] = np.array([e.step for e in rec], dtype=np.int64)
    out["rec_neuron"] = np.array([e.nrn for e in rec], dtype=np.int64)
    out["rec_cur"] = np.array([e.cur for e in rec], dtype=np.int64)
    out["first_step"] = np.array([e.step for e in first], dtype=np.int64)
    out["first_cur"] = np.array([e.cur for e in first], dtype=np.int64)
    out["first_v"] = np.array([e.v for e in first], dtype=np.int64)
    out["final_v"] = np.array([e.v for e in state], dtype=np.int64)
    out["final_cur"] = np.array([e.cur for e in state], dtype=np.int64)
    out["layer_counts"] = np.array([out.pop(k) for k, _ in layers], dtype=np.int64)
    if cfg.revive_hidden > 0:  # the vmax memory exists (§3.6)
        vl = vmax_layout(cfg)
        vm = [vl.from_bits(v) for v in await bus.read_many([(Region.VMAX, a) for a in range(cfg.n_hidden)])]
        out["vmax"] = np.array([e.vmax for e in vm], dtype=np.int64)
        out["vmax_step"] = np.array([e.vstep for e in vm], dtype=np.int64)
    return out


def first_mismatch(cfg: CoreConfig, golden, b: int, rtl: dict, *, phase_cycles=None) -> str | None:
    """The first exposed value of sample `b` where `rtl` (a `run_sample` dict) differs from the
    golden `FixedResult`, as one line naming it; None if every value is equal.

    `phase_cycles` = (sweep, fanout) cycles of §7 for this sample (golden.core.forward_phase_cycles);
    the total must also equal golden's ``cycles_forward``.
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
    for gi in range(offs[-1]):
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
