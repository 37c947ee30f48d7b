"""The weight update of the area build (docs/core.md §6.6, "Area build"): one synapse word at a
time, in a fixed sequence of `word_cycles` cycles, its products on the borrowed multiplier lane.

The twin of `evcore.hdl.update.UpdateUnit` (same ports, same arithmetic: `golden.update.
update_weights` bit for bit) for ``build = area``. Where the throughput unit streams one word per
cycle through a 12-stage pipeline with a multiplier per product and a barrel shifter per variable
shift, this one reads a word, works on it in a handful of registers and writes it back before
the next:

* every product goes through the lane (§8, "Shared multipliers"), an operand too wide for it in
  pieces, the partial products accumulated from the top piece down;
* the variable shifts of Adam (dec(v̂), the leading one of V with enc and the ROM index, the
  floor(p/2) of s_u) run in one shift register that moves 8 or 1 places per cycle: V is
  normalised (shifted up until its top bit is set, counting), so the leading one, the mantissa of
  enc(V) and the ROM index sit at fixed bits;
* the LFSR steps once per cycle in the first ``sr_bits`` cycles of each word (§6.4: the same
  ``sr_bits`` steps per synapse), its bits shifted into the draw.

Each phase has a fixed slot in the word's sequence (a shift slot as long as its longest shift),
so a word takes `word_cycles` cycles whatever its data, and the update ``cyc_update_word`` x N +
cyc_sweep_latency (§7, golden's `FixedCore.update_cycles`).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, wiring

from evcore.golden.config import Build, CoreConfig, Optimizer, RoundingMode

from .mul import mul_ports
from .update import _post, _pre, _stochastic, _v_bits, adam_v_memory, sat, update_unit_ports, wire_adam_v

__all__ = ["SequencedUpdateUnit", "word_cycles", "seq_update_cycles", "shift_slot", "COARSE"]

#: Places the shift register moves in one cycle besides 1 (a shift of s takes s // 8 + s % 8 cycles).
COARSE = 8


def shift_slot(s_max: int) -> int:
    """Cycles that hold every shift of 0..s_max places in steps of COARSE or 1 (greedy)."""
    return max((s // COARSE + s % COARSE for s in range(s_max + 1)), default=0)


def _pieces(width: int, lane_w: int) -> list[tuple[int, int]]:
    """(low bit, bits) of a signed ``width``-bit operand cut for a signed ``lane_w``-bit multiplier
    input, low first: the low pieces unsigned (lane_w − 1 bits), the top one signed (<= lane_w)."""
    cuts, lo = [], 0
    while width - lo > lane_w:
        cuts.append((lo, lane_w - 1))
        lo += lane_w - 1
    cuts.append((lo, width - lo))
    return cuts


def _b_bits(cfg: CoreConfig) -> int:
    """b of §6.6's rounding by shifts, Δ = (y + t) >> b."""
    if _stochastic(cfg):
        return cfg.sr_bits
    return 1 if cfg.update_rounding is RoundingMode.HALF_UP else 0


def _const_of(mat, shifts: list[int]):
    """The matrix's constant of `shifts` as an expression of ``mat`` (all >= 0)."""
    out = Const(shifts[0], range(max(shifts) + 1))
    for j in range(1, len(shifts)):
        out = Mux(mat == j, shifts[j], out)
    return out


def _const_shifts(cfg: CoreConfig) -> list[int]:
    """Per matrix, the constant part of y's right shift: lr_shift (+ rsqrt_bits for Adam) − b."""
    su = cfg.rsqrt_bits if cfg.optimizer is Optimizer.ADAM else 0
    return [cfg.lr_shift[k] + su - _b_bits(cfg) for k in range(cfg.n_layers)]


class _Sources:
    """The values a register takes, each once: the cycles that load the same value share its logic
    (one adder, one mux input) instead of a copy per cycle."""

    def __init__(self):
        self._src = {}  # key -> (value, [conditions])

    def add(self, key, cond, value):
        self._src.setdefault(key, (value, []))[1].append(cond)

    def emit(self, m: Module, reg):
        for j, (value, conds) in enumerate(self._src.values()):
            cond = conds[0] if len(conds) == 1 else Cat(*conds).any()
            with m.If(cond) if j == 0 else m.Elif(cond):
                m.d.sync += reg.eq(value)


