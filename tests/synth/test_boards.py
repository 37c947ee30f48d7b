# amaranth: UnusedElaboratable=no
"""`evcore.synth.pll` and `evcore.synth.boards`: the PLL solvers against the data-sheet formulas
(an independent brute force), the LED stretcher and power-on reset in the Amaranth simulator
against per-cycle reference models, the board core over a real 8N1 line, both board tops
converted on their platforms, and the report checks and README table with made-up tool output.
No synthesis tool runs here (`make synth` does)."""

import copy
import dataclasses
import functools
import json
import math
import re

import numpy as np
import pytest
from amaranth.sim import Simulator

from evcore.golden.config import CoreConfig
from evcore.hdl.core import Core, config_id
from evcore.hdl.link import decode_frames, encode_frame, parse_link_response
from evcore.hdl.protocol import Frame, Op, Status, command
from evcore.hdl.uart import UartTiming
from evcore.synth import boards
from evcore.synth.boards import (
    BOARDS,
    BoardCore,
    BoardTop,
    FlagTapCore,
    PowerOnReset,
    PulseStretcher,
    board_report,
    check_report,
    load_reports,
    readme_table_block,
    render_resource_table,
)
from evcore.synth.flow import SynthError
from evcore.synth.pll import PllError, ecp5_pll, ice40_pll

from ..hdl.test_link import decode_line
from ..hdl.test_protocol import SMALL
from ..hdl.test_uart import wave

MHZ = 1e6


# --- PLL solvers -------------------------------------------------------------------------------


def ice40_reference(f_ref, f_req):
    """Smallest |f_out - f_req| over every SB_PLL40 setting the guide allows (FPGA-TN-02052)."""
    divr, divf, divq = np.meshgrid(np.arange(16), np.arange(128), np.arange(1, 7), indexing="ij")
    pfd = f_ref / (divr + 1)
    vco = pfd * (divf + 1)
    out = vco / 2.0**divq
    ok = (pfd >= 10 * MHZ) & (pfd <= 133 * MHZ) & (vco >= 533 * MHZ) & (vco <= 1066 * MHZ) \
        & (out >= 16 * MHZ) & (out <= 275 * MHZ)
    return np.min(np.abs(out[ok] - f_req))


@functools.cache
def ecp5_outputs(f_in):
    """Every EHXPLLL output (CLKOP feedback) the limits allow from `f_in`."""
    clki, clkfb, clkop = np.meshgrid(np.arange(1, 129), np.arange(1, 129), np.arange(1, 129), indexing="ij")
    pfd = f_in / clki
    out = pfd * clkfb
    vco = out * clkop
    ok = (pfd >= 3.125 * MHZ) & (pfd <= 400 * MHZ) & (out >= 3.125 * MHZ) & (out <= 400 * MHZ) \
        & (vco >= 400 * MHZ) & (vco <= 800 * MHZ)
    return np.unique(out[ok])


def ecp5_reference(f_in, f_req):
    """Smallest |f_out - f_req| over every EHXPLLL setting."""
    return np.min(np.abs(ecp5_outputs(f_in) - f_req))


def test_ice40_pll_matches_the_guide():
    for f_req_mhz in [16, 18, 20, 24, 25, 30, 33.3, 36, 40, 48, 50, 64, 75.5, 96, 100, 133, 200, 275]:
        f_req = f_req_mhz * MHZ
        s = ice40_pll(12 * MHZ, f_req, tolerance=0.05)
        pfd, vco = 12 * MHZ / (s.divr + 1), 12 * MHZ / (s.divr + 1) * (s.divf + 1)
        out = vco / 2**s.divq
        assert (s.f_pfd_hz, s.f_vco_hz, s.f_out_hz) == (pfd, vco, out)
        assert 10 * MHZ <= pfd <= 133 * MHZ and 533 * MHZ <= vco <= 1066 * MHZ and 1 <= s.divq <= 6
        assert abs(out - f_req) == pytest.approx(ice40_reference(12 * MHZ, f_req), abs=1e-3), f_req_mhz
        assert s.filter_range == (1 if pfd < 17 * MHZ else 2 if pfd < 26 * MHZ else 3 if pfd < 44 * MHZ
                                  else 4 if pfd < 66 * MHZ else 5 if pfd < 101 * MHZ else 6)
    s = ice40_pll(12 * MHZ, 24 * MHZ)
    assert s.f_out_hz == 24 * MHZ  # the iCEBreaker clock: exact


