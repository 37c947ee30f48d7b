# amaranth: UnusedElaboratable=no
"""`evcore.hdl.update` in the Amaranth simulator against `evcore.golden.update.update_weights`.

The datapath alone (with the LFSR, as the unit wires it): many random synapses with idle gaps
(and the rails: w, g, m at their limits, v̂ = 0 and large, g = 0, lr_mant 0 and maximal), each
compared with golden applied to that one synapse (golden's own kernel on a one-synapse network),
flags per synapse, and the LFSR state at the end.
The unit: a harness with a real single-port synapse memory, several consecutive updates with
fresh gradients, every word, v̂, the LFSR state, the flags and the exact cycle count compared
with golden `FixedCore`'s update and `update_cycles`, for every optimizer x update rounding.
"""

import numpy as np
import pytest
from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal
from amaranth.lib import memory
from amaranth.sim import Simulator

from evcore.golden.config import Build, CoreConfig, Flag, Optimizer, RoundingMode
from evcore.golden.core import FixedCore
from evcore.golden.ops import pack_params
from evcore.golden.update import update_weights, v_encode
from evcore.hdl.core import synapse_layout
from evcore.hdl.lfsr import Lfsr
from evcore.hdl.update import UpdateDatapath, UpdateUnit, datapath_latency, schedule, update_cycles
from evcore.hdl.update_seq import SequencedUpdateUnit, seq_update_cycles

OPTIMIZERS = [
    pytest.param(dict(optimizer="adam"), id="adam"),
    pytest.param(dict(optimizer="lion"), id="lion"),
    pytest.param(dict(optimizer="sgd", mom_shift=4), id="sgd-mom"),
    pytest.param(dict(optimizer="sgd", mom_shift=0), id="sgd"),
]
ROUNDINGS = ["stochastic", "half_up", "floor"]


def small_cfg(sizes=(3, 6, 2), **changes):
    n = len(sizes) - 1
    per_layer = dict(w_frac=(11, 12, 12, 12)[:n], lr_mant=(41943, 30000, 20000)[:n],
                     lr_shift=(12, 11, 10)[:n], silent_threshold=(1.0,) * n)
    return CoreConfig.up5k(sizes=sizes, **(per_layer | changes))


# -- golden, one synapse at a time -------------------------------------------------------------


def golden_synapse(cfg, P, mat, syn, lr_mant, bump, state):
    """update_weights on a network whose only synapse lies in matrix ``mat``: (result, state, flags)."""
    sizes = np.zeros(cfg.n_layers + 1, dtype=np.int64)
    sizes[mat] = sizes[mat + 1] = 1
    arr = {k: np.array([syn.get(k, 0)], dtype=np.int64) for k in ("w", "g", "m", "v")}
    state, fl = update_weights(P, sizes, np.zeros(cfg.n_layers, dtype=np.int64), arr["w"], arr["g"],
                               arr["m"], arr["v"], np.asarray(lr_mant, dtype=np.int64),
                               np.array(cfg.lr_shift, dtype=np.int64), np.asarray(bump, dtype=np.int64),
                               cfg.rsqrt_rom, np.int64(state))
    return {k: int(a[0]) for k, a in arr.items()}, int(state), int(fl)


