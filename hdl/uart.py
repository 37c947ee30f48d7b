"""8N1 UART receiver and transmitter for the host link (docs/protocol.md, "Link framing").

The bit period in cycles (`UartTiming.divisor`) is computed from the clock and the baud rate;
nothing else states it. 1 Mbaud is 24 cycles per bit at 24 MHz and 48 at 48 MHz.
"""

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from evcore.golden.config import ConfigError

__all__ = ["UartTiming", "UartRx", "UartTx", "BITS_PER_BYTE"]

#: Start bit, 8 data bits (LSB first), stop bit.
BITS_PER_BYTE = 10


@dataclass(frozen=True)
class UartTiming:
    """Clock and baud rate of a UART; the divisor and its error are derived from them."""

    #: Clock of the UART logic, Hz (e.g. 24_000_000).
    clk_hz: int
    #: Line rate, bit/s (e.g. 1_000_000).
    baud: int

    #: Fewest cycles per bit: mid-bit sampling is then at 2 +- 1 cycles of 4 (the input
    #: synchroniser makes the start edge uncertain by one cycle).
    MIN_DIVISOR = 4
    #: Largest relative baud error of the rounded divisor; 8N1 with mid-bit sampling tolerates
    #: about 4 % between both ends, this leaves the rest to the other end.
    MAX_BAUD_ERROR = 0.02

    def __post_init__(self):
        for name in ("clk_hz", "baud"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"UartTiming.{name} must be a positive int (Hz), not {v!r}")
        if self.divisor < self.MIN_DIVISOR:
            raise ConfigError(f"UartTiming: clk_hz/baud = {self.clk_hz / self.baud:.3g} cycles per bit, "
                              f"at least {self.MIN_DIVISOR} needed")
        if abs(self.baud_error) > self.MAX_BAUD_ERROR:
            raise ConfigError(f"UartTiming: baud error {self.baud_error:+.2%} of divisor {self.divisor} "
                              f"exceeds {self.MAX_BAUD_ERROR:.0%}")

    @property
    def divisor(self) -> int:
        """Cycles per bit."""
        return round(self.clk_hz / self.baud)

    @property
    def baud_error(self) -> float:
        """(actual - requested) / requested baud rate."""
        return self.clk_hz / self.divisor / self.baud - 1

    @property
    def byte_cycles(self) -> int:
        """Cycles of one 8N1 character."""
        return BITS_PER_BYTE * self.divisor


class UartRx(wiring.Component):
    """8N1 receiver with mid-bit sampling.

    The line goes through a 2-flop synchroniser; a falling edge starts a character, the start
    bit is checked at its middle (a shorter low glitch is ignored) and every later bit is sampled
    one divisor apart. A byte is offered on `data` when its stop bit is sampled high; a low stop
    bit drops it and pulses `frame_error`, and the receiver then waits for the line to go high
    (a break is one error). A byte completed while the previous one still waits on `data` is
    dropped and pulses `overrun`.

    Members
    -------
    rx : ``In(1)``, the line (idle high); data : ``Out(stream.Signature(8))``;
    frame_error : ``Out(1)``, one-cycle pulse; overrun : ``Out(1)``, one-cycle pulse.
    """

    rx: In(1, init=1)
    data: Out(stream.Signature(8))
    frame_error: Out(1)
    overrun: Out(1)

    def __init__(self, timing: UartTiming):
        self.timing = timing
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        d = self.timing.divisor
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(d))
        bit = Signal(range(8))
        shift = Signal(8)
        tick = timer == 0
        with m.If(~tick):
            m.d.sync += timer.eq(timer - 1)
        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(d // 2 - 1)  # to the middle of the start bit
                    m.next = "START"
            with m.State("START"):
                with m.If(tick):
                    m.d.sync += [timer.eq(d - 1), bit.eq(0)]
                    with m.If(rx):  # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(tick):
                    m.d.sync += [shift.eq(Cat(shift[1:], rx)), timer.eq(d - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(tick):
                    with m.If(rx):
                        with m.If(self.data.valid & ~self.data.ready):
                            m.d.comb += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.data.valid.eq(1), self.data.payload.eq(shift)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.frame_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """8N1 transmitter: takes a byte from `data` when idle and sends start, 8 data bits LSB first,
    stop, each `UartTiming.divisor` cycles; the next byte's start bit follows the stop bit at once.
    `tx` comes straight from a flip-flop (no glitches).

    Members
    -------
    data : ``In(stream.Signature(8))``; tx : ``Out(1)``, the line (idle high).
    """

    data: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, timing: UartTiming):
        self.timing = timing
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        d = self.timing.divisor
        shreg = Signal(BITS_PER_BYTE, init=(1 << BITS_PER_BYTE) - 1)
        left = Signal(range(BITS_PER_BYTE + 1))
        timer = Signal(range(d))
        # Ready in the last cycle of the stop bit too: the next start bit follows without a gap.
        m.d.comb += [self.tx.eq(shreg[0]), self.data.ready.eq((left == 0) | ((left == 1) & (timer == 0)))]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [shreg.eq(Cat(Const(0, 1), self.data.payload, Const(1, 1))),
                         left.eq(BITS_PER_BYTE), timer.eq(d - 1)]
        with m.Elif(left != 0):
            with m.If(timer == 0):
                m.d.sync += [shreg.eq(Cat(shreg[1:], Const(1, 1))), left.eq(left - 1), timer.eq(d - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
