"""`evcore.synth.breakdown`: cells land in the module that holds them, and user mistakes are one line.

A toy design with a 16x16 product in one submodule and an 8-bit adder in another: the SB_MAC16 must
be counted in the first and nowhere else, the adder's logic in the second. Real yosys runs (a few
seconds), marked `synth` like the flow's.
"""

import pytest
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from evcore.synth.breakdown import format_breakdown, main, module_breakdown


class Product(wiring.Component):
    a: In(signed(16))
    b: In(signed(16))
    p: Out(signed(32))

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.p.eq(self.a * self.b)
        return m


class Adder(wiring.Component):
    a: In(unsigned(8))
    b: In(unsigned(8))
    s: Out(unsigned(9))

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.s.eq(self.a + self.b)
        return m


class Toy(wiring.Component):
    a: In(signed(16))
    b: In(signed(16))
    p: Out(signed(32))
    s: Out(unsigned(9))

    def elaborate(self, platform):
        m = Module()
        m.submodules.mul = mul = Product()
        m.submodules.add = add = Adder()
        m.d.comb += [mul.a.eq(self.a), mul.b.eq(self.b), add.a.eq(self.a[:8]), add.b.eq(self.b[:8]),
                     self.p.eq(mul.p), self.s.eq(add.s)]
        return m


@pytest.mark.synth
def test_cells_are_counted_in_their_module(tmp_path):
    rows = {r["module"]: r for r in module_breakdown(Toy(), device="up5k", name="toy", build_dir=tmp_path)}
    assert set(rows) == {"toy", "toy.mul", "toy.add"}
    assert rows["toy.mul"]["cells"]["DSP"] == 1  # 16 x 16: one SB_MAC16
    assert rows["toy.add"]["cells"]["DSP"] == rows["toy"]["cells"]["DSP"] == 0
    add = rows["toy.add"]["cells"]
    assert add["CARRY"] + add["LUT4"] >= 8 and add["FF"] == 9  # the sum register: 9 bits
    assert all(not r["merged"] for r in rows.values())
    table = format_breakdown(list(rows.values()))
    assert table.splitlines()[-1].startswith("| **sum** | ")


@pytest.mark.parametrize(("argv", "message"), [
    (["--set", "optimizer"], "--set wants KEY=VALUE, got 'optimizer'"),
    (["--set", "no_such_field=1"], "--set: "),
])
def test_bad_overrides_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and len(err[-1]) < 200
