"""The one cocotb + Verilator harness every ``tb/<unit>/test_<unit>.py`` uses (docs/toolchain.md).

Two halves, used from two processes:

pytest side (builds and runs)
    `run_cocotb` converts an Amaranth component to Verilog, builds it with
    ``cocotb_tools.runner.get_runner("verilator")`` in ``sim_build/<sanitised node id>`` and runs a
    cocotb test module there. The test's configuration travels as one JSON document in the
    environment variable `CONFIG_ENV`, never as a dozen ``PARAM_*`` strings. A failed build or
    failed cocotb test becomes a pytest failure carrying the failure messages and the log tail.

simulator side (inside the cocotb coroutines)
    `tb_config` returns that configuration; `start_clock_and_reset` starts the clock, checks the
    ports against the component's signature, zeroes the inputs and resets the design.

Waves: set ``WAVES=1`` to get ``<build dir>/dump.vcd`` (VCD, not FST: FST needs liblz4-dev).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

__all__ = [
    "CONFIG_ENV",
    "SIM_BUILD_ROOT",
    "SimRun",
    "build_dir_for",
    "check_ports",
    "current_node_id",
    "parse_verilog_ports",
    "run_cocotb",
    "start_clock_and_reset",
    "tb_config",
    "verilog_ports",
    "waves_enabled",
    "write_verilog",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Parent of all build dirs; `EVCORE_SIM_BUILD` moves it (e.g. to a cache dir in CI).
SIM_BUILD_ROOT = Path(os.environ.get("EVCORE_SIM_BUILD", REPO_ROOT / "sim_build"))
#: Environment variable carrying the JSON document from `run_cocotb` to `tb_config`.
CONFIG_ENV = "EVCORE_TB_CONFIG"
# Amaranth's Verilog is clean under the default lint set; WIDTH* only fires on vendor cell models
# (post-synthesis sims), and -Wall adds PROCASSINIT/UNUSED noise. See docs/toolchain.md.
VERILATOR_ARGS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC")
# `run_cocotb(fast=True)`: for long runs that touch the design only through its ports (RtlCore).
# cocotb's runner builds with --public-flat-rw, which keeps every signal of the design visible and
# unoptimised; --no-public-flat-rw after it and a control file making only the top-level ports
# public_flat_rw ran the up5k training core at 0.30-0.38 against 0.07 M simulated cycles/s
# (same machine, same job) and halved the cold build. -O3 and the x-options are Verilator's own
# fast settings (Amaranth initialises every register and memory, so no X reaches a result).
FAST_VERILATOR_ARGS = ("--no-public-flat-rw", "-O3", "--x-assign", "fast", "--x-initial", "fast")
# Amaranth emits no `timescale; give Verilator one so netlists with cell models agree.
TIMESCALE = ("1ns", "1ps")
_LOG_TAIL_LINES = 60


# --- pytest side ---------------------------------------------------------------------------------


def current_node_id() -> str:
    """The running pytest node id (e.g. ``tb/mac/test_mac.py::test_mac[8x8-1]``), or ``"manual"``."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    # Format: "<node id> (setup|call|teardown)"; node ids may contain spaces in their params.
    return current.rsplit(" (", 1)[0] if current else "manual"


def build_dir_for(node_id: str | None = None) -> Path:
    """``SIM_BUILD_ROOT/<sanitised node id>``: one dir per test node, so xdist workers never share.

    Not per worker: which worker runs a node changes between runs, which would make every run
    a cold build. Long ids are shortened with a hash so they stay unique.
    """
    node_id = current_node_id() if node_id is None else node_id
    name = node_id.replace(".py::", "-").replace("/", "_")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "manual"
    if len(name) > 100:
        name = f"{name[:80]}-{hashlib.sha1(node_id.encode()).hexdigest()[:12]}"
    return SIM_BUILD_ROOT / name


def waves_enabled() -> bool:
    """Whether ``WAVES`` asks for traces (same truth values as cocotb's runner)."""
    return os.environ.get("WAVES", "").strip().lower() in {"1", "true", "yes", "on"}


