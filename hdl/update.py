"""The weight update (docs/core.md §6): `UpdateDatapath` (one synapse per cycle) and `UpdateUnit`
(the sweep over the single-port synapse memory), built from a `CoreConfig` alone.

The RTL twin of `evcore.golden.update.update_weights`, bit for bit, for Adam, Lion and SGD (with
or without momentum) and every `update_rounding`. The three roundings of §6.4 share one form,
``Δ = (y + t) >> b`` with y = x shifted right by s − b (left if negative): half up t = 1, b = 1;
stochastic t = r, b = sr_bits (floor((x + r')/2^s) for both of golden's cases s >= sr and
s < sr); floor t = 0, b = 0. So the adder is that of y, and Adam's variable part of s is one
shifter.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from evcore.golden.config import CoreConfig, Optimizer, RoundingMode

from .core import synapse_layout
from .lfsr import Lfsr
from .lif import rnd, sat

__all__ = ["UpdateDatapath", "UpdateUnit", "update_in_layout", "update_out_layout", "schedule",
           "update_cycles", "datapath_latency"]


def _v_bits(cfg: CoreConfig) -> int:
    """Width of Adam's decoded V: g·g <= 2^(2 b_G − 2) and the EMA never exceeds its inputs' max."""
    return 2 * cfg.grad_bits - 1


def _stochastic(cfg: CoreConfig) -> bool:
    return cfg.update_rounding is RoundingMode.STOCHASTIC


def update_in_layout(cfg: CoreConfig) -> data.StructLayout:
    """One synapse into the datapath: its word (w, g, m), packed v̂ (Adam), matrix, address, draw r."""
    f = {"w": signed(cfg.w_bits), "g": signed(cfg.grad_bits)}
    if cfg.has_momentum:
        f["m"] = signed(cfg.grad_bits)
    if cfg.optimizer is Optimizer.ADAM:
        f["v"] = unsigned(cfg.v_exp_bits + cfg.v_mant_bits)
    f["mat"] = range(cfg.n_layers)
    f["addr"] = range(cfg.n_synapses)
    if _stochastic(cfg):
        f["r"] = unsigned(cfg.sr_bits)
    return data.StructLayout(f)


def update_out_layout(cfg: CoreConfig) -> data.StructLayout:
    """The synapse after §6: w', m', v̂' (Adam), its address and the per-synapse MOM_SAT / W_SAT."""
    f = {"w": signed(cfg.w_bits)}
    if cfg.has_momentum:
        f["m"] = signed(cfg.grad_bits)
    if cfg.optimizer is Optimizer.ADAM:
        f["v"] = unsigned(cfg.v_exp_bits + cfg.v_mant_bits)
    f["addr"] = range(cfg.n_synapses)
    f["mom_sat"] = 1
    f["w_sat"] = 1
    return data.StructLayout(f)


def datapath_latency(cfg: CoreConfig) -> int:
    """Cycles from ``i.valid`` to ``o.valid`` of `UpdateDatapath` (registers on the way)."""
    if cfg.optimizer is Optimizer.ADAM:
        return 7
    if cfg.optimizer is Optimizer.LION:
        return 2
    return 3