def random_synapses(cfg, rng, n, noncanonical=False):
    """Random words (magnitudes spread over all scales) with the rails mixed in; with
    ``noncanonical`` half of the v̂ words are encodings enc never writes (a small mantissa under a
    large exponent) whose value dec(v̂) < 2^(2 b_G − 1) still holds."""
    gb, wb = cfg.grad_bits, cfg.w_bits
    g_lo, g_hi = -(1 << (gb - 1)), (1 << (gb - 1)) - 1
    w_lo, w_hi = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
    v_max = 1 << (2 * gb - 2)  # g·g of the most negative gradient: the largest reachable V

    def word(lo, hi, rails):
        u = rng.random()
        if u < 0.15:
            return int(rng.choice(rails))
        x = int(rng.integers(lo, hi + 1))
        return x >> int(rng.integers(0, hi.bit_length()))

    out = []
    for _ in range(n):
        syn = {"w": word(w_lo, w_hi, [w_lo, w_hi, 0, w_lo + 1, w_hi - 1]),
               "g": word(g_lo, g_hi, [g_lo, g_hi, 0, 0, 1, -1])}
        if cfg.has_momentum:
            syn["m"] = word(g_lo, g_hi, [g_lo, g_hi, 0, g_hi - 1])
        if cfg.optimizer is Optimizer.ADAM:
            u = rng.random()
            big = v_max >> int(rng.integers(0, 2 * gb - 1))
            vv = 0 if u < 0.1 else (v_max if u < 0.15 else int(rng.integers(0, big + 1)))
            syn["v"] = int(v_encode(np.int64(vv), cfg.v_mant_bits))
            if noncanonical and rng.random() < 0.5:
                vb = 2 * gb - 1
                e = int(rng.integers(0, min(vb, 1 << cfg.v_exp_bits)))
                mant = int(rng.integers(0, min(1 << cfg.v_mant_bits, 1 << (vb - e))))
                if rng.random() < 0.2:  # a zero mantissa under any exponent: dec(v̂) = 0
                    e, mant = int(rng.integers(0, 1 << cfg.v_exp_bits)), 0
                syn["v"] = (e << cfg.v_mant_bits) | mant
        out.append(syn)
    return out


def packed_v(cfg):
    return cfg.optimizer is Optimizer.ADAM


# -- the datapath alone ------------------------------------------------------------------------