def verilog_ports(component) -> dict[str, dict[str, Any]]:
    """Top-level ports `amaranth.back.verilog.convert` will emit: ``{name: {"width", "dir"}}``.

    Mirrors convert()'s naming (signature path joined by ``__``) plus the ``sync`` domain's
    ``clk``/``rst``. Used to check the built model before any stimulus is applied.
    """
    from amaranth.hdl import Shape
    from amaranth.lib import wiring

    ports = {"clk": {"width": 1, "dir": "in"}, "rst": {"width": 1, "dir": "in"}}
    for path, member, _value in component.signature.flatten(component):
        name = "__".join(map(str, path))
        ports[name] = {
            "width": Shape.cast(member.shape).width,
            "dir": "in" if member.flow == wiring.In else "out",
        }
    return ports


def parse_verilog_ports(text: str, module: str) -> dict[str, dict[str, Any]]:
    """Ports of `module` as declared in Yosys-written Verilog: ``{name: {"width", "dir"}}``."""
    body = re.search(rf"^module\s+{re.escape(module)}\s*\(.*?^endmodule", text, re.M | re.S)
    if body is None:
        raise ValueError(f"no module {module} in the Verilog text")
    ports = {}
    declaration = r"^\s*(input|output|inout)\s+(?:signed\s+)?(?:\[(\d+):(\d+)\]\s*)?(\w+)\s*;"
    for direction, msb, lsb, name in re.findall(declaration, body.group(0), re.M):
        width = abs(int(msb) - int(lsb)) + 1 if msb else 1
        ports[name] = {"width": width, "dir": {"input": "in", "output": "out"}.get(direction, direction)}
    return ports


def write_verilog(component, *, name: str, path: Path) -> Path:
    """Convert `component` to Verilog module `name` at `path`; rewrite only if the text changed.

    Keeping the file untouched when nothing changed lets Verilator and make skip the rebuild.
    """
    from amaranth.back import verilog

    text = verilog.convert(component, name=name)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


@dataclasses.dataclass(frozen=True)
class SimRun:
    """Where a finished run left its files."""

    build_dir: Path
    verilog: Path
    results_xml: Path
    log: Path
    waves: Path | None
    #: Wall seconds of the Verilator build (verilator + make); None if `reuse_build` reused it.
    build_s: float | None = None


