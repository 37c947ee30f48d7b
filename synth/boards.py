"""Board tops: the core behind a UART on an iCEBreaker (iCE40 UP5K) and a ULX3S (ECP5-85F), and
their build (docs/boards.md).

`BOARDS` is the one table of what each board builds: platform, CoreConfig preset, training or
inference-only core, PLL clock and baud rate. `BoardTop` is the platform top (oscillator -> PLL ->
power-on reset -> `BoardCore`); `BoardCore` is everything in the PLL's clock domain (UART host
link, core, LED drivers), the part the simulator tests run without a PLL.

`build_board` places and routes one top with the YoWASP tools, packs the bitstream under
``build/boards/<board>/`` and writes ``synth/reports/<board>.json``; it raises `SynthError` (one
line) when a tool fails, the design does not fit or a clock misses its constraint.
`render_resource_table` turns the committed reports into the README's table.
"""


import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal
from amaranth.hdl._ast import Assign
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from ..golden.config import ConfigError, CoreConfig
from ..hdl.core import Core, config_id
from ..hdl.link import UartHostLink
from ..hdl.uart import UartTiming
from . import flow
from .flow import DEVICES, SynthError, categorise_cells
from .pll import MHZ, ecp5_pll, ice40_pll

__all__ = [
    "BOARDS", "Board", "BoardCore", "BoardTop", "FlagTapCore", "PowerOnReset", "PulseStretcher",
    "board_report", "build_board", "check_report", "load_reports", "render_resource_table",
]

#: Committed reports, one per board (in the source tree: `make synth` rewrites them).
REPORTS_DIR = Path(__file__).resolve().parent / "reports"
#: Bitstreams and tool outputs (not committed), relative to the working directory like `make`.
BUILD_ROOT = Path("build") / "boards"
README = Path(__file__).resolve().parent.parent / "README.md"
TABLE_BEGIN = "<!-- board-table:begin (rendered from synth/reports by `evcore synth --readme-table`) -->"
TABLE_END = "<!-- board-table:end -->"
#: How long a LED stays lit after a pulse (busy at the end of a short pass, a frame error).
LED_HOLD_S = 0.05
#: Reset held after the PLL locks (its output settles; the UART line synchroniser fills).
POR_HOLD_S = 10e-6
#: Gap inside a frame after which the link drops it (LinkFramer's timeout).
LINK_TIMEOUT_S = 1e-3


@dataclasses.dataclass(frozen=True)
class Board:
    """What one board builds. Change `preset`/`training` here to build another core."""

    name: str
    #: amaranth-boards platform class.
    platform: type
    #: evcore.synth.flow device (budget, nextpnr device options).
    device: str
    #: CoreConfig preset (classmethod name) and whether the core trains (False: Core(training=False)).
    preset: str
    training: bool
    #: Oscillator resource and its frequency; the PLL makes `clk_mhz` from it.
    osc: str
    osc_mhz: float
    clk_mhz: float
    baud: int
    #: "led" resource numbers for busy, any sticky flag, UART frame error.
    leds: tuple[int, int, int]
    #: Resource lists of the platform to add (the iCEBreaker's snap-off LED section).
    extra_resources: str | None = None
    #: How a user programs the bitstream.
    program: str = ""

    @property
    def family(self) -> str:
        return DEVICES[self.device].family

    def config(self) -> CoreConfig:
        return getattr(CoreConfig, self.preset)()

    def pll(self):
        solve = ice40_pll if self.family == "ice40" else ecp5_pll
        return solve(self.osc_mhz * MHZ, self.clk_mhz * MHZ)

    def make_platform(self):
        platform = self.platform()
        if self.extra_resources:
            platform.add_resources(getattr(platform, self.extra_resources))
        return platform


#: The board tops. The UP5K training core does not fit yet (7533 LUT4 with Adam), so the
#: iCEBreaker builds the inference-only core; switch `preset`/`training` when a variant fits.
#: Clocks: 24 and 60 MHz give 1 Mbaud with an exact divisor; the tops place at about 26 MHz (iCEBreaker)
#: and 73 MHz (ULX3S), synth/reports/ and docs/boards.md.
BOARDS: dict[str, Board] = {
    "icebreaker": Board(
        "icebreaker", ICEBreakerPlatform, device="up5k", preset="up5k", training=False,
        osc="clk12", osc_mhz=12.0, clk_mhz=24.0, baud=1_000_000,
        # Green (pin 37) busy, red (pin 11) flag on the main board; frame error on the snap-off
        # section's LED 2 (PMOD2 pin 7, the red one in the middle).
        leds=(1, 0, 2), extra_resources="break_off_pmod",
        program="iceprog build/boards/icebreaker/evcore_icebreaker.bin",
    ),
    "ulx3s": Board(
        "ulx3s", ULX3S_85F_Platform, device="ecp5-85f", preset="ecp5_85f", training=True,
        osc="clk25", osc_mhz=25.0, clk_mhz=60.0, baud=1_000_000,
        leds=(0, 1, 2),
        program="openFPGALoader -b ulx3s build/boards/ulx3s/evcore_ulx3s.bit",
    ),
}


