"""Host byte protocol of the core (docs/protocol.md): opcodes, status codes, frame sizes, and
`HostLink`, the component that turns a byte stream into `Core` host-port accesses.

This module is the one statement of the protocol: the RTL (`HostLink`) and the host side
(`command`, `parse_response`, used by drivers and tests) read the same enums and sizes.
"""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from evcore.golden.config import Optimizer

from .core import Core, Reg, Region

__all__ = ["HostLink", "Op", "Status", "Frame", "command", "parse_response"]


class Op(enum.Enum, shape=8):
    """Command opcodes (first byte of a command frame)."""

    #: -> 4 bytes: the identification word (config hash, `hdl.core.config_id`).
    ID = 0x01
    #: region (1), address (A), data (W): write one word (idle only).
    WRITE = 0x02
    #: region (1), address (A) -> W bytes: read one word (idle only).
    READ = 0x03
    #: one input-buffer entry (E bytes, `input_entry_layout`): append a spike (idle only).
    PUSH = 0x04
    #: start one sample (idle only); poll with STATUS.
    START = 0x05
    #: -> 1 byte: bit 0 = busy. Allowed at any time.
    STATUS = 0x06
    #: start one training sample with the label in `Reg.LABEL` (idle only): forward, loss unit,
    #: backward pass into the gradient words; poll with STATUS.
    TRAIN = 0x07
    #: apply the update (§6) from the gradient words (idle only); poll with STATUS.
    UPDATE = 0x08


class Status(enum.Enum, shape=8):
    """First byte of every response."""

    OK = 0x00
    #: Unknown opcode (its payload, as announced by the length byte, is skipped).
    BAD_OPCODE = 0x01
    #: The length byte does not match the opcode (payload skipped).
    BAD_LENGTH = 0x02
    #: Region or address out of range, or a write to a read-only word.
    BAD_ADDRESS = 0x03
    #: The core is running; only STATUS is served.
    BUSY = 0x04
    #: The input buffer is full: the spike is dropped and IN_OVF raised (§3.1).
    TOO_MANY = 0x05


class Frame:
    """Byte sizes of a core's frames: A address bytes, W data bytes, E input-entry bytes."""

    def __init__(self, core: Core):
        self.addr_bytes = (core.addr_bits + 7) // 8
        self.data_bytes = (core.data_bits + 7) // 8
        self.entry_bytes = self._entry_bytes(core)
        self.payload = {
            Op.ID: 0,
            Op.WRITE: 1 + self.addr_bytes + self.data_bytes,
            Op.READ: 1 + self.addr_bytes,
            Op.PUSH: self.entry_bytes,
            Op.START: 0,
            Op.STATUS: 0,
        }
        if core.training:  # an inference-only core answers TRAIN and UPDATE with BAD_OPCODE
            self.payload |= {Op.TRAIN: 0, Op.UPDATE: 0}
        self.max_payload = max(self.payload.values())
        self.max_reply = max(4, self.data_bytes, 1)

    @staticmethod
    def _entry_bytes(core: Core) -> int:
        from .input_buffer import input_entry_layout

        return (input_entry_layout(core.cfg).size + 7) // 8


def command(frame: Frame, op: Op, *, region: Region | None = None, addr: int = 0, data: int = 0,
            entry: int = 0) -> bytes:
    """A command frame: opcode, payload length, payload (little-endian fields)."""
    if op is Op.WRITE:
        payload = bytes([region.value]) + addr.to_bytes(frame.addr_bytes, "little") \
            + data.to_bytes(frame.data_bytes, "little")
    elif op is Op.READ:
        payload = bytes([region.value]) + addr.to_bytes(frame.addr_bytes, "little")
    elif op is Op.PUSH:
        payload = entry.to_bytes(frame.entry_bytes, "little")
    else:
        payload = b""
    return bytes([op.value, len(payload)]) + payload


