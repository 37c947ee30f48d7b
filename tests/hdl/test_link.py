# amaranth: UnusedElaboratable=no
"""`evcore.hdl.link.LinkFramer` + `HostLink` + `Core` in the Amaranth simulator, byte by byte.

A good frame works; each bad frame (bad CRC, truncated, overlong, garbage before a frame) gets
its link error frame, leaves the core unchanged (synapses and registers read back) and the next
good frame works. A START byte inside a payload is data. The CRC is checked against an
independent bitwise model and the check value docs/protocol.md states.
"""

import random

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import crc, wiring
from amaranth.sim import Simulator

from evcore.golden.config import ConfigError, CoreConfig
from evcore.hdl.core import Core, Reg, Region, synapse_layout
from evcore.hdl.link import (
    LINK_CRC,
    START_BYTE,
    LinkFramer,
    LinkStatus,
    UartHostLink,
    crc16,
    decode_frames,
    encode_frame,
    parse_link_response,
)
from evcore.hdl.protocol import HostLink, Op, Status, command
from evcore.hdl.sim_streams import stream_get, stream_put
from evcore.hdl.uart import UartTiming

from .test_protocol import SMALL

TIMEOUT_CYCLES = 40


def crc16_bitwise(data: bytes) -> int:
    """CRC-16/CCITT-FALSE from its definition (MSB first, poly 0x1021, init 0xFFFF)."""
    reg = 0xFFFF
    for b in data:
        reg ^= b << 8
        for _ in range(8):
            reg = ((reg << 1) ^ 0x1021 if reg & 0x8000 else reg << 1) & 0xFFFF
    return reg


def test_crc_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1  # the check value of docs/protocol.md
    assert LINK_CRC.compute(b"123456789") == crc.catalog.CRC16_CCITT_FALSE(data_width=8).compute(b"123456789")
    rng = random.Random(1)
    for n in range(20):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert crc16(data) == crc16_bitwise(data)
        framed = encode_frame(data)
        assert crc16(framed[1:]) == 0, "CRC high byte first: the residue over frame + CRC is 0"


def test_decode_frames_host_side():
    a, b = bytes([0, 1, 0x7E]), bytes([LinkStatus.GARBAGE.value, 0])
    stream = b"\x11" + encode_frame(a) + encode_frame(b) + encode_frame(a)[:-1]
    got = decode_frames(stream)
    assert got.frames == [a, b] and got.bad == 1 and got.consumed == len(stream) - len(encode_frame(a)) + 1
    bad = bytearray(encode_frame(a))
    bad[3] ^= 0x04  # a data byte
    assert decode_frames(bytes(bad) + encode_frame(b)).frames == [b]
    assert parse_link_response(b) == (LinkStatus.GARBAGE, 0)
    assert parse_link_response(bytes([0, 2, 0x34, 0x12])) == (Status.OK, 0x1234)


def test_bad_timeout_is_refused():
    fr = type("F", (), {"max_payload": 4})()
    with pytest.raises(ValueError, match="timeout_cycles must be a positive int"):
        LinkFramer(fr, 0)


class Top(Elaboratable):
    def __init__(self, cfg):
        self.host = HostLink(Core(cfg))
        self.framer = LinkFramer(self.host.frame, TIMEOUT_CYCLES)

    def elaborate(self, platform):
        m = Module()
        m.submodules.host, m.submodules.framer = self.host, self.framer
        wiring.connect(m, self.framer.cmd, self.host.cmd)
        wiring.connect(m, self.framer.rsp, self.host.rsp)
        return m


