"""cocotb side of `evcore.tb.core.rtl_core.RtlCore`: run a job file of samples on the Verilated core.

The job (``.npz``, written by `RtlCore`) holds the chip's state (synapse words, the §5.6 dead and
fired bits), each sample's input spikes and label, and a list of operations: infer sample b, train
on sample b, or update. This coroutine loads the state, runs the operations with
`evcore.tb.core.host.run_sample` (clear, push inputs, start, wait for the end of busy, read back
everything), reads the state back at the end and stores the raw results in the results ``.npz``.
Python is out of the loop while the core runs: the clock is cocotb's C++ (GPI) clock and the
coroutine sleeps on the falling edge of ``busy``. Inputs are driven and outputs sampled on
falling clock edges, so every value is stable.
"""

import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from evcore.golden.config import CoreConfig, Optimizer
from evcore.hdl.core import Reg, Region, vmax_layout
from evcore.tb.core.host import read_silent, read_synapses, run_sample, run_update
from evcore.tb.harness import check_ports, tb_config

CLOCK_PERIOD_NS = 10
#: Job operations (`RtlCore`): (OP_INFER, b) runs sample b, (OP_TRAIN, b) trains on it,
#: (OP_UPDATE, 0) applies the update and records the state after it.
OP_INFER, OP_TRAIN, OP_UPDATE = 0, 1, 2


class CocotbBus:
    """The `run_sample` bus on the Verilated core; also times the runs (simulated cycles/s)."""

    def __init__(self, dut, read_latency: int = 1):
        self.dut = dut
        #: `Core.read_latency`: cycles from the bus_re cycle to the data (2 with ram_read_regs, §8).
        self.read_latency = read_latency
        self.run_wall_s = 0.0
        self.run_cycles = 0

    async def write(self, region, addr, data):
        dut = self.dut
        dut.bus_region.value = int(region.value if hasattr(region, "value") else region)
        dut.bus_addr.value = int(addr)
        dut.bus_wdata.value = int(data)
        dut.bus_we.value = 1
        await FallingEdge(dut.clk)
        dut.bus_we.value = 0

    async def start_and_wait(self, train=False, update=False):
        dut = self.dut
        sig = dut.start_update if update else dut.start_train if train else dut.start
        sig.value = 1
        await FallingEdge(dut.clk)
        sig.value = 0
        t0 = time.perf_counter()
        if dut.busy.value:
            await FallingEdge(dut.busy)
        await FallingEdge(dut.clk)
        self.run_wall_s += time.perf_counter() - t0

    async def read_many(self, items):
        dut = self.dut
        out = []
        for region, addr in items:
            dut.bus_region.value = int(region.value if hasattr(region, "value") else region)
            dut.bus_addr.value = int(addr)
            dut.bus_re.value = 1
            await FallingEdge(dut.clk)
            if self.read_latency > 1:
                dut.bus_re.value = 0
                for _ in range(self.read_latency - 1):
                    await FallingEdge(dut.clk)
            out.append(dut.bus_rdata.value.to_unsigned())
        dut.bus_re.value = 0
        return out


