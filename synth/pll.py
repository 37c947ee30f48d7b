"""PLL divider solvers and primitives for the board tops (docs/boards.md).

The dividers are computed from the requested output frequency, never typed in:

- iCE40 ``SB_PLL40_PAD`` / ``SB_PLL40_CORE`` in ``SIMPLE`` feedback (Lattice, iCE40 sysCLOCK PLL
  Design and Usage Guide, FPGA-TN-02052): f_pfd = f_ref / (DIVR + 1) in 10-133 MHz,
  f_vco = f_pfd * (DIVF + 1) in 533-1066 MHz, f_out = f_vco / 2**DIVQ in 16-275 MHz, with
  DIVR 0-15, DIVF 0-127, DIVQ 1-6 and f_ref 10-133 MHz. FILTER_RANGE follows f_pfd (the
  table icepll uses).
- ECP5 ``EHXPLLL`` with CLKOP fed back (Lattice, ECP5 and ECP5-5G sysCLOCK PLL/DLL Design and
  Usage Guide, FPGA-TN-02200): f_pfd = f_in / CLKI_DIV in 3.125-400 MHz,
  f_out = f_pfd * CLKFB_DIV in 3.125-400 MHz, f_vco = f_out * CLKOP_DIV in 400-800 MHz, each
  divider 1-128.

Each solver searches every divider setting inside those limits and returns the one whose output
is closest to the request (ties: the higher PFD, then the higher VCO, which have less jitter); a
request no setting reaches within `tolerance` raises `PllError` in one line.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Instance

from ..golden.config import ConfigError

__all__ = ["Ecp5Pll", "Ice40Pll", "PllError", "ecp5_pll", "ice40_pll"]

MHZ = 1e6


class PllError(ConfigError):
    """No divider setting reaches the requested frequency within the limits."""


@dataclasses.dataclass(frozen=True)
class Ice40Pll:
    """One iCE40 SB_PLL40 setting (SIMPLE feedback)."""

    f_ref_hz: float
    divr: int
    divf: int
    divq: int

    REF_HZ = (10 * MHZ, 133 * MHZ)
    PFD_HZ = (10 * MHZ, 133 * MHZ)
    VCO_HZ = (533 * MHZ, 1066 * MHZ)
    OUT_HZ = (16 * MHZ, 275 * MHZ)
    DIVR = range(0, 16)
    DIVF = range(0, 128)
    DIVQ = range(1, 7)

    @property
    def f_pfd_hz(self) -> float:
        return self.f_ref_hz / (self.divr + 1)

    @property
    def f_vco_hz(self) -> float:
        return self.f_pfd_hz * (self.divf + 1)

    @property
    def f_out_hz(self) -> float:
        return self.f_vco_hz / 2**self.divq

    @property
    def filter_range(self) -> int:
        """Loop filter setting for the PFD frequency (icepll's table)."""
        pfd_mhz = self.f_pfd_hz / MHZ
        for limit, value in ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5)):
            if pfd_mhz < limit:
                return value
        return 6

    def instance(self, *, pad: bool, ref, clk_out, lock) -> Instance:
        """The primitive: `ref` is the PLL pad's IO value (``pad=True``, SB_PLL40_PAD) or a clock
        signal (SB_PLL40_CORE); `clk_out` gets the global-buffer output, `lock` the lock flag."""
        return Instance(
            "SB_PLL40_PAD" if pad else "SB_PLL40_CORE",
            p_FEEDBACK_PATH="SIMPLE",
            p_DIVR=self.divr,
            p_DIVF=self.divf,
            p_DIVQ=self.divq,
            p_FILTER_RANGE=self.filter_range,
            i_RESETB=1,
            i_BYPASS=0,
            o_PLLOUTGLOBAL=clk_out,
            o_LOCK=lock,
            **({"i_PACKAGEPIN": ref} if pad else {"i_REFERENCECLK": ref}),
        )


@dataclasses.dataclass(frozen=True)
class Ecp5Pll:
    """One ECP5 EHXPLLL setting (feedback from CLKOP)."""

    f_in_hz: float
    clki_div: int
    clkfb_div: int
    clkop_div: int

    IN_HZ = (8 * MHZ, 400 * MHZ)
    PFD_HZ = (3.125 * MHZ, 400 * MHZ)
    VCO_HZ = (400 * MHZ, 800 * MHZ)
    OUT_HZ = (3.125 * MHZ, 400 * MHZ)
    DIV = range(1, 129)

    @property
    def f_pfd_hz(self) -> float:
        return self.f_in_hz / self.clki_div

    @property
    def f_out_hz(self) -> float:
        return self.f_pfd_hz * self.clkfb_div

    @property
    def f_vco_hz(self) -> float:
        return self.f_out_hz * self.clkop_div

    def instance(self, *, clk_in, clk_out, lock) -> Instance:
        """The EHXPLLL, CLKOP fed back; the attributes are the ones Lattice's and ecppll's
        generated instances carry (the loop-filter settings nextpnr expects)."""
        return Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{self.f_in_hz / MHZ:g}",
            a_FREQUENCY_PIN_CLKOP=f"{self.f_out_hz / MHZ:g}",
            a_ICP_CURRENT="12",
            a_LPF_RESISTOR="8",
            a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED",
            p_INTFB_WAKE="DISABLED",
            p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA",
            p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC",
            p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=self.clki_div,
            p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_DIV=self.clkop_div,
            # Phase 0: the coarse phase counter runs a whole output period.
            p_CLKOP_CPHASE=self.clkop_div - 1,
            p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=self.clkfb_div,
            i_RST=0,
            i_STDBY=0,
            i_CLKI=clk_in,
            i_CLKFB=clk_out,
            i_PHASESEL0=0,
            i_PHASESEL1=0,
            i_PHASEDIR=0,
            i_PHASESTEP=0,
            i_PHASELOADREG=0,
            i_PLLWAKESYNC=0,
            i_ENCLKOP=0,
            o_CLKOP=clk_out,
            o_LOCK=lock,
        )


