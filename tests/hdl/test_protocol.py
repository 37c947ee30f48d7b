# amaranth: UnusedElaboratable=no
"""`evcore.hdl.protocol.HostLink` (docs/protocol.md) in the Amaranth simulator.

Every error response is provoked and shown to leave the core unchanged (read back after it);
then a whole sample runs through the byte link and equals golden, through the same host
sequence (`evcore.tb.core.host.run_sample`) the word-port tests use.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from evcore.golden.config import CoreConfig, Flag
from evcore.golden.core import FixedCore
from evcore.hdl.core import Core, Reg, Region, synapse_layout
from evcore.hdl.input_buffer import input_entry_layout
from evcore.hdl.protocol import HostLink, Op, Status, command, parse_response
from evcore.tb.core.host import (
    encode_uncut,
    first_mismatch,
    first_train_mismatch,
    read_synapses,
    run_sample,
    run_update,
)

from .test_core import RR_FIELDS

SMALL = dict(sizes=(3, 4, 2), n_steps=16, dt_s=1e-3, record_capacity=8, input_capacity=5,
             lr_mant=(1, 1), lr_shift=(1, 1), silent_threshold=(1.0, 1.0))


class ByteLink:
    """Send command bytes, collect one response frame; also the `run_sample` bus over bytes."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut, self.frame = ctx, dut, dut.frame

    async def transact(self, raw: bytes):
        ctx, dut = self.ctx, self.dut
        for b in raw:
            ctx.set(dut.cmd.payload, b)
            ctx.set(dut.cmd.valid, 1)
            for _ in range(100):
                _, _, ready = await ctx.tick().sample(dut.cmd.ready)  # ready at the edge
                if ready:
                    break
            else:
                raise AssertionError("command byte not taken")
            ctx.set(dut.cmd.valid, 0)
        out = bytearray()
        ctx.set(dut.rsp.ready, 1)
        for _ in range(1000):
            _, _, valid, payload = await ctx.tick().sample(dut.rsp.valid, dut.rsp.payload)
            if valid:
                out.append(payload)
                if len(out) >= 2 and len(out) == 2 + out[1]:
                    ctx.set(dut.rsp.ready, 0)
                    return parse_response(bytes(out))[:2]
        raise AssertionError(f"no complete response, got {bytes(out)!r}")

    async def write(self, region, addr, data):
        if region is Region.INPUT:
            status, _ = await self.transact(command(self.frame, Op.PUSH, entry=data))
            assert status in (Status.OK, Status.TOO_MANY)
            return
        status, _ = await self.transact(command(self.frame, Op.WRITE, region=region, addr=addr, data=data))
        assert status is Status.OK, status

    async def read_many(self, items):
        out = []
        for region, addr in items:
            status, value = await self.transact(command(self.frame, Op.READ, region=region, addr=addr))
            assert status is Status.OK, (region, addr, status)
            out.append(value)
        return out

    async def start_and_wait(self, train=False, update=False):
        op = Op.UPDATE if update else Op.TRAIN if train else Op.START
        status, _ = await self.transact(command(self.frame, op))
        assert status is Status.OK
        while (await self.transact(command(self.frame, Op.STATUS)))[1] & 1:
            pass


def simulate(cfg, bench, training=True):
    dut = HostLink(Core(cfg, training=training))
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def tb(ctx):
        await bench(ByteLink(ctx, dut), dut)

    sim.add_testbench(tb)
    sim.run()