# --- RTL -----------------------------------------------------------------------------------------


class FlagTapCore(Core):
    """`Core` with `any_flag`, high while any sticky flag (docs/core.md §1.4) is set.

    Core has no port for its flag register, so this taps it: the register is the ``flags``
    signal Core.elaborate assigns in the sync domain. A Core that renames it fails here, loudly."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.any_flag = Signal()

    def elaborate(self, platform):
        m = super().elaborate(platform)
        found = [s.lhs for s in m._statements.get("sync", ())
                 if isinstance(s, Assign) and getattr(s.lhs, "name", None) == "flags"]
        if len(found) != 1:
            raise RuntimeError("FlagTapCore: Core.elaborate no longer assigns one `flags` register in sync; "
                               "give Core a flags port and use it here")
        m.d.comb += self.any_flag.eq(found[0].any())
        return m


class PulseStretcher(wiring.Component):
    """`o` is high while `i` is and for `hold_cycles` after it was last high (LEDs a person sees)."""

    i: In(1)
    o: Out(1)

    def __init__(self, hold_cycles: int):
        if not isinstance(hold_cycles, int) or hold_cycles < 1:
            raise ValueError(f"PulseStretcher: hold_cycles must be a positive int, not {hold_cycles!r}")
        self.hold_cycles = hold_cycles
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        left = Signal(range(self.hold_cycles + 1))
        with m.If(self.i):
            m.d.sync += left.eq(self.hold_cycles)
        with m.Elif(left != 0):
            m.d.sync += left.eq(left - 1)
        m.d.comb += self.o.eq(self.i | (left != 0))
        return m


class PowerOnReset(wiring.Component):
    """`rst` is high from configuration until `locked` has been high for `hold_cycles` (after a
    two-flop synchroniser), and again whenever lock is lost. Its own registers have no reset, so
    `rst` may drive the reset of the domain it runs in."""

    locked: In(1)
    rst: Out(1)

    def __init__(self, hold_cycles: int):
        if not isinstance(hold_cycles, int) or hold_cycles < 1:
            raise ValueError(f"PowerOnReset: hold_cycles must be a positive int, not {hold_cycles!r}")
        self.hold_cycles = hold_cycles
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        locked = Signal()
        m.submodules.sync_lock = FFSynchronizer(self.locked, locked, reset_less=True)
        count = Signal(range(self.hold_cycles + 1), reset_less=True)  # 0 after configuration
        with m.If(~locked):
            m.d.sync += count.eq(0)
        with m.Elif(count != self.hold_cycles):
            m.d.sync += count.eq(count + 1)
        m.d.comb += self.rst.eq(count != self.hold_cycles)
        return m


class BoardCore(wiring.Component):
    """The board's logic in one clock domain: UART pins -> `UartHostLink` -> the core, and the LEDs.

    Members
    -------
    rx : ``In(1)`` (idle high); tx : ``Out(1)``; led_busy, led_flag, led_frame_error : ``Out(1)``:
    busy and frame errors stretched by `led_hold_cycles`; the flag LED follows the sticky flags.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    led_busy: Out(1)
    led_flag: Out(1)
    led_frame_error: Out(1)

    def __init__(self, core: FlagTapCore, timing: UartTiming, *, led_hold_cycles: int,
                 timeout_s: float = LINK_TIMEOUT_S):
        self.core, self.timing = core, timing
        self.link = UartHostLink(core, timing, timeout_s)
        self.led_hold_cycles = led_hold_cycles
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        m.submodules.busy_led = busy = PulseStretcher(self.led_hold_cycles)
        m.submodules.fe_led = fe = PulseStretcher(self.led_hold_cycles)
        m.d.comb += [
            link.rx.eq(self.rx), self.tx.eq(link.tx),
            busy.i.eq(self.core.busy), self.led_busy.eq(busy.o),
            fe.i.eq(link.frame_error), self.led_frame_error.eq(fe.o),
            self.led_flag.eq(self.core.any_flag),
        ]
        return m


