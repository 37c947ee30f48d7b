"""bench/mutate.py: the mutation generator (sites, operators, order, selection) and its sandbox."""

import ast
import textwrap
from pathlib import Path

import pytest

from evcore.bench import mutate
from evcore.bench.mutate import OPERATORS, Mutant, datapath_functions, hdl_files, mutants_of

ROOT = Path(mutate.__file__).resolve().parent.parent

SAMPLE = textwrap.dedent('''
    from amaranth.hdl import Const, Module, Mux, Signal, signed

    def rnd(x, s, mode):
        return (x + (1 << (s - 1))) >> s

    def sat(x, bits):
        return x & 255, x > 255

    def widths(cfg):
        return cfg.a + 1

    class Unit:
        def __init__(self, cfg):
            self.n = cfg.n + 1

        def helper(self, x):
            return x & 3

        def elaborate(self, platform):
            m = Module()
            a = Signal(signed(8 + 1))
            b = Signal(range(10 - 1), name=f"b{1 + 1}")
            y, f = sat(a - b, 8)
            m.d.comb += b.eq(rnd(a, 2, "half"))
            with m.If(a[1:3] == 2):
                m.d.sync += a.eq(Mux(y > 5, 5, y))
            if widths(None) > 1:
                m.d.sync += a.eq(~self.helper(a))
            return m
''')


def _by_op(ms):
    out = {}
    for mu in ms:
        out.setdefault(mu.op, []).append(mu)
    return out


def test_every_operator_on_a_sample():
    ms = mutants_of("sample.py", SAMPLE)
    ops = _by_op(ms)
    assert set(ops) == set(OPERATORS)
    assert {(mu.original, mu.mutated) for mu in ops["sat"]} == {("sat(a - b, 8)", "((a - b), Const(0, 1))")}
    assert {(mu.original, mu.mutated) for mu in ops["round"]} == {('rnd(a, 2, "half")', "rnd(a, 2, None)")}
    assert {(mu.original, mu.mutated) for mu in ops["clamp"]} == {("Mux(y > 5, 5, y)", "(y)")}
    assert {mu.mutated for mu in ops["if"]} == {"~(a[1:3] == 2)"}
    assert {mu.mutated for mu in ops["compare"]} == {"((a[1:3]) != (2))", "((y) >= (5))", "((x) >= (255))"}
    assert {mu.mutated for mu in ops["not"]} == {"(self.helper(a))"}
    assert ("x & 3", "((x) | (3))") in {(mu.original, mu.mutated) for mu in ops["binop"]}


def test_sites_only_in_the_datapath():
    ms = mutants_of("sample.py", SAMPLE)
    # elaborate and the helpers it calls (transitively); not __init__.
    assert {mu.func for mu in ms} == {"rnd", "sat", "widths", "Unit.helper", "Unit.elaborate"}
    assert set(datapath_functions(ast.parse(SAMPLE))) == {mu.func for mu in ms}
    lines = SAMPLE.splitlines()
    for mu in ms:
        text = lines[mu.line - 1]
        # Widths, names and the test of a Python-level `if` are never mutated.
        assert "Signal(" not in text and "if widths" not in text, mu
        # Bit slices are not: on the If line only the compared constant moves.
        if mu.op == "const" and "a[1:3]" in text:
            assert mu.original == "2", mu


@pytest.mark.parametrize("file", hdl_files(ROOT))
def test_mutants_parse_and_differ(file):
    source = (ROOT / "hdl" / file).read_text()
    ms = mutants_of(file, source)
    if "def elaborate" not in source:  # e.g. hdl/layouts.py: word layouts, no datapath
        assert not ms
        return
    assert ms, f"hdl/{file} has no mutation site"
    keys = set()
    for mu in ms:
        new = mu.apply(source)
        assert new != source, mu
        ast.parse(new)  # every mutant is valid Python
        assert mu.key not in keys
        keys.add(mu.key)
    # Deterministic: the same list, in source order, on a second call.
    assert mutants_of(file, source) == ms
    assert [mu.start for mu in ms] == sorted(mu.start for mu in ms)