class FramedLink:
    """The host side: send raw bytes into `rx`, decode link frames collected from `tx`."""

    def __init__(self, ctx, top, rng):
        self.ctx, self.top, self.frame, self.rng = ctx, top, top.host.frame, rng
        self.out = bytearray()
        self.done = 0  # bytes of `out` already decoded

    async def send(self, raw: bytes, idle_prob=0.2):
        for b in raw:
            await stream_put(self.ctx, self.top.framer.rx, b, rng=self.rng, idle_prob=idle_prob)

    async def frames(self, n: int, cycles=2000):
        """The next `n` link frames from the core, as (status, value)."""
        for _ in range(cycles):
            got = decode_frames(bytes(self.out[self.done :]))
            if len(got.frames) >= n:
                assert got.bad == 0, f"malformed output {bytes(self.out[self.done:]).hex()}"
                assert len(got.frames) == n, f"more frames than expected: {got.frames}"
                self.done += got.consumed
                return [parse_link_response(f) for f in got.frames]
            await self.ctx.tick()
        raise AssertionError(f"{n} frame(s) expected, got {bytes(self.out[self.done:]).hex()}")

    async def quiet(self, cycles=4 * TIMEOUT_CYCLES):
        """The host's resync rule: after an error, let the line rest; nothing more may arrive."""
        await self.ctx.tick().repeat(cycles)
        assert len(self.out) == self.done, f"unexpected output {bytes(self.out[self.done:]).hex()}"

    async def transact(self, inner: bytes):
        await self.send(encode_frame(inner))
        return (await self.frames(1))[0]

    async def read_many(self, items):
        out = []
        for region, addr in items:
            status, value = await self.transact(command(self.frame, Op.READ, region=region, addr=addr))
            assert status is Status.OK, (region, addr, status)
            out.append(value)
        return out


def simulate(cfg, bench, seed=0):
    top = Top(cfg)
    sim = Simulator(top)
    sim.add_clock(1e-8)
    out = bytearray()

    async def main(ctx):
        link = FramedLink(ctx, top, random.Random(seed))
        link.out = out
        await bench(link, top)

    async def collect(ctx):  # every tx byte, with ready dropped at random (and stream rules checked)
        rng = random.Random(seed + 1)
        while True:
            out.append(await stream_get(ctx, top.framer.tx, rng=rng, ready_prob=0.6, timeout_cycles=1 << 30))

    sim.add_testbench(main)
    sim.add_testbench(collect, background=True)
    sim.run()


def test_framed_link_good_and_bad_frames():
    cfg = CoreConfig(**SMALL)

    async def bench(link, top):
        fr = link.frame
        word = synapse_layout(cfg).const({"w": -1234, "g": 5, "m": -6}).as_bits()
        assert await link.transact(command(fr, Op.ID)) == (Status.OK, top.host.core.config_word)
        wr = command(fr, Op.WRITE, region=Region.SYNAPSE, addr=3, data=word)
        assert await link.transact(wr) == (Status.OK, 0)
        assert await link.read_many([(Region.SYNAPSE, 3)]) == [word]
        # A payload full of START bytes (address 0x7E would be out of range: use it as data).
        stuffed = int.from_bytes(bytes([START_BYTE]) * fr.data_bytes, "little")
        stuffed &= (1 << top.host.core.data_bits) - 1
        raw = command(fr, Op.WRITE, region=Region.SYNAPSE, addr=5, data=stuffed)
        assert raw.count(START_BYTE) >= 3
        assert await link.transact(raw) == (Status.OK, 0)
        assert await link.read_many([(Region.SYNAPSE, 5)]) == [stuffed]

        async def snapshot():
            syn = await link.read_many([(Region.SYNAPSE, a) for a in range(cfg.n_synapses)])
            regs = await link.read_many([(Region.REG, r.value) for r in (Reg.FLAGS, Reg.IN_COUNT, Reg.N_END)])
            return syn, regs

        before = await snapshot()
        # Each would change synapse 3 if it reached the core.
        write = command(fr, Op.WRITE, region=Region.SYNAPSE, addr=3, data=0x1234)
        good = encode_frame(write)
        bad_crc = bytearray(good)
        bad_crc[-1] ^= 0x01
        bad_payload = bytearray(good)
        bad_payload[4] ^= 0x80  # a flipped address bit
        n = fr.max_payload + 1
        overlong = bytes([START_BYTE, Op.WRITE.value, n]) + bytes(range(1, n + 3))  # no START in it
        cases = [
            (bytes(bad_crc), [LinkStatus.BAD_CRC]),
            (bytes(bad_payload), [LinkStatus.BAD_CRC]),
            (good[:-3], [LinkStatus.TRUNCATED]),  # cut inside the payload
            (good[:-1], [LinkStatus.TRUNCATED]),  # cut inside the CRC
            (good[:1], [LinkStatus.TRUNCATED]),  # START alone
            (overlong, [LinkStatus.OVERLONG]),
            (bytes([START_BYTE, Op.ID.value, 0xFF]), [LinkStatus.OVERLONG]),
            (b"\x00\x55\xaa", [LinkStatus.GARBAGE]),  # one error frame per run of garbage
        ]
        for raw, want in cases:
            await link.send(raw)
            await link.ctx.tick().repeat(2 * TIMEOUT_CYCLES)
            got = [s for s, _ in await link.frames(len(want))]
            assert got == want, f"{raw.hex()}: {got} != {want}"
            await link.quiet()
            # Resync: the next good frame is served.
            assert await link.transact(command(fr, Op.STATUS)) == (Status.OK, 0)
        # Garbage right before a good frame: its error frame, then the frame's response.
        await link.send(b"\x13\x37" + encode_frame(command(fr, Op.ID)))
        assert await link.frames(2) == [(LinkStatus.GARBAGE, 0), (Status.OK, top.host.core.config_word)]
        # A slow host: gaps below the timeout inside a frame are fine.
        for b in encode_frame(command(fr, Op.ID)):
            await link.send(bytes([b]), idle_prob=0)
            await link.ctx.tick().repeat(TIMEOUT_CYCLES - 2)
        assert await link.frames(1) == [(Status.OK, top.host.core.config_word)]
        # A CRC-valid frame the core rejects passes through to HostLink's own error.
        assert (await link.transact(bytes([Op.ID.value, 1, 0])))[0] is Status.BAD_LENGTH
        assert await snapshot() == before, "a rejected frame changed the core"

    simulate(cfg, bench)