@cocotb.test()
async def run_job(dut):
    """Write the synapse words, run every sample of the job, save the raw results."""
    tb = tb_config()
    cfg = CoreConfig.from_dict(tb["cfg"])
    job = np.load(tb["job"])
    check_ports(dut)
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    dut.rst.value = 1
    for name in ("bus_we", "bus_re", "start", "start_train", "start_update", "bus_region", "bus_addr",
                 "bus_wdata"):
        getattr(dut, name).value = 0
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    bus = CocotbBus(dut, read_latency=1 + cfg.ram_read_regs)  # Core.read_latency
    t_load = time.perf_counter()
    # One row of little-endian bytes per synapse word (a word may exceed 64 bits).
    words = [int.from_bytes(bytes(row), "little") for row in job["synapse_words"].tolist()]
    for a, word in enumerate(words):
        await bus.write(Region.SYNAPSE, a, word)
    t_load = time.perf_counter() - t_load
    # Read back a few synapse words: the host port's read path, checked once per job.
    probe = sorted({0, len(words) // 2, len(words) - 1})
    got = await bus.read_many([(Region.SYNAPSE, a) for a in probe])
    want = [words[a] for a in probe]
    assert got == want, f"synapse read-back {got} != {want}"
    vl = vmax_layout(cfg)
    if "dead" in job:  # §5.6 state of the hidden neurons
        for h, (d, f) in enumerate(zip(job["dead"].tolist(), job["fired"].tolist())):
            await bus.write(Region.VMAX, h, vl.const({"dead": int(d), "fired": int(f)}).as_bits())
    adam = cfg.optimizer is Optimizer.ADAM
    if adam:
        for a, v in enumerate(job["v"].tolist()):
            await bus.write(Region.ADAM_V, a, int(v))
    await bus.write(Region.REG, Reg.LFSR.value, int(job["lfsr"]))
    for l, count in enumerate(job["silent"].tolist() if "silent" in job else ()):  # §6.5 counters
        await bus.write(Region.REG, Reg.SILENT.value + l, int(count))
    for mat, mant in enumerate(job["lr_mant"].tolist()):
        await bus.write(Region.REG, Reg.LR_MANT.value + mat, int(mant))
    results, updates = [], []
    t_all = time.perf_counter()
    for op, b in job["ops"].tolist():
        if op == OP_UPDATE:
            g_before = (await read_synapses(bus, cfg))["g"]
            updates.append(await run_update(bus, cfg) | {"g_before": g_before})
            continue
        label = int(job["labels"][b]) if op == OP_TRAIN else None
        r = await run_sample(bus, cfg, job["steps"][b], job["ids"][b], int(job["counts"][b]), label)
        results.append(r)
    t_all = time.perf_counter() - t_all
    n_b, cap = len(results), cfg.record_capacity
    out = {}
    keys = sorted({k for r in results for k in r})
    for r in results:  # inference samples have no training values: zeros
        for key in keys:
            if key not in r:
                like = next(x[key] for x in results if key in x)
                r[key] = np.zeros_like(like) if np.ndim(like) else 0
    for key in keys:
        vals = [r[key] for r in results]
        if np.ndim(vals[0]) == 0:
            out[key] = np.array(vals, dtype=np.int64)
        elif key.startswith("rec_"):
            arr = np.zeros((n_b, cap), dtype=np.int64)
            for b, v in enumerate(vals):
                arr[b, : len(v)] = v
            out[key] = arr
        else:
            out[key] = np.stack(vals).astype(np.int64)
    for key in updates[0] if updates else ():  # the state after each update
        out[f"upd_{key}"] = np.stack([np.asarray(u[key]) for u in updates]).astype(np.int64)
    # The chip's state after the job, for the next one.
    for field, values in (await read_synapses(bus, cfg)).items():
        out[f"end_{field}"] = values
    if adam:
        out["end_v"] = np.array(await bus.read_many([(Region.ADAM_V, a) for a in range(cfg.n_synapses)]),
                                dtype=np.int64)
    out["end_lfsr"] = np.array((await bus.read_many([(Region.REG, Reg.LFSR.value)]))[0], dtype=np.int64)
    out["end_silent"] = np.array(await read_silent(bus, cfg), dtype=np.int64)
    if "dead" in job:
        words = await bus.read_many([(Region.VMAX, h) for h in range(cfg.n_hidden)])
        out["end_dead"] = np.array([vl.from_bits(v).dead for v in words], dtype=np.int64)
        out["end_fired"] = np.array([vl.from_bits(v).fired for v in words], dtype=np.int64)
    out["run_wall_s"] = np.array(bus.run_wall_s)
    out["total_wall_s"] = np.array(t_all)
    out["load_wall_s"] = np.array(t_load)
    np.savez(tb["results"], **out)
