"""The shared multiplier lane (docs/core.md §8, "Shared multipliers"), built from a `CoreConfig`.

The replay MAC, the jump unit and the reciprocal unit each need a product in a few cycles of their
own, never in the same cycle: the MAC in the replay, the jump in its first and its product stage,
the reciprocal (for the loss unit or a jump) in its two Newton stages between them. With
``ram_read_regs = 0`` (the area build, the up5k preset) the training core holds one signed
multiplier for all of them, as wide as the widest use (`lane_bits`): a borrower drives the
operands and ``req`` and takes the product in the same cycle. The products are the same
integers, so golden and §7 do not change. The ECP5 build (``ram_read_regs = 1``) keeps a
multiplier per use: no mux before a multiplier.
"""

from amaranth.hdl import signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from evcore.golden.config import CoreConfig

__all__ = ["shares_multipliers", "lane_bits", "mul_signature", "mul_ports"]


def shares_multipliers(cfg: CoreConfig) -> bool:
    """True where the training core builds the shared lane (``ram_read_regs = 0``)."""
    return not cfg.ram_read_regs


def lane_bits(*needs: tuple[int, int]) -> tuple[int, int]:
    """The lane's signed operand widths (a, b): the widest of its borrowers' `need`s."""
    return max(n[0] for n in needs), max(n[1] for n in needs)


def mul_signature(a_bits: int, b_bits: int) -> wiring.Signature:
    """A borrowed multiplier seen from the borrower: operands out, their product in (same cycle);
    ``req`` says the borrower needs this cycle's product (the lender's priority decides)."""
    return wiring.Signature({
        "a": Out(signed(a_bits)), "b": Out(signed(b_bits)), "req": Out(1),
        "p": In(signed(a_bits + b_bits)),
    })  # fmt: skip


def mul_ports(lane: tuple[int, int] | None, *, need: tuple[int, int], owner: str) -> dict:
    """The ``mul`` member of a unit that borrows the lane (None: no member, the unit multiplies on
    its own). `need` is the (a, b) width the unit's products take; a narrower lane is an error."""
    if lane is None:
        return {}
    if lane[0] < need[0] or lane[1] < need[1]:
        raise ValueError(
            f"{owner}: multiplier lane {lane[0]} x {lane[1]} bits < {need[0]} x {need[1]} needed")
    return {"mul": Out(mul_signature(*lane))}
