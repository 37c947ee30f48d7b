"""Golden model of the saturating multiply-accumulate unit (`evcore.hdl.mac.Mac`).

A packet is a run of elements ``(a, b, last)`` ending with ``last = 1``. The model computes, one
element at a time::

    acc <- clamp(acc + a * b, lo, hi)          lo, hi = signed bounds of acc_width

and after the ``last`` element emits ``MacResult(acc, overflow)`` and starts the next packet from
``acc = 0``. ``overflow`` is set if any step of the packet had to clamp. The clamp is applied at
every step, not once at the end, so order matters: ``+hi`` then ``-1`` gives ``hi - 1`` even if
the exact sum of the packet overflowed on the way (the RTL does the same).

Pure Python integers: there is nothing to vectorise in a sequential clamp, and arbitrary
precision means the model cannot itself wrap.
"""

import operator
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

__all__ = [
    "ACC_WIDTH_MAX",
    "MacModel",
    "MacResult",
    "check_mac_widths",
    "mac_reference",
    "random_packets",
    "signed_bounds",
]

#: Widest accumulator: results must fit NumPy int64, the integer type of golden models and host code.
ACC_WIDTH_MAX = 64


class MacResult(NamedTuple):
    """One result of the MAC: the saturated sum of a packet and whether it saturated."""

    value: int
    overflow: bool


def signed_bounds(width: int) -> tuple[int, int]:
    """Smallest and largest value of a two's complement integer of `width` bits."""
    return -(1 << (width - 1)), (1 << (width - 1)) - 1


def check_mac_widths(a_width: int, b_width: int, acc_width: int) -> None:
    """Raise if the widths do not describe a MAC; shared by the model and the RTL.

    Raises `TypeError` for non-integers and `ValueError` naming the parameter and its bound.
    """
    for name, value in (("a_width", a_width), ("b_width", b_width), ("acc_width", acc_width)):
        # operator.index rejects floats and strings but lets bool through, so check that too.
        if isinstance(value, bool):
            raise TypeError(f"{name} must be an integer, not {value!r}")
        try:
            operator.index(value)
        except TypeError:
            raise TypeError(f"{name} must be an integer, not {value!r}") from None
    for name, value in (("a_width", a_width), ("b_width", b_width)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, not {value}")
    # A single product needs a_width + b_width bits ((-2**(a-1)) * (-2**(b-1)) = 2**(a+b-2));
    # with this bound only the running sum can overflow, never one product on its own.
    if acc_width < a_width + b_width:
        raise ValueError(
            f"acc_width must be at least a_width + b_width = {a_width + b_width}, not {acc_width}"
        )
    if acc_width > ACC_WIDTH_MAX:
        raise ValueError(f"acc_width must be at most {ACC_WIDTH_MAX}, not {acc_width}")


class MacModel:
    """Streaming model: feed elements with `push`, get a `MacResult` after each ``last``."""

    def __init__(self, *, a_width: int, b_width: int, acc_width: int):
        check_mac_widths(a_width, b_width, acc_width)
        self.a_width, self.b_width, self.acc_width = a_width, b_width, acc_width
        self._a_lo, self._a_hi = signed_bounds(a_width)
        self._b_lo, self._b_hi = signed_bounds(b_width)
        self.lo, self.hi = signed_bounds(acc_width)
        self.acc = 0
        self.saturated = False

    def push(self, a: int, b: int, last: bool) -> MacResult | None:
        """Accumulate one element; return the packet's result if `last`, else None."""
        a, b = int(a), int(b)
        # Out-of-range operands are a testbench bug: the RTL would silently truncate them.
        if not self._a_lo <= a <= self._a_hi:
            raise ValueError(f"a={a} does not fit signed({self.a_width})")
        if not self._b_lo <= b <= self._b_hi:
            raise ValueError(f"b={b} does not fit signed({self.b_width})")
        total = self.acc + a * b
        clamped = min(max(total, self.lo), self.hi)
        self.saturated |= clamped != total
        self.acc = clamped
        if not last:
            return None
        result = MacResult(clamped, self.saturated)
        self.acc, self.saturated = 0, False
        return result


def mac_reference(
    a: Iterable[int], b: Iterable[int], last: Iterable[bool], *, a_width: int, b_width: int, acc_width: int
) -> list[MacResult]:
    """Results of every complete packet in the element sequence; a trailing partial packet has none."""
    model = MacModel(a_width=a_width, b_width=b_width, acc_width=acc_width)
    results = []
    for a_i, b_i, last_i in zip(a, b, last, strict=True):
        if (result := model.push(a_i, b_i, bool(last_i))) is not None:
            results.append(result)
    return results


def random_packets(
    rng: np.random.Generator, *, a_width: int, b_width: int, n_packets: int, mean_len: float = 6.0
) -> list[tuple[int, int, bool]]:
    """Random stimulus ``[(a, b, last), ...]`` shared by the Amaranth-simulator and cocotb tests.

    Packet lengths are geometric with mean `mean_len`. A third of the packets are uniform, a third
    drift up and a third down: drifting packets use operands at the bounds with a fixed product
    sign, so they reach the accumulator bounds when ``acc_width`` has a few bits of headroom over
    ``a_width + b_width``. A quarter of a drifting packet's elements are uniform, so a saturated
    sum often leaves the bound again before ``last``: only a sticky `overflow` still reports it.
    """
    a_lo, a_hi = signed_bounds(a_width)
    b_lo, b_hi = signed_bounds(b_width)
    pairs = {"up": [(a_lo, b_lo), (a_hi, b_hi)], "down": [(a_lo, b_hi), (a_hi, b_lo)]}
    elements = []
    for _ in range(n_packets):
        length = int(rng.geometric(1.0 / mean_len))
        mode = rng.choice(["uniform", "up", "down"])
        for index in range(length):
            if mode == "uniform" or rng.random() < 0.25:
                a, b = rng.integers(a_lo, a_hi, endpoint=True), rng.integers(b_lo, b_hi, endpoint=True)
            else:
                a, b = pairs[mode][rng.integers(2)]
            elements.append((int(a), int(b), index == length - 1))
    return elements
