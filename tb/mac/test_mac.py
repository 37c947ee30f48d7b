"""`evcore.hdl.mac.Mac` on Verilator via cocotb, scoreboarded against `evcore.golden.mac`.

Top: cocotb coroutines (run inside the simulator). Bottom: the pytest function that builds and
runs them through `evcore.tb.harness.run_cocotb`, parametrized over width sets and seeds.

Scoreboard: driver (random idle cycles) -> DUT; input monitor -> `MacModel` -> expected queue;
output sink (random back-pressure) -> in-order checker that stops at the first mismatch with
the seed, the result index, golden vs RTL and the last inputs. Every coroutine samples in
``ReadOnly`` and writes after ``RisingEdge``, so a sampled ``valid & ready`` is exactly a transfer
at the next edge.
"""

import random
from collections import deque

import cocotb
import numpy as np
import pytest
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, RisingEdge

from evcore.golden.mac import MacModel, MacResult, random_packets, signed_bounds
from evcore.hdl.mac import Mac, mac_input_layout
from evcore.tb.harness import run_cocotb, start_clock_and_reset, tb_config

CLOCK_PERIOD_NS = 10


class MacBench:
    """Driver, monitors and checker for one `Mac` instance; `cfg` is the harness config."""

    def __init__(self, dut, cfg: dict, name: str):
        self.dut, self.cfg, self.name = dut, cfg, name
        widths = {k: cfg[k] for k in ("a_width", "b_width", "acc_width")}
        self.widths = widths
        self.layout = mac_input_layout(cfg["a_width"], cfg["b_width"])
        self.model = MacModel(**widths)
        # Separate streams for input idles and output stalls: changing one knob keeps the other.
        self.rng_in = random.Random(f"{cfg['seed']}-{name}-in")
        self.rng_out = random.Random(f"{cfg['seed']}-{name}-out")
        self.expected: deque[tuple[MacResult, int]] = deque()  # (result, index of its `last` input)
        self.recent: deque[tuple[int, int, int, bool]] = deque(maxlen=6)  # (index, a, b, last)
        self.n_inputs = 0
        self.n_overflows = 0  # coverage: results that saturated
        self.driver_done = False

    def cycle(self) -> int:
        return int(get_sim_time("ns")) // CLOCK_PERIOD_NS

    def where(self) -> str:
        """What reproduces a failure: the cocotb test, seed, widths and the last inputs."""
        recent = ", ".join(f"#{i}:({a},{b},{int(last)})" for i, a, b, last in self.recent)
        return (
            f"test={self.name} seed={self.cfg['seed']} widths={self.widths} cycle={self.cycle()} "
            f"last inputs: {recent}"
        )

    async def drive(self, elements, idle_prob: float) -> None:
        dut = self.dut
        for a, b, last in elements:
            while self.rng_in.random() < idle_prob:
                await RisingEdge(dut.clk)
            dut.i__payload.value = self.layout.const({"a": a, "b": b, "last": last}).as_bits()
            dut.i__valid.value = 1
            while True:
                await ReadOnly()
                accepted = bool(dut.i__ready.value)
                await RisingEdge(dut.clk)
                if accepted:
                    break
            dut.i__valid.value = 0
        self.driver_done = True

    async def monitor_inputs(self) -> None:
        dut = self.dut
        while True:
            await ReadOnly()
            if dut.i__valid.value and dut.i__ready.value:
                element = self.layout.from_bits(dut.i__payload.value.to_unsigned())
                a, b, last = element.a, element.b, bool(element.last)
                self.recent.append((self.n_inputs, a, b, last))
                if (result := self.model.push(a, b, last)) is not None:
                    self.expected.append((result, self.n_inputs))
                self.n_inputs += 1
            await RisingEdge(dut.clk)

    def check(self, index: int, got: MacResult) -> None:
        if not self.expected:
            raise AssertionError(f"UNEXPECTED result {index}: rtl={got}, golden has none; {self.where()}")
        expected, last_input = self.expected.popleft()
        if got != expected:
            raise AssertionError(
                f"MISMATCH result {index} (packet ending at input #{last_input}): "
                f"golden={tuple(expected)} rtl={tuple(got)}; {self.where()}"
            )

    async def sink(self, n_results: int, ready_prob: float, max_cycles: int) -> None:
        """Take `n_results` with random ``ready``, checking each and the stream rule 2 while stalled."""
        dut = self.dut
        received, stalled = 0, None
        for _ in range(max_cycles):
            await RisingEdge(dut.clk)
            ready = self.rng_out.random() < ready_prob
            dut.o__ready.value = int(ready)
            await ReadOnly()
            valid = bool(dut.o__valid.value)
            current = MacResult(dut.o__payload.value.to_signed(), bool(dut.overflow.value)) if valid else None
            if stalled is not None and current != stalled:
                raise AssertionError(
                    f"stream rule 2: {stalled} changed to {current} while stalled; {self.where()}"
                )
            if valid and ready:
                self.check(received, current)
                self.n_overflows += current.overflow
                received += 1
                if received == n_results:
                    return
                stalled = None
            else:
                stalled = current
        raise AssertionError(
            f"TIMEOUT: {received} of {n_results} results after {max_cycles} cycles; {self.where()}"
        )

    async def run(self, elements, *, idle_prob: float, ready_prob: float) -> None:
        """Push `elements` through the DUT and check every result; end with empty queues."""
        dut = self.dut
        n_results = sum(1 for _a, _b, last in elements if last)
        cocotb.start_soon(self.monitor_inputs())
        cocotb.start_soon(self.drive(elements, idle_prob))
        # Generous budget: every element and result may wait on idles and stalls.
        budget = 100 + int(4 * len(elements) / max(1e-3, (1 - idle_prob) * ready_prob))
        await self.sink(n_results, ready_prob, budget)
        # Nothing left over: all inputs taken, all expected results seen, and no extra output.
        await RisingEdge(dut.clk)
        dut.o__ready.value = 1
        for _ in range(Mac(**self.widths).latency + 2):
            await ReadOnly()
            assert not dut.o__valid.value, f"EXTRA result {dut.o__payload.value.to_signed()}; {self.where()}"
            await RisingEdge(dut.clk)
        assert self.driver_done and self.n_inputs == len(elements), f"inputs left over; {self.where()}"
        assert not self.expected, f"{len(self.expected)} golden results never came out; {self.where()}"