def test_random_corruption_never_reaches_the_core():
    """Seeded single-byte corruptions of a WRITE frame (flip, drop, insert) and an overlong frame
    with START bytes in its rest: each is answered by link error frames only, the core is
    unchanged, and the next frame is served."""
    cfg = CoreConfig(**SMALL)
    rng = random.Random(3)

    async def bench(link, top):
        fr = link.frame
        good = encode_frame(command(fr, Op.WRITE, region=Region.SYNAPSE, addr=2, data=0xABCD))
        before = await link.read_many([(Region.SYNAPSE, 2)])
        # An overlong frame with START bytes in its rest: false frames start there, and are rejected.
        n = fr.max_payload + 1
        overlong = bytes([START_BYTE, Op.WRITE.value, n]) + bytes([START_BYTE, 2, 3, START_BYTE] * 4)
        for trial in range(13):
            raw = bytearray(good)
            i = rng.randrange(1, len(raw))  # START intact: otherwise it is garbage, tested above
            kind = trial % 3
            if trial == 12:
                raw = bytearray(overlong)
            elif kind == 0:
                raw[i] ^= 1 << rng.randrange(8)
            elif kind == 1:
                del raw[i]
            else:
                raw.insert(i, rng.randrange(256))
            await link.send(bytes(raw))
            await link.ctx.tick().repeat(2 * TIMEOUT_CYCLES)
            got = decode_frames(bytes(link.out[link.done :]))
            link.done = len(link.out)
            assert got.bad == 0 and got.frames, f"{bytes(raw).hex()}: no error frame"
            statuses = [parse_link_response(f)[0] for f in got.frames]
            assert all(isinstance(s, LinkStatus) for s in statuses), f"{bytes(raw).hex()}: {statuses}"
            after = await link.read_many([(Region.SYNAPSE, 2)])
            assert after == before, f"{bytes(raw).hex()} changed the core"
        assert statuses[0] is LinkStatus.OVERLONG

    simulate(cfg, bench)


def decode_line(levels: list[int], bit_cycles: int) -> bytes:
    """Bytes of an 8N1 line sampled once per cycle: each falling edge from idle starts a
    character, bits are read at their middles (the host UART's view)."""
    out, i = bytearray(), 1
    while i < len(levels):
        if levels[i - 1] and not levels[i]:
            mid = i + bit_cycles // 2
            if mid + 9 * bit_cycles >= len(levels):
                break
            bits = [levels[mid + k * bit_cycles] for k in range(10)]
            assert bits[0] == 0 and bits[9] == 1, f"bad character at cycle {i}"
            out.append(sum(b << k for k, b in enumerate(bits[1:9])))
            i = mid + 9 * bit_cycles
        else:
            i += 1
    return bytes(out)