def test_ecp5_pll_matches_the_guide():
    for f_req_mhz in [3.2, 10, 25, 30, 33.333, 36, 40, 48, 50, 65, 100, 125, 133.7, 200, 333, 400]:
        f_req = f_req_mhz * MHZ
        s = ecp5_pll(25 * MHZ, f_req, tolerance=0.05)
        pfd = 25 * MHZ / s.clki_div
        out = pfd * s.clkfb_div
        assert (s.f_pfd_hz, s.f_out_hz, s.f_vco_hz) == (pfd, out, out * s.clkop_div)
        assert 3.125 * MHZ <= pfd <= 400 * MHZ and 400 * MHZ <= s.f_vco_hz <= 800 * MHZ
        assert all(1 <= d <= 128 for d in (s.clki_div, s.clkfb_div, s.clkop_div))
        assert abs(out - f_req) == pytest.approx(ecp5_reference(25 * MHZ, f_req), abs=1e-3), f_req_mhz
    assert ecp5_pll(25 * MHZ, 30 * MHZ).f_out_hz == 30 * MHZ  # the ULX3S clock: exact


@pytest.mark.parametrize("solve, f_in, f_out, match", [
    (ice40_pll, 12e6, 300e6, "output outside 16-275 MHz"),
    (ice40_pll, 12e6, 10e6, "output outside 16-275 MHz"),
    (ice40_pll, 5e6, 24e6, "reference outside 10-133 MHz"),
    (ecp5_pll, 25e6, 500e6, "output outside 3.125-400 MHz"),
    (ecp5_pll, 4e6, 30e6, "input outside 8-400 MHz"),
])
def test_pll_out_of_range_is_one_line(solve, f_in, f_out, match):
    with pytest.raises(PllError, match=match) as info:
        solve(f_in, f_out)
    assert "\n" not in str(info.value)


def test_pll_unreachable_within_tolerance():
    # From 12 MHz only DIVR 0 keeps the PFD >= 10 MHz, so the outputs near 16 MHz are 12/64 MHz apart
    # (DIVQ 6, VCO >= 533 MHz): 16.125 is reachable, 16.13 is 0.03 % from it.
    message = r"no divider setting gives 16\.13 MHz within 0\.001%.*nearest 16\.12 MHz"
    with pytest.raises(PllError, match=message):
        ice40_pll(12 * MHZ, 16.13 * MHZ, tolerance=1e-5)
    assert ice40_pll(12 * MHZ, 16.13 * MHZ, tolerance=1e-3).f_out_hz == 16.125 * MHZ


def test_boards_table_is_consistent():
    for board in BOARDS.values():
        pll = board.pll()
        assert pll.f_out_hz == board.clk_mhz * MHZ, board.name
        timing = UartTiming(int(pll.f_out_hz), board.baud)
        assert board.baud >= 1_000_000 and timing.baud_error == 0, board.name
    assert BOARDS["icebreaker"].device == "up5k" and BOARDS["ulx3s"].device == "ecp5-85f"


# --- LED stretcher and power-on reset ------------------------------------------------------------


def run_cycles(dut, inputs, drive, observe):
    """Drive `drive` from `inputs` (one value a cycle) and sample `observe` before each edge."""
    got = []

    async def tb(ctx):
        for value in inputs:
            ctx.set(drive, value)
            got.append(ctx.get(observe))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return got


