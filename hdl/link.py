"""Link framing around the host protocol (docs/protocol.md, "Link framing"): START, the HostLink
frame, CRC-16; `LinkFramer`, the component between a raw byte line (a UART) and `HostLink`.

This module is the one statement of the framing: the RTL (`LinkFramer`) and the host side
(`encode_frame`, `decode_frames`, `parse_link_response`) read the same START byte, CRC
(`LINK_CRC`, an `amaranth.lib.crc` algorithm: `.compute()` on the host, `.create()` in the
RTL) and link status codes.
"""

import math
from typing import NamedTuple

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import crc, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from evcore.golden.config import ConfigError

from .core import Core
from .protocol import Frame, HostLink, Status, parse_response
from .uart import UartRx, UartTiming, UartTx

__all__ = [
    "START_BYTE", "CRC_BYTES", "LINK_CRC", "LinkStatus", "LinkFramer", "crc16", "encode_frame",
    "decode_frames", "Decoded", "parse_link_response", "UartHostLink",
]

#: First byte of every link frame, in both directions. It may also occur inside a frame (no
#: stuffing): the receiver looks for it only between frames.
START_BYTE = 0x7E
#: CRC-16/CCITT-FALSE (alias CRC-16/IBM-3740): poly 0x1021, init 0xFFFF, no reflection, xorout 0;
#: check value 0x29B1 over b"123456789". Sent high byte first, so the CRC of a whole
#: frame after START, CRC included, is 0 (the residue the receiver checks).
LINK_CRC = crc.Algorithm(crc_width=16, polynomial=0x1021, initial_crc=0xFFFF, reflect_input=False,
                         reflect_output=False, xor_output=0x0000)(data_width=8)
CRC_BYTES = 2


class LinkStatus(enum.Enum, shape=8):
    """Status byte of a link error frame ``START | status | 0 | CRC``; disjoint from `Status`."""

    #: A whole frame arrived but its CRC is wrong; it was dropped.
    BAD_CRC = 0x81
    #: A frame stopped: no byte for more than `LinkFramer.timeout_cycles`; it was dropped.
    TRUNCATED = 0x82
    #: The length byte exceeds the largest payload (`Frame.max_payload`); the rest of the frame
    #: is dropped up to the next START.
    OVERLONG = 0x83
    #: Bytes other than START between frames (one error frame per run of them).
    GARBAGE = 0x84


assert not {s.value for s in LinkStatus} & {s.value for s in Status}, "link and core status overlap"


def crc16(data: bytes) -> int:
    """`LINK_CRC` of `data`."""
    return LINK_CRC.compute(data)


def encode_frame(inner: bytes) -> bytes:
    """A link frame around `inner` (a `protocol.command` or response frame): START, inner, CRC."""
    return bytes([START_BYTE]) + inner + crc16(inner).to_bytes(CRC_BYTES, "big")


class Decoded(NamedTuple):
    #: The inner frames (status, length, data...) whose CRC was right, in order.
    frames: list[bytes]
    #: Bytes of the input used; the rest is an incomplete frame (keep it for the next call).
    consumed: int
    #: Frames dropped for a bad CRC, plus bytes skipped outside frames.
    bad: int


def decode_frames(data: bytes) -> Decoded:
    """Split a byte stream from the core into link frames (the host's side of the receiver rule:
    hunt for START between frames, trust the length byte, check the CRC)."""
    frames, i, bad = [], 0, 0
    while i < len(data):
        if data[i] != START_BYTE:
            i, bad = i + 1, bad + 1
            continue
        if i + 3 > len(data) or i + 3 + data[i + 2] + CRC_BYTES > len(data):
            break  # incomplete
        end = i + 3 + data[i + 2]
        inner = data[i + 1 : end]
        if crc16(data[i + 1 : end + CRC_BYTES]) == 0:
            frames.append(inner)
            i = end + CRC_BYTES
        else:
            i, bad = i + 1, bad + 1  # hunt again from the byte after this START
    return Decoded(frames, i, bad)


def parse_link_response(inner: bytes) -> tuple[Status | LinkStatus, int]:
    """(status, value) of one inner response frame: a link error or a core response."""
    if inner[0] in {s.value for s in LinkStatus}:
        return LinkStatus(inner[0]), 0
    return parse_response(inner)[:2]