class _Plan:
    """The word's sequence for ``cfg`` on a ``lane`` (a, b): the cycle of each step, from the read
    (cycle 0) to the write (the last). Tail: the rounding add in cycle C − 2, the write in C − 1."""

    def __init__(self, cfg: CoreConfig, lane):
        gb, vb = cfg.grad_bits, _v_bits(cfg)
        opt = cfg.optimizer
        shifts = _const_shifts(cfg)
        self.lane = lane
        k = 2  # cycle 0 reads the word, cycle 1 loads it
        #: y's constant shift joins the serial one (Adam, every constant >= 0), else has its own step.
        self.fold_c = opt is Optimizer.ADAM and min(shifts) >= 0
        if opt is Optimizer.ADAM:
            self.gg = _pieces(gb, lane[0])  # g·g: g whole on b, its pieces on a
            self.k_gg = k
            # Every e of a v̂ with dec(v̂) < 2^vb (any mantissa >= 1), as the throughput build.
            self.dec_slot = shift_slot(vb - 1)
            self.k_t = k + max(len(self.gg), self.dec_slot)  # g·g − V + c
            self.k_v = self.k_t + 1  # V ← V + (…) >> a_2
            self.norm_slot = shift_slot(vb - 1)
            self.k_enc = self.k_v + 1 + self.norm_slot  # enc, ROM address, floor(p/2)
            self.k_u = self.k_enc + 1  # u = m̂ · RSQ
            self.u_bits = gb + cfg.rsqrt_bits + 1
            self.ux = _pieces(self.u_bits, lane[0])  # u·lr_mant: lr whole on b, u's pieces on a
            self.ux_on_a = True
            self.k_x = self.k_u + 1
            k = self.k_x + len(self.ux)
            h_max = (vb - 1) // 2
            self.y_slot = shift_slot(h_max + max(shifts)) if self.fold_c else shift_slot(h_max)
        elif opt is Optimizer.LION:
            self.k_m = k  # m̂ ← sat(...), sign(ĉ)
            k += 1
            self.y_slot = 0
        else:
            self.k_m = k if cfg.mom_shift > 0 else None
            k += cfg.mom_shift > 0
            self.ux = _pieces(gb, lane[1])  # m̂·lr_mant or g·lr_mant: lr whole on a, u's pieces on b
            self.ux_on_a = False
            self.k_x = k
            k += len(self.ux)
            self.y_slot = 0
        #: The cycle of y's constant shift (x, or Lion's ±lr_mant, shifted by the matrix's constant).
        self.k_c = None if self.fold_c else k
        k += not self.fold_c
        self.k_y = k  # the serial shift's first cycle
        least = k + self.y_slot + 2
        if _stochastic(cfg):
            least = max(least, cfg.sr_bits + 2)  # the draw is complete from cycle sr_bits
        #: The least cycles per word (`word_cycles`).
        self.least = least


def _lane_need(cfg: CoreConfig):
    """Signed operand widths (a, b) the update's products take on the lane, None for Lion."""
    if cfg.optimizer is Optimizer.LION:
        return None
    if cfg.optimizer is Optimizer.ADAM:
        # RSQ and u's pieces on a; g, m̂ and lr_mant whole on b.
        return cfg.rsqrt_bits + 1, max(cfg.grad_bits, cfg.lr_bits + 1)
    return cfg.lr_bits + 1, cfg.grad_bits  # lr_mant on a, m̂ or g whole on b


def word_cycles(cfg: CoreConfig, lane: tuple[int, int] | None = None) -> int:
    """The least ``cyc_update_word`` of the area build on ``lane`` (default: just the update's need)."""
    need = _lane_need(cfg)
    return _Plan(cfg, lane or need or (1, 1)).least


def seq_update_cycles(cfg: CoreConfig) -> int:
    """Cycles from ``start`` (cycle 0) to ``done``: cyc_update_word x N + cyc_sweep_latency, at
    least one cycle after the last write (golden's count for cyc_sweep_latency >= 1)."""
    return cfg.cyc_update_word * cfg.n_synapses + max(cfg.cyc_sweep_latency, 1)


