"""Loss unit (docs/core.md §4), built from a `CoreConfig` alone.

The RTL twin of `evcore.golden.loss.loss_unit`: from the output neurons' first-spike steps it
computes the softmax probabilities p̂_k and the terms L̂_k injected into Λ_V (§4.2-§4.3), in
exactly ``2 * n_out + cyc_jump`` cycles (the ``loss`` phase of `golden.core.cycle_model`, §7).
"""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from evcore.golden.config import CoreConfig, RoundingMode

from .lif import rnd, sat_by_bits
from .recip import recip_latency, recip_ports, use_recip

__all__ = ["LossUnit"]


def _min_parallel(vals):
    """The minimum of unsigned Values in one comparator level: every pair is compared at once,
    the first minimum is selected one-hot (an AND-OR, no chain of compare-and-select)."""
    n = len(vals)
    lt = {(a, b): vals[a] < vals[b] for a in range(n) for b in range(a)}  # a > b
    out = 0
    for k in range(n):
        first_min = Const(1, 1)
        for j in range(n):
            if j < k:
                first_min &= lt[k, j]  # strictly below the earlier ones
            elif j > k:
                first_min &= ~lt[j, k]  # not above the later ones
        out |= Mux(first_min, vals[k], 0)
    return out


class LossUnit(wiring.Component):
    """§4 for one sample: softmax through the EXP ROM and the reciprocal unit, then the L̂_k.

    Schedule (cycle 0 is the cycle in which ``start`` is high while the unit is idle; with
    N = n_out and C = 2 N + cyc_jump): ``busy`` is high in cycles 1 .. C (C cycles, the count
    of §7), ``done`` only in cycle C; from cycle C until the next start the results (``prob``,
    ``lterm``, ``active``, ``lam_sat``) are stable. ``start`` while busy is ignored. ``label``
    is sampled in cycle 0; ``first_step`` is read in cycles 0 .. C and must be held stable
    from start to done.

    Datapath:

    * cycle 0: n_min (all pairs of ``first_step`` compared at once); cycle 1: the N EXP ROM
      indices min(n_k − n_min, |EXP| − 1) into a register ring (5 bits each for up5k);
    * cycles 2 .. N: the ring rotates, the EXP ROM (asynchronous: |EXP| = 29 words fit LUTs)
      reads its head, Ŝ accumulates (in cycle 2 the two front entries, through a second read
      port); Ŝ is complete in cycle N+1 and enters `Recip` (N = 1: Ŝ = EXP[0]);
    * (y, e) is valid from cycle B = N+1+recip_latency on (Ŝ is held). In cycles B+k
      (k = 0 .. N-1) the ring rotates again: Ê_k·y (registered), then
      p̂_k = min(rnd(Ê_k·y, R + e − f_p), 2^f_p − 1) (a case over the few possible e), then
      Ĉ0·p̂_k, then L̂_k = sat(rnd(Ĉ0·p̂_k, f_p) − δ_ky (Ĉ0 + REG[n_y])) — the same as §4.3,
      since subtracting δ Ĉ0 2^f_p before a shift by f_p is subtracting δ Ĉ0 after it; the
      rounding and the label term are one addend (one adder), the saturation reads top bits.

    So L̂_{N-1} is written at the end of cycle 2N + recip_latency + 3 and the unit needs
    ``cyc_jump >= min_cyc_jump(cfg)`` = recip_latency + 4 = 8 (9 with
    ``ram_read_regs``); a larger cyc_jump idles at the
    end. REG[n_y] comes from a block-RAM ROM (T words) read at the registered label's step.

    Members
    -------
    start : ``In(1)``; label : ``In(range(n_out))``;
    first_step : ``In(data.ArrayLayout(unsigned(step_bits), n_out))`` (T = n_steps: silent);
    busy, done, active, lam_sat : ``Out(1)``;
    prob : ``Out(data.ArrayLayout(unsigned(prob_frac), n_out))``;
    lterm : ``Out(data.ArrayLayout(signed(lam_bits), n_out))`` (0 if silent or masked).
    """

    #: Cycles from Ŝ complete to the last L̂ written, beyond the 2 N issue cycles (see above).
    PIPE_CYCLES = 4

    @classmethod
    def min_cyc_jump(cls, cfg: CoreConfig) -> int:
        return recip_latency(cfg) + cls.PIPE_CYCLES

    @staticmethod
    def recip_bits(cfg: CoreConfig) -> int:
        """Width of Ŝ <= n_out · 2^f_E, the reciprocal's input."""
        return (cfg.sizes[-1] << cfg.exp_frac).bit_length()

    def __init__(self, cfg: CoreConfig, *, recip_d_bits: int | None = None):
        need = self.min_cyc_jump(cfg)
        if cfg.cyc_jump < need:
            raise ValueError(
                f"CoreConfig.cyc_jump = {cfg.cyc_jump}: the RTL loss unit needs >= {need} "
                f"(its phase is 2 n_out + cyc_jump cycles: reciprocal latency {recip_latency(cfg)} + 4)"
            )
        self._cfg = cfg
        n_out = cfg.sizes[-1]
        self.n_out = n_out
        #: Cycles from the start cycle to the done cycle (= busy cycles), §7's loss phase.
        self.cycles = 2 * n_out + cfg.cyc_jump
        super().__init__(
            {
                **recip_ports(cfg, recip_d_bits, need=self.recip_bits(cfg), owner="LossUnit",
                              what="Ŝ's width"),
                "start": In(1),
                "label": In(range(n_out)),
                "first_step": In(data.ArrayLayout(unsigned(cfg.step_bits), n_out)),
                "busy": Out(1),
                "done": Out(1),
                "active": Out(1),
                "lam_sat": Out(1),
                "prob": Out(data.ArrayLayout(unsigned(cfg.prob_frac), n_out)),
                "lterm": Out(data.ArrayLayout(signed(cfg.lam_bits), n_out)),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        n, T = self.n_out, cfg.n_steps
        r, pf, mode = cfg.recip_bits, cfg.prob_frac, cfg.state_rounding
        steps = self.first_step

        # -- control: cnt is the cycle number 1 .. C while busy (0: the start cycle) -----------
        run = Signal()
        cnt = Signal(range(self.cycles + 1))
        with m.If(run):
            m.d.sync += cnt.eq(cnt + 1)
            with m.If(cnt == self.cycles):
                m.d.sync += run.eq(0)
        with m.Elif(self.start):
            m.d.sync += [run.eq(1), cnt.eq(1)]
        m.d.comb += [self.busy.eq(run), self.done.eq(run & (cnt == self.cycles))]

        # -- EXP ROM indices of the N outputs, in a ring rotated once per pass (§4.2) -------
        # Cycle 0: n_min; cycle 1: the N indices min(n_k − n_min, |EXP| − 1) (two cycles keep the
        # comparators and the subtraction apart); cycles 2 .. N: Ŝ adds the ring's head, the
        # first of them its two front entries (two ROM ports), so Ŝ is complete in cycle N+1.
        exp_rom = [int(v) for v in cfg.exp_rom]
        last = len(exp_rom) - 1
        n_min = Signal(unsigned(cfg.step_bits))
        with m.If(self.start & ~run):
            m.d.sync += n_min.eq(_min_parallel([steps[k] for k in range(n)]))
        ring = [Signal(range(last + 1), name=f"exp_idx{k}") for k in range(n)]
        b0 = n + 1 + recip_latency(cfg)  # first cycle of the second pass: (y, e) valid
        pass_a2 = run & (cnt == 2)  # two terms
        pass_a1 = run & (cnt >= 3) & (cnt <= n)  # one term each
        pass_b = run & (cnt >= b0) & (cnt < b0 + n)
        with m.If(run & (cnt == 1)):
            for k in range(n):
                diff = steps[k] - n_min  # >= 0
                m.d.sync += ring[k].eq(Mux(diff > last, last, diff))
        with m.Elif(pass_a2):
            m.d.sync += [ring[k].eq(ring[(k + 2) % n]) for k in range(n)]
        with m.Elif(pass_a1 | pass_b):
            m.d.sync += [ring[k].eq(ring[(k + 1) % n]) for k in range(n)]
        m.submodules.exp_rom = exp_mem = memory.Memory(
            shape=unsigned(cfg.exp_frac + 1), depth=len(exp_rom), init=exp_rom
        )
        exp_rd = exp_mem.read_port(domain="comb")  # the head: both passes
        exp_rd2 = exp_mem.read_port(domain="comb")  # the entry after it: cycle 2 only
        m.d.comb += [exp_rd.addr.eq(ring[0]), exp_rd2.addr.eq(ring[1 % n])]

        # -- Ŝ and its reciprocal --------------------------------------------------------------
        s_bits = self.recip_bits(cfg)
        s_sum = Signal(s_bits)
        if n == 1:
            m.d.comb += s_sum.eq(exp_rom[0])  # the one output is the earliest: Ŝ = EXP[0]
        else:
            with m.If(pass_a2):
                m.d.sync += s_sum.eq(exp_rd.data + exp_rd2.data)
            with m.Elif(pass_a1):
                m.d.sync += s_sum.eq(s_sum + exp_rd.data)
        recip_i, recip_o = use_recip(m, self, cfg, s_bits)
        m.d.comb += [recip_i.p.eq(s_sum), recip_i.valid.eq(run & (cnt == n + 1))]
        y, e = recip_o.p.y, recip_o.p.e

        # -- label, masking, regulariser (§4.1, §4.3) ------------------------------------------
        label = Signal.like(self.label)
        n_label = steps[label]
        reg_rom = [int(v) for v in cfg.reg_rom]
        m.submodules.reg_rom = reg_mem = memory.Memory(
            shape=unsigned(max(1, max(reg_rom).bit_length())), depth=T, init=reg_rom
        )
        reg_rd = reg_mem.read_port()
        m.d.comb += reg_rd.addr.eq(Mux(n_label < T, n_label, 0))  # silent label: masked anyway
        with m.If(self.start & ~run):
            m.d.sync += [
                label.eq(self.label),
                self.active.eq(steps[self.label] < T),
                self.lam_sat.eq(0),
            ]
        # rnd(x, f_p) − t = (x + h − t 2^f_p) >> f_p (h: half an LSB for half up, else 0): the
        # label's Ĉ0 + REG[n_y] and the rounding become one addend, so stage 4 has one adder.
        half = (1 << (pf - 1)) if mode is RoundingMode.HALF_UP else 0
        add_label = Signal(signed(cfg.lam_bits + 2 + pf))
        m.d.sync += add_label.eq(half - ((cfg.loss_c0_raw + reg_rd.data) << pf))

        # -- second pass: p̂_k and L̂_k, one output per cycle, four registered stages ----------
        # Stage 1: Ê_k·y (exact), k = cnt − b0.
        v2, k2 = Signal(), Signal(range(n))
        prod_ey = Signal(unsigned(cfg.exp_frac + 1 + r))
        m.d.sync += [v2.eq(pass_b), k2.eq(cnt - b0), prod_ey.eq(exp_rd.data * y)]
        # Stage 2: rounding shift by R + e − f_p; e = bitlength(Ŝ) − 1 takes few values, as
        # 2^f_E <= Ŝ <= N 2^f_E, so the variable shift is a case over constant shifts.
        v3, k3 = Signal(), Signal(range(n))
        p_wide = Signal(unsigned(len(prod_ey) + max(0, pf - r - cfg.exp_frac) + 1))
        with m.Switch(e):
            for e_val in range(cfg.exp_frac, s_bits):
                with m.Case(e_val):
                    m.d.comb += p_wide.eq(rnd(prod_ey, r + e_val - pf, mode))
        p_max = (1 << pf) - 1
        p_hat = Signal(unsigned(pf))
        m.d.sync += [v3.eq(v2), k3.eq(k2), p_hat.eq(Mux(p_wide > p_max, p_max, p_wide))]
        for k in range(n):
            with m.If(v2 & (k2 == k)):
                m.d.sync += self.prob[k].eq(Mux(p_wide > p_max, p_max, p_wide))
        # Stage 3: Ĉ0·p̂_k (exact; Ĉ0 > 0 is a constant of the config).
        v4, k4 = Signal(), Signal(range(n))
        c0 = cfg.loss_c0_raw
        prod_cp = Signal(unsigned(max(1, c0.bit_length()) + pf))
        m.d.sync += [v4.eq(v3), k4.eq(k3), prod_cp.eq(p_hat * c0)]
        # Stage 4: L̂_k, saturated; 0 for a silent output or a masked sample (no flag then).
        l_sum = Signal(signed(max(len(prod_cp), len(add_label)) + 2))
        m.d.comb += l_sum.eq(prod_cp + Mux(k4 == label, add_label, half))
        l_sat, l_clamped = sat_by_bits(l_sum[pf:].as_signed(), cfg.lam_bits)
        for k in range(n):
            with m.If(v4 & (k4 == k)):
                inject = self.active & (steps[k] < T)
                m.d.sync += self.lterm[k].eq(Mux(inject, l_sat, 0))
                with m.If(inject & l_clamped):
                    m.d.sync += self.lam_sat.eq(1)
        return m
