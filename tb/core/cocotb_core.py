"""cocotb side of `evcore.tb.core.rtl_core.RtlCore`: run a job file of samples on the Verilated core.

The job (``.npz``, written by `RtlCore.run`) holds the raw synapse words and each sample's input
spikes; this coroutine writes the weights, then per sample runs `evcore.tb.core.host.run_sample`
(clear, push inputs, start, wait for the end of busy, read back everything) and stores the raw
results in the results ``.npz``. Python is out of the loop while the core runs: the clock is
cocotb's C++ (GPI) clock and the coroutine sleeps on the falling edge of ``busy``.
Inputs are driven and outputs sampled on falling clock edges, so every value is stable.
"""

import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from evcore.golden.config import CoreConfig
from evcore.hdl.core import Region
from evcore.tb.core.host import run_sample
from evcore.tb.harness import check_ports, tb_config

CLOCK_PERIOD_NS = 10


class CocotbBus:
    """The `run_sample` bus on the Verilated core; also times the runs (simulated cycles/s)."""

    def __init__(self, dut):
        self.dut = dut
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

    async def start_and_wait(self):
        dut = self.dut
        dut.start.value = 1
        await FallingEdge(dut.clk)
        dut.start.value = 0
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
    for name in ("bus_we", "bus_re", "start", "bus_region", "bus_addr", "bus_wdata"):
        getattr(dut, name).value = 0
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    bus = CocotbBus(dut)
    t_load = time.perf_counter()
    for a, word in enumerate(job["synapse_words"].tolist()):
        await bus.write(Region.SYNAPSE, a, int(word))
    t_load = time.perf_counter() - t_load
    # Read back a few synapse words: the host port's read path, checked once per job.
    words = job["synapse_words"]
    probe = sorted({0, len(words) // 2, len(words) - 1})
    got = await bus.read_many([(Region.SYNAPSE, a) for a in probe])
    want = [int(words[a]) for a in probe]
    assert got == want, f"synapse read-back {got} != {want}"
    results = []
    t_all = time.perf_counter()
    for b in range(len(job["counts"])):
        r = await run_sample(bus, cfg, job["steps"][b], job["ids"][b], int(job["counts"][b]))
        results.append(r)
    t_all = time.perf_counter() - t_all
    n_b, cap = len(results), cfg.record_capacity
    out = {}
    for key in results[0] if results else []:
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
    out["run_wall_s"] = np.array(bus.run_wall_s)
    out["total_wall_s"] = np.array(t_all)
    out["load_wall_s"] = np.array(t_load)
    np.savez(tb["results"], **out)