def test_pulse_stretcher_holds_every_pulse():
    hold = 5
    pattern = [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    dut = PulseStretcher(hold)
    got = run_cycles(dut, pattern, dut.i, dut.o)
    want = [int(any(pattern[max(0, t - hold): t + 1])) for t in range(len(pattern))]
    assert got == want
    assert sum(got[1:10]) == hold + 1  # a one-cycle pulse lights the LED for hold + 1 cycles


def test_led_hold_is_derived_from_the_clock():
    top = BoardTop(BOARDS["icebreaker"], cfg=CoreConfig(**SMALL))
    assert top.led_hold_cycles == math.ceil(boards.LED_HOLD_S * 24e6) == 1_200_000
    assert top.por_cycles == math.ceil(boards.POR_HOLD_S * 24e6)
    with pytest.raises(ValueError, match="hold_cycles must be a positive int"):
        PulseStretcher(0)


def test_power_on_reset_waits_for_lock():
    hold = 4
    locked = [0] * 5 + [1] * 12 + [0] * 2 + [1] * 10
    dut = PowerOnReset(hold)
    got = run_cycles(dut, locked, dut.locked, dut.rst)
    # Reference: two synchroniser flops, then a counter cleared while unlocked.
    s1 = s2 = count = 0
    want = []
    for level in locked:
        want.append(int(count != hold))
        count = 0 if not s2 else min(count + 1, hold)
        s1, s2 = level, s1
    assert got == want
    assert got[:8] == [1] * 8 and 0 in got and got[-1] == 0
    assert got.index(0) == 5 + 2 + hold  # lock at cycle 5, 2 synchroniser cycles, hold cycles


# --- the board core over a UART line -------------------------------------------------------------


def test_board_core_over_the_uart_line():
    """ID over an 8N1 line; a character with a low stop bit lights the frame-error LED for its hold
    time; pushing one spike too many raises IN_OVF and the flag LED stays lit."""
    cfg = CoreConfig(**{**SMALL, "input_capacity": 3})
    timing = UartTiming(4_000_000, 1_000_000)
    hold = 100
    core = FlagTapCore(cfg)
    dut = BoardCore(core, timing, led_hold_cycles=hold, timeout_s=4 * timing.byte_cycles / timing.clk_hz)
    frame = Frame(core)
    line, replies, leds = [], [], []

    async def send(ctx, levels):
        for level in levels:
            ctx.set(dut.rx, level)
            await ctx.tick()

    async def transact(ctx, inner):
        await send(ctx, [v for b in encode_frame(inner) for v in wave(b, timing.divisor)])
        for _ in range(40):  # decode once a character time (the whole line each time)
            await ctx.tick().repeat(timing.byte_cycles)
            got = decode_frames(decode_line(line, timing.divisor))
            if len(got.frames) == len(replies) + 1:
                replies.append(parse_link_response(got.frames[-1]))
                return replies[-1]
        raise AssertionError(f"no reply to {inner.hex()}")

    async def host(ctx):
        assert await transact(ctx, command(frame, Op.ID)) == (Status.OK, config_id(cfg))
        assert leds[-1] == (0, 0, 0)
        # A character whose stop bit is low: frame error.
        start = len(leds)
        await send(ctx, wave(0x55, timing.divisor, stop=0) + [1] * (hold + 4 * timing.byte_cycles))
        lit = [fe for _, _, fe in leds[start:]]
        assert 1 in lit and sum(lit) == hold + 1, "one error pulse, stretched to hold + 1 cycles"
        for _ in range(cfg.input_capacity):
            assert (await transact(ctx, command(frame, Op.PUSH, entry=0)))[0] is Status.OK
        assert leds[-1][1] == 0
        assert (await transact(ctx, command(frame, Op.PUSH, entry=0)))[0] is Status.TOO_MANY
        await send(ctx, [1] * 10)
        assert leds[-1][1] == 1, "IN_OVF is a sticky flag: the flag LED is lit"
        # A sample: busy for the pass, the LED for hold cycles longer.
        start = len(leds)
        assert (await transact(ctx, command(frame, Op.START)))[0] is Status.OK
        await send(ctx, [1] * (20 * hold))
        busy = [b for b, _, _ in leds[start:]]
        first, last = busy.index(1), len(busy) - 1 - busy[::-1].index(1)
        assert all(busy[first : last + 1]) and busy[-1] == 0 and last - first + 1 > hold
        assert leds[-1][1] == 1, "the flag stays lit until the host clears it"

    async def monitor(ctx):
        while True:
            _, _, level, *lamps = await ctx.tick().sample(dut.tx, dut.led_busy, dut.led_flag,
                                                          dut.led_frame_error)
            line.append(level)
            leds.append(tuple(lamps))

    sim = Simulator(dut)
    sim.add_clock(1 / timing.clk_hz)
    sim.add_testbench(host)
    sim.add_testbench(monitor, background=True)
    sim.run()


# --- board tops on their platforms ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BOARDS))
def test_board_top_converts_on_its_platform(name, tmp_path):
    board = dataclasses.replace(BOARDS[name], training=False)  # the core's variant is not under test here
    top = BoardTop(board, cfg=CoreConfig(**SMALL))
    top_name = boards._write_plan(top, tmp_path)
    il = (tmp_path / f"{top_name}.il").read_text()
    pll = top.pll
    if board.family == "ice40":
        assert re.search(rf"cell \\SB_PLL40_PAD .*?parameter \\DIVR {pll.divr}\n\s*parameter \\DIVF "
                         rf"{pll.divf}\n\s*parameter \\DIVQ {pll.divq}\n", il, re.S)
        constraints_file = tmp_path / f"{top_name}.pcf"
        constraints = constraints_file.read_text()
        for pin in ("35", "6", "9", "37", "11", "26"):  # osc, UART rx/tx, LEDs (iCEBreaker schematic)
            assert re.search(rf"^set_io \S+ {pin}$", constraints, re.M), pin
        assert re.search(r"^set_frequency clk12\S* 12\.0$", constraints, re.M)
        assert len(re.findall("set_frequency", constraints)) == 1, "nextpnr derives the PLL output's"
    else:
        assert re.search(rf"cell \\EHXPLLL .*?parameter \\CLKI_DIV {pll.clki_div}\n.*?parameter \\CLKOP_DIV "
                         rf"{pll.clkop_div}\n.*?parameter \\CLKFB_DIV {pll.clkfb_div}\n", il, re.S)
        constraints_file = tmp_path / f"{top_name}.lpf"
        constraints = constraints_file.read_text()
        for site in ("G2", "M1", "L4", "B2", "C2", "C1"):  # osc, FTDI rx/tx, LEDs 0-2 (ULX3S schematic)
            assert f'SITE "{site}"' in constraints, site
        assert re.search(r'FREQUENCY PORT "clk25\S*" 25000000\.0 HZ', constraints)
        assert "FREQUENCY NET" not in constraints, "nextpnr derives the PLL output's"
    # Synthesis is flow.run_yosys's, not Amaranth's script: only the RTLIL and the constraints are written.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{top_name}.il", constraints_file.name])


# --- reports -----------------------------------------------------------------------------------------


def fake_tool_output(lc=3000, fmax=26.5, constraint=24.0, ram=10):
    pnr = {"utilization": {"ICESTORM_LC": {"used": lc, "available": 5280},
                           "ICESTORM_RAM": {"used": ram, "available": 30},
                           "ICESTORM_SPRAM": {"used": 4, "available": 4},
                           "ICESTORM_DSP": {"used": 2, "available": 8},
                           "ICESTORM_PLL": {"used": 1, "available": 1},
                           "SB_IO": {"used": 6, "available": 39}},
           "fmax": {"clk$glb_clk": {"achieved": fmax, "constraint": constraint}}}
    stat = {"design": {"num_cells_by_type": {"SB_DFFER": 700, "SB_DFF": 300, "SB_LUT4": 2500}}}
    return pnr, stat


def make_report(**kwargs):
    board = BOARDS["icebreaker"]
    top = BoardTop(board, cfg=CoreConfig(**SMALL))
    pnr, stat = fake_tool_output(**kwargs)
    return board_report(board, top, pnr_report=pnr, yosys_stat=stat, tools={"yosys": "Yosys 0.70"},
                        wall_time_s={"total": 123.4}, bitstream="build/boards/icebreaker/x.bin", seed=1)


def test_report_fields_and_checks():
    r = make_report()
    assert r["resources"]["LUT"] == {"used": 3000, "available": 5280, "pct": 56.8}
    assert r["resources"]["FF"] == {"used": 1000, "available": 5280, "pct": 18.9}
    assert r["resources"]["BRAM"]["used"] == 10 and r["resources"]["SPRAM"]["pct"] == 100.0
    assert r["clocks"] == {"clk$glb_clk": {"fmax_mhz": 26.5, "constraint_mhz": 24.0, "met": True}}
    assert r["timing_met"] and r["fits"] and r["uart"]["divisor"] == 24
    assert r["core"]["config_id"] == f"0x{config_id(CoreConfig(**SMALL)):08x}"
    assert len(r["core"]["config_sha256"]) == 64 and r["pll"]["divf"] == 63
    json.dumps(r)  # serialisable
    check_report(r)

    slow = make_report(fmax=23.9)
    assert not slow["timing_met"]
    with pytest.raises(SynthError, match=r"icebreaker: misses its clock: clk\$glb_clk 23\.90 MHz < 24 MHz"):
        check_report(slow)
    # A constraint nextpnr derived below the PLL clock is not taken: the PLL frequency is the bar.
    assert not make_report(fmax=23.0, constraint=12.0)["clocks"]["clk$glb_clk"]["met"]
    with pytest.raises(SynthError, match=r"does not fit iCE40UP5K-SG48I: LUT 5300/5280"):
        check_report(make_report(lc=5300))
    with pytest.raises(SynthError, match=r"does not fit .*BRAM 31/30"):
        check_report(make_report(ram=31))
    log = ("Info:     Input frequency of PLL 'pll' is constrained to 12.0 MHz\n"
           "Info:     Derived frequency constraint of 24.0 MHz for net board_core.clk\n")
    assert boards.derived_constraints_mhz(log) == {"board_core.clk": 24.0}
    off = copy.deepcopy(r)
    off["pll"]["nextpnr_derived_mhz"] = {"board_core.clk": 25.0}
    with pytest.raises(SynthError, match="derives 25 MHz on board_core.clk .* the solver meant 24 MHz"):
        check_report(off)
    none = copy.deepcopy(r)
    none["clocks"] = {}
    with pytest.raises(SynthError, match="no clock"):
        check_report(none)


def test_resource_table_renders_the_reports():
    table = render_resource_table([make_report()])
    row = table.splitlines()[2]
    assert "3000 / 5280 (56.8 %) LC" in row and "26.5 / 24 MHz" in row and row.endswith("| met |")
    assert "**missed**" in render_resource_table([make_report(fmax=20.0)])


def test_readme_table_is_rendered_from_the_committed_reports():
    reports = load_reports()
    assert [r["board"] for r in reports] == list(BOARDS), "every board has a committed report"
    for r in reports:
        board = BOARDS[r["board"]]
        assert (r["core"]["preset"], r["core"]["training"]) == (board.preset, board.training), \
            f"{r['board']}: the committed report is of another core than BOARDS builds: run make synth"
        check_report(r)
    readme = boards.README.read_text()
    assert readme_table_block(reports) in readme, "README table differs from synth/reports: run make synth"


@pytest.mark.parametrize("name", list(BOARDS))
def test_committed_report_is_of_the_current_config(name):
    report = next(r for r in load_reports() if r["board"] == name)
    assert report["core"]["config_id"] == f"0x{config_id(BOARDS[name].config()):08x}", \
        f"{name}: synth/reports/{name}.json is of another config than the preset now: run make synth"


def test_board_build_runs_the_flows_yosys_step(tmp_path, monkeypatch):
    """build_board synthesises with flow.run_yosys: the flow's script on the board top (the core's SPRAM
    memories, the stat and the netlist nextpnr reads), and its hard-block check stops before nextpnr."""
    from .test_flow import stand_in_tool

    stat = {"design": {"num_cells_by_type": {"SB_LUT4": 100, "SB_MAC16": 9}}}  # the UP5K has 8
    monkeypatch.setenv("YOSYS", stand_in_tool(tmp_path / "yosys", (
        "script = sys.argv[sys.argv.index('-s') + 1]\n"
        "shutil.copy(script, 'script.seen')\n"
        f"pathlib.Path('stat.json').write_text({json.dumps(stat)!r})\n"
        "pathlib.Path('evcore_icebreaker.json').write_text('{}')")))
    monkeypatch.setenv("NEXTPNR_ICE40", stand_in_tool(tmp_path / "nextpnr", "sys.exit('must not run')"))
    with pytest.raises(SynthError) as err:
        boards.build_board("icebreaker", build_root=tmp_path / "build", reports_dir=tmp_path / "reports")
    build_dir = tmp_path / "build" / "icebreaker"
    assert str(err.value) == \
        f"icebreaker: needs 9 DSP blocks, the device has 8 [yosys stat: {build_dir / 'stat.json'}]"
    assert not (tmp_path / "reports").exists()
    script = (build_dir / "script.seen").read_text().splitlines()
    board = BOARDS["icebreaker"]
    spram = Core(board.config(), board.device, training=board.training).spram_memories
    assert spram, "the iCEBreaker's core has SPRAM memories: -spram and the $meminit deletion are exercised"
    assert script[0] == "read_rtlil evcore_icebreaker.il"
    assert script[1:1 + len(spram)] == [f"delete t:$meminit_v2 r:MEMID=*{m}* %i" for m in spram]
    assert "synth_ice40 -dsp -spram -top evcore_icebreaker" in script
    assert "write_json evcore_icebreaker.json" in script and not any("keep_hierarchy" in ln for ln in script)


def test_cli_readme_table_and_board_failure(capsys, monkeypatch):
    from evcore.synth import flow

    assert flow.main(["--readme-table"]) == 0
    assert capsys.readouterr().out.strip() == render_resource_table(load_reports())

    def miss(name, **_kwargs):
        raise SynthError(f"{name}: misses its clock: clk 20.00 MHz < 24 MHz")

    monkeypatch.setattr(boards, "build_board", miss)
    monkeypatch.setattr(boards, "update_readme", lambda: False)
    assert flow.main(["--board", "icebreaker"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["evcore synth: error: icebreaker: misses its clock: clk 20.00 MHz < 24 MHz"]
