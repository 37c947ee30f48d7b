"""Saturating multiply-accumulate unit: the smallest real `wiring.Component` in evcore.

It exists to prove the HDL flow end to end (Amaranth simulator, Verilog export, Verilator/cocotb)
and is the template later units follow. The arithmetic is stated once, in `evcore.golden.mac`.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from evcore.golden.mac import check_mac_widths, signed_bounds

__all__ = ["Mac", "mac_input_layout"]


def mac_input_layout(a_width: int, b_width: int) -> data.StructLayout:
    """Payload of the MAC's input stream (also used by testbenches to pack/unpack elements)."""
    return data.StructLayout({"a": signed(a_width), "b": signed(b_width), "last": 1})


class Mac(wiring.Component):
    """Saturating multiply-accumulate over packets of ``(a, b)`` pairs.

    For each packet (elements up to and including one with ``last = 1``) computes
    ``acc <- clamp(acc + a * b)`` per element, clamping to the signed bounds of `acc_width`
    at every step (see `evcore.golden.mac` for the exact semantics), and emits the sum on `o`
    after the ``last`` element. The accumulator then restarts from zero.

    Timing: a two-stage pipeline (product register, then accumulate/clamp into the result
    register). **Latency** is 2 cycles from the transfer of a ``last`` element to ``o.valid``.
    **Throughput** is one element per cycle; packets may follow each other without gaps. The
    result register is separate from the accumulator, so a back-pressured result only stalls the
    input when the *next* packet's ``last`` element reaches the accumulator before the result has
    been taken.

    Stream rules (Amaranth ``docs/stdlib/stream.rst``): ``o.valid`` is a register and never depends
    on ``o.ready``; ``o.payload`` and `overflow` hold while ``o.valid & ~o.ready``. ``i.ready``
    depends combinationally on ``o.ready`` (allowed) but not on ``i.valid``.

    Parameters
    ----------
    a_width, b_width : int
        Operand widths, at least 1.
    acc_width : int
        Accumulator and result width, at least ``a_width + b_width`` (one product never
        overflows) and at most 64 (`evcore.golden.mac.ACC_WIDTH_MAX`).

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"a": signed(a_width), "b": signed(b_width), "last": 1})))``
        Elements to accumulate; ``last`` ends a packet.
    o : ``Out(stream.Signature(signed(acc_width)))``
        Saturated sum of each packet, one payload per packet.
    overflow : ``Out(1)``
        Whether the result currently on `o` saturated at some step of its packet. Loaded together
        with ``o.payload`` and held (sticky) until the next result replaces it.
    """

    def __init__(self, *, a_width: int = 16, b_width: int = 16, acc_width: int = 40):
        check_mac_widths(a_width, b_width, acc_width)
        self._a_width, self._b_width, self._acc_width = a_width, b_width, acc_width
        super().__init__(
            {
                "i": In(stream.Signature(mac_input_layout(a_width, b_width))),
                "o": Out(stream.Signature(signed(acc_width))),
                "overflow": Out(1),
            }
        )

    @property
    def a_width(self) -> int:
        return self._a_width

    @property
    def b_width(self) -> int:
        return self._b_width

    @property
    def acc_width(self) -> int:
        return self._acc_width

    @property
    def latency(self) -> int:
        """Cycles from the transfer of a ``last`` element to ``o.valid`` rising (no back-pressure)."""
        return 2

    def elaborate(self, platform):
        m = Module()
        acc_lo, acc_hi = signed_bounds(self._acc_width)

        # Stage 1: register the product, so the multiplier maps onto a DSP's registered output
        # and is not in series with the adder and the clamp.
        prod = Signal(signed(self._a_width + self._b_width))
        prod_last = Signal()
        prod_valid = Signal()

        # Stage 2: the running sum of the current packet and its sticky saturation flag.
        acc = Signal(signed(self._acc_width))
        acc_saturated = Signal()

        # A product leaves stage 1 unless it ends a packet and the result register is still full.
        result_free = ~self.o.valid | self.o.ready
        advance = prod_valid & (~prod_last | result_free)
        m.d.comb += self.i.ready.eq(~prod_valid | advance)

        with m.If(self.i.ready):
            m.d.sync += [
                prod.eq(self.i.p.a * self.i.p.b),
                prod_last.eq(self.i.p.last),
                prod_valid.eq(self.i.valid),
            ]

        # One extra bit is enough: |prod| <= 2**(acc_width-2) because acc_width >= a_width + b_width.
        total = Signal(signed(self._acc_width + 1))
        clamped = Signal(signed(self._acc_width))
        saturated_now = Signal()
        m.d.comb += total.eq(acc + prod)
        with m.If(total > acc_hi):
            m.d.comb += [clamped.eq(acc_hi), saturated_now.eq(1)]
        with m.Elif(total < acc_lo):
            m.d.comb += [clamped.eq(acc_lo), saturated_now.eq(1)]
        with m.Else():
            m.d.comb += clamped.eq(total)

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(advance):
            with m.If(prod_last):
                # Loading the result wins over the clear above: back-to-back results are allowed.
                m.d.sync += [
                    self.o.payload.eq(clamped),
                    self.o.valid.eq(1),
                    self.overflow.eq(acc_saturated | saturated_now),
                    acc.eq(0),
                    acc_saturated.eq(0),
                ]
            with m.Else():
                m.d.sync += [acc.eq(clamped), acc_saturated.eq(acc_saturated | saturated_now)]

        return m