def test_protocol_errors_leave_state_unchanged():
    cfg = CoreConfig(**SMALL)
    fr = None

    async def bench(link, dut):
        nonlocal fr
        fr = link.frame
        word = synapse_layout(cfg).const({"w": -1234, "g": 5, "m": -6}).as_bits()
        T = link.transact
        assert await T(command(fr, Op.ID)) == (Status.OK, dut.core.config_word)
        assert await T(command(fr, Op.WRITE, region=Region.SYNAPSE, addr=3, data=word)) == (Status.OK, 0)

        async def snapshot():
            syn = await link.read_many([(Region.SYNAPSE, a) for a in range(cfg.n_synapses)])
            regs = await link.read_many([(Region.REG, r.value) for r in (Reg.FLAGS, Reg.IN_COUNT, Reg.N_END)])
            return syn, regs

        before = await snapshot()
        assert before[0][3] == word
        cases = [
            (bytes([0x7F, 2, 1, 2]), Status.BAD_OPCODE),
            (bytes([Op.WRITE.value, 3, 0, 3, 0]), Status.BAD_LENGTH),
            (bytes([Op.ID.value, 1, 0]), Status.BAD_LENGTH),
            (command(fr, Op.WRITE, region=Region.SYNAPSE, addr=cfg.n_synapses, data=1), Status.BAD_ADDRESS),
            (command(fr, Op.WRITE, region=Region.STATE, addr=0, data=1), Status.BAD_ADDRESS),
            (command(fr, Op.WRITE, region=Region.REG, addr=Reg.N_END.value, data=1), Status.BAD_ADDRESS),
            (command(fr, Op.READ, region=Region.RECORD, addr=cfg.record_capacity), Status.BAD_ADDRESS),
            (bytes([Op.READ.value, 1 + fr.addr_bytes, 15]) + bytes(fr.addr_bytes), Status.BAD_ADDRESS),
            (command(fr, Op.WRITE, region=Region.LOSS, addr=0, data=1), Status.BAD_ADDRESS),
            (command(fr, Op.READ, region=Region.LOSS, addr=cfg.sizes[-1]), Status.BAD_ADDRESS),
            (command(fr, Op.WRITE, region=Region.REG, addr=Reg.ACTIVE.value, data=1), Status.BAD_ADDRESS),
            (bytes([Op.TRAIN.value, 1, 0]), Status.BAD_LENGTH),
            (bytes([Op.UPDATE.value, 1, 0]), Status.BAD_LENGTH),
            (command(fr, Op.WRITE, region=Region.REG, addr=Reg.LR_MANT.value + cfg.n_layers, data=1),
             Status.BAD_ADDRESS),
            (command(fr, Op.WRITE, region=Region.REG, addr=Reg.CYC_UPDATE.value, data=1), Status.BAD_ADDRESS),
            (command(fr, Op.READ, region=Region.REG, addr=Reg.SILENT.value + cfg.n_layers),
             Status.BAD_ADDRESS),
            (command(fr, Op.READ, region=Region.ADAM_V, addr=cfg.n_synapses), Status.BAD_ADDRESS),
        ]
        for raw, want in cases:
            got = await T(raw)
            assert got[0] is want, f"{raw.hex()}: {got} != {want}"
        assert await snapshot() == before, "a rejected command changed the core"
        # Too many spikes: capacity pushes succeed, the next is refused (IN_OVF, §3.1).
        entry = input_entry_layout(cfg).const({"step": 20, "id": 1}).as_bits()  # step >= T: inert
        for _ in range(cfg.input_capacity):
            assert (await T(command(fr, Op.PUSH, entry=entry)))[0] is Status.OK
        assert (await T(command(fr, Op.PUSH, entry=entry)))[0] is Status.TOO_MANY
        flags, count = await link.read_many([(Region.REG, Reg.FLAGS.value), (Region.REG, Reg.IN_COUNT.value)])
        assert count == cfg.input_capacity and Flag(flags) == Flag.IN_OVF
        # Busy: a command during a pass is refused and changes nothing; STATUS is served.
        assert (await T(command(fr, Op.START)))[0] is Status.OK
        assert await T(command(fr, Op.STATUS)) == (Status.OK, 1)
        got = await T(command(fr, Op.WRITE, region=Region.SYNAPSE, addr=3, data=0))
        assert got[0] is Status.BUSY
        assert (await T(command(fr, Op.TRAIN)))[0] is Status.BUSY
        assert (await T(command(fr, Op.UPDATE)))[0] is Status.BUSY
        assert (await T(command(fr, Op.READ, region=Region.SYNAPSE, addr=3)))[0] is Status.BUSY
        while (await T(command(fr, Op.STATUS)))[1]:
            pass
        assert (await link.read_many([(Region.SYNAPSE, 3)])) == [word]

    simulate(cfg, bench)


#: §8's registered reads (the core's read data registered once more, `Core.read_latency` = 2).
REGISTERED = dict(SMALL, sizes=(3, 3, 3), **RR_FIELDS)