def test_uart_loopback_one_command():
    """Host bytes -> UART line -> UartRx -> LinkFramer -> HostLink -> Core -> LinkFramer -> UartTx
    -> line -> decoded bytes: ID, then a WRITE whose READ returns the word."""
    from .test_uart import wave

    cfg = CoreConfig(**SMALL)
    timing = UartTiming(8_000_000, 1_000_000)
    top = UartHostLink(Core(cfg), timing, timeout_s=4 * timing.byte_cycles / timing.clk_hz)
    fr = top.host.frame
    word = synapse_layout(cfg).const({"w": 777, "g": -3, "m": 2}).as_bits()
    commands = [command(fr, Op.ID), command(fr, Op.WRITE, region=Region.SYNAPSE, addr=7, data=word),
                command(fr, Op.READ, region=Region.SYNAPSE, addr=7)]
    line, replies = [], []

    async def host(ctx):
        for inner in commands:
            for b in encode_frame(inner):
                for level in wave(b, timing.divisor):
                    ctx.set(top.rx, level)
                    await ctx.tick()
            for _ in range(40 * timing.byte_cycles):
                await ctx.tick()
                got = decode_frames(decode_line(line, timing.divisor))
                if len(got.frames) == len(replies) + 1:
                    replies.append(parse_link_response(got.frames[-1]))
                    break
            else:
                raise AssertionError(f"no reply to {inner.hex()}")

    async def monitor(ctx):
        while True:
            _, _, level, fe = await ctx.tick().sample(top.tx, top.frame_error)
            assert not fe
            line.append(level)

    sim = Simulator(top)
    sim.add_clock(1 / timing.clk_hz)
    sim.add_testbench(host)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert replies == [(Status.OK, top.host.core.config_word), (Status.OK, 0), (Status.OK, word)]


def test_uart_host_link_refuses_a_timeout_below_two_characters():
    timing = UartTiming(8_000_000, 1_000_000)
    with pytest.raises(ConfigError, match="below two characters"):
        UartHostLink(Core(CoreConfig(**SMALL)), timing, timeout_s=1e-6)


@pytest.mark.parametrize("gap", [TIMEOUT_CYCLES, TIMEOUT_CYCLES + 1])
def test_timeout_boundary(gap):
    """`timeout_cycles` idle cycles between two bytes of a frame are allowed, one more truncates
    it (the framer alone; what reaches `cmd` is recorded)."""
    fr = type("F", (), {"max_payload": 4})()
    dut = LinkFramer(fr, TIMEOUT_CYCLES)
    out, cmd = bytearray(), bytearray()
    inner = bytes([Op.STATUS.value, 0])

    async def tb(ctx):
        raw = encode_frame(inner)
        for i, b in enumerate(raw):
            await stream_put(ctx, dut.rx, b)
            if i == 1:
                await ctx.tick().repeat(gap)
        await ctx.tick().repeat(30)

    async def sink(ctx):
        ctx.set(dut.tx.ready, 1)
        ctx.set(dut.cmd.ready, 1)
        while True:
            _, _, tv, tp, cv, cp = await ctx.tick().sample(dut.tx.valid, dut.tx.payload, dut.cmd.valid,
                                                           dut.cmd.payload)
            if tv:
                out.append(tp)
            if cv:
                cmd.append(cp)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.add_testbench(sink, background=True)
    sim.run()
    frames = [parse_link_response(f)[0] for f in decode_frames(bytes(out)).frames]
    if gap == TIMEOUT_CYCLES:
        assert bytes(cmd) == inner and frames == []
    else:
        assert cmd == b"" and frames == [LinkStatus.TRUNCATED]  # the late CRC bytes are folded into it


def test_forward_latency():
    fr = type("F", (), {"max_payload": 4})()
    dut = LinkFramer(fr, TIMEOUT_CYCLES)
    edges = []

    async def tb(ctx):
        ctx.set(dut.cmd.ready, 1)
        for b in encode_frame(bytes([Op.STATUS.value, 0])):
            await stream_put(ctx, dut.rx, b)  # returns after the edge that took the byte
        for k in range(1, 6):
            _, _, valid = await ctx.tick().sample(dut.cmd.valid)  # valid & ready at edge k
            if valid:
                edges.append(k)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert edges[0] == LinkFramer.forward_latency and edges == [2, 3]  # op, length: 2 bytes