class LinkFramer(wiring.Component):
    """Link framing between a raw byte line and `HostLink` (docs/protocol.md, "Link framing").

    Receive: hunts for START between frames, buffers ``op | length | payload | CRC`` and passes
    ``op | length | payload`` to `cmd` only after the CRC matched, so a bad frame never reaches
    the core. Bad CRC, a gap of more than `timeout_cycles` inside a frame, a length byte above
    `Frame.max_payload` and bytes between frames are answered with a `LinkStatus` error frame;
    the receiver then hunts for the next START. At most one error frame waits to be sent; an
    error raised while one waits is folded into it.

    Transmit: each response of `rsp` goes out as ``START | status | length | data | CRC``, error
    frames between them; neither is cut.

    Throughput one byte per cycle each way; the first byte of a command can be taken from `cmd` 2
    edges after its last CRC byte was (`forward_latency`).

    Members
    -------
    rx : ``In(stream.Signature(8))``, bytes from the line; tx : ``Out(stream.Signature(8))``,
    bytes to the line; cmd : ``Out(stream.Signature(8))``, to ``HostLink.cmd``;
    rsp : ``In(stream.Signature(8))``, from ``HostLink.rsp``.
    """

    #: Clock edges from the one that takes the last CRC byte on `rx` to the one that can take
    #: the first `cmd` byte (one cycle checks the CRC residue).
    forward_latency = 2

    def __init__(self, frame: Frame, timeout_cycles: int):
        if not isinstance(timeout_cycles, int) or timeout_cycles < 1:
            raise ValueError(f"LinkFramer: timeout_cycles must be a positive int, not {timeout_cycles!r}")
        if frame.max_payload > 255:
            raise ValueError(f"LinkFramer: max_payload {frame.max_payload} does not fit the length byte")
        self.frame = frame
        self.timeout_cycles = timeout_cycles
        super().__init__({
            "rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
            "cmd": Out(stream.Signature(8)), "rsp": In(stream.Signature(8)),
        })  # fmt: skip

    def elaborate(self, platform):
        m = Module()
        max_payload = self.frame.max_payload
        n_buf = 2 + max_payload  # op, length, payload

        err_pending = Signal()
        err_code = Signal(LinkStatus, init=LinkStatus.GARBAGE)

        def raise_error(code):
            with m.If(~err_pending):  # fold into the waiting one
                m.d.sync += [err_pending.eq(1), err_code.eq(code)]

        # Receiver.
        m.submodules.rx_crc = rx_crc = LINK_CRC.create()
        buf = Signal(8 * n_buf)
        length = Signal(8)
        cnt = Signal(range(n_buf + CRC_BYTES + 1))
        timer = Signal(range(self.timeout_cycles + 1))
        byte_in = self.rx.valid & self.rx.ready
        m.d.comb += rx_crc.data.eq(self.rx.payload)

        def start_frame():
            m.d.comb += rx_crc.start.eq(1)
            m.d.sync += cnt.eq(0)

        with m.If(byte_in):
            m.d.sync += timer.eq(0)
        with m.Elif(timer != self.timeout_cycles):
            m.d.sync += timer.eq(timer + 1)
        expired = timer == self.timeout_cycles

        with m.FSM(name="rx_fsm"):
            with m.State("HUNT"):  # between frames; a non-START byte is reported
                m.d.comb += self.rx.ready.eq(1)
                with m.If(byte_in):
                    with m.If(self.rx.payload == START_BYTE):
                        start_frame()
                        m.next = "BODY"
                    with m.Else():
                        raise_error(LinkStatus.GARBAGE)
                        m.next = "SKIP"
            with m.State("SKIP"):  # dropping up to START silently; back to HUNT when the line rests
                m.d.comb += self.rx.ready.eq(1)
                with m.If(byte_in & (self.rx.payload == START_BYTE)):
                    start_frame()
                    m.next = "BODY"
                with m.Elif(expired):
                    m.next = "HUNT"
            with m.State("BODY"):  # op, length, payload: START here is data
                m.d.comb += self.rx.ready.eq(1)
                with m.If(byte_in):
                    m.d.comb += rx_crc.valid.eq(1)
                    m.d.sync += [buf.word_select(cnt, 8).eq(self.rx.payload), cnt.eq(cnt + 1)]
                    with m.If(cnt == 1):
                        m.d.sync += length.eq(self.rx.payload)
                        with m.If(self.rx.payload > max_payload):
                            raise_error(LinkStatus.OVERLONG)
                            m.next = "SKIP"
                        with m.Elif(self.rx.payload == 0):
                            m.next = "CRC"
                    with m.Elif((cnt > 1) & (cnt == length + 1)):
                        m.next = "CRC"
                with m.Elif(expired):
                    raise_error(LinkStatus.TRUNCATED)
                    m.next = "HUNT"
            with m.State("CRC"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(byte_in):
                    m.d.comb += rx_crc.valid.eq(1)
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == length + 1 + CRC_BYTES):
                        m.next = "CHECK"
                with m.Elif(expired):
                    raise_error(LinkStatus.TRUNCATED)
                    m.next = "HUNT"
            with m.State("CHECK"):  # the CRC register holds the whole frame's CRC now
                m.d.sync += cnt.eq(0)
                with m.If(rx_crc.match_detected):
                    m.next = "FORWARD"
                with m.Else():
                    raise_error(LinkStatus.BAD_CRC)
                    m.next = "HUNT"
            with m.State("FORWARD"):
                m.d.comb += [self.cmd.valid.eq(1), self.cmd.payload.eq(buf.word_select(cnt, 8))]
                with m.If(self.cmd.ready):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == length + 1):
                        m.next = "HUNT"

        # Transmitter.
        m.submodules.tx_crc = tx_crc = LINK_CRC.create()
        send_err = Signal()  # the frame being sent is an error frame
        tx_code = Signal(LinkStatus, init=LinkStatus.GARBAGE)
        n_out = Signal(range(256 + 2))
        len_out = Signal(8)
        with m.FSM(name="tx_fsm"):
            with m.State("IDLE"):
                with m.If(err_pending):
                    m.d.sync += [err_pending.eq(0), tx_code.eq(err_code), send_err.eq(1)]
                    m.next = "START"
                with m.Elif(self.rsp.valid):
                    m.d.sync += send_err.eq(0)
                    m.next = "START"
            with m.State("START"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(START_BYTE)]
                with m.If(self.tx.ready):
                    m.d.comb += tx_crc.start.eq(1)
                    m.d.sync += n_out.eq(0)
                    m.next = "BODY"
            with m.State("BODY"):
                byte = Signal(8)
                with m.If(send_err):  # status, length 0
                    m.d.comb += [byte.eq(Mux(n_out == 0, tx_code, 0)), self.tx.valid.eq(1)]
                with m.Else():
                    m.d.comb += [byte.eq(self.rsp.payload), self.tx.valid.eq(self.rsp.valid),
                                 self.rsp.ready.eq(self.tx.ready)]
                m.d.comb += [self.tx.payload.eq(byte), tx_crc.data.eq(byte)]
                with m.If(self.tx.valid & self.tx.ready):
                    m.d.comb += tx_crc.valid.eq(1)
                    m.d.sync += n_out.eq(n_out + 1)
                    with m.If(n_out == 1):
                        m.d.sync += len_out.eq(byte)
                        with m.If(byte == 0):
                            m.next = "CRC_HI"
                    with m.Elif((n_out > 1) & (n_out == len_out + 1)):
                        m.next = "CRC_HI"
            with m.State("CRC_HI"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(tx_crc.crc[8:16])]
                with m.If(self.tx.ready):
                    m.next = "CRC_LO"
            with m.State("CRC_LO"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(tx_crc.crc[0:8])]
                with m.If(self.tx.ready):
                    m.next = "IDLE"
        return m