def _inside(value: float, limits: tuple[float, float]) -> bool:
    # A relative slack of 1e-9 so that limits hit exactly by a ratio are not lost to rounding.
    return limits[0] * (1 - 1e-9) <= value <= limits[1] * (1 + 1e-9)


def _range(limits: tuple[float, float]) -> str:
    return f"{limits[0] / MHZ:g}-{limits[1] / MHZ:g} MHz"


def _best(candidates, f_req_hz: float, tolerance: float, what: str):
    best = min(candidates, key=lambda c: (abs(c.f_out_hz - f_req_hz), -c.f_pfd_hz, -c.f_vco_hz), default=None)
    if best is None or abs(best.f_out_hz / f_req_hz - 1) > tolerance:
        near = "" if best is None else f" (nearest {best.f_out_hz / MHZ:.4g} MHz)"
        raise PllError(f"{what}: no divider setting gives {f_req_hz / MHZ:g} MHz within "
                       f"{tolerance:.3%}{near}")
    return best


def ice40_pll(f_ref_hz: float, f_out_hz: float, *, tolerance: float = 0.005) -> Ice40Pll:
    """The SB_PLL40 setting closest to `f_out_hz` from `f_ref_hz`; `PllError` if none is within
    `tolerance` (relative) or the frequencies lie outside the PLL's ranges."""
    what = f"iCE40 PLL {f_ref_hz / MHZ:g} -> {f_out_hz / MHZ:g} MHz"
    if not _inside(f_ref_hz, Ice40Pll.REF_HZ):
        raise PllError(f"{what}: reference outside {_range(Ice40Pll.REF_HZ)}")
    if not _inside(f_out_hz, Ice40Pll.OUT_HZ):
        raise PllError(f"{what}: output outside {_range(Ice40Pll.OUT_HZ)}")
    candidates = (
        s
        for divr in Ice40Pll.DIVR
        if _inside(f_ref_hz / (divr + 1), Ice40Pll.PFD_HZ)
        for divf in Ice40Pll.DIVF
        if _inside(f_ref_hz / (divr + 1) * (divf + 1), Ice40Pll.VCO_HZ)
        for divq in Ice40Pll.DIVQ
        if _inside((s := Ice40Pll(f_ref_hz, divr, divf, divq)).f_out_hz, Ice40Pll.OUT_HZ)
    )
    return _best(candidates, f_out_hz, tolerance, what)


def ecp5_pll(f_in_hz: float, f_out_hz: float, *, tolerance: float = 0.005) -> Ecp5Pll:
    """The EHXPLLL setting closest to `f_out_hz` from `f_in_hz`; `PllError` if none is within
    `tolerance` (relative) or the frequencies lie outside the PLL's ranges."""
    what = f"ECP5 PLL {f_in_hz / MHZ:g} -> {f_out_hz / MHZ:g} MHz"
    if not _inside(f_in_hz, Ecp5Pll.IN_HZ):
        raise PllError(f"{what}: input outside {_range(Ecp5Pll.IN_HZ)}")
    if not _inside(f_out_hz, Ecp5Pll.OUT_HZ):
        raise PllError(f"{what}: output outside {_range(Ecp5Pll.OUT_HZ)}")
    candidates = []
    for clki in Ecp5Pll.DIV:
        if not _inside(f_in_hz / clki, Ecp5Pll.PFD_HZ):
            continue
        for clkfb in Ecp5Pll.DIV:
            out_hz = f_in_hz / clki * clkfb
            if not _inside(out_hz, Ecp5Pll.OUT_HZ):
                continue
            # CLKOP_DIV changes only the VCO: take the highest VCO inside its range.
            clkop = min(int(Ecp5Pll.VCO_HZ[1] * (1 + 1e-9) // out_hz), Ecp5Pll.DIV[-1])
            if clkop >= 1 and _inside(out_hz * clkop, Ecp5Pll.VCO_HZ):
                candidates.append(Ecp5Pll(f_in_hz, clki, clkfb, clkop))
    return _best(candidates, f_out_hz, tolerance, what)