class DatapathHarness(Elaboratable):
    """UpdateDatapath with the LFSR wired as in UpdateUnit (draws taken in (F2), in order)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.dp = UpdateDatapath(cfg)
        self.lfsr = Lfsr(cfg)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dp, m.submodules.lfsr = self.dp, self.lfsr
        if self.cfg.update_rounding is RoundingMode.STOCHASTIC:
            m.d.comb += [self.dp.r.eq(self.lfsr.draw), self.lfsr.advance.eq(self.dp.r_take)]
        return m

DP_CONFIGS = [
    pytest.param(small_cfg(**opt, update_rounding=rd), id=f"{opt_p.id}-{rd}")
    for opt_p in OPTIMIZERS for opt in [opt_p.values[0]] for rd in ROUNDINGS
] + [
    # k >= v_mant_bits (the ROM index masks truncated bits), floor moments, s = 0 shifts.
    pytest.param(small_cfg(optimizer="adam", v_mant_bits=6, rsqrt_index_bits=8, state_rounding="floor"),
                 id="adam-narrow-v"),
    pytest.param(small_cfg(optimizer="lion", lr_shift=(0, 3), lr_mant=(3, 5), state_rounding="floor",
                           update_rounding="half_up"), id="lion-shift0"),
    pytest.param(small_cfg(optimizer="sgd", mom_shift=1, lr_shift=(0, 20), sr_bits=5), id="sgd-sr5"),
    pytest.param(CoreConfig.ecp5_85f(), id="ecp5-85f"),
    # §8 ram_read_regs: the input register (and Adam's ROM word register) with each optimizer.
    *(pytest.param(small_cfg(**opt_p.values[0], ram_read_regs=1), id=f"{opt_p.id}-rr")
      for opt_p in OPTIMIZERS),
]


@pytest.mark.parametrize("cfg", DP_CONFIGS)
def test_datapath(cfg):
    rng = np.random.default_rng(7)
    n = 400
    syns = random_synapses(cfg, rng, n)
    mats = [int(x) for x in rng.integers(0, cfg.n_layers, n)]
    lr_hi = (1 << cfg.lr_bits) - 1
    lr_mant = [int(rng.choice([0, lr_hi, int(rng.integers(0, lr_hi + 1))])) for _ in range(cfg.n_layers)]
    lr_mant[0] = cfg.lr_mant[0]
    bump = [int(rng.integers(-(1 << (cfg.w_bits - 2)), (1 << (cfg.w_bits - 2)) + 1)) for _ in lr_mant]
    bump[0] = 0
    stoch = cfg.update_rounding is RoundingMode.STOCHASTIC
    P = pack_params(cfg)
    state = cfg.lfsr_seed
    want = []
    for mat, syn in zip(mats, syns):
        res, state, fl = golden_synapse(cfg, P, mat, syn, lr_mant, bump, state)
        want.append(res | {"mom_sat": int(bool(fl & Flag.MOM_SAT)), "w_sat": int(bool(fl & Flag.W_SAT))})

    dut = DatapathHarness(cfg)
    dp = dut.dp
    got, got_v = [], []
    fields = ["w", "mom_sat", "w_sat"] + (["m"] if cfg.has_momentum else [])
    gaps = rng.random(n) < 0.2  # idle cycles between synapses: no draw, no result

    async def drive(ctx):
        ctx.set(dp.lr_mant, lr_mant)
        ctx.set(dp.bump, bump)
        for a, (mat, syn) in enumerate(zip(mats, syns)):
            if gaps[a]:
                ctx.set(dp.i.valid, 0)
                await ctx.tick()
            ctx.set(dp.i.valid, 1)
            ctx.set(dp.i.p, dict(syn) | {"mat": mat})
            await ctx.tick()
        ctx.set(dp.i.valid, 0)

    async def collect(ctx):
        for _ in range(3 * n + 50):
            if ctx.get(dp.o.valid):
                o = ctx.get(dp.o.p)
                got.append({k: int(getattr(o, k)) for k in fields})
            if packed_v(cfg) and ctx.get(dp.v_o.valid):
                got_v.append(int(ctx.get(dp.v_o.p)))
            await ctx.tick()
        assert ctx.get(dut.lfsr.state) == (state if stoch else cfg.lfsr_seed)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.add_testbench(collect)
    sim.run()
    if packed_v(cfg):
        assert got_v == [w["v"] for w in want]
    for k, (syn, w, g) in enumerate(zip(syns, want, got, strict=True)):
        assert g == {f: w[f] for f in fields}, f"synapse {k} {syn} matrix {mats[k]}: golden {w} rtl {g}"
    assert any(w["w_sat"] for w in want), "coverage: W_SAT"
    if cfg.optimizer is Optimizer.SGD and cfg.mom_shift > 0:
        assert any(w["mom_sat"] for w in want), "coverage: MOM_SAT"


# -- the unit over a real single-port memory ---------------------------------------------------


class Harness(Elaboratable):
    """The config's update unit (`UpdateUnit`, or `SequencedUpdateUnit` for the area build) plus the
    synapse memory as the core builds it (one address, read enable = ~we). A unit that borrows the
    multiplier lane gets one here: the product of its operands when it asks (``req``), a junk
    value otherwise, so a product taken in a cycle it did not ask for shows as a mismatch."""

    def __init__(self, cfg, words):
        self.cfg = cfg
        self.unit = SequencedUpdateUnit(cfg) if cfg.build is Build.AREA else UpdateUnit(cfg)
        self.mem = memory.Memory(shape=synapse_layout(cfg), depth=max(2, cfg.n_synapses), init=words)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = u = self.unit
        m.submodules.mem = self.mem
        wp = self.mem.write_port()
        rp = self.mem.read_port()
        m.d.comb += [wp.addr.eq(u.syn_addr), rp.addr.eq(u.syn_addr), wp.data.eq(u.syn_wdata),
                     wp.en.eq(u.syn_we), rp.en.eq(~u.syn_we), u.syn_rdata.eq(rp.data)]
        if "mul" in u.signature.members:
            junk = Signal(len(u.mul.p), init=0x5A5A5A5A5A5A5A & ((1 << len(u.mul.p)) - 1))
            m.d.sync += junk.eq(Cat(junk[1:], junk[0] ^ junk[3]))
            m.d.comb += u.mul.p.eq(Mux(u.mul.req, u.mul.a * u.mul.b, junk))
        return m


def run_unit(cfg, rounds, seed=3, lfsr_write=None, noncanonical=False):
    """``rounds`` updates, each on fresh random words; returns nothing, asserts golden equality."""
    rng = np.random.default_rng(seed)
    n = cfg.n_synapses
    P = pack_params(cfg)
    gold = FixedCore(cfg)
    adam = cfg.optimizer is Optimizer.ADAM
    layout = synapse_layout(cfg)
    init = random_synapses(cfg, rng, n, noncanonical)
    # Every round: new words for a random third of the synapses (the rest keep their state), new
    # gradients everywhere, lr_mant and bump rewritten.
    plans = []
    for r in range(rounds):
        fresh = random_synapses(cfg, rng, n, noncanonical)
        keep = rng.random(n) < 0.66 if r else np.zeros(n, dtype=bool)
        lr_hi = (1 << cfg.lr_bits) - 1
        lr = [int(rng.integers(0, lr_hi + 1)) if r else cfg.lr_mant[l] for l in range(cfg.n_layers)]
        bump = [int(rng.integers(-8, 9)) if r % 2 else 0 for _ in range(cfg.n_layers)]
        plans.append((fresh, keep, lr, bump))
    words = [{k: s[k] for k in ("w", "g", "m") if k in s} for s in init]
    dut = Harness(cfg, words)
    unit = dut.unit
    fields = [f for f in ("w", "g", "m") if f in layout.members]
    seen = []

    async def bench(ctx):
        for r, (fresh, keep, lr, bump) in enumerate(plans):
            # This round's words: the previous result where kept, fresh ones elsewhere, new g.
            for a in range(n):
                cur = ctx.get(dut.mem.data[a])
                syn = {f: int(getattr(cur, f)) for f in fields}
                if adam:
                    syn["v"] = int(ctx.get(unit.adam_v.data[a]))
                if not keep[a]:
                    syn = dict(fresh[a])
                syn["g"] = fresh[a]["g"]
                ctx.set(dut.mem.data[a], {f: syn[f] for f in fields})
                if adam:
                    if r == 0:
                        ctx.set(unit.adam_v.data[a], syn["v"])  # initial v̂ through the memory
                    else:  # and through the host port
                        ctx.set(unit.v_addr, a)
                        ctx.set(unit.v_wdata, syn["v"])
                        ctx.set(unit.v_we, 1)
                        await ctx.tick()
                        ctx.set(unit.v_we, 0)
                gold._W[a], gold._G[a] = syn["w"], syn["g"]
                gold._M[a] = syn.get("m", 0)
                gold._V[a] = syn.get("v", 0)
            gold.lr_mant[:] = lr
            if r == 1 and lfsr_write is not None:
                ctx.set(unit.lfsr_wdata, lfsr_write)
                ctx.set(unit.lfsr_we, 1)
                await ctx.tick()
                ctx.set(unit.lfsr_we, 0)
                gold.lfsr_state = lfsr_write
            ctx.set(unit.lr_mant, lr)
            ctx.set(unit.bump, bump)
            # Golden: the same update with this round's bump (bump_layer is the core's business).
            bump_arr = np.array(bump, dtype=np.int64)
            state, want_fl = update_weights(P, gold._sizes, gold._w_off, gold._W, gold._G, gold._M, gold._V,
                                            gold.lr_mant, gold._lr_shift, bump_arr, cfg.rsqrt_rom,
                                            np.int64(gold.lfsr_state))
            gold.lfsr_state = int(state)

            assert not ctx.get(unit.busy)
            ctx.set(unit.start, 1)
            await ctx.tick()
            ctx.set(unit.start, 0)
            cyc, fl = 1, 0
            while True:
                assert ctx.get(unit.busy), f"busy fell in cycle {cyc}"
                fl |= (int(Flag.MOM_SAT) if ctx.get(unit.mom_sat) else 0)
                fl |= (int(Flag.W_SAT) if ctx.get(unit.w_sat) else 0)
                if ctx.get(unit.done):
                    break
                await ctx.tick()
                cyc += 1
                assert cyc < max(10, cfg.cyc_update_word) * n + 100, "no done"
            await ctx.tick()
            assert not ctx.get(unit.busy) and not ctx.get(unit.done)
            if cfg.build is Build.AREA:
                assert cyc == seq_update_cycles(cfg) == gold.update_cycles()
            else:
                want = schedule(n, datapath_latency(cfg), cfg.cyc_sweep_latency)[0]
                assert cyc == update_cycles(cfg) == want
                if n >= 12:
                    assert cyc == gold.update_cycles() == 2 * n + cfg.cyc_sweep_latency
            assert fl == int(want_fl), f"round {r}: flags golden {want_fl:#x} rtl {fl:#x}"
            seen.append(fl)
            assert ctx.get(unit.lfsr) == gold.lfsr_state, f"round {r}: LFSR"
            for a in range(n):
                word = ctx.get(dut.mem.data[a])
                got = {f: int(getattr(word, f)) for f in fields}
                want = {"w": int(gold._W[a]), "g": int(gold._G[a]), "m": int(gold._M[a])}
                assert got == {f: want[f] for f in fields}, f"round {r}, synapse {a}"
                if adam:
                    assert int(ctx.get(unit.adam_v.data[a])) == int(gold._V[a]), f"round {r}, v of {a}"
        if adam:  # host read of v̂ (next cycle)
            for a in (0, n - 1):
                ctx.set(unit.v_addr, a)
                ctx.set(unit.v_re, 1)
                await ctx.tick()
                assert ctx.get(unit.v_rdata) == gold._V[a]
            ctx.set(unit.v_re, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(seen) == rounds
    if n >= 12:
        assert any(f & Flag.W_SAT for f in seen), "coverage: W_SAT"
    if cfg.optimizer is Optimizer.SGD and cfg.mom_shift > 0 and n >= 12:
        assert any(f & Flag.MOM_SAT for f in seen), "coverage: MOM_SAT"


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_unit(opt, rounding):
    run_unit(small_cfg(**opt, update_rounding=rounding), rounds=3, lfsr_write=0x0BADCAFE)


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_unit_read_regs(opt):
    """§8 ram_read_regs: a deeper datapath, the same schedule (v̂ written at its later time)."""
    run_unit(small_cfg(**opt, ram_read_regs=1), rounds=3)


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_unit_four_layers(opt):
    run_unit(small_cfg(sizes=(2, 4, 3, 2), **opt), rounds=2, seed=5)


@pytest.mark.parametrize("latency", [1, 9])
def test_unit_sweep_latency(latency):
    """cyc_sweep_latency pads after the last write (9), or is covered by the done cycle (1)."""
    run_unit(small_cfg(optimizer="lion", cyc_sweep_latency=latency), rounds=1, seed=2)


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_unit_tiny(opt):
    """N = 2 synapses: fewer than the pipeline holds, so the count is N + D + 3 (update_cycles)."""
    run_unit(small_cfg(sizes=(1, 1, 1), **opt), rounds=2, seed=9)


def test_unit_noncanonical_v():
    """v̂ words enc never writes but whose value fits V's 2 b_G − 1 bits are updated as golden."""
    run_unit(small_cfg(sizes=(5, 30, 3), optimizer="adam"), rounds=2, seed=12, noncanonical=True)


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_unit_up5k(opt):
    """The preset's 1600 synapses (3204 cycles, golden's count), two updates."""
    run_unit(CoreConfig.up5k(**opt), rounds=2, seed=11)


