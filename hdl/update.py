"""The weight update (docs/core.md §6): `UpdateDatapath` (one synapse per cycle) and `UpdateUnit`
(the sweep over the single-port synapse memory), built from a `CoreConfig` alone.

The RTL twin of `evcore.golden.update.update_weights`, bit for bit, for Adam, Lion and SGD (with
or without momentum) and every `update_rounding`. The three roundings of §6.4 share one form,
``Δ = (y + t) >> b`` with y = x shifted right by s − b (left if negative): half up t = 1, b = 1;
stochastic t = r, b = sr_bits (floor((x + r')/2^s) for both of golden's cases s >= sr and
s < sr); floor t = 0, b = 0. So Adam's variable part of s is one shifter, and the adder is y's.
Pipelining is cheap (the schedule of `UpdateUnit` does not depend on the depth), so every stage
holds at most one carry chain of the wide words, or one multiplier.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from evcore.golden.config import CoreConfig, Optimizer, RoundingMode

from .layouts import synapse_layout
from .lfsr import Lfsr
from .lif import slices

__all__ = ["UpdateDatapath", "UpdateUnit", "update_in_layout", "update_out_layout", "schedule",
           "update_cycles", "datapath_latency", "V_LATENCY", "v_latency", "update_unit_ports",
           "adam_v_memory", "wire_adam_v"]


def _v_bits(cfg: CoreConfig) -> int:
    """Width of Adam's decoded V: g·g <= 2^(2 b_G − 2) and the EMA never exceeds its inputs' max."""
    return 2 * cfg.grad_bits - 1


def _stochastic(cfg: CoreConfig) -> bool:
    return cfg.update_rounding is RoundingMode.STOCHASTIC


def update_in_layout(cfg: CoreConfig) -> data.StructLayout:
    """One synapse into the datapath: its word (w, g, m), packed v̂ (Adam), its matrix."""
    f = {"w": signed(cfg.w_bits), "g": signed(cfg.grad_bits)}
    if cfg.has_momentum:
        f["m"] = signed(cfg.grad_bits)
    if cfg.optimizer is Optimizer.ADAM:
        f["v"] = unsigned(cfg.v_exp_bits + cfg.v_mant_bits)
    f["mat"] = range(cfg.n_layers)
    return data.StructLayout(f)


def update_out_layout(cfg: CoreConfig) -> data.StructLayout:
    """The synapse after §6 (in input order): w', m', per-synapse MOM_SAT / W_SAT (v̂' leaves early)."""
    f = {"w": signed(cfg.w_bits)}
    if cfg.has_momentum:
        f["m"] = signed(cfg.grad_bits)
    f["mom_sat"] = 1
    f["w_sat"] = 1
    return data.StructLayout(f)


def datapath_latency(cfg: CoreConfig) -> int:
    """Cycles from ``i.valid`` to ``o.valid`` of `UpdateDatapath` (its number of stages); with
    ``ram_read_regs`` (§8) one more for the input register and, for Adam, one for the ROM word."""
    rr = cfg.ram_read_regs
    if cfg.optimizer is Optimizer.ADAM:
        return 12 + 3 * rr
    if cfg.optimizer is Optimizer.LION:
        return 6 + rr
    return (7 if cfg.mom_shift > 0 else 5) + rr


def v_latency(cfg: CoreConfig) -> int:
    """Adam: cycles from a synapse into `UpdateDatapath` to its v̂' on ``v_o`` (after stage 5)."""
    return V_LATENCY + cfg.ram_read_regs


#: Adam: cycles from a synapse into `UpdateDatapath` to its v̂' on ``v_o`` (after stage 5),
#: without ``ram_read_regs`` (`v_latency`).
V_LATENCY = 6


def _pre(x, s: int, mode: RoundingMode):
    """First half of §1.2 rnd(x, s): the rounding constant added (the shift follows a stage later)."""
    return x + (1 << (s - 1)) if s > 0 and mode is RoundingMode.HALF_UP else x


def _post(x, s: int):
    """Second half of rnd(x, s): the shift (s <= 0: exact left shift)."""
    return x >> s if s > 0 else x << -s


def sat(x, bits: int):
    """§1.4 (clamped value, clamped?) like `hdl.lif.sat`, but the range test is a reduction over
    the bits above the word (LUT trees) instead of two compares (carry chains of x's width)."""
    hi, lo = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
    if len(x) < bits or (len(x) == bits and x.shape().signed):
        return x, 0
    if not x.shape().signed:
        fits = ~x[bits - 1 :].any()
        return Mux(fits, x[:bits].as_signed(), hi), ~fits
    top = x[bits - 1 :]
    fits = top.all() | ~top.any()
    return Mux(fits, x[:bits].as_signed(), Mux(x[-1], lo, hi)), ~fits


def _leading_one(x):
    """(x != 0, position of x's highest set bit) as a balanced tree (log2 width mux levels: a
    priority chain over 47 bits would be the slowest path of the core)."""
    if len(x) == 1:
        return x[0], Cat()
    h = 1 << ((len(x) - 1).bit_length() - 1)  # lower half: the largest power of two < len(x)
    nz_hi, p_hi = _leading_one(x[h:])
    nz_lo, p_lo = _leading_one(x[:h])
    w = (h - 1).bit_length()
    return nz_hi | nz_lo, Cat(Mux(nz_hi, p_hi, p_lo)[:w], nz_hi)


class _Pipe:
    """The live values of a pipeline: `stage` registers all of them (plus new ones) at once."""

    def __init__(self, m: Module, vals: dict):
        self.m, self.v, self.n = m, dict(vals), 0

    def __getitem__(self, k):
        return self.v[k]

    def stage(self, drop=(), **new):
        """End a stage: register every live value and ``new`` (value or (value, shape)), minus ``drop``."""
        self.n += 1
        merged = {k: x for k, x in (self.v | new).items() if k not in drop}
        out = {}
        for k, x in merged.items():
            x, shape = x if isinstance(x, tuple) else (x, x.shape())
            r = Signal(shape, name=f"s{self.n}_{k}")
            self.m.d.sync += r.eq(x)
            out[k] = r
        self.v = out


class UpdateDatapath(wiring.Component):
    """§6.1-§6.4 for one synapse per cycle, no back-pressure; latency `datapath_latency(cfg)`.

    Stages (each ends in a register; (F1)-(F3) are common):
    Adam: (0) g − m̂ + rounding constant, the three partial products of g·g, w + bump;
    (1) m̂ ← sat(...), g·g, dec(v̂); (2) g·g − V + c; (3) V ← V + (…) >> a_2; (4) leading one p;
    (5) enc(V), ROM address (synchronous `rsqrt_rom`); (6) u = m̂·RSQ; (7) x = u·lr_mant.
    Lion: (0) g − m̂ + c twice, w + bump; (1) ĉ's sign, m̂; then x = ±lr_mant in (F1).
    SGD: with momentum (0) m̂ + c, m̂ + g; (1) m̂ ← sat(...); (2) x = m̂·lr_mant; without, (0) x = g·lr_mant.
    (F1) y = x shifted by s − b (constant per matrix, Adam + floor(p/2)); (F1b) y clamped to
    ±2^(w_bits+2+b) (same saturation verdict at the end); (F2) Δ = (y + t) >> b;
    (F3) w' = sat(w + bump − Δ), W_SAT.
    The LFSR draw is taken in (F2) (``r_take``), so no draw travels down the pipeline.

    Members
    -------
    i : ``In(stream.Signature(update_in_layout(cfg), always_ready=True))``
    o : ``Out(stream.Signature(update_out_layout(cfg), always_ready=True))``
    lr_mant : ``In(ArrayLayout(unsigned(lr_bits), n_layers))``;
    bump : ``In(ArrayLayout(signed(w_bits), n_layers))`` (both held stable while synapses are in flight);
    stochastic only: r : ``In(sr_bits)``, r_take : ``Out(1)`` (the synapse in (F2) consumes the
    LFSR draw ``r`` in this cycle: draws are taken in synapse order, one each);
    Adam only: v_o : ``Out(stream.Signature(v_exp_bits + v_mant_bits, always_ready=True))``, v̂'
    after `V_LATENCY` cycles.
    """

    def __init__(self, cfg: CoreConfig):
        self._cfg = cfg
        self.latency = datapath_latency(cfg)
        sig = {
            "i": In(stream.Signature(update_in_layout(cfg), always_ready=True)),
            "o": Out(stream.Signature(update_out_layout(cfg), always_ready=True)),
            "lr_mant": In(data.ArrayLayout(unsigned(cfg.lr_bits), cfg.n_layers)),
            "bump": In(data.ArrayLayout(signed(cfg.w_bits), cfg.n_layers)),
        }
        if _stochastic(cfg):
            sig |= {"r": In(cfg.sr_bits), "r_take": Out(1)}
        if cfg.optimizer is Optimizer.ADAM:
            #: Cycles from ``i.valid`` to ``v_o.valid``.
            self.v_latency = v_latency(cfg)
            sig["v_o"] = Out(stream.Signature(unsigned(cfg.v_exp_bits + cfg.v_mant_bits), always_ready=True))
        super().__init__(sig)

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        mode = cfg.state_rounding
        gb, wb = cfg.grad_bits, cfg.w_bits
        i = self.i.p
        valid_in = self.i.valid
        if cfg.ram_read_regs:
            # §8: the synapse word (and v̂) come straight from block RAM: register them first.
            i_r, valid_r = Signal.like(i), Signal()
            m.d.sync += [i_r.eq(i), valid_r.eq(valid_in)]
            i, valid_in = i_r, valid_r
        live = {"valid": valid_in, "mat": i.mat, "mom_sat": (0, 1),
                "wb": (i.w + self.bump[i.mat], signed(wb + 1))}  # w + bump: one add less at the end
        p = _Pipe(m, live)
        su_var = None  # Adam's variable part of s_u (floor(p/2)), None otherwise

        if cfg.optimizer is Optimizer.ADAM:
            vm, rk, rb, vb = cfg.v_mant_bits, cfg.rsqrt_index_bits, cfg.rsqrt_bits, _v_bits(cfg)
            a1, a2 = cfg.adam_shift1, cfg.adam_shift2
            # g·g from three partial products of at most 16 x 16 (12-bit halves: 3 SB_MAC16, not 4).
            h = gb // 2
            g_hi, g_lo = i.g[h:].as_signed(), i.g[:h]
            p.stage(
                m=i.m,
                dm=(_pre(i.g - i.m, a1, mode), signed(gb + 2)),
                pp_hh=g_hi * g_hi, pp_hl=g_hi * g_lo, pp_ll=g_lo * g_lo,
                vraw=i.v,
            )  # (0)
            mm, msat = sat(p["m"] + _post(p["dm"], a1), gb)
            gg = (p["pp_hh"] << (2 * h)) + (p["pp_hl"] << (h + 1)) + p["pp_ll"]
            vdec = p["vraw"][:vm] << p["vraw"][vm:]  # dec(v̂) a stage after the memory read
            p.stage(drop=("dm", "pp_hh", "pp_hl", "pp_ll", "vraw"), m=(mm, signed(gb)), mom_sat=msat,
                    gg=(gg, unsigned(vb)), vdec=(vdec, unsigned(vb)))  # (1)
            p.stage(drop=("gg",), t=(_pre(p["gg"] - p["vdec"], a2, mode), signed(vb + 1)))  # (2)
            p.stage(drop=("t", "vdec"), x=(p["vdec"] + _post(p["t"], a2), unsigned(vb)))  # (3)
            # (4) leading-one detector: p = bitlength(V) − 1 (0 for V = 0, then unused).
            _, lead = _leading_one(p["x"])
            p.stage(lead=(lead, range(vb)))
            # (5) enc keeps the vm bits from the leading one down (e = max(0, p + 1 − vm)). The ROM
            # index is the k bits below the leading one of dec(enc(V)): V's own, except those enc
            # truncated (bit j below the leading one survives iff j < vm), hence a constant mask.
            x, lead = p["x"], p["lead"]
            e = Mux(lead >= vm, lead + 1 - vm, 0).as_unsigned()
            idx = ((x << rk) >> lead)[:rk]
            if rk >= vm:
                idx = (idx & (((1 << rk) - 1) & ~((1 << (rk - vm + 1)) - 1)))[:rk]
            rom = cfg.rsqrt_rom
            m.submodules.rsqrt_rom = rsq = memory.Memory(
                shape=unsigned(rb), depth=rom.size, init=[int(v) for v in rom.ravel()]
            )
            rsq_rp = rsq.read_port()
            m.d.comb += rsq_rp.addr.eq(Cat(idx, lead[0]))  # row p mod 2, column a
            p.stage(drop=("x", "lead"), v=Cat((x >> e)[:vm], e[: cfg.v_exp_bits]), zero=x == 0,
                    ph=(lead >> 1, range(vb // 2 + 1)))  # (5), ph = s_u − rsqrt_bits
            # v̂' is complete: out now (to its own memory) rather than carried to the end.
            m.d.comb += [self.v_o.valid.eq(p["valid"]), self.v_o.p.eq(p["v"])]
            del p.v["v"]
            rsq_word = rsq_rp.data
            if cfg.ram_read_regs:
                p.stage(rsq=rsq_word)  # (5b) §8: the ROM word registered before the multiplier
                rsq_word = p["rsq"]
            # (6) u = m̂ · RSQ[p mod 2][a], 0 when V = 0; (7) x = u · lr_mant[mat].
            xw = signed(gb + rb + cfg.lr_bits + 2)
            if cfg.ram_read_regs:
                # §8: lr_mant of the matrix selected a stage early (no mux before a multiplier), and
                # u·lr_mant as three registered 17-bit pieces (one MULT18X18D each), summed next.
                p.stage(drop=("zero", "rsq"), u=(Mux(p["zero"], 0, p["m"] * rsq_word), signed(gb + rb + 1)),
                        lr=self.lr_mant[p["mat"]])  # (6)
                u, lr = p["u"], p["lr"]
                cuts = slices(u, signed=True)  # the top piece carries u's sign
                pps = {f"pp{c}": piece * lr for c, piece in cuts}
                p.stage(drop=("u", "lr"), **pps)  # (7a)
                p.stage(drop=tuple(pps), x=(sum(p[f"pp{c}"] << c for c, _ in cuts), xw))  # (7b)
            else:
                p.stage(drop=("zero", "rsq"), u=(Mux(p["zero"], 0, p["m"] * rsq_word), signed(gb + rb + 1)))
                p.stage(drop=("u",), x=(p["u"] * self.lr_mant[p["mat"]], xw))
            su_const, su_var = rb, p["ph"]
        elif cfg.optimizer is Optimizer.LION:
            k1, k2 = cfg.lion_shift, cfg.mom_shift
            p.stage(m=i.m, d1=(_pre(i.g - i.m, k1, mode), signed(gb + 2)),
                    d2=(_pre(i.g - i.m, k2, mode), signed(gb + 2)))  # (0)
            c = p["m"] + _post(p["d1"], k1)
            mm, msat = sat(p["m"] + _post(p["d2"], k2), gb)
            p.stage(drop=("d1", "d2"), m=(mm, signed(gb)), mom_sat=msat, pos=c > 0, neg=c < 0)  # (1)
            lr = self.lr_mant[p["mat"]]
            p.v["x"] = Mux(p["pos"], lr, Mux(p["neg"], -lr, 0))  # sign × lr: no multiplier, in (F1)
            su_const = 0
        else:
            k2 = cfg.mom_shift
            if k2 > 0:
                p.stage(m=i.m, q=(_pre(i.m, k2, mode), signed(gb + 1)), sm=(i.m + i.g, signed(gb + 1)))  # (0)
                mm, msat = sat(p["sm"] - _post(p["q"], k2), gb)
                p.stage(drop=("q", "sm"), m=(mm, signed(gb)), mom_sat=msat)  # (1)
                u = p["m"]
            else:
                u = i.g
            p.stage(x=(u * self.lr_mant[p["mat"]], signed(gb + cfg.lr_bits + 1)))  # (2) or (0)
            su_const = 0

        # (F1) y = x · 2^−(s − b) floored: per matrix a constant shift (one mux), Adam's floor(p/2).
        if _stochastic(cfg):
            b = cfg.sr_bits
        elif cfg.update_rounding is RoundingMode.HALF_UP:
            b = 1
        else:
            b = 0
        x = p["x"]
        xs = Signal(signed(len(x)), name="x_f1")
        m.d.comb += xs.eq(x)
        shifts = [cfg.lr_shift[k] + su_const - b for k in range(cfg.n_layers)]
        y = Signal(signed(len(x) - min(shifts)), name="y")  # as wide as the least-shifted x
        with m.Switch(p["mat"]):
            for k in range(cfg.n_layers):
                # Half up with s = 0 gives y = 2x and Δ = (2x + 1) >> 1 = x = rnd(x, 0): no case.
                c = shifts[k]
                with m.Case(k):
                    sh = xs >> c if c >= 0 else xs << -c
                    m.d.comb += y.eq(sh if su_var is None else sh >> su_var)
        p.stage(drop=("x", "ph", "pos", "neg"), y=y)
        # (F1b) clamp y to ±2^(w_bits+2+b): then Δ stays within ±2^(w_bits+2), and as |w + bump| <
        # 2^w_bits a clamped Δ saturates the weight exactly as the true one (both beyond ±2^(w_bits+1)).
        yc, _ = sat(p["y"], wb + 3 + b)
        p.stage(y=(yc, signed(wb + 3 + b)))
        # (F2) Δ = (y + t) >> b, with the LFSR draw taken here, in synapse order (no r travels
        # down the pipeline).
        if _stochastic(cfg):
            m.d.comb += self.r_take.eq(p["valid"])
        t = self.r if _stochastic(cfg) else (1 if b else 0)
        p.stage(drop=("y",), delta=((p["y"] + t) >> b, signed(wb + 4)))
        # (F3) the weight write.
        w_new, w_sat = sat(p["wb"] - p["delta"], wb)
        o = self.o.p
        m.d.sync += [
            self.o.valid.eq(p["valid"]),
            o.w.eq(w_new),
            o.w_sat.eq(w_sat),
            o.mom_sat.eq(p["mom_sat"]),
        ]
        if cfg.has_momentum:
            m.d.sync += o.m.eq(p["m"])
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


def update_unit_ports(cfg: CoreConfig) -> dict:
    """The ports of an update unit (`UpdateUnit`, `evcore.hdl.update_seq.SequencedUpdateUnit`), as the
    core drives them: see `UpdateUnit`."""
    n = cfg.n_synapses
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
    if cfg.optimizer is Optimizer.ADAM:
        vw = cfg.v_exp_bits + cfg.v_mant_bits
        sig |= {"v_addr": In(range(n)), "v_re": In(1), "v_rdata": Out(vw), "v_wdata": In(vw), "v_we": In(1)}
    return sig


def adam_v_memory(cfg: CoreConfig) -> memory.Memory | None:
    """§8 adam_v (Adam only): one packed v̂ per synapse."""
    if cfg.optimizer is not Optimizer.ADAM:
        return None
    vw = cfg.v_exp_bits + cfg.v_mant_bits
    return memory.Memory(shape=unsigned(vw), depth=max(2, cfg.n_synapses), init=[])


def wire_adam_v(m: Module, unit, busy, *, read_addr, write_addr, wdata, we):
    """Add ``unit.adam_v`` to `m` with its two ports: the update's addresses and write while `busy`,
    the host's (``unit.v_*``) while idle. Returns the read data (the address's word, next cycle)."""
    m.submodules.adam_v = vmem = unit.adam_v
    v_rp = vmem.read_port()
    v_wp = vmem.write_port()
    m.d.comb += [
        v_rp.addr.eq(Mux(busy, read_addr, unit.v_addr)),
        v_rp.en.eq(busy | unit.v_re),
        unit.v_rdata.eq(v_rp.data),
        v_wp.addr.eq(Mux(busy, write_addr, unit.v_addr)),
        v_wp.data.eq(Mux(busy, wdata, unit.v_wdata)),
        v_wp.en.eq(Mux(busy, we, unit.v_we)),
    ]
    return v_rp.data


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
        #: §8 adam_v (Adam only, else None): owned here, as only the update uses v; an attribute
        #: so tests can inspect it.
        self.adam_v = adam_v_memory(cfg)
        super().__init__(update_unit_ports(cfg))

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        n = cfg.n_synapses
        adam = cfg.optimizer is Optimizer.ADAM
        m.submodules.dp = dp = UpdateDatapath(cfg)
        m.submodules.lfsr = lfsr = Lfsr(cfg)
        # The FIFO keeps what the port writes (the flags leave at once, as pulses).
        out_layout = data.StructLayout({k: v for k, v in update_out_layout(cfg).members.items()
                                        if k in ("w", "m")})
        # The result FIFO, in registers (a few words: not worth a block RAM). An entry written
        # in cycle c can be read from c + 1, as `schedule` assumes; it never overflows there.
        depth = self.fifo_depth
        slots = [Signal(out_layout.size, name=f"fifo{k}") for k in range(depth)]
        f_wp, f_rp = Signal(range(depth)), Signal(range(depth))
        f_level = Signal(range(depth + 1))
        head_bits = Signal(out_layout.size)
        with m.Switch(f_rp):
            for k in range(depth):
                with m.Case(k):
                    m.d.comb += head_bits.eq(slots[k])
        head = out_layout(head_bits)

        busy = Signal()
        cyc = Signal(range(self.cycles + 1))
        nr = Signal(range(n + 1))  # synapses read (= next read address)
        nw = Signal(range(n + 1))  # synapses written
        mat = Signal(range(cfg.n_layers))  # matrix of address nr
        last_read = Signal()
        s = cfg.sizes
        ends = [sum(a * b for a, b in zip(s[: k + 1], s[1 : k + 2])) for k in range(cfg.n_layers)]

        can_read = busy & (nr != n)
        do_write = busy & (f_level != 0) & (~can_read | last_read)
        do_read = can_read & ~do_write
        done = busy & (nw == n) & (cyc >= 2 * n + cfg.cyc_sweep_latency)
        m.d.comb += [
            self.busy.eq(busy),
            self.done.eq(done),
            self.syn_we.eq(do_write),
            self.syn_addr.eq(Mux(do_write, nw, Mux(busy, nr, 0))),
            self.syn_wdata.w.eq(head.w),
            self.syn_wdata.g.eq(0),  # §6.4: Ĝ ← 0
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
        s0_mat = Signal.like(mat)
        m.d.sync += [s0_valid.eq(do_read), s0_mat.eq(mat)]
        i = dp.i.p
        m.d.comb += [
            dp.i.valid.eq(s0_valid),
            i.w.eq(self.syn_rdata.w),
            i.g.eq(self.syn_rdata.g),
            i.mat.eq(s0_mat),
            dp.lr_mant.eq(self.lr_mant),
            dp.bump.eq(self.bump),
            lfsr.we.eq(self.lfsr_we & ~busy),
            lfsr.wdata.eq(self.lfsr_wdata),
            self.lfsr.eq(lfsr.state),
        ]
        if cfg.has_momentum:
            m.d.comb += i.m.eq(self.syn_rdata.m)
        if _stochastic(cfg):
            m.d.comb += [dp.r.eq(lfsr.draw), lfsr.advance.eq(dp.r_take)]

        # Results into the FIFO (never full: `fifo_depth` from `schedule`), flags out.
        with m.If(dp.o.valid):
            with m.Switch(f_wp):
                for k in range(depth):
                    with m.Case(k):
                        m.d.sync += slots[k].eq(Cat(*(dp.o.p[f] for f in out_layout.members)))
            m.d.sync += f_wp.eq(Mux(f_wp == depth - 1, 0, f_wp + 1))
        with m.If(do_write):
            m.d.sync += f_rp.eq(Mux(f_rp == depth - 1, 0, f_rp + 1))
        m.d.sync += f_level.eq(f_level + dp.o.valid - do_write)
        m.d.comb += [
            self.mom_sat.eq(dp.o.valid & dp.o.p.mom_sat),
            self.w_sat.eq(dp.o.valid & dp.o.p.w_sat),
        ]

        if adam:
            # v̂' goes straight to its own memory's write port, in synapse order (address nv).
            nv = Signal(range(n + 1))
            with m.If(~busy):
                m.d.sync += nv.eq(0)
            with m.Elif(dp.v_o.valid):
                m.d.sync += nv.eq(nv + 1)
            v_data = wire_adam_v(m, self, busy, read_addr=nr, write_addr=nv, wdata=dp.v_o.p, we=dp.v_o.valid)
            m.d.comb += i.v.eq(v_data)
        return m