class UartHostLink(wiring.Component):
    """The core behind a UART: pins -> `UartRx` -> `LinkFramer` -> `HostLink` -> `Core` and back
    through `LinkFramer` -> `UartTx` (the board top's host side).

    The inter-byte timeout is `timeout_s` of the clock, at least two characters.

    Members
    -------
    rx : ``In(1)``, the line from the host (idle high); tx : ``Out(1)``, the line to the host;
    frame_error : ``Out(1)``, a pulse per character with a low stop bit.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    frame_error: Out(1)

    def __init__(self, core: Core, timing: UartTiming, timeout_s: float = 1e-3):
        self.timing = timing
        timeout_cycles = math.ceil(timeout_s * timing.clk_hz)
        if timeout_cycles < 2 * timing.byte_cycles:
            raise ConfigError(f"UartHostLink: timeout_s {timeout_s:g} is {timeout_cycles} cycles, below two "
                              f"characters ({2 * timing.byte_cycles} cycles at {timing.baud} baud)")
        self.host = HostLink(core)
        self.framer = LinkFramer(self.host.frame, timeout_cycles)
        self.uart_rx, self.uart_tx = UartRx(timing), UartTx(timing)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.host, m.submodules.framer = self.host, self.framer
        m.submodules.uart_rx, m.submodules.uart_tx = self.uart_rx, self.uart_tx
        m.d.comb += [self.uart_rx.rx.eq(self.rx), self.tx.eq(self.uart_tx.tx),
                     self.frame_error.eq(self.uart_rx.frame_error)]
        wiring.connect(m, self.uart_rx.data, self.framer.rx)
        wiring.connect(m, self.framer.tx, self.uart_tx.data)
        wiring.connect(m, self.framer.cmd, self.host.cmd)
        wiring.connect(m, self.framer.rsp, self.host.rsp)
        return m