@pytest.mark.parametrize("registered", [False, True], ids=["plain", "ram_read_regs"])
def test_protocol_sample_equals_golden(registered):
    cfg = CoreConfig(**(REGISTERED if registered else SMALL))
    rng = np.random.default_rng(6 if registered else 5)  # seeds whose training sample is not masked
    hi = (1 << (cfg.w_bits - 1)) - 1
    weights = [rng.integers(-hi // 3, hi + 1, size=(b, a)) for a, b in zip(cfg.sizes, cfg.sizes[1:])]
    inputs = (rng.uniform(0, cfg.t_max_s, size=(2, 7)), rng.integers(0, 3, size=(2, 7)), np.array([7, 3]))
    gold = FixedCore(cfg, weights).run(inputs)
    steps, ids, counts = encode_uncut(cfg, inputs)
    results = []
    label = int(np.argmin(gold.first_step[0]))  # an output that spiked: the sample is not masked

    async def bench(link, dut):
        layout = synapse_layout(cfg)
        flat = np.concatenate([w.ravel() for w in weights])
        for a, w in enumerate(flat):
            await link.write(Region.SYNAPSE, a, layout.const({"w": int(w), "g": 0, "m": 0}).as_bits())
        for b in range(2):
            results.append(await run_sample(link, cfg, steps[b], ids[b], int(counts[b])))
        # A training sample over the same link (TRAIN, LABEL), then its gradient words.
        results.append(await run_sample(link, cfg, steps[0], ids[0], int(counts[0]), label=label))
        results.append(await read_synapses(link, cfg))
        results.append(await run_update(link, cfg, lr_mant=(40000, 40000)))

    simulate(cfg, bench)
    for b, r in enumerate(results[:2]):
        bad = first_mismatch(cfg, gold, b, r)
        assert bad is None, f"sample {b}: {bad}"
    assert gold.layer_counts.sum() > 0
    trainer = FixedCore(cfg, weights)
    one = (inputs[0][:1], inputs[1][:1], inputs[2][:1])
    _, _, tr = trainer.gradient(one, np.array([label]))
    bad = first_mismatch(cfg, tr, 0, results[2], check_state=False) or first_train_mismatch(
        cfg, tr, 0, results[2], last=True)
    assert bad is None, f"training sample: {bad}"
    assert tr.active[0] == 1, "the training sample must run its backward pass"
    g = np.concatenate([x.ravel() for x in tr.grads_raw])
    assert (results[3]["g"] == g).all() and np.abs(g).sum() > 0
    trainer.lr_mant[:] = (40000, 40000)
    trainer.update()
    upd = results[4]
    w = np.concatenate([x.ravel() for x in trainer.weights_raw])
    assert (upd["w"] == w).all() and (upd["g"] == 0).all() and upd["lfsr"] == trainer.lfsr_state
    assert (upd["m"] == np.concatenate([x.ravel() for x in trainer.momentum_raw])).all()
    assert (upd["v"] == np.concatenate([x.ravel() for x in trainer.second_moment_raw])).all()
    assert upd["cyc_update"] == trainer.update_cycles()
    assert (w != np.concatenate([x.ravel() for x in weights])).any(), "the update must move a weight"


def test_protocol_inference_only_core():
    """An inference-only build (`Core(cfg, training=False)`): TRAIN and UPDATE are unknown opcodes
    that change nothing, and a sample through the link equals golden."""
    cfg = CoreConfig(**SMALL)
    rng = np.random.default_rng(6)
    hi = (1 << (cfg.w_bits - 1)) - 1
    weights = [rng.integers(-hi // 3, hi + 1, size=(b, a)) for a, b in zip(cfg.sizes, cfg.sizes[1:])]
    inputs = (rng.uniform(0, cfg.t_max_s, size=(1, 7)), rng.integers(0, 3, size=(1, 7)), np.array([7]))
    gold = FixedCore(cfg, weights).run(inputs)
    steps, ids, counts = encode_uncut(cfg, inputs)
    results = []

    async def bench(link, dut):
        layout = synapse_layout(cfg)
        flat = np.concatenate([w.ravel() for w in weights])
        for a, w in enumerate(flat):
            await link.write(Region.SYNAPSE, a, layout.const({"w": int(w), "g": 0, "m": 0}).as_bits())
        results.append(await run_sample(link, cfg, steps[0], ids[0], int(counts[0])))
        before = await read_synapses(link, cfg)
        for op in (Op.TRAIN, Op.UPDATE):
            assert (await link.transact(command(link.frame, op)))[0] is Status.BAD_OPCODE
            assert (await link.transact(command(link.frame, Op.STATUS))) == (Status.OK, 0)
        after = await read_synapses(link, cfg)
        assert all((before[k] == after[k]).all() for k in before), "a rejected TRAIN/UPDATE changed the core"

    simulate(cfg, bench, training=False)
    bad = first_mismatch(cfg, gold, 0, results[0])
    assert bad is None, f"inference-only core: {bad}"
    assert gold.layer_counts.sum() > 0
