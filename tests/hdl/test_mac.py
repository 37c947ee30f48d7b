# amaranth: UnusedElaboratable=no
"""`evcore.hdl.mac.Mac` in the Amaranth simulator against `evcore.golden.mac`, bit for bit.

The first line silences UnusedElaboratable for the construction tests, which never elaborate.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from evcore.golden.mac import MacResult, mac_reference, random_packets, signed_bounds
from evcore.hdl.mac import Mac
from evcore.hdl.sim_streams import stream_get, stream_put
from evcore.tb.harness import parse_verilog_ports, verilog_ports

# Two bits of headroom over one product: random packets saturate often enough to cover the clamp.
WIDTHS = [
    pytest.param({"a_width": 8, "b_width": 8, "acc_width": 18}, id="8x8-18"),
    pytest.param({"a_width": 16, "b_width": 12, "acc_width": 30}, id="16x12-30"),
    pytest.param({"a_width": 1, "b_width": 1, "acc_width": 2}, id="1x1-2"),
]


def rtl_mac(elements, widths, *, seed=0, idle_prob=0.0, ready_prob=1.0):
    """Run `elements` [(a, b, last), ...] through Mac; return its results like `mac_reference`."""
    dut = Mac(**widths)
    n_results = sum(1 for _a, _b, last in elements if last)
    rng = random.Random(seed)  # one generator: input idles and output stalls interleave reproducibly
    results = []

    async def put_elements(ctx):
        for a, b, last in elements:
            await stream_put(ctx, dut.i, {"a": a, "b": b, "last": last}, rng=rng, idle_prob=idle_prob)

    async def get_results(ctx):
        for _ in range(n_results):
            value, overflow = await stream_get(
                ctx, dut.o, rng=rng, ready_prob=ready_prob, also=(dut.overflow,)
            )
            results.append(MacResult(value, bool(overflow)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(put_elements)
    sim.add_testbench(get_results)
    sim.run()
    return results


def golden_mac(elements, widths):
    a, b, last = zip(*elements, strict=True) if elements else ((), (), ())
    return mac_reference(a, b, last, **widths)


def check(elements, widths, **kwargs):
    expected = golden_mac(elements, widths)
    got = rtl_mac(elements, widths, **kwargs)
    for index, (e, g) in enumerate(zip(expected, got, strict=False)):  # a short list fails below
        assert g == e, f"result {index}: rtl={g} golden={e} widths={widths} {kwargs}"
    assert len(got) == len(expected), f"rtl gave {len(got)} results, golden {len(expected)}"
    return got


# --- named edges -------------------------------------------------------------------------------


@pytest.mark.parametrize("widths", WIDTHS)
def test_zero(widths):
    a_lo, _ = signed_bounds(widths["a_width"])
    _, b_hi = signed_bounds(widths["b_width"])
    got = check([(0, 0, True), (a_lo, 0, False), (0, b_hi, True)], widths)
    assert got == [(0, False), (0, False)]


@pytest.mark.parametrize("widths", WIDTHS)
def test_saturate_at_max(widths):
    a_lo, _ = signed_bounds(widths["a_width"])
    b_lo, _ = signed_bounds(widths["b_width"])
    lo, hi = signed_bounds(widths["acc_width"])
    # (-2**(a-1)) * (-2**(b-1)) is the largest product; enough of them pass +max.
    n = -(-hi // (a_lo * b_lo)) + 1
    got = check([(a_lo, b_lo, False)] * n + [(0, 0, True)], widths)
    assert got == [(hi, True)]


@pytest.mark.parametrize("widths", WIDTHS)
def test_saturate_at_min(widths):
    a_lo, _ = signed_bounds(widths["a_width"])
    _, b_hi = signed_bounds(widths["b_width"])
    lo, _ = signed_bounds(widths["acc_width"])
    if b_hi == 0:
        pytest.skip("signed(1) has no positive operand")
    n = -(lo // -(a_lo * b_hi)) + 1
    got = check([(a_lo, b_hi, False)] * n + [(0, 0, True)], widths)
    assert got == [(lo, True)]


def test_reach_bound_exactly_is_not_overflow():
    widths = {"a_width": 4, "b_width": 4, "acc_width": 8}  # acc in [-128, 127]
    got = check([(-8, -8, False), (-8, -7, False), (7, 1, True)], widths)  # 64 + 56 + 7 = 127
    assert got == [(127, False)]


def test_clamp_per_step_then_recover():
    widths = {"a_width": 4, "b_width": 4, "acc_width": 8}
    # 64 + 64 clamps to 127; -56 then gives 71, not the exact 72.
    got = check([(-8, -8, False), (-8, -8, False), (-8, 7, True)], widths)
    assert got == [(71, True)]


def test_overflow_is_per_result():
    widths = {"a_width": 4, "b_width": 4, "acc_width": 8}
    # -56 -56 = -112; the third -56 clamps at -128, then +49 gives -79 with the flag still set.
    elements = [
        (-8, -8, False),
        (-8, -8, True),
        (1, 1, True),
        (-8, 7, False),
        (-8, 7, False),
        (-8, 7, False),
        (7, 7, True),
    ]
    got = check(elements, widths, seed=3, ready_prob=0.3)
    assert got == [(127, True), (1, False), (-79, True)]


def test_back_to_back_results_under_stall():
    widths = {"a_width": 4, "b_width": 4, "acc_width": 8}
    elements = [(i % 8, -(i % 5), True) for i in range(40)]  # single-element packets
    check(elements, widths, seed=1, ready_prob=0.2)


# --- timing ------------------------------------------------------------------------------------


def test_latency_and_throughput():
    widths = {"a_width": 8, "b_width": 8, "acc_width": 20}
    dut = Mac(**widths)
    n = 6
    cycles = {}

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        for index in range(n):
            ctx.set(dut.i.payload, {"a": index, "b": 2, "last": index == n - 1})
            ctx.set(dut.i.valid, 1)
            # Full throughput: every element is accepted in the cycle it is offered.
            assert ctx.get(dut.i.ready), f"element {index} stalled"
            await ctx.tick()
            cycle += 1
        ctx.set(dut.i.valid, 0)
        cycles["last"] = cycle - 1  # transfer of the `last` element happened at this edge
        while not ctx.get(dut.o.valid):
            await ctx.tick()
            cycle += 1
        cycles["valid"] = cycle
        assert ctx.get(dut.o.payload) == 2 * sum(range(n))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert cycles["valid"] - cycles["last"] == dut.latency


# --- seeded random -----------------------------------------------------------------------------


@pytest.mark.parametrize("widths", WIDTHS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random(widths, seed):
    np_rng = np.random.default_rng(seed)
    elements = random_packets(np_rng, a_width=widths["a_width"], b_width=widths["b_width"], n_packets=60)
    got = check(elements, widths, seed=seed, idle_prob=0.3, ready_prob=0.5)
    assert any(result.overflow for result in got), "stimulus never saturated; lengthen the packets"


def test_random_no_backpressure():
    widths = {"a_width": 16, "b_width": 16, "acc_width": 48}
    elements = random_packets(np.random.default_rng(7), a_width=16, b_width=16, n_packets=60)
    check(elements, widths, seed=7)


# --- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"a_width": 0}, ValueError, "a_width must be at least 1, not 0"),
        ({"b_width": -3}, ValueError, "b_width must be at least 1, not -3"),
        (
            {"a_width": 16, "b_width": 16, "acc_width": 31},
            ValueError,
            "acc_width must be at least a_width + b_width = 32, not 31",
        ),
        ({"acc_width": 65}, ValueError, "acc_width must be at most 64, not 65"),
        ({"a_width": 8.0}, TypeError, "a_width must be an integer, not 8.0"),
        ({"acc_width": True}, TypeError, "acc_width must be an integer, not True"),
    ],
)
def test_widths_wrong(kwargs, exc, message):
    with pytest.raises(exc, match=f"^{message.replace('+', '[+]')}$"):
        Mac(**kwargs)


def test_signature():
    dut = Mac(a_width=5, b_width=3, acc_width=10)
    assert dut.latency == 2
    assert dut.i.payload.shape().size == 5 + 3 + 1
    assert dut.o.payload.shape().signed and dut.o.payload.shape().width == 10


def test_verilog_ports():
    """The Verilog ports cocotb testbenches drive: names and widths pinned, and the harness agrees."""
    from amaranth.back import verilog

    dut = Mac(a_width=8, b_width=8, acc_width=18)
    ports = parse_verilog_ports(verilog.convert(dut, name="mac"), "mac")
    assert {name: (port["dir"], port["width"]) for name, port in ports.items()} == {
        "clk": ("in", 1),
        "rst": ("in", 1),
        "i__valid": ("in", 1),
        "i__ready": ("out", 1),
        "i__payload": ("in", 8 + 8 + 1),
        "o__valid": ("out", 1),
        "o__ready": ("in", 1),
        "o__payload": ("out", 18),
        "overflow": ("out", 1),
    }
    assert verilog_ports(dut) == ports