@pytest.mark.parametrize("width", [1, 3, 8, 47])
def test_leading_one(width):
    from amaranth.hdl import Signal

    from evcore.hdl.update import _leading_one

    x = Signal(width)
    nz, pos = _leading_one(x)
    m = Module()
    o, z = Signal(8), Signal()
    m.d.comb += [o.eq(pos), z.eq(nz)]
    rng = np.random.default_rng(width)
    vals = [0, 1, (1 << width) - 1] + [int(rng.integers(0, 1 << width)) >> int(rng.integers(0, width))
                                        for _ in range(200)]

    async def bench(ctx):
        for v in vals:
            ctx.set(x, v)
            assert ctx.get(z) == (v != 0)
            if v:
                assert ctx.get(o) == v.bit_length() - 1, v

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize(("width", "signed_", "bits"), [(10, True, 6), (6, True, 6), (10, False, 6),
                                                        (5, False, 6), (6, False, 6)])
def test_sat(width, signed_, bits):
    """The reduction-based saturation equals golden.ops.saturate over every input word."""
    from amaranth.hdl import Signal, signed, unsigned

    from evcore.golden.ops import saturate
    from evcore.hdl.update import sat

    x = Signal(signed(width) if signed_ else unsigned(width))
    v, f = sat(x, bits)
    m = Module()
    o, fl = Signal(signed(bits)), Signal()
    m.d.comb += [o.eq(v), fl.eq(f)]
    lo = -(1 << (width - 1)) if signed_ else 0
    hi = (1 << (width - 1)) if signed_ else (1 << width)

    async def bench(ctx):
        for val in range(lo, hi):
            ctx.set(x, val)
            want, wf = saturate(np.int64(val), bits)
            assert (ctx.get(o), ctx.get(fl)) == (int(want), int(wf)), val

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