class BoardTop(Elaboratable):
    """The platform top of `board`: oscillator -> PLL -> `PowerOnReset` -> `BoardCore` on the
    board's UART and LEDs. `cfg` overrides the board's preset (the tests build a small core)."""

    def __init__(self, board: Board, cfg: CoreConfig | None = None):
        self.board = board
        self.cfg = board.config() if cfg is None else cfg
        self.pll = board.pll()
        clk_hz = self.pll.f_out_hz
        if clk_hz != int(clk_hz):
            raise ConfigError(f"{board.name}: PLL output {clk_hz:g} Hz is not a whole number of Hz")
        self.clk_hz = int(clk_hz)
        self.timing = UartTiming(self.clk_hz, board.baud)
        self.led_hold_cycles = math.ceil(LED_HOLD_S * self.clk_hz)
        self.por_cycles = math.ceil(POR_HOLD_S * self.clk_hz)

    # Built on first use: a top that is only asked for its clocks (the report) builds no core.
    @functools.cached_property
    def core(self) -> FlagTapCore:
        return FlagTapCore(self.cfg, self.board.device, training=self.board.training)

    @functools.cached_property
    def board_core(self) -> BoardCore:
        return BoardCore(self.core, self.timing, led_hold_cycles=self.led_hold_cycles)

    def elaborate(self, platform):
        m = Module()
        board = self.board
        m.domains.sync = cd = ClockDomain("sync")
        locked = Signal()
        if board.family == "ice40":
            # The oscillator is on the PLL's own pad (iCEBreaker pin 35): SB_PLL40_PAD takes the pin.
            pin = platform.request(board.osc, dir="-")
            m.submodules.pll = self.pll.instance(pad=True, ref=pin.io, clk_out=cd.clk, lock=locked)
        else:
            m.submodules.osc = osc = io.Buffer("i", platform.request(board.osc, dir="-"))
            m.submodules.pll = self.pll.instance(clk_in=osc.i, clk_out=cd.clk, lock=locked)
        # No constraint on `clk` here: nextpnr derives the PLL output's from the oscillator's and the
        # dividers (its log: "Derived frequency constraint"), which also checks the solver; a
        # constraint on the net would name a net flattening renames (nextpnr ignores it, warning).
        m.submodules.por = por = PowerOnReset(self.por_cycles)
        m.d.comb += [por.locked.eq(locked), cd.rst.eq(por.rst)]
        m.submodules.board_core = bc = self.board_core
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [bc.rx.eq(rx.i), tx.o.eq(bc.tx)]
        for number, level in zip(board.leds, (bc.led_busy, bc.led_flag, bc.led_frame_error), strict=True):
            # The buffer applies the pin's inversion (the iCEBreaker's LEDs are active low).
            m.submodules[f"led_{number}"] = led = io.Buffer("o", platform.request("led", number, dir="-"))
            m.d.comb += led.o.eq(level)
        return m


# --- build -----------------------------------------------------------------------------------------


def _top_name(board: Board) -> str:
    return f"evcore_{board.name}"


def _constraints_file(board: Board, name: str) -> str:
    return f"{name}.pcf" if board.family == "ice40" else f"{name}.lpf"


def _write_plan(top: BoardTop, build_dir: Path) -> str:
    """Elaborate `top` on its platform; write its RTLIL and pin constraints (.pcf / .lpf). Synthesis is
    `flow.run_yosys` (the `evcore synth --top` step), so Amaranth's yosys script is not written."""
    name = _top_name(top.board)
    platform = top.board.make_platform()
    plan = platform.prepare(top, name=name)
    if platform.extra_files:  # Amaranth's script would read them; flow.run_yosys does not
        raise SynthError(f"{top.board.name}: the platform has extra files {sorted(platform.extra_files)}, "
                         "which the board flow does not synthesise")
    for file in (f"{name}.il", _constraints_file(top.board, name)):
        (build_dir / file).write_text(plan.files[file])
    return name


def _nextpnr_argv(board: Board, nextpnr: str, name: str, seed: int) -> list[str]:
    device = DEVICES[board.device]
    if board.family == "ice40":
        files = ["--pcf", _constraints_file(board, name), "--asc", f"{name}.asc"]
    else:
        files = ["--lpf", _constraints_file(board, name), "--textcfg", f"{name}.config"]
    # --timing-allow-fail: a missed clock is measured and reported here, then fails the build.
    return [nextpnr, *device.nextpnr_args, "--json", f"{name}.json", *files, "--report", "report.json",
            "--timing-allow-fail", "--seed", str(seed), "-q", "-l", "nextpnr.log"]


