"""Out-of-context harness: any `wiring.Component` behind four pins, every port registered.

Place-and-route needs a top whose ports are pins, and a bare component rarely fits: the MAC alone
has 80 port bits against the 39 IOs of an iCE40UP5K-SG48, where nextpnr stops with
``ERROR: Unable to find a placement location for cell 'o__payload[3]$sb_io'``, and a whole
event core has more port bits than any package has pins. The other escapes are worse:

- ``nextpnr-ecp5 --out-of-context`` exists, but it also turns off global clock promotion, so the
  clock is routed in fabric and fmax comes out pessimistic; nextpnr-ice40 has no such option.
- Deleting the ports in yosys leaves undriven inputs that ABC treats as constants, and outputs
  whose logic is then removed: the counts would describe a different circuit.

So `IoHarness` gives the component the context it has in a real design: each input bit comes from
a flip-flop of a shift chain loaded from the pin ``sdi``, each output bit goes into a capture
flip-flop, and the captures are XOR-reduced into ``sdo`` through a tree with a register after
every LUT4-sized (4-input) level. Every path into and out of the component is then
flip-flop to flip-flop, no input is constant, no output is unobservable, and the harness itself adds
at most one LUT level between registers, so it never sets fmax for any real design.

The harness costs ``input_bits`` + ``output_bits`` + about ``output_bits / 3`` flip-flops and
about ``output_bits / 3`` LUTs (93 FFs and 15 LUT4s around the 16x16 MAC). `evcore.synth.flow`
keeps the component a separate yosys module and counts its cells apart, so reported figures
exclude this overhead.

Only the ``sync`` domain is harnessed; a component with other clock domains gets their clock and
reset as extra pins (Amaranth adds them), which still fits any package.
"""

from amaranth.hdl import Cat, Const, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import Flow, In, Out

__all__ = ["IoHarness"]

#: Fan-in of one level of the output XOR tree: one iCE40/ECP5 LUT4 per group.
_XOR_FANIN = 4


class IoHarness(wiring.Component):
    """Registers every port of `component`; drives inputs from ``sdi``, folds outputs into ``sdo``.

    Latency and function are irrelevant (the harness exists only to be synthesized), but it is a
    real circuit: ``sdo`` is the parity of all component outputs some cycles earlier.

    Parameters
    ----------
    component : wiring.Component
        The unit to synthesize. Its instance is named `INSTANCE`, so its cells appear in yosys
        as module ``<top>.<INSTANCE>`` and in nextpnr netlists with the prefix ``<INSTANCE>.``.

    Members
    -------
    sdi : ``In(1)``
        Serial input feeding the shift chain that drives all component inputs.
    sdo : ``Out(1)``
        Registered XOR of all component outputs.
    """

    #: Submodule name of the wrapped component in the elaborated design.
    INSTANCE = "evcore_dut"

    sdi: In(1)
    sdo: Out(1)

    def __init__(self, component: wiring.Component):
        if not isinstance(component, wiring.Component):
            raise TypeError(f"IoHarness wraps a wiring.Component, not {type(component).__name__}")
        self._component = component
        self._inputs, self._outputs = [], []
        for _path, member, value in component.signature.flatten(component):
            value = Value.cast(value)
            # Empty members and constant ones (an always-ready stream's ``ready``) are no ports.
            if len(value) == 0 or isinstance(value, Const):
                continue
            (self._inputs if member.flow == Flow.In else self._outputs).append(value)
        if not self._outputs:
            raise ValueError(
                f"{type(component).__name__} has no output ports: nothing would survive synthesis"
            )
        super().__init__()

    @property
    def component(self) -> wiring.Component:
        return self._component

    @property
    def input_bits(self) -> int:
        """Component input bits, each driven by one harness flip-flop."""
        return sum(len(v) for v in self._inputs)

    @property
    def output_bits(self) -> int:
        """Component output bits, each captured by one harness flip-flop."""
        return sum(len(v) for v in self._outputs)

    def elaborate(self, platform):
        m = Module()
        m.submodules[self.INSTANCE] = self._component

        # reset_less throughout: the harness needs no reset, and a reset would add LUTs or
        # set/reset pins that are not part of the component's cost.
        if self._inputs:
            chain = Signal(self.input_bits, reset_less=True)
            m.d.sync += chain.eq(Cat(self.sdi, chain[:-1]))
            offset = 0
            for value in self._inputs:
                m.d.comb += value.eq(chain[offset : offset + len(value)])
                offset += len(value)

        capture = Signal(self.output_bits, reset_less=True)
        m.d.sync += capture.eq(Cat(*self._outputs))
        level = list(capture)
        while len(level) > 1:
            folded = []
            for start in range(0, len(level), _XOR_FANIN):
                bit = Signal(reset_less=True)
                m.d.sync += bit.eq(Cat(*level[start : start + _XOR_FANIN]).xor())
                folded.append(bit)
            level = folded
        m.d.comb += self.sdo.eq(level[0])
        return m