class SequencedUpdateUnit(wiring.Component):
    """§6 over every synapse in memory order, one word per ``cyc_update_word`` cycles (area build).

    Schedule. ``start`` (idle) in cycle 0; `busy` from cycle 1 through the cycle of `done`, a
    one-cycle pulse in cycle `seq_update_cycles(cfg)`. Word n has cycles 1 + C·n .. C·(n + 1)
    (C = ``cyc_update_word``): the port reads it in the first, writes it in the last; v̂ is read and
    written in the same cycles on its own memory. The sequence (`_Plan`) places each step at a
    fixed cycle; cycles beyond `word_cycles` pad before the tail (the rounding add and the write).

    Ports as `evcore.hdl.update.UpdateUnit`, plus ``mul`` (the lane, `mul_need`; none for Lion).
    ``lr_mant`` and ``bump`` must be stable while busy; host ports (``lfsr_we``, ``v_*``) act only
    while idle.
    """

    @staticmethod
    def mul_need(cfg: CoreConfig):
        """Signed (a, b) operand widths of the update's products on the lane; None for Lion."""
        return _lane_need(cfg)

    def __init__(self, cfg: CoreConfig, *, mul_lane: tuple[int, int] | None = None):
        need = _lane_need(cfg)
        if need is not None and mul_lane is None:
            mul_lane = need  # a lane of its own (unit tests lend it one)
        self._cfg = cfg
        self._plan = _Plan(cfg, mul_lane if need is not None else (1, 1))
        if cfg.build is not Build.AREA:
            raise ValueError(f"SequencedUpdateUnit: CoreConfig.build = {cfg.build.value!r}, needs 'area'")
        if cfg.cyc_update_word < self._plan.least:
            raise ValueError(f"CoreConfig.cyc_update_word = {cfg.cyc_update_word}: the area build's "
                             f"update needs >= {self._plan.least} cycles per synapse word")
        self.cycles = seq_update_cycles(cfg)
        sig = update_unit_ports(cfg)
        if need is not None:
            sig |= mul_ports(mul_lane, need=need, owner="SequencedUpdateUnit")
        #: §8 adam_v, as `UpdateUnit.adam_v`.
        self.adam_v = adam_v_memory(cfg)
        super().__init__(sig)

    def elaborate(self, platform):
        cfg = self._cfg
        pl = self._plan
        m = Module()
        n = cfg.n_synapses
        opt = cfg.optimizer
        mode = cfg.state_rounding
        gb, wb, vb = cfg.grad_bits, cfg.w_bits, _v_bits(cfg)
        b = _b_bits(cfg)
        c_words = cfg.cyc_update_word
        k_add, k_write = c_words - 2, c_words - 1

        # -- the word counter ------------------------------------------------------------------
        busy = Signal()
        k = Signal(range(c_words))  # cycle within the word
        addr = Signal(range(max(2, n)))
        mat = Signal(range(cfg.n_layers))
        pad = Signal(range(max(2, cfg.cyc_sweep_latency + 1)))
        tail = Signal()  # every word written: the pad cycles before `done`
        s = cfg.sizes
        ends = [sum(a * c for a, c in zip(s[: j + 1], s[1 : j + 2])) for j in range(cfg.n_layers)]
        done = busy & tail & (pad == max(cfg.cyc_sweep_latency, 1) - 1)
        m.d.comb += [self.busy.eq(busy), self.done.eq(done), self.syn_addr.eq(Mux(busy, addr, 0))]
        word = busy & ~tail
        # at[c]: this cycle is cycle c of a word (the unused ones are optimised away).
        at = [Signal(name=f"at{c}") for c in range(c_words)]
        m.d.comb += [at[c].eq(word & (k == c)) for c in range(c_words)]

        def step(c):
            return at[c]

        with m.If(~busy):
            with m.If(self.start):
                m.d.sync += [busy.eq(1), k.eq(0), addr.eq(0), mat.eq(0), tail.eq(0), pad.eq(0)]
        with m.Elif(tail):
            m.d.sync += pad.eq(pad + 1)
            with m.If(done):
                m.d.sync += busy.eq(0)
        with m.Else():
            m.d.sync += k.eq(k + 1)
            with m.If(k == k_write):
                m.d.sync += [k.eq(0), addr.eq(addr + 1)]
                for j in range(cfg.n_layers - 1):
                    with m.If(addr == ends[j] - 1):
                        m.d.sync += mat.eq(j + 1)
                with m.If(addr == n - 1):
                    m.d.sync += tail.eq(1)

        rd = self.syn_rdata
        lr = self.lr_mant[mat]
        shifts = _const_shifts(cfg)

        # -- registers -------------------------------------------------------------------------
        w_b = Signal(signed(wb + 1))  # ŵ + bump
        mm = Signal(signed(gb))  # m̂, then m̂'
        msat = Signal()
        if opt is Optimizer.ADAM:
            x_bits = pl.u_bits + cfg.lr_bits + 1
        else:
            x_bits = cfg.lr_bits + 1 + (gb if opt is Optimizer.SGD else 0)
        # The accumulator: g·g, t, V (Adam), the product x, then y = x shifted.
        acc_bits = max(x_bits - min(0, *shifts), 2 * gb + 1 if opt is Optimizer.ADAM else 0)
        acc = Signal(signed(acc_bits))
        rt = Signal(signed(wb + b + 5))  # clamp(y) + t
        acc_src = _Sources()
        hp = Signal(range(max(2, (vb - 1) // 2 + max(0, *shifts) + 1)))  # y's remaining shift

        m.d.comb += self.syn_wdata.g.eq(0)  # §6.4: Ĝ ← 0
        if cfg.has_momentum:
            m.d.comb += self.syn_wdata.m.eq(mm)
        with m.If(step(1)):
            m.d.sync += [w_b.eq(rd.w + self.bump[mat]), msat.eq(0)]
            if cfg.has_momentum:
                m.d.sync += mm.eq(rd.m)

        # The lane: operands by cycle (nobody drives it in the others).
        lane_p = self.mul.p if "mul" in self.signature.members else None

        def lane(a_val, b_val):
            m.d.comb += [self.mul.a.eq(a_val), self.mul.b.eq(b_val), self.mul.req.eq(1)]

        tops = []  # the cycles of top pieces
        first = Signal()  # driven once every product is placed, below

        def product(k0, pieces, whole, wide, *, on_a):
            """acc ← wide · whole, ``wide`` in `pieces` (top first), one piece per cycle."""
            bits = pl.lane[0 if on_a else 1] - 1  # the low pieces' width (`_pieces`)
            for j, (lo, _) in enumerate(reversed(pieces)):
                top = j == 0
                piece = wide[lo:].as_signed() if top else wide[lo : lo + bits]
                with m.If(step(k0 + j)):
                    lane(piece, whole) if on_a else lane(whole, piece)
                # acc ← (acc << bits) + p, acc gated to 0 for the top piece (the gate joins the
                # adder's LUTs: one mux input for every piece of every product).
                acc_src.add(("acc_p", bits), step(k0 + j), (Mux(first, 0, acc) << bits) + lane_p)
            tops.append(step(k0))  # the top piece's cycle

        def const_shift(x):
            """x shifted by the matrix's constant (a mux over the matrices)."""
            out = x >> shifts[0] if shifts[0] >= 0 else x << -shifts[0]
            for j in range(1, cfg.n_layers):
                c = shifts[j]
                out = Mux(mat == j, x >> c if c >= 0 else x << -c, out)
            return out

        if opt is Optimizer.ADAM:
            vm, rk, rb = cfg.v_mant_bits, cfg.rsqrt_index_bits, cfg.rsqrt_bits
            a1, a2 = cfg.adam_shift1, cfg.adam_shift2
            # The shift register: dec(v̂), then V normalised, then u.
            sh = Signal(unsigned(max(vb, pl.u_bits)))
            g = Signal(signed(gb))
            dm = Signal(signed(gb + 2))
            ve = Signal(cfg.v_exp_bits)  # dec's remaining shift
            z = Signal(range(vb + COARSE * pl.norm_slot + 1))  # places normalised
            zero = Signal()
            v_new = Signal(cfg.v_exp_bits + vm)
            # v̂ is read with the word (cycle 0, data in 1) and written with it (the last cycle).
            v_data = wire_adam_v(m, self, busy, read_addr=addr, write_addr=addr, wdata=v_new,
                                 we=step(k_write))
            with m.If(step(1)):
                m.d.sync += [g.eq(rd.g), dm.eq(_pre(rd.g - rd.m, a1, mode))]
            with m.If(step(2)):
                mn, ms = sat(mm + _post(dm, a1), gb)
                m.d.sync += [mm.eq(mn), msat.eq(ms)]
            # g·g: g whole on b, g's pieces on a.
            product(pl.k_gg, pl.gg, g, g, on_a=True)
            # dec(v̂): the mantissa shifted up by e; then V normalised: shifted up until bit vb − 1
            # is set, counting in z. Both 8 or 1 places a cycle, in one shifter.
            in_dec = word & (k >= 2) & (k < 2 + pl.dec_slot)
            in_norm = word & (k > pl.k_v) & (k < pl.k_enc)
            coarse = (sh[vb - COARSE : vb] == 0) if vb >= COARSE else Const(0)
            up8 = (in_dec & (ve >= COARSE)) | (in_norm & coarse)
            up1 = (in_dec & (ve != 0)) | (in_norm & ~sh[vb - 1])
            v_dec = sh[:vb]
            v_ema = Signal(unsigned(vb))
            m.d.comb += v_ema.eq(v_dec + _post(acc, a2))
            with m.If(step(1)):
                m.d.sync += [sh.eq(v_data[:vm]), ve.eq(v_data[vm:])]
            with m.Elif(step(pl.k_v)):
                m.d.sync += [sh.eq(v_ema), z.eq(0)]
            with m.Elif(step(pl.k_u)):
                m.d.sync += sh.eq(lane_p)  # u = m̂ · RSQ (0 for V = 0: RSQ gated)
            with m.Elif(up8):
                m.d.sync += sh.eq(sh << COARSE)
            with m.Elif(up1):
                m.d.sync += sh.eq(sh << 1)
            with m.If(in_dec & (ve >= COARSE)):
                m.d.sync += ve.eq(ve - COARSE)
            with m.Elif(in_dec & (ve != 0)):
                m.d.sync += ve.eq(ve - 1)
            with m.If(in_norm & coarse):
                m.d.sync += z.eq(z + COARSE)
            with m.Elif(in_norm & ~sh[vb - 1]):
                m.d.sync += z.eq(z + 1)
            acc_src.add("t", step(pl.k_t), _pre(acc - v_dec, a2, mode))
            acc_src.add("v", step(pl.k_v), v_ema)
            # enc(V), the ROM index and floor(p/2), p = vb − 1 − z: the leading one is bit vb − 1.
            p_lead = Signal(range(vb))
            m.d.comb += p_lead.eq(vb - 1 - z)
            e = Mux(z < vb - vm, vb - vm - z, 0)
            below = Cat(Const(0, max(0, rk + 1 - vb)), sh[max(0, vb - 1 - rk) : vb - 1])
            idx = below[:rk]  # the rk bits below the leading one (zeros where V is narrower)
            if rk >= vm:  # the bits enc truncated (j >= vm places below the leading one) are 0
                idx = idx & (((1 << rk) - 1) & ~((1 << (rk - vm + 1)) - 1))
            rom = cfg.rsqrt_rom
            m.submodules.rsqrt_rom = rsq = memory.Memory(
                shape=unsigned(rb), depth=rom.size, init=[int(v) for v in rom.ravel()])
            rsq_rp = rsq.read_port()
            m.d.comb += rsq_rp.addr.eq(Cat(idx[:rk], p_lead[0]))
            with m.If(step(pl.k_enc)):
                is_zero = acc == 0
                mant = Mux(e != 0, sh[max(0, vb - vm) : vb], acc[:vm])
                h = p_lead >> 1
                m.d.sync += [zero.eq(is_zero), hp.eq(h + _const_of(mat, shifts) if pl.fold_c else h),
                             v_new.eq(Mux(is_zero, 0, Cat(mant, e[: cfg.v_exp_bits])))]
            with m.If(step(pl.k_u)):
                lane(Mux(zero, 0, rsq_rp.data), mm)
            # x = u · lr_mant: u's pieces on a.
            product(pl.k_x, pl.ux, lr, sh[: pl.u_bits].as_signed(), on_a=True)
        elif opt is Optimizer.LION:
            k1, k2 = cfg.lion_shift, cfg.mom_shift
            d1 = Signal(signed(gb + 2))
            d2 = Signal(signed(gb + 2))
            pos, neg = Signal(), Signal()
            with m.If(step(1)):
                m.d.sync += [d1.eq(_pre(rd.g - rd.m, k1, mode)), d2.eq(_pre(rd.g - rd.m, k2, mode))]
            with m.If(step(pl.k_m)):
                c = mm + _post(d1, k1)
                mn, ms = sat(mm + _post(d2, k2), gb)
                m.d.sync += [mm.eq(mn), msat.eq(ms), pos.eq(c > 0), neg.eq(c < 0)]
        else:
            k2 = cfg.mom_shift
            if k2 > 0:
                q = Signal(signed(gb + 1))
                sm = Signal(signed(gb + 1))
                with m.If(step(1)):
                    m.d.sync += [q.eq(_pre(rd.m, k2, mode)), sm.eq(rd.m + rd.g)]
                with m.If(step(pl.k_m)):
                    mn, ms = sat(sm - _post(q, k2), gb)
                    m.d.sync += [mm.eq(mn), msat.eq(ms)]
                u = mm
            else:
                u = Signal(signed(gb))
                with m.If(step(1)):
                    m.d.sync += u.eq(rd.g)
            product(pl.k_x, pl.ux, lr, u, on_a=False)

        # y = x shifted by the matrix's constant (its own step, or folded into the serial shift),
        # then (Adam) by floor(p/2): right, 8 or 1 places a cycle.
        if pl.k_c is not None:
            x_val = Mux(pos, lr, Mux(neg, -lr, 0)) if opt is Optimizer.LION else acc
            acc_src.add("c", step(pl.k_c), const_shift(x_val))
        if pl.y_slot:
            in_y = word & (k >= pl.k_y) & (k < pl.k_y + pl.y_slot)
            with m.If(in_y & (hp >= COARSE)):
                m.d.sync += hp.eq(hp - COARSE)
            with m.Elif(in_y & (hp != 0)):
                m.d.sync += hp.eq(hp - 1)
            acc_src.add("y8", in_y & (hp >= COARSE), acc >> COARSE)
            acc_src.add("y1", in_y & (hp != 0), acc >> 1)  # after y8 in the chain: hp < COARSE here
        m.d.comb += first.eq(Cat(*tops).any() if tops else 0)
        acc_src.emit(m, acc)

        # The LFSR: one step per cycle in the word's first sr_bits cycles, its bit into the draw.
        lfsr = Signal(cfg.lfsr_bits, init=cfg.lfsr_seed)
        draw = Signal(max(1, cfg.sr_bits))
        m.d.comb += self.lfsr.eq(lfsr)
        with m.If(~busy & self.lfsr_we):
            m.d.sync += lfsr.eq(self.lfsr_wdata)
        if _stochastic(cfg):
            with m.Elif(word & (k < cfg.sr_bits)):
                out = lfsr[0]
                m.d.sync += [lfsr.eq((lfsr >> 1) ^ Mux(out, cfg.lfsr_taps, 0)), draw.eq(Cat(out, draw[:-1]))]

        # Tail: Δ = (clamp(y) + t) >> b, then ŵ ← sat(ŵ + bump − Δ) and the write.
        t = draw if _stochastic(cfg) else (1 if b else 0)
        yc, _ = sat(acc, wb + 3 + b)
        with m.If(step(k_add)):
            m.d.sync += rt.eq(yc + t)
        w_new, w_sat = sat(w_b - (rt >> b), wb)
        wr = step(k_write)
        m.d.comb += [
            self.syn_we.eq(wr),
            self.syn_wdata.w.eq(w_new),
            self.w_sat.eq(wr & w_sat),
            self.mom_sat.eq(wr & msat),
        ]
        return m