def _pack_argv(board: Board, packer: str, name: str) -> tuple[list[str], str]:
    if board.family == "ice40":
        return [packer, f"{name}.asc", f"{name}.bin"], f"{name}.bin"
    return [packer, "--input", f"{name}.config", "--bit", f"{name}.bit"], f"{name}.bit"


#: nextpnr BEL types -> report resources (whole design, as placed).
_UTILISATION = {
    "ice40": {"LUT": "ICESTORM_LC", "BRAM": "ICESTORM_RAM", "SPRAM": "ICESTORM_SPRAM", "DSP": "ICESTORM_DSP",
              "PLL": "ICESTORM_PLL", "IO": "SB_IO"},
    "ecp5": {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "BRAM": "DP16KD", "DSP": "MULT18X18D",
             "PLL": "EHXPLLL", "IO": "TRELLIS_IO"},
}
#: nextpnr-ice40 lists its constant-zero net as a clock when a hard block's clock pin is tied low
#: (the unused clocks of the PLL and SPRAM); it drives no register and is left out of the report.
_CONSTANT_NETS = ("$PACKER_GND_NET", "$PACKER_VCC_NET")
#: Resources of the report and the README table, in order; `fits` checks each against its total.
RESOURCES = ("LUT", "FF", "BRAM", "SPRAM", "DSP")
#: Names in the README: an iCE40 logic cell (LUT4 + carry + FF), ECP5 LUT4s; EBR / DP16KD blocks.
RESOURCE_LABELS = {"ice40": {"LUT": "LC", "BRAM": "EBR"}, "ecp5": {"LUT": "LUT4", "BRAM": "EBR"}}


def derived_constraints_mhz(nextpnr_log: str) -> dict[str, float]:
    """The clock constraints nextpnr derived from PLL settings, by net (from its log)."""
    return {m[2]: float(m[1]) for m in re.finditer(
        r"Derived frequency constraint of ([0-9.]+) MHz for net (\S+)", nextpnr_log)}


def board_report(board: Board, top: BoardTop, *, pnr_report: Mapping, yosys_stat: Mapping,
                 tools: Mapping, wall_time_s: Mapping, bitstream: str, seed: int,
                 derived_mhz: Mapping[str, float] | None = None) -> dict:
    """The report of one board build from the tools' outputs (no tools run here). `derived_mhz`:
    the constraints nextpnr derived from the PLL (`derived_constraints_mhz`)."""
    family, device = board.family, DEVICES[board.device]
    util = pnr_report.get("utilization", {})
    resources = {}
    for resource in RESOURCES:
        bel = _UTILISATION[family].get(resource)
        if bel is not None and bel in util:
            used, available = int(util[bel]["used"]), int(util[bel]["available"])
        elif resource == "FF":  # iCE40: flip-flops sit in the logic cells; yosys counts them
            cells = categorise_cells(family, yosys_stat.get("design", {}).get("num_cells_by_type", {}))
            used, available = cells["FF"], device.budget["FF"]
        else:
            used, available = 0, device.budget[resource]
        resources[resource] = {"used": used, "available": available,
                               "pct": round(100.0 * used / available, 1) if available else None}
    for extra in ("PLL", "IO"):
        bel = _UTILISATION[family][extra]
        if bel in util:
            resources[extra] = {"used": int(util[bel]["used"]), "available": int(util[bel]["available"])}
    fmax = pnr_report.get("fmax") or {}
    # Every register runs in the PLL's domain, so every clock nextpnr lists is held to the PLL
    # frequency as well as to the constraint nextpnr applied (the one it derived from the PLL).
    pll_mhz = top.clk_hz / MHZ
    clocks = {}
    for net, v in sorted(fmax.items()):
        if net.startswith(_CONSTANT_NETS):
            continue
        achieved, constraint = float(v["achieved"]), max(float(v["constraint"]), pll_mhz)
        clocks[net] = {"fmax_mhz": round(achieved, 2), "constraint_mhz": round(constraint, 3),
                       "met": achieved >= constraint}
    cfg = top.cfg
    return {
        "schema": 1,
        "board": board.name,
        "platform": f"{board.platform.__module__}.{board.platform.__qualname__}",
        "device": board.device,
        "part": device.part,
        "core": {"preset": board.preset, "training": board.training,
                 "config_sha256": hashlib.sha256(cfg.to_json().encode()).hexdigest(),
                 "config_id": f"0x{config_id(cfg):08x}"},
        "pll": {**dataclasses.asdict(top.pll), "f_out_hz": top.pll.f_out_hz, "f_vco_hz": top.pll.f_vco_hz,
                "f_pfd_hz": top.pll.f_pfd_hz, "nextpnr_derived_mhz": dict(derived_mhz or {})},
        "uart": {"baud": board.baud, "clk_hz": top.clk_hz, "divisor": top.timing.divisor,
                 "baud_error": round(top.timing.baud_error, 6)},
        "resources": resources,
        "fits": all(r["used"] <= r["available"] for k, r in resources.items() if k in RESOURCES),
        "clocks": clocks,
        "timing_met": bool(clocks) and all(c["met"] for c in clocks.values()),
        "seed": seed,
        "tools": dict(tools),
        "wall_time_s": {k: round(v, 1) for k, v in wall_time_s.items()},
        "bitstream": bitstream,
        "program": board.program,
    }