class UpdateDatapath(wiring.Component):
    """§6.1-§6.4 for one synapse per cycle, no back-pressure; latency `datapath_latency(cfg)`.

    Adam stages (each ends in a register): 0 momentum, g·g, dec(v̂); 1 the EMA of V; 2 leading-one
    position p of V; 3 enc(V) and the ROM address (k bits below the leading one) into the
    synchronous 1/√ ROM; 4 u = m̂·RSQ; 5 x = u·lr_mant; 6 shift, round, w − Δ + bump, saturate.
    Lion: 0 momentum and sign; 1 ±lr_mant, round, write. SGD: 0 momentum; 1 product; 2 round,
    write. The LFSR draw ``r`` arrives with the synapse (`UpdateUnit` draws for every synapse).

    Members
    -------
    i : ``In(stream.Signature(update_in_layout(cfg), always_ready=True))``
    o : ``Out(stream.Signature(update_out_layout(cfg), always_ready=True))``
    lr_mant : ``In(ArrayLayout(unsigned(lr_bits), n_layers))``;
    bump : ``In(ArrayLayout(signed(w_bits), n_layers))`` (both held stable while synapses are in flight).
    """

    def __init__(self, cfg: CoreConfig):
        self._cfg = cfg
        self.latency = datapath_latency(cfg)
        super().__init__(
            {
                "i": In(stream.Signature(update_in_layout(cfg), always_ready=True)),
                "o": Out(stream.Signature(update_out_layout(cfg), always_ready=True)),
                "lr_mant": In(data.ArrayLayout(unsigned(cfg.lr_bits), cfg.n_layers)),
                "bump": In(data.ArrayLayout(signed(cfg.w_bits), cfg.n_layers)),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        mode = cfg.state_rounding
        gb = cfg.grad_bits
        i = self.i.p

        def reg(value, name, shape=None):
            """A pipeline register loaded with ``value`` every cycle."""
            r = Signal(shape if shape is not None else value.shape(), name=name)
            m.d.sync += r.eq(value)
            return r

        def carry(vals, stage):
            return {k: reg(v, f"s{stage}_{k}") for k, v in vals.items()}

        # Fields that only travel along (the weight, matrix, address, draw, flags).
        pas = {"valid": self.i.valid, "w": i.w, "mat": i.mat, "addr": i.addr}
        if _stochastic(cfg):
            pas["r"] = i.r

        if cfg.optimizer is Optimizer.ADAM:
            vm, rk, rb = cfg.v_mant_bits, cfg.rsqrt_index_bits, cfg.rsqrt_bits
            vb = _v_bits(cfg)
            # Stage 0: §6.1 first moment; g·g (a registered product); V = dec(v̂).
            mm, msat = sat(i.m + rnd(i.g - i.m, cfg.adam_shift1, mode), gb)
            s1 = carry(pas, 1)
            s1_m = reg(mm, "s1_m", signed(gb))
            s1_msat = reg(msat, "s1_msat", 1)
            s1_gg = reg(i.g * i.g, "s1_gg", unsigned(vb))
            vdec = i.v[:vm] << i.v[vm:]
            s1_v = reg(vdec, "s1_v", unsigned(vb))
            # Stage 1: V + rnd(g·g − V, a_2), on the full value (exact, >= 0).
            d = Signal(signed(vb + 1))
            m.d.comb += d.eq(s1_gg - s1_v)
            s2 = carry(s1, 2)
            s2_m, s2_msat = reg(s1_m, "s2_m"), reg(s1_msat, "s2_msat")
            s2_x = reg(s1_v + rnd(d, cfg.adam_shift2, mode), "s2_x", unsigned(vb))
            # Stage 2: the leading-one detector, p = bitlength(V) − 1 (0 for V = 0, then unused).
            p = Signal(range(vb))
            for b in range(vb):
                with m.If(s2_x[b]):
                    m.d.comb += p.eq(b)
            s3 = carry(s2, 3)
            s3_m, s3_msat, s3_x = reg(s2_m, "s3_m"), reg(s2_msat, "s3_msat"), reg(s2_x, "s3_x")
            s3_p = reg(p, "s3_p")
            # Stage 3: enc keeps the vm bits from the leading one down (e = max(0, p + 1 − vm)).
            # The ROM index is the k bits below the leading one of dec(enc(V)); those of V itself
            # except the ones enc truncated: bit j below the leading one survives iff j < vm, so
            # for k >= vm a constant mask clears the low k − vm + 1 index bits.
            e = Mux(s3_p >= vm, s3_p + 1 - vm, 0).as_unsigned()
            v_new = Cat((s3_x >> e)[:vm], e[: cfg.v_exp_bits])
            idx = ((s3_x << rk) >> s3_p)[:rk]
            if rk >= vm:
                idx = (idx & (((1 << rk) - 1) & ~((1 << (rk - vm + 1)) - 1)))[:rk]
            rom = cfg.rsqrt_rom
            m.submodules.rsqrt_rom = self.rsqrt_rom = rsq = memory.Memory(
                shape=unsigned(rb), depth=rom.size, init=[int(x) for x in rom.ravel()]
            )
            rsq_rp = rsq.read_port()
            m.d.comb += rsq_rp.addr.eq(Cat(idx, s3_p[0]))  # row p mod 2, column a
            s4 = carry(s3, 4)
            s4_m, s4_msat = reg(s3_m, "s4_m"), reg(s3_msat, "s4_msat")
            s4_v = reg(v_new, "s4_v")
            s4_zero = reg(s3_x == 0, "s4_zero")
            s4_ph = reg(s3_p >> 1, "s4_ph", range(vb // 2 + 1))  # s_u − rsqrt_bits = floor(p / 2)
            # Stage 4: u = m̂ · RSQ[p mod 2][a] (0 when V = 0).
            s5 = carry(s4, 5)
            s5_m, s5_msat, s5_v, s5_ph = (reg(x, f"s5_{n}") for x, n in
                                          ((s4_m, "m"), (s4_msat, "msat"), (s4_v, "v"), (s4_ph, "ph")))
            s5_u = reg(Mux(s4_zero, 0, s4_m * rsq_rp.data), "s5_u", signed(gb + rb + 1))
            # Stage 5: x = u · lr_mant[mat].
            s6 = carry(s5, 6)
            s6_m, s6_msat, s6_v, s6_ph = (reg(x, f"s6_{n}") for x, n in
                                          ((s5_m, "m"), (s5_msat, "msat"), (s5_v, "v"), (s5_ph, "ph")))
            s6_x = reg(s5_u * self.lr_mant[s5["mat"]], "s6_x", signed(gb + rb + cfg.lr_bits + 2))
            last, prod, su_const, su_var = s6, s6_x, rb, s6_ph
            extra = {"m": s6_m, "v": s6_v, "mom_sat": s6_msat}
        elif cfg.optimizer is Optimizer.LION:
            # Stage 0: §6.2 interpolation c (its sign is u) and the momentum.
            c = i.m + rnd(i.g - i.m, cfg.lion_shift, mode)
            mm, msat = sat(i.m + rnd(i.g - i.m, cfg.mom_shift, mode), gb)
            s1 = carry(pas, 1)
            s1_m, s1_msat = reg(mm, "s1_m", signed(gb)), reg(msat, "s1_msat", 1)
            s1_pos, s1_neg = reg(c > 0, "s1_pos", 1), reg(c < 0, "s1_neg", 1)
            lr = self.lr_mant[s1["mat"]]
            prod = Signal(signed(cfg.lr_bits + 1))
            m.d.comb += prod.eq(Mux(s1_pos, lr, Mux(s1_neg, -lr, 0)))  # sign × lr: no multiplier
            last, su_const, su_var = s1, 0, None
            extra = {"m": s1_m, "mom_sat": s1_msat}
        else:
            # Stage 0: §6.3 heavy-ball momentum (or the raw gradient); stage 1: u · lr_mant.
            s1 = carry(pas, 1)
            extra = {}
            if cfg.mom_shift > 0:
                mm, msat = sat(i.m - rnd(i.m, cfg.mom_shift, mode) + i.g, gb)
                s1_u = reg(mm, "s1_u", signed(gb))
                extra["mom_sat"] = reg(reg(msat, "s1_msat", 1), "s2_msat")
                extra["m"] = reg(s1_u, "s2_m")
            else:
                s1_u = reg(i.g, "s1_u", signed(gb))
            s2 = carry(s1, 2)
            s2_x = reg(s1_u * self.lr_mant[s1["mat"]], "s2_x", signed(gb + cfg.lr_bits + 1))
            last, prod, su_const, su_var = s2, s2_x, 0, None

        # Last stage, §6.4: Δ from x with s = lr_shift[mat] + s_u, w ← sat(w − Δ + bump).
        # Per matrix the shift is a constant; Adam adds floor(p/2) (a variable shift after it).
        delta = Signal(signed(len(prod) + 2))

        def shifted(x, const):
            """x · 2^−(const + s_u's variable part), floored (const < 0: an exact left shift)."""
            sh = x >> const if const >= 0 else x << -const
            return sh if su_var is None else sh >> su_var

        with m.Switch(last["mat"]):
            for k in range(cfg.n_layers):
                s_k = cfg.lr_shift[k] + su_const
                with m.Case(k):
                    if _stochastic(cfg):
                        # floor((x + r')/2^s) = floor((floor(x/2^(s−sr)) + r)/2^sr), r' = r·2^(s−sr).
                        m.d.comb += delta.eq((shifted(prod, s_k - cfg.sr_bits) + last["r"]) >> cfg.sr_bits)
                    elif cfg.update_rounding is RoundingMode.FLOOR:
                        m.d.comb += delta.eq(shifted(prod, s_k))
                    elif s_k == 0 and su_var is None:
                        m.d.comb += delta.eq(prod)  # rnd(x, 0) = x
                    else:
                        # Half up: floor((floor(x/2^(s−1)) + 1)/2) = floor((x + 2^(s−1))/2^s).
                        m.d.comb += delta.eq((shifted(prod, s_k - 1) + 1) >> 1)
        w_new, w_sat = sat(last["w"] - delta + self.bump[last["mat"]], cfg.w_bits)
        o = self.o.p
        m.d.sync += [
            self.o.valid.eq(last["valid"]),
            o.w.eq(w_new),
            o.addr.eq(last["addr"]),
            o.w_sat.eq(w_sat),
            o.mom_sat.eq(extra.get("mom_sat", 0)),
        ]
        if cfg.has_momentum:
            m.d.sync += o.m.eq(extra["m"])
        if cfg.optimizer is Optimizer.ADAM:
            m.d.sync += o.v.eq(extra["v"])
        return m


# -- the sweep ---------------------------------------------------------------------------------


def schedule(n: int, dp_latency: int, pad: int) -> tuple[int, int]:
    """The port schedule of `UpdateUnit`, cycle by cycle, as the RTL runs it.

    ``start`` is in cycle 0; the port works from cycle 1. A result becomes writable
    ``dp_latency + 2`` cycles after its read (memory read, datapath, FIFO). Each cycle: write
    the oldest result if one is ready and (the previous cycle read, or every synapse is read),
    else read the next synapse if one is left. ``done`` is the first cycle >= 2n + pad after
    the last write. Returns (done cycle, largest FIFO level at a FIFO write).
    """
    lp = dp_latency + 2
    ready = []  # the cycle from which result k can be written
    nr = nw = 0
    last_read = False
    level_max = 0
    c = 1
    while True:
        if nw == n and c >= 2 * n + pad:
            return c, level_max
        level = sum(1 for t in ready if t <= c) - nw
        if any(t - 1 == c for t in ready):  # a FIFO write in this cycle
            level_max = max(level_max, level)
        if level > 0 and (nr == n or last_read):
            nw += 1
            last_read = False
        elif nr < n:
            ready.append(c + lp)
            nr += 1
            last_read = True
        else:
            last_read = False
        c += 1


def update_cycles(cfg: CoreConfig) -> int:
    """Cycles from ``start`` (cycle 0) to ``done`` (this cycle): max(2N + lat, N + D + 3, 2N + 1)
    for N = n_synapses, lat = cyc_sweep_latency, D = `datapath_latency`; 2N + lat
    (golden's `FixedCore.update_cycles`) whenever N >= D + 3 − lat and lat >= 1."""
    n, d, lat = cfg.n_synapses, datapath_latency(cfg), cfg.cyc_sweep_latency
    return max(2 * n + lat, n + d + 3, 2 * n + 1)


class UpdateUnit(wiring.Component):
    """§6 over every synapse in memory order (matrix, row j, column i = address 0 .. N − 1).

    Schedule. ``start`` (idle) in cycle 0; `busy` from cycle 1 through the cycle of `done`, a
    one-cycle pulse in cycle `update_cycles(cfg)` (= 2N + cyc_sweep_latency, golden's count, for
    every config with N >= `datapath_latency` + 3 − cyc_sweep_latency). The single port does one
    read or one write per cycle: the first synapses are read back to back until the first result
    is ready, then writes and reads alternate, and after the last read the remaining results are
    written back to back. So the port never idles (2N busy port cycles from cycle 1 when N is
    not tiny) and the pipeline depth costs a small FIFO (`fifo_depth` words) instead of cycles;
    the remaining cyc_sweep_latency cycles pad to the model. v̂ has its own memory (one read,
    one write port): read with the synapse word, written when the datapath delivers.

    The LFSR advances ``sr_bits`` steps per synapse (every synapse) with stochastic rounding and
    holds otherwise, as golden. `mom_sat` and `w_sat` are one-cycle pulses per synapse that
    saturated (the core ORs them into its sticky flags). Host ports (``lfsr_we``, ``v_*``) act
    only while idle; `lfsr` shows the state (reset ``lfsr_seed``). ``lr_mant`` and ``bump`` must
    be stable while busy; ``lr_shift`` is the config's constant.

    Members
    -------
    start : ``In(1)``; busy, done : ``Out(1)``;
    syn_addr : ``Out(range(N))``; syn_rdata : ``In(synapse_layout(cfg))`` (data of the address of the
    previous cycle); syn_wdata : ``Out(synapse_layout(cfg))``; syn_we : ``Out(1)`` (the address is the
    write address);
    lr_mant : ``In(ArrayLayout(unsigned(lr_bits), n_layers))``;
    bump : ``In(ArrayLayout(signed(w_bits), n_layers))``;
    mom_sat, w_sat : ``Out(1)``;
    lfsr : ``Out(lfsr_bits)``; lfsr_wdata : ``In(lfsr_bits)``; lfsr_we : ``In(1)``;
    Adam only: v_addr : ``In(range(N))``; v_re : ``In(1)``; v_rdata : ``Out(v_exp_bits + v_mant_bits)``
    (next cycle); v_wdata : ``In(v_exp_bits + v_mant_bits)``; v_we : ``In(1)``.
    """

    def __init__(self, cfg: CoreConfig):
        self._cfg = cfg
        n = cfg.n_synapses
        self.cycles = update_cycles(cfg)
        _, level = schedule(n, datapath_latency(cfg), cfg.cyc_sweep_latency)
        #: Results the FIFO holds at most, plus the one written while the head is still there.
        self.fifo_depth = level + 1
        sig = {
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "syn_addr": Out(range(n)),
            "syn_rdata": In(synapse_layout(cfg)),
            "syn_wdata": Out(synapse_layout(cfg)),
            "syn_we": Out(1),
            "lr_mant": In(data.ArrayLayout(unsigned(cfg.lr_bits), cfg.n_layers)),
            "bump": In(data.ArrayLayout(signed(cfg.w_bits), cfg.n_layers)),
            "mom_sat": Out(1),
            "w_sat": Out(1),
            "lfsr": Out(cfg.lfsr_bits, init=cfg.lfsr_seed),
            "lfsr_wdata": In(cfg.lfsr_bits),
            "lfsr_we": In(1),
        }
        self.adam_v = None
        if cfg.optimizer is Optimizer.ADAM:
            vw = cfg.v_exp_bits + cfg.v_mant_bits
            sig |= {"v_addr": In(range(n)), "v_re": In(1), "v_rdata": Out(vw), "v_wdata": In(vw),
                    "v_we": In(1)}
            # §8 adam_v: owned here (only the update uses v); an attribute so tests can inspect it.
            self.adam_v = memory.Memory(shape=unsigned(vw), depth=max(2, n), init=[])
        super().__init__(sig)

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        n = cfg.n_synapses
        adam = cfg.optimizer is Optimizer.ADAM
        m.submodules.dp = dp = UpdateDatapath(cfg)
        m.submodules.lfsr = lfsr = Lfsr(cfg)
        out_layout = update_out_layout(cfg)
        m.submodules.fifo = res = fifo.SyncFIFO(width=out_layout.size, depth=self.fifo_depth)
        head = out_layout(res.r_data)

        busy = Signal()
        cyc = Signal(range(self.cycles + 1))
        nr = Signal(range(n + 1))  # synapses read (= next read address)
        nw = Signal(range(n + 1))  # synapses written
        mat = Signal(range(cfg.n_layers))  # matrix of address nr
        last_read = Signal()
        s = cfg.sizes
        ends = [sum(a * b for a, b in zip(s[: k + 1], s[1 : k + 2])) for k in range(cfg.n_layers)]

        can_read = busy & (nr != n)
        do_write = busy & res.r_rdy & (~can_read | last_read)
        do_read = can_read & ~do_write
        done = busy & (nw == n) & (cyc >= 2 * n + cfg.cyc_sweep_latency)
        m.d.comb += [
            self.busy.eq(busy),
            self.done.eq(done),
            self.syn_we.eq(do_write),
            self.syn_addr.eq(Mux(do_write, head.addr, Mux(busy, nr, 0))),
            self.syn_wdata.w.eq(head.w),
            self.syn_wdata.g.eq(0),  # §6.4: Ĝ ← 0
            res.r_en.eq(do_write),
        ]
        if cfg.has_momentum:
            m.d.comb += self.syn_wdata.m.eq(head.m)

        with m.If(~busy):
            with m.If(self.start):
                m.d.sync += [busy.eq(1), cyc.eq(1), nr.eq(0), nw.eq(0), mat.eq(0), last_read.eq(0)]
        with m.Else():
            m.d.sync += [cyc.eq(cyc + 1), last_read.eq(do_read)]
            with m.If(do_write):
                m.d.sync += nw.eq(nw + 1)
            with m.If(do_read):
                m.d.sync += nr.eq(nr + 1)
                for k in range(cfg.n_layers - 1):
                    with m.If(nr == ends[k] - 1):
                        m.d.sync += mat.eq(k + 1)
            with m.If(done):
                m.d.sync += busy.eq(0)

        # Stage 0 of the datapath: the word read in the previous cycle, with its LFSR draw.
        s0_valid = Signal()
        s0_addr = Signal(range(n))
        s0_mat = Signal.like(mat)
        m.d.sync += [s0_valid.eq(do_read), s0_addr.eq(nr), s0_mat.eq(mat)]
        i = dp.i.p
        m.d.comb += [
            dp.i.valid.eq(s0_valid),
            i.w.eq(self.syn_rdata.w),
            i.g.eq(self.syn_rdata.g),
            i.mat.eq(s0_mat),
            i.addr.eq(s0_addr),
            dp.lr_mant.eq(self.lr_mant),
            dp.bump.eq(self.bump),
            lfsr.we.eq(self.lfsr_we & ~busy),
            lfsr.wdata.eq(self.lfsr_wdata),
            self.lfsr.eq(lfsr.state),
        ]
        if cfg.has_momentum:
            m.d.comb += i.m.eq(self.syn_rdata.m)
        if _stochastic(cfg):
            m.d.comb += [i.r.eq(lfsr.draw), lfsr.advance.eq(s0_valid)]

        # Results into the FIFO (never full: `fifo_depth` from `schedule`), flags out.
        m.d.comb += [
            res.w_en.eq(dp.o.valid),
            res.w_data.eq(dp.o.p),
            self.mom_sat.eq(dp.o.valid & dp.o.p.mom_sat),
            self.w_sat.eq(dp.o.valid & dp.o.p.w_sat),
        ]

        if adam:
            m.submodules.adam_v = vmem = self.adam_v
            v_rp = vmem.read_port()
            v_wp = vmem.write_port()
            m.d.comb += [
                v_rp.addr.eq(Mux(busy, nr, self.v_addr)),
                v_rp.en.eq(busy | self.v_re),
                self.v_rdata.eq(v_rp.data),
                i.v.eq(v_rp.data),
                v_wp.addr.eq(Mux(busy, dp.o.p.addr, self.v_addr)),
                v_wp.data.eq(Mux(busy, dp.o.p.v, self.v_wdata)),
                v_wp.en.eq(Mux(busy, dp.o.valid, self.v_we)),
            ]
        return m