@cocotb.test()
async def random_traffic(dut):
    """Seeded random packets with idle input cycles and output back-pressure."""
    cfg = tb_config()
    await start_clock_and_reset(dut, period_ns=CLOCK_PERIOD_NS)
    bench = MacBench(dut, cfg, "random_traffic")
    elements = random_packets(
        np.random.default_rng(cfg["seed"]),
        a_width=cfg["a_width"],
        b_width=cfg["b_width"],
        n_packets=cfg["n_packets"],
    )
    await bench.run(elements, idle_prob=cfg["idle_prob"], ready_prob=cfg["ready_prob"])
    assert bench.n_overflows > 0, f"stimulus never saturated; {bench.where()}"


def exact_sum(target: int, a_width: int, b_width: int) -> list[tuple[int, int, bool]]:
    """A packet whose products sum exactly to `target`, every partial sum between 0 and `target`.

    Reaching a bound exactly must not set `overflow`. Needs ``b_width >= 2`` (a positive b).
    """
    a_lo, a_hi = signed_bounds(a_width)
    _, b_hi = signed_bounds(b_width)
    a_big = a_hi if target > 0 else a_lo
    elements = []
    while target:
        b = min(b_hi, target // a_big)
        if b == 0:  # |target| < |a_big|: the rest fits into one operand
            elements.append((target, 1, False))
            break
        elements.append((a_big, b, False))
        target -= a_big * b
    return [*elements[:-1], (*elements[-1][:2], True)]


@cocotb.test()
async def named_edges(dut):
    """Zero, +max and -min saturation, landing exactly on each bound, back-to-back one-element packets."""
    cfg = tb_config()
    await start_clock_and_reset(dut, period_ns=CLOCK_PERIOD_NS)
    a_lo, a_hi = signed_bounds(cfg["a_width"])
    b_lo, b_hi = signed_bounds(cfg["b_width"])
    lo, hi = signed_bounds(cfg["acc_width"])
    n_up = -(-hi // (a_lo * b_lo)) + 1  # enough of the largest product to pass +max
    n_down = -(lo // -(a_lo * b_hi)) + 1  # enough of the most negative product to pass -min
    elements = [(0, 0, True), (a_lo, 0, False), (0, b_hi, True)]
    elements += [(a_lo, b_lo, False)] * n_up + [(0, 0, True)]
    elements += [(a_lo, b_hi, False)] * n_down + [(0, 0, True)]
    elements += exact_sum(hi, cfg["a_width"], cfg["b_width"]) + exact_sum(lo, cfg["a_width"], cfg["b_width"])
    elements += [(a_hi, b_hi, True)] * 8
    bench = MacBench(dut, cfg, "named_edges")
    await bench.run(elements, idle_prob=0.0, ready_prob=0.5)
    assert bench.n_overflows == 2, f"expected exactly the +max and -min packets to saturate; {bench.where()}"


# --- pytest: build and run through the harness ---------------------------------------------------

WIDTHS = [
    pytest.param({"a_width": 8, "b_width": 8, "acc_width": 18}, id="8x8-18"),
    pytest.param({"a_width": 16, "b_width": 12, "acc_width": 30}, id="16x12-30"),
]


@pytest.mark.sim
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("widths", WIDTHS)
def test_mac(widths, seed):
    run_cocotb(
        Mac(**widths),
        toplevel="mac",
        test_module="evcore.tb.mac.test_mac",
        config={**widths, "seed": seed, "n_packets": 150, "idle_prob": 0.3, "ready_prob": 0.5},
        seed=seed,
    )
