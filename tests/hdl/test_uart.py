# amaranth: UnusedElaboratable=no
"""`evcore.hdl.uart` in the Amaranth simulator against the 8N1 waveform written out per cycle:
the transmitter's line equals it exactly, the receiver decodes it (back to back, off-rate by
+-3 %, with glitches), flags a low stop bit and a break once each, and reports an overrun."""

import math
import random

import pytest
from amaranth.sim import Simulator

from evcore.golden.config import ConfigError
from evcore.hdl.sim_streams import stream_put
from evcore.hdl.uart import BITS_PER_BYTE, UartRx, UartTiming, UartTx

TIMINGS = [UartTiming(24_000_000, 1_000_000), UartTiming(48_000_000, 3_000_000),
           UartTiming(20_000_000, 4_000_000)]


def wave(byte: int, bit_cycles: float, stop: int = 1) -> list[int]:
    """Line level per cycle of one 8N1 character (bit k spans [round(k*T), round((k+1)*T)))."""
    bits = [0] + [(byte >> i) & 1 for i in range(8)] + [stop]
    edges = [round(k * bit_cycles) for k in range(BITS_PER_BYTE + 1)]
    return [b for k, b in enumerate(bits) for _ in range(edges[k + 1] - edges[k])]


def test_divisor_from_clock_and_baud():
    assert UartTiming(24_000_000, 1_000_000).divisor == 24
    assert UartTiming(48_000_000, 1_000_000).divisor == 48
    t = UartTiming(24_000_000, 115_200)
    assert t.divisor == 208 and abs(t.baud_error) < 0.002 and t.byte_cycles == 2080
    with pytest.raises(ConfigError, match="at least 4 needed"):
        UartTiming(12_000_000, 4_000_000)
    with pytest.raises(ConfigError, match="baud error"):
        UartTiming(9_000_000, 2_000_000)  # 4.5 cycles per bit: 11 % off
    with pytest.raises(ConfigError, match="clk_hz must be a positive int"):
        UartTiming(0, 9600)


def run_rx(timing, levels, ready=1):
    """Drive `levels` (one per cycle) into UartRx; the bytes it offers and the error pulses."""
    dut = UartRx(timing)
    got = {"bytes": [], "frame_error": 0, "overrun": 0}

    async def tb(ctx):
        ctx.set(dut.data.ready, ready)
        for level in levels + [1] * (4 * timing.divisor):
            ctx.set(dut.rx, level)
            _, _, valid, payload, fe, ov = await ctx.tick().sample(
                dut.data.valid, dut.data.payload, dut.frame_error, dut.overrun)
            if valid and ready:
                got["bytes"].append(payload)
            got["frame_error"] += fe
            got["overrun"] += ov
        got["pending"] = ctx.get(dut.data.valid), ctx.get(dut.data.payload)

    sim = Simulator(dut)
    sim.add_clock(1 / timing.clk_hz)
    sim.add_testbench(tb)
    sim.run()
    return got


@pytest.mark.parametrize("timing", TIMINGS, ids=lambda t: f"div{t.divisor}")
def test_rx_back_to_back_bytes(timing):
    data = [0x00, 0xFF, 0x55, 0xAA, 0x7E, 0x01, 0x80] + random.Random(timing.divisor).sample(range(256), 5)
    levels = [1] * 7 + [lv for b in data for lv in wave(b, timing.divisor)]
    got = run_rx(timing, levels)
    assert got["bytes"] == data and got["frame_error"] == 0 and got["overrun"] == 0


@pytest.mark.parametrize("off", [-0.03, 0.03])
def test_rx_tolerates_a_sender_off_rate(off):
    timing = TIMINGS[1]
    data = [0x00, 0xFF, 0x0F, 0xF0, 0x5A]
    levels = [1] * 3 + [lv for b in data for lv in wave(b, timing.divisor * (1 + off))]
    assert run_rx(timing, levels)["bytes"] == data