def parse_response(data: bytes) -> tuple[Status, int, int]:
    """(status, value, bytes used) of the response at the start of `data` (value little-endian)."""
    status, n = Status(data[0]), data[1]
    return status, int.from_bytes(data[2 : 2 + n], "little"), 2 + n


class HostLink(wiring.Component):
    """Byte-stream front end of a `Core` (docs/protocol.md).

    Reads command frames from `cmd`, checks opcode, length, region/address, busy and buffer
    space, performs at most one host-port access, and writes one response frame to `rsp`. A
    rejected command changes nothing (except TOO_MANY, which raises IN_OVF as §3.1 says).

    Members
    -------
    cmd : ``In(stream.Signature(8))``; rsp : ``Out(stream.Signature(8))``; the core is a submodule.
    """

    def __init__(self, core: Core):
        self.core = core
        self.frame = Frame(core)
        super().__init__({"cmd": In(stream.Signature(8)), "rsp": Out(stream.Signature(8))})

    def _address_ok(self, m, region, addr, write):
        """Comb: whether (region, addr) names a word this access may touch."""
        core, cfg = self.core, self.core.cfg
        ok = Signal()
        depth = {
            Region.SYNAPSE: cfg.n_synapses, Region.INPUT: cfg.input_capacity,
            Region.STATE: core.n_neurons, Region.RECORD: cfg.record_capacity,
            Region.FIRST: cfg.sizes[-1],
        }  # fmt: skip
        if cfg.revive_hidden > 0:
            depth[Region.VMAX] = cfg.n_hidden
        depth[Region.LOSS] = cfg.sizes[-1]
        if cfg.optimizer is Optimizer.ADAM:
            depth[Region.ADAM_V] = cfg.n_synapses
        writable_regions = (Region.SYNAPSE, Region.VMAX, Region.ADAM_V)
        readable_regs = [r.value for r in Reg]
        per_layer = (Reg.LAYER_COUNT, Reg.LR_MANT, Reg.SILENT)
        readable_regs = [a for a in readable_regs if a not in {r.value for r in per_layer}]
        readable_regs += [r.value + l for r in per_layer for l in range(cfg.n_layers)]
        with m.Switch(region):
            for reg, d in depth.items():
                with m.Case(reg.value):
                    if reg in writable_regions:
                        m.d.comb += ok.eq(addr < d)
                    else:
                        m.d.comb += ok.eq((addr < d) & ~write)
            with m.Case(Region.REG.value):
                writable = 0
                for r in (Reg.FLAGS, Reg.IN_COUNT, Reg.LABEL, Reg.LFSR):
                    writable = writable | (addr == r.value)
                for l in range(cfg.n_layers):
                    writable = writable | (addr == Reg.LR_MANT.value + l) | (addr == Reg.SILENT.value + l)
                readable = 0
                for a in readable_regs:
                    readable = readable | (addr == a)
                m.d.comb += ok.eq(Mux(write, writable, readable))
        return ok

    def elaborate(self, platform):
        core, fr = self.core, self.frame
        m = Module()
        m.submodules.core = core
        A, W = fr.addr_bytes, fr.data_bytes

        op = Signal(8)
        length = Signal(8)
        cnt = Signal(8)
        buf = Signal(8 * max(1, fr.max_payload))
        status = Signal(Status)
        reply = Signal(8 * fr.max_reply)
        reply_len = Signal(range(fr.max_reply + 1))
        idx = Signal(range(fr.max_reply + 2))

        region = buf[0:8]
        addr = buf[8 : 8 + 8 * A]
        wdata = buf[8 + 8 * A : 8 + 8 * (A + W)]
        known = Signal()
        expected = Signal(8)
        with m.Switch(op):
            for o, n in fr.payload.items():
                with m.Case(o.value):
                    m.d.comb += [known.eq(1), expected.eq(n)]
        is_write = op == Op.WRITE.value
        addr_ok = self._address_ok(m, region, addr, is_write)

        m.d.comb += [core.bus_region.eq(region), core.bus_addr.eq(addr), core.bus_wdata.eq(wdata)]

        with m.FSM():
            with m.State("OP"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += op.eq(self.cmd.payload)
                    m.next = "LEN"
            with m.State("LEN"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [length.eq(self.cmd.payload), cnt.eq(0), buf.eq(0)]
                    with m.If(self.cmd.payload == 0):
                        m.next = "CHECK"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    # Bytes beyond the largest payload are consumed and dropped (BAD_LENGTH).
                    with m.If(cnt < fr.max_payload):
                        m.d.sync += buf.word_select(cnt, 8).eq(self.cmd.payload)
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt + 1 == length):
                        m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += [reply.eq(0), reply_len.eq(0), idx.eq(0)]
                busy_ok = ~core.busy | (op == Op.STATUS.value)
                with m.If(~known):
                    m.d.sync += status.eq(Status.BAD_OPCODE)
                    m.next = "RSP"
                with m.Elif(length != expected):
                    m.d.sync += status.eq(Status.BAD_LENGTH)
                    m.next = "RSP"
                with m.Elif(~busy_ok):
                    m.d.sync += status.eq(Status.BUSY)
                    m.next = "RSP"
                with m.Elif(((op == Op.WRITE.value) | (op == Op.READ.value)) & ~addr_ok):
                    m.d.sync += status.eq(Status.BAD_ADDRESS)
                    m.next = "RSP"
                with m.Else():
                    m.d.sync += status.eq(Status.OK)
                    with m.Switch(op):
                        with m.Case(Op.ID.value):
                            m.d.sync += [reply.eq(Const(core.config_word, 32)), reply_len.eq(4)]
                            m.next = "RSP"
                        with m.Case(Op.WRITE.value):
                            m.d.comb += core.bus_we.eq(1)
                            m.next = "RSP"
                        with m.Case(Op.READ.value):
                            m.d.comb += core.bus_re.eq(1)
                            m.next = "READ"
                        with m.Case(Op.PUSH.value):
                            m.d.comb += [
                                core.bus_region.eq(Region.INPUT),
                                core.bus_wdata.eq(buf[: 8 * fr.entry_bytes]),
                                core.bus_we.eq(1),
                            ]
                            with m.If(core.in_full):
                                m.d.sync += status.eq(Status.TOO_MANY)
                            m.next = "RSP"
                        with m.Case(Op.START.value):
                            m.d.comb += core.start.eq(1)
                            m.next = "RSP"
                        with m.Case(Op.TRAIN.value):
                            m.d.comb += core.start_train.eq(1)
                            m.next = "RSP"
                        with m.Case(Op.UPDATE.value):
                            m.d.comb += core.start_update.eq(1)
                            m.next = "RSP"
                        with m.Case(Op.STATUS.value):
                            m.d.sync += [reply.eq(core.busy), reply_len.eq(1)]
                            m.next = "RSP"
            assert core.read_latency in (1, 2), "the link waits at most one cycle for read data"
            with m.State("READ"):
                if core.read_latency == 2:  # §8: the core registers its read data once more
                    m.next = "READ_DATA"
                else:
                    m.d.sync += [reply.eq(core.bus_rdata), reply_len.eq(W)]
                    m.next = "RSP"
            if core.read_latency == 2:
                with m.State("READ_DATA"):
                    m.d.sync += [reply.eq(core.bus_rdata), reply_len.eq(W)]
                    m.next = "RSP"
            with m.State("RSP"):
                # Status byte, length byte, then reply_len bytes, little-endian.
                byte = Signal(8)
                with m.If(idx == 0):
                    m.d.comb += byte.eq(status)
                with m.Elif(idx == 1):
                    m.d.comb += byte.eq(reply_len)
                with m.Else():
                    m.d.comb += byte.eq(reply.word_select((idx - 2).as_unsigned(), 8))
                m.d.comb += [self.rsp.valid.eq(1), self.rsp.payload.eq(byte)]
                with m.If(self.rsp.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == reply_len + 1):
                        m.next = "OP"
        return m