def check_report(report: Mapping) -> None:
    """Raise `SynthError` (one line) if the design does not fit or a clock misses its constraint."""
    board = report["board"]
    over = [f"{k} {r['used']}/{r['available']}" for k, r in report["resources"].items()
            if k in RESOURCES and r["used"] > r["available"]]
    if over:
        raise SynthError(f"{board}: does not fit {report['part']}: {', '.join(over)}")
    if not report["clocks"]:
        raise SynthError(f"{board}: nextpnr reported no clock (no constraint reached the PLL output?)")
    pll_mhz = report["pll"]["f_out_hz"] / MHZ
    for net, mhz in report["pll"].get("nextpnr_derived_mhz", {}).items():
        if abs(mhz / pll_mhz - 1) > 1e-3:
            raise SynthError(f"{board}: nextpnr derives {mhz:g} MHz on {net} from the PLL's dividers, "
                             f"the solver meant {pll_mhz:g} MHz")
    missed = [f"{net} {c['fmax_mhz']:.2f} MHz < {c['constraint_mhz']:g} MHz"
              for net, c in report["clocks"].items() if not c["met"]]
    if missed:
        raise SynthError(f"{board}: misses its clock: {', '.join(missed)}")


def build_board(name: str, *, build_root: str | os.PathLike = BUILD_ROOT,
                reports_dir: str | os.PathLike = REPORTS_DIR, seed: int = 1,
                progress: Callable[[str], None] | None = None) -> dict:
    """Place and route board `name`, pack its bitstream and write ``<reports_dir>/<name>.json``.

    A design that does not fit stops with `SynthError` before a report is written (yosys's hard-block
    counts, or nextpnr failing to place). One that misses its clock gets its report (it says so),
    then `SynthError`."""
    if name not in BOARDS:
        raise ValueError(f"unknown board {name!r}; known: {', '.join(BOARDS)}")
    board = BOARDS[name]
    say = progress or (lambda _line: None)
    build_dir = Path(build_root) / name
    build_dir.mkdir(parents=True, exist_ok=True)
    for stale in build_dir.iterdir():
        if stale.is_file():
            stale.unlink()
    t_start = time.perf_counter()
    top = BoardTop(board)
    say(f"{name}: {board.preset} core ({'training' if board.training else 'inference only'}) at "
        f"{top.clk_hz / MHZ:g} MHz, UART {board.baud} baud (divisor {top.timing.divisor})")
    top_name = _write_plan(top, build_dir)
    wall = {"elaborate": time.perf_counter() - t_start}
    say(f"{name}: RTLIL and constraints written to {build_dir} ({wall['elaborate']:.0f} s)")

    device = DEVICES[board.device]
    tools, yosys, nextpnr = flow.device_tools(device)
    tools["amaranth-boards"] = importlib.metadata.version("amaranth-boards")
    pack_tool = "icepack" if board.family == "ice40" else "ecppack"
    packer = flow._resolve_tool(pack_tool.upper(), f"yowasp-{pack_tool}")

    # The same yosys step as `evcore synth --top` (the core's SPRAM memories, the hard-block check),
    # on the whole board top, flat: nothing is kept apart, so the kept-module fallback never applies.
    run = flow.run_yosys(yosys, top.core, name=top_name, device=device, build_dir=build_dir,
                         netlist=f"{top_name}.json", label=name, say=say)
    wall["yosys"] = run.wall_s
    say(f"{name}: nextpnr-{board.family} (minutes) ...")

    t0 = time.perf_counter()
    flow._run_tool("nextpnr", _nextpnr_argv(board, nextpnr, top_name, seed), cwd=build_dir,
                   log=build_dir / "nextpnr.log")
    wall["nextpnr"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pack_argv, bitstream = _pack_argv(board, packer, top_name)
    flow._run_tool(pack_tool, pack_argv, cwd=build_dir, log=build_dir / f"{pack_tool}.out")
    wall["pack"] = time.perf_counter() - t0
    wall["total"] = time.perf_counter() - t_start

    report = board_report(board, top, pnr_report=flow._load_json(build_dir / "report.json", "nextpnr report"),
                          yosys_stat=run.stat, tools=tools, wall_time_s=wall,
                          bitstream=str(build_dir / bitstream), seed=seed,
                          derived_mhz=derived_constraints_mhz((build_dir / "nextpnr.log").read_text()))
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    say(f"{name}: " + ", ".join(f"{c['fmax_mhz']:.1f} MHz ({c['constraint_mhz']:g} "
                                 f"{'met' if c['met'] else 'MISSED'})" for c in report["clocks"].values())
        + f"; bitstream {build_dir / bitstream}")
    check_report(report)
    return report


# --- reports and the README table --------------------------------------------------------------


def load_reports(reports_dir: str | os.PathLike = REPORTS_DIR) -> list[dict]:
    """The committed reports, in `BOARDS` order (boards without a report are left out)."""
    reports_dir = Path(reports_dir)
    return [json.loads((reports_dir / f"{b}.json").read_text()) for b in BOARDS
            if (reports_dir / f"{b}.json").is_file()]


def render_resource_table(reports: list[Mapping]) -> str:
    """The README's Markdown table: one row per board, used / total (percent) per resource."""
    header = ["board", "device", "core", "LUT4 / LC", "FF", "EBR", "SPRAM", "DSP", "clock: fmax / constraint",
              "timing"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in reports:
        res = r["resources"]
        label = RESOURCE_LABELS["ice40" if r["device"] == "up5k" else "ecp5"]["LUT"]

        def cell(key, res=res):
            v = res[key]
            if not v["available"]:
                return "-"
            return f"{v['used']} / {v['available']} ({v['pct']:.1f} %)"

        clocks = ", ".join(f"{c['fmax_mhz']:.1f} / {c['constraint_mhz']:g} MHz" for c in r["clocks"].values())
        core = f"`{r['core']['preset']}` {'training' if r['core']['training'] else 'inference only'}"
        lines.append("| " + " | ".join([
            r["board"], r["part"], core, f"{cell('LUT')} {label}", cell("FF"), cell("BRAM"), cell("SPRAM"),
            cell("DSP"), clocks, "met" if r["timing_met"] else "**missed**",
        ]) + " |")
    return "\n".join(lines)


def readme_table_block(reports: list[Mapping]) -> str:
    return f"{TABLE_BEGIN}\n{render_resource_table(reports)}\n{TABLE_END}"


def update_readme(readme: Path = README, reports_dir: str | os.PathLike = REPORTS_DIR) -> bool:
    """Rewrite the table between the README's markers from the reports; False if it has no markers."""
    text = readme.read_text()
    pattern = re.compile(re.escape(TABLE_BEGIN) + r".*?" + re.escape(TABLE_END), re.S)
    if not pattern.search(text):
        return False
    readme.write_text(pattern.sub(lambda _m: readme_table_block(load_reports(reports_dir)), text))
    return True


def run_boards(names: list[str], *, build_root=BUILD_ROOT, seed: int = 1) -> int:
    """``evcore synth --board ...``: build each board, update the README table; 1 if any failed."""
    from ..toolenv import setup_tool_environment

    setup_tool_environment()
    failed = []
    for name in names:
        try:
            build_board(name, build_root=build_root, seed=seed,
                        progress=lambda line: print(f"synth: {line}", file=sys.stderr, flush=True))
        except SynthError as err:
            failed.append(str(err))
    if update_readme():
        print(f"updated the resource table in {README.name} from {REPORTS_DIR}")
    print(render_resource_table(load_reports()))
    for message in failed:
        print(f"evcore synth: error: {message}", file=sys.stderr)
    return 1 if failed else 0