def _config_dict(config) -> dict:
    if config is None:
        return {}
    if hasattr(config, "to_dict"):  # project configs with their own JSON round-trip
        return config.to_dict()
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return dict(config)


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def _build_stamp(sources: Sequence[Path], args: Sequence[str], waves: bool) -> str:
    """What a Verilator build depends on: the sources' contents, the arguments, the trace switch,
    the Verilator found and the make flags (RtlCore sets OPT_FAST there)."""
    # Only the variable settings of MAKEFLAGS: a parent make adds per-run jobserver options.
    make_vars = [w for w in os.environ.get("MAKEFLAGS", "").split() if "=" in w and not w.startswith("-")]
    context = [list(args), waves, list(TIMESCALE), shutil.which("verilator"), make_vars]
    digest = hashlib.sha256(json.dumps(context).encode())
    for source in sources:
        digest.update(str(source).encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def _failures(results_xml: Path) -> tuple[int, list[str]]:
    """Number of cocotb tests and a line per failed one, read from the xUnit results file."""
    root = ElementTree.parse(results_xml).getroot()
    n_tests, failed = 0, []
    for case in root.iter("testcase"):
        n_tests += 1
        for bad in [*case.findall("failure"), *case.findall("error")]:
            detail = bad.get("message") or (bad.text or "").strip()
            failed.append(f"{case.get('name')}: {detail}")
    return n_tests, failed


def run_cocotb(
    component,
    *,
    toplevel: str,
    test_module: str,
    config: Any = None,
    node_id: str | None = None,
    testcase: str | Sequence[str] | None = None,
    seed: int | None = None,
    build_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    fast: bool = False,
    verilog: Path | None = None,
    extra_sources: Sequence[Path] = (),
    reuse_build: bool = False,
) -> SimRun:
    """Convert, build and run `test_module`'s cocotb tests against `component`; fail the pytest test on error.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design, elaborated with its ``sync`` domain as ``clk``/``rst`` ports.
    toplevel : str
        Verilog module name (and Verilator binary name).
    test_module : str
        Importable name of the cocotb module, e.g. ``"evcore.tb.mac.test_mac"`` (never bare ``tb...``).
    config : mapping, dataclass or object with ``to_dict()``
        JSON-serialisable; returned by `tb_config` inside the simulator.
    node_id : str
        Names the build dir; defaults to the running pytest node.
    testcase : str or list of str
        Run only these cocotb tests of the module.
    seed : int
        ``COCOTB_RANDOM_SEED`` (seeds Python's `random` inside the simulator).
    build_args : list of str
        Extra Verilator arguments on top of `VERILATOR_ARGS`.
    extra_env : mapping
        Extra environment for the simulator process.
    fast : bool
        Build for speed (`FAST_VERILATOR_ARGS`): only the top-level ports are visible to cocotb,
        so the test module must not reach into the hierarchy (``dut.sub.signal``).
    verilog : path
        A ready Verilog file with module `toplevel` (e.g. a synthesized netlist) to simulate instead
        of converting `component`; `component` then only gives the expected ports (its signature).
    extra_sources : list of path
        More Verilog files for Verilator (e.g. the vendor cell models a netlist instantiates).
    reuse_build : bool
        Skip Verilator when its inputs (sources, arguments) are those of the last build in the
        dir: Verilator itself always re-runs, which for a gate-level netlist costs seconds.
    """
    import pytest
    from cocotb_tools.runner import get_runner

    node_id = current_node_id() if node_id is None else node_id
    build_dir = build_dir_for(node_id)
    build_dir.mkdir(parents=True, exist_ok=True)
    waves = waves_enabled()
    if verilog is None:
        vfile = write_verilog(component, name=toplevel, path=build_dir / f"{toplevel}.v")
    else:
        vfile = Path(verilog)

    # The port list sent to the simulator is derived from the signature; make sure it is exactly
    # what the converter wrote, so a change in Amaranth's naming fails here, not as odd X's later.
    ports = verilog_ports(component)
    declared = parse_verilog_ports(vfile.read_text(), toplevel)
    if declared != ports:
        pytest.fail(f"ports of {vfile} differ from the signature: {declared} != {ports}", pytrace=False)

    payload = {
        "config": _config_dict(config),
        "ports": ports,
        "toplevel": toplevel,
        "node_id": node_id,
    }
    env = {
        # cocotb rewrites asserts in every module it imports ("*.py"), numpy and amaranth included:
        # ~1.5 s per run. Our testbenches are test_*.py, so rewrite only those. (The runner puts
        # os.environ over extra_env, so a developer's own setting still wins.)
        "COCOTB_REWRITE_ASSERTION_FILES": os.environ.get("COCOTB_REWRITE_ASSERTION_FILES", "test_*.py"),
        **(extra_env or {}),
        CONFIG_ENV: json.dumps(payload),
    }

    fast_args = []
    if fast:
        vlt = build_dir / "ports.vlt"
        rules = "".join(f'public_flat_rw -module "{toplevel}" -var "{name}"\n' for name in ports)
        text = f"`verilator_config\n{rules}"
        if not vlt.exists() or vlt.read_text() != text:
            vlt.write_text(text)
        fast_args = [*FAST_VERILATOR_ARGS, str(vlt)]

    runner = get_runner("verilator")
    build_log = build_dir / "build.log"
    sources = [vfile, *map(Path, extra_sources)]
    all_args = [*VERILATOR_ARGS, *fast_args, *build_args]
    stamp_file, stamp = build_dir / "build.stamp", _build_stamp(sources, all_args, waves)
    # (`runner.test` runs an existing build on its own: it is told the language, not the sources.)
    if not (reuse_build and (build_dir / toplevel).is_file() and stamp_file.is_file()
            and stamp_file.read_text() == stamp):
        if reuse_build:
            # Whatever is here is another build's (other flags, or a killed build whose precompiled
            # header is stale): start from clean Verilator outputs; ccache keeps recompiling cheap.
            for stale in [*build_dir.glob("Vtop*"), *build_dir.glob("*.o"), *build_dir.glob("*.d")]:
                stale.unlink(missing_ok=True)
        stamp_file.unlink(missing_ok=True)
        t_build = time.perf_counter()
        try:
            runner.build(
                sources=sources,
                hdl_toplevel=toplevel,
                build_dir=build_dir,
                build_args=all_args,
                timescale=TIMESCALE,
                waves=waves,
                log_file=build_log,
            )
        except (RuntimeError, SystemExit, subprocess.CalledProcessError) as exc:  # SystemExit: no verilator
            pytest.fail(f"Verilator build of {toplevel} failed ({exc}); {build_log}:\n{_tail(build_log)}",
                        pytrace=False)
        stamp_file.write_text(stamp)
        build_s = time.perf_counter() - t_build
    else:
        build_s = None

    results_xml = build_dir / "results.xml"
    sim_log = build_dir / "sim.log"
    try:
        # An absolute results path keeps the runner from deriving one from PYTEST_CURRENT_TEST.
        runner.test(
            test_module=test_module,
            hdl_toplevel=toplevel,
            hdl_toplevel_lang="verilog",
            build_dir=build_dir,
            test_dir=build_dir,
            testcase=testcase,
            seed=seed,
            extra_env=env,
            waves=waves,
            results_xml=str(results_xml),
            log_file=sim_log,
        )
    except SystemExit as exc:
        # Under pytest the runner sys.exit()s on failures; we report them from the XML below.
        exit_code = exc.code
    else:
        exit_code = 0

    header = f"cocotb {test_module} on {toplevel} ({build_dir})"
    if not results_xml.is_file():
        pytest.fail(
            f"{header}: simulator exited ({exit_code}) without results; {sim_log}:\n{_tail(sim_log)}",
            pytrace=False,
        )
    n_tests, failed = _failures(results_xml)
    if failed or n_tests == 0 or exit_code:
        summary = "\n".join(failed) if failed else f"{n_tests} tests ran, simulator exit code {exit_code}"
        pytest.fail(f"{header}:\n{summary}\n--- tail of {sim_log} ---\n{_tail(sim_log)}", pytrace=False)
    return SimRun(build_dir, vfile, results_xml, sim_log, build_dir / "dump.vcd" if waves else None, build_s)


# --- simulator side ------------------------------------------------------------------------------


def _harness_payload() -> dict:
    try:
        return json.loads(os.environ[CONFIG_ENV])
    except KeyError:
        raise RuntimeError(
            f"{CONFIG_ENV} is not set: run this cocotb module through evcore.tb.harness.run_cocotb"
        ) from None


def tb_config() -> dict:
    """The `config` given to `run_cocotb`, inside the simulator."""
    return _harness_payload()["config"]


def check_ports(dut, ports: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Assert the built model has exactly the expected ports and widths (default: from `run_cocotb`).

    Catches a testbench written against another port naming or width before it drives garbage.
    """
    ports = _harness_payload()["ports"] if ports is None else ports
    problems = []
    for name, port in ports.items():
        handle = getattr(dut, name, None)
        if handle is None:
            problems.append(f"missing port {name}")
        elif len(handle) != port["width"]:
            problems.append(f"port {name} is {len(handle)} bits, expected {port['width']}")
    assert not problems, f"{dut._name}: " + "; ".join(problems)


async def start_clock_and_reset(dut, *, period_ns: int = 10, reset_cycles: int = 2, check: bool = True):
    """Check ports, zero all inputs, start ``clk`` and hold ``rst`` for `reset_cycles` edges.

    Returns just after a rising edge with ``rst`` low, i.e. values driven now are sampled by the
    first edge out of reset. Returns the clock's `cocotb.task.Task` (cocotb stops it at test end).
    """
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles

    ports = _harness_payload()["ports"]
    if check:
        check_ports(dut, ports)
    for name, port in ports.items():
        if port["dir"] == "in" and name != "clk":
            getattr(dut, name).value = 0
    dut.rst.value = 1
    clock_task = Clock(dut.clk, period_ns, unit="ns").start()
    await ClockCycles(dut.clk, reset_cycles)
    dut.rst.value = 0
    return clock_task
