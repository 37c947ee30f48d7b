"""The LFSR of the weight update (docs/core.md §6.4) as a precomputed GF(2)-linear map.

`golden.lfsr.lfsr_draw` takes ``sr_bits`` sequential Galois steps per draw. Every step is linear
over GF(2), so ``sr_bits`` of them are too: each bit of the next state and each bit of the draw
is the XOR of a fixed subset of the current state's bits. `draw_masks` computes those subsets
once from the config; the hardware is one XOR tree per bit (no chain of ``sr_bits`` steps).
"""

import numpy as np
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from evcore.golden.config import CoreConfig
from evcore.golden.lfsr import lfsr_draw

__all__ = ["Lfsr", "draw_masks", "draw_expr"]


def draw_masks(bits: int, taps: int, n_steps: int) -> tuple[list[int], list[int]]:
    """(next-state masks, draw masks): bit k of the state after ``n_steps`` steps is the parity of
    ``state & next_masks[k]``; bit k of the draw (first output bit = MSB) that of
    ``state & draw_masks[k]``."""
    s = [1 << k for k in range(bits)]  # bit k of the running state, as a subset of the initial bits
    out = []
    for _ in range(n_steps):
        b = s[0]
        out.append(b)
        s = [s[k + 1] if k + 1 < bits else 0 for k in range(bits)]
        s = [x ^ (b if taps >> k & 1 else 0) for k, x in enumerate(s)]
    return s, out[::-1]  # out[0] was the first output bit: the MSB of the draw


def draw_expr(state, cfg: CoreConfig):
    """(next state, draw) as Amaranth expressions of ``state``: one `lfsr_draw` of ``sr_bits`` bits."""
    nxt, drw = draw_masks(cfg.lfsr_bits, cfg.lfsr_taps, cfg.sr_bits)

    def parity(mask):
        return (state & mask).xor()

    return Cat(*(parity(mk) for mk in nxt)), Cat(*(parity(mk) for mk in drw))


class Lfsr(wiring.Component):
    """§6.4 LFSR register: ``draw`` is the next ``sr_bits`` output bits of ``state`` (held in a
    register of its own); ``advance`` steps the state by ``sr_bits`` (the draw is consumed);
    ``we`` loads ``wdata`` (host, idle; has priority). Reset value ``lfsr_seed``.

    Members
    -------
    state : ``Out(lfsr_bits)``; draw : ``Out(sr_bits)``; advance : ``In(1)``;
    wdata : ``In(lfsr_bits)``; we : ``In(1)``.
    """

    def __init__(self, cfg: CoreConfig):
        self._cfg = cfg
        super().__init__(
            {
                "state": Out(cfg.lfsr_bits, init=cfg.lfsr_seed),
                "draw": Out(cfg.sr_bits),
                "advance": In(1),
                "wdata": In(cfg.lfsr_bits),
                "we": In(1),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        # The draw is a register (its XOR trees sit before it, not in front of the consumer's
        # adder): loaded with the draw of whatever the state becomes.
        _, r0 = lfsr_draw(np.int64(cfg.lfsr_seed), np.int64(cfg.lfsr_taps), cfg.sr_bits)
        draw = Signal(cfg.sr_bits, init=int(r0))
        nxt, _ = draw_expr(self.state, cfg)
        m.d.comb += self.draw.eq(draw)
        with m.If(self.we):
            m.d.sync += [self.state.eq(self.wdata), draw.eq(draw_expr(self.wdata, cfg)[1])]
        with m.Elif(self.advance):
            m.d.sync += [self.state.eq(nxt), draw.eq(draw_expr(nxt, cfg)[1])]
        return m