@pytest.mark.parametrize("timing", TIMINGS[1:], ids=lambda t: f"div{t.divisor}")
def test_rx_frame_error_glitch_and_break(timing):
    d = timing.divisor
    glitch = [0] * (d // 2 - 2)  # shorter than half a bit: no start bit
    brk = [0] * (3 * timing.byte_cycles)
    levels = ([1] * 5 + wave(0x3C, d) + wave(0xC3, d, stop=0) + [1] * d + glitch + [1] * d
              + wave(0x99, d) + brk + [1] * d + wave(0x42, d))
    got = run_rx(timing, levels)
    assert got["bytes"] == [0x3C, 0x99, 0x42], "the byte with a low stop bit is dropped"
    assert got["frame_error"] == 2, "one pulse for the bad stop bit, one for the whole break"


def test_rx_overrun_keeps_the_first_byte():
    timing = TIMINGS[2]
    got = run_rx(timing, [1] * 3 + wave(0x11, timing.divisor) + wave(0x22, timing.divisor), ready=0)
    assert got["overrun"] == 1 and got["pending"] == (1, 0x11)


@pytest.mark.parametrize("timing", TIMINGS, ids=lambda t: f"div{t.divisor}")
def test_tx_waveform_is_exact(timing):
    data = [0x00, 0xFF, 0xA5, 0x7E, 0x3C]
    dut = UartTx(timing)
    trace = []

    async def feeder(ctx):
        await ctx.tick().repeat(3)
        for b in data:  # offered back to back: the line must have no gap between characters
            await stream_put(ctx, dut.data, b)

    async def line(ctx):
        n = len(data) * timing.byte_cycles + 20
        for _ in range(n):
            _, _, level = await ctx.tick().sample(dut.tx)
            trace.append(level)

    sim = Simulator(dut)
    sim.add_clock(1 / timing.clk_hz)
    sim.add_testbench(feeder, background=True)
    sim.add_testbench(line)
    sim.run()
    first = trace.index(0)
    expected = [lv for b in data for lv in wave(b, timing.divisor)]
    assert all(trace[:first]), "idle line is high"
    assert trace[first : first + len(expected)] == expected
    assert all(trace[first + len(expected) :]), "idle again after the last stop bit"
    assert math.isclose(timing.clk_hz / timing.divisor, timing.baud, rel_tol=UartTiming.MAX_BAUD_ERROR)


@pytest.mark.parametrize("timing", [UartTiming(24_000_000, 1_000_000), UartTiming(20_000_000, 4_000_000)],
                         ids=["div24", "div5"])
def test_rx_samples_every_bit_at_its_middle(timing):
    """A data bit that holds its value for one cycle only is read at exactly one cycle offset within
    the bit: the same offset for every bit (no drift from bit to bit), and the middle of the bit
    ((d − 1) / 2 for an odd divisor d, d/2 − 1 or d/2 for an even one), so the margin to both edges
    is as large as it can be."""
    d = timing.divisor
    levels, frames = [], []
    for i in range(8):
        for t in range(d):
            bit_i = [1 if c == t else 0 for c in range(d)]  # bit i is 1 in cycle t only, else 0
            frame = [0] * d + [0] * (i * d) + bit_i + [0] * ((7 - i) * d) + [1] * d
            levels += frame + [1] * 3
            frames.append((i, t))
    got = run_rx(timing, levels)
    assert len(got["bytes"]) == len(frames) and got["frame_error"] == 0
    read_at = {}
    for (i, t), byte in zip(frames, got["bytes"]):
        assert byte & ~(1 << i) & 0xFF == 0, f"bit {i}, pulse at {t}: other bits set in {byte:#04x}"
        if byte >> i & 1:
            read_at.setdefault(i, []).append(t)
    assert all(len(read_at.get(i, [])) == 1 for i in range(8)), f"read at: {read_at}"
    offsets = {read_at[i][0] for i in range(8)}
    assert len(offsets) == 1, f"the sample point drifts from bit to bit: {read_at}"
    middle = {(d - 1) // 2, d // 2}
    assert offsets <= middle, f"read at offset {offsets.pop()} of {d}, not the middle {sorted(middle)}"