def test_selection_of_the_real_hdl():
    lif = {mu.func for mu in mutants_of("lif.py", (ROOT / "hdl" / "lif.py").read_text())}
    assert lif == {"rnd", "sat", "LifUnit.elaborate"}
    adj = {mu.func for mu in mutants_of("adjoint.py", (ROOT / "hdl" / "adjoint.py").read_text())}
    assert "err_bits" not in adj and "rnd_var" in adj
    core = {mu.func for mu in mutants_of("core.py", (ROOT / "hdl" / "core.py").read_text())}
    assert "check_buildable" not in core and "Core._counter_bits" not in core and "Core.elaborate" in core
    assert "sim_streams.py" not in hdl_files(ROOT) and "__init__.py" not in hdl_files(ROOT)


def test_tests_for():
    assert mutate.tests_for("lif.py", ROOT)[0] == "tests/hdl/test_lif.py"
    assert "tests/hdl/test_core.py" in mutate.tests_for("lif.py", ROOT)
    assert mutate.tests_for("no_such_unit.py", ROOT) == ["tests/hdl"]


def test_sandbox_is_a_copy(tmp_path):
    before = (ROOT / "hdl" / "lif.py").read_text()
    tree = mutate.make_sandbox(ROOT, tmp_path)
    mutate.check_sandbox(tree)
    (tree / "hdl" / "lif.py").write_text("raise SystemExit(3)\n")
    assert (ROOT / "hdl" / "lif.py").read_text() == before


def test_a_broken_rounding_is_killed_and_the_original_survives():
    """The premise: a mutant that breaks lif.rnd's rounding term is killed by tests/hdl/test_lif.py;
    a null mutant (the original text) survives the same run."""
    source = (ROOT / "hdl" / "lif.py").read_text()
    bad = next(mu for mu in mutants_of("lif.py", source)
               if mu.func == "rnd" and mu.op == "binop" and mu.original == "x + (1 << (s - 1))")
    null = Mutant("lif.py", "rnd", bad.line, bad.col, "binop", bad.original, bad.original, bad.start, bad.end)
    report = mutate.run_mutants([bad, null], tests={"lif.py": ["tests/hdl/test_lif.py"]}, log=lambda *_: None)
    status = [r["status"] for r in report["results"]]
    assert status == ["killed", "survived"]
    assert report["results"][0]["killed_by"].startswith("tests/hdl/test_lif.py::")
    assert (ROOT / "hdl" / "lif.py").read_text() == source


def test_merge_and_markdown():
    """A re-run that kills a survivor replaces its result; notes make survivors equivalent or open."""
    def res(key, status, line):
        return {"key": key, "file": "x.py", "func": "f", "line": line, "col": 0, "op": "binop",
                "original": "a + b", "mutated": "((a) - (b))", "status": status, "seconds": 1.0,
                "killed_by": "t.py::k" if status == "killed" else ""}

    campaign = {"results": [res("k1", "killed", 1), res("s1", "survived", 2), res("s2", "survived", 3),
                            res("s3", "survived", 4)], "sites": {"x.py": {"binop": 4}}, "wall_seconds": 4.0}
    rerun = {"results": [res("s1", "killed", 2), res("s2", "survived", 3)], "sites": {"x.py": {"binop": 4}},
             "wall_seconds": 2.0, "args": {"survivors_of": "c.json"}}
    rep = mutate.merge([campaign, rerun])
    assert [r["status"] for r in rep["results"]] == ["killed", "killed", "survived", "survived"]
    assert [r["first_status"] for r in rep["results"]] == ["killed", "survived", "survived", "survived"]
    md = mutate.markdown(rep, {"s2": "equivalent: because", "s3": "open: not yet"})
    row = next(line for line in md.splitlines() if line.startswith("| hdl/x.py"))
    # sites, run, killed, timeout, survived, killed by new tests, equivalent, open
    assert row.split(" | ")[9:17] == ["4", "4", "1", "0", "3", "1", "1", "1"]
    assert "killed now by `t.py::k`" in md and "equivalent: because" in md and "open: not yet" in md
