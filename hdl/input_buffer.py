"""Input spike buffer of one sample (docs/core.md §3.1): up to `input_capacity` (step, input id).

The host pushes the sample's spikes sorted by step (host-side snapping and the n < T cut are
the host's, §3.1); a push that finds the buffer full is dropped and raises IN_OVF.
"""

from amaranth.hdl import Module, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from evcore.golden.config import CoreConfig

__all__ = ["InputBuffer", "input_entry_layout"]


def input_entry_layout(cfg: CoreConfig) -> data.StructLayout:
    """One buffer word (§8 `input_buffer`): step then input id."""
    return data.StructLayout({"step": unsigned(cfg.step_bits), "id": unsigned(cfg.input_id_bits)})


class InputBuffer(wiring.Component):
    """Append-only buffer with two read ports (the current entry and the one after it).

    `push` appends at `count` (one per cycle); when ``count == input_capacity`` the entry is
    dropped and `ovf` pulses for that cycle. `clear` empties it (wins over a push in the same cycle).
    Read ports are synchronous with one cycle of latency and transparent to a push in the same
    cycle: ``cur`` holds entry ``cur_addr`` of the previous cycle, ``nxt`` entry ``nxt_addr``.

    Members
    -------
    push : ``In(stream.Signature(input_entry_layout(cfg), always_ready=True))``
    clear : ``In(1)``
    count : ``Out(range(input_capacity + 1))``
    ovf : ``Out(1)``
    cur_addr, nxt_addr : ``In(range(input_capacity + 1))`` (addresses >= capacity read garbage)
    cur, nxt : ``Out(input_entry_layout(cfg))``
    """

    def __init__(self, cfg: CoreConfig):
        self._cfg = cfg
        layout = input_entry_layout(cfg)
        cap = cfg.input_capacity
        super().__init__(
            {
                "push": In(stream.Signature(layout, always_ready=True)),
                "clear": In(1),
                "count": Out(range(cap + 1)),
                "ovf": Out(1),
                "cur_addr": In(range(cap + 1)),
                "nxt_addr": In(range(cap + 1)),
                "cur": Out(layout),
                "nxt": Out(layout),
            }
        )

    def elaborate(self, platform):
        cfg = self._cfg
        cap = cfg.input_capacity
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=input_entry_layout(cfg), depth=cap, init=[])
        wp = mem.write_port()
        rp_cur = mem.read_port(transparent_for=(wp,))
        rp_nxt = mem.read_port(transparent_for=(wp,))
        full = self.count == cap
        m.d.comb += [
            wp.addr.eq(self.count),
            wp.data.eq(self.push.p),
            wp.en.eq(self.push.valid & ~full & ~self.clear),
            rp_cur.addr.eq(self.cur_addr),
            rp_nxt.addr.eq(self.nxt_addr),
            self.cur.eq(rp_cur.data),
            self.nxt.eq(rp_nxt.data),
            self.ovf.eq(self.push.valid & full & ~self.clear),
        ]
        with m.If(self.clear):
            m.d.sync += self.count.eq(0)
        with m.Elif(self.push.valid & ~full):
            m.d.sync += self.count.eq(self.count + 1)
        return m

