"""Synthesise the core with another device's CoreConfig preset, for the bench's training rows.

`evcore synth --top core` builds each device's own preset (synth/flow.py CORE_PRESETS: the
ECP5 takes ecp5_85f, 500 steps of 0.1 ms). The training rows measure the up5k preset (250 steps
of 0.2 ms, the configuration the fixed-point model trains Yin-Yang to 98.0 % with) on the RTL;
this builds that same configuration for the ECP5, so its training samples/s on the ECP5 rests on
the RTL's measured cycles and the fmax of the very core that runs them:

    python -m evcore.bench.synth_preset --preset up5k --device ecp5-85f

writes ``build/synth/core-<device>-<preset>/result.json`` (the same flow, `synth.flow.synthesize`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .rtl_bench import SYNTH_ROOT

__all__ = ["preset_result_path"]


def preset_result_path(device: str, preset: str, synth_root: str | Path = SYNTH_ROOT) -> Path:
    """Where the synthesis of `preset` on `device` writes its result."""
    return Path(synth_root) / f"core-{device}-{preset}" / "result.json"


def main(argv=None) -> int:
    from ..golden.config import CoreConfig
    from ..hdl.core import Core
    from ..synth.flow import synthesize

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="up5k")
    p.add_argument("--device", default="ecp5-85f")
    p.add_argument("--freq", type=float, default=None, help="nextpnr target in MHz (default: the device's)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    cfg = getattr(CoreConfig, a.preset)()
    out = preset_result_path(a.device, a.preset)
    r = synthesize(Core(cfg, a.device), name="core", device=a.device, build_dir=out.parent,
                   freq_mhz=a.freq, seed=a.seed, progress=lambda line: print(f"synth: {line}", flush=True))
    print(f"{a.preset} preset on {a.device}: fmax {r['fmax_mhz']} MHz (target {r['target_mhz']}), "
          f"placed {r['placed']}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
