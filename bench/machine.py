"""The machine a figure was measured on, printed beside every benchmark figure."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU model as the kernel reports it (/proc/cpuinfo), else the platform's name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """e.g. 'AMD EPYC, 2 cores (usable), 24 GiB, Linux 6.1, Python 3.11.7'."""
    mem = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return (f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores (usable){mem}, "
            f"{platform.system()} {platform.release().split('-')[0]}, Python {platform.python_version()}")
