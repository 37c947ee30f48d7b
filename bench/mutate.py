"""`make mutate`: mutation testing of the RTL datapath (docs/mutation.md).

Each mutant is one small change to one `hdl/*.py` file (an operator swapped, a constant moved by
one, a saturation or a rounding term dropped, a condition inverted), made inside the functions that
build hardware: every ``elaborate`` method (with the functions nested in it) and the module's
helpers that it calls, transitively (`rnd`, `sat`, `rnd_var`, `_leading_one`, `_min_parallel`,
`_sat_by_bits`, `HostLink._address_ok`, ...). The fast regression of that file (`TEST_MAP`, with
``-x``) runs on each; a mutant is *killed* if a test fails (or errors: elaboration counts), *timeout*
if it runs longer than its bound (a hung simulation), *survived* if every test passes.

Not mutated, by construction (see `_skip_context`): widths and shapes (the arguments of `Signal`,
`signed`, `unsigned`, `range`, `Const`'s width, the memory and layout constructors), bit slices and
Python indexing (``x[a:b]``, ``s[1]``), names and f-strings, the tests of Python-level ``if``,
``assert`` and comprehension filters (elaboration-time choices of *which* hardware is built from
the config), and functions that only size words (`NOT_DATAPATH`). Integer constants are moved by
one only as an operand of an arithmetic/shift/bitwise operator or a comparison, so ``.eq(0)``
resets, enum values, case labels and port widths stay.

The mutants run in a private copy of the source tree (a temporary directory, removed at the end):
the working tree's hdl/ is never written, so a crash or a kill leaves nothing behind.

    python -m evcore.bench.mutate                       # every site of every hdl/*.py
    python -m evcore.bench.mutate --files lif.py recip.py --limit 50 --seed 1
    python -m evcore.bench.mutate --list                # the sites only, no tests run

Results: build/mutation.json (every mutant) and build/mutation.md (the summary for docs/).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

__all__ = ["Mutant", "OPERATORS", "TEST_MAP", "datapath_functions", "hdl_files", "mutants_of", "tests_for"]

ROOT = Path(__file__).resolve().parent.parent
HDL = ROOT / "hdl"

#: The fast tests of each hdl file: its own unit test first (cheap kills), then the users of the unit.
#: A file not listed gets tests/hdl/test_<stem>.py if it exists, else all of tests/hdl.
#: tests/hdl/test_<stem>_mutants.py (the tests written to kill survivors) join automatically.
TEST_MAP = {
    "lif.py": ["test_lif.py", "test_core.py"],
    "recip.py": ["test_recip.py", "test_adjoint.py", "test_loss.py"],
    "adjoint.py": ["test_adjoint.py", "test_core.py"],
    "loss.py": ["test_loss.py", "test_core.py"],
    "input_buffer.py": ["test_input_buffer.py", "test_core.py"],
    "mac.py": ["test_mac.py"],
    "core.py": ["test_core.py", "test_core_shaping.py", "test_protocol.py"],
    "protocol.py": ["test_protocol.py"],
    "update.py": ["test_update.py", "test_core.py"],
    "update_seq.py": ["test_update_seq.py", "test_core.py"],
}

#: Helpers called from elaborate that only compute word widths at elaboration time (no hardware):
#: a mutation there widens a word (equivalent) or breaks elaboration, it does not test the datapath.
NOT_DATAPATH = {"recip.py": {"_eps_t_range"}, "adjoint.py": {"err_bits"}}

#: Files without hardware of their own (simulation helpers).
NOT_HDL = {"__init__.py", "sim_streams.py"}

#: Calls whose arguments are shapes, widths, depths or names: nothing under them is mutated.
_SHAPE_CALLS = {
    "Signal", "signed", "unsigned", "range", "Memory", "StructLayout", "ArrayLayout", "Shape", "cast",
    "like", "max", "min", "bit_length", "len", "read_port", "write_port", "Array", "const_array",
    "Recip", "InputBuffer", "LifUnit", "LossUnit", "JumpUnit", "Frame",
}

_BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.LShift: ast.RShift, ast.RShift: ast.LShift,
               ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd}
_CMP_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
             ast.NotEq: ast.Eq}
_CONST_PARENT_OPS = (ast.Add, ast.Sub, ast.Mult, ast.LShift, ast.RShift, ast.BitAnd, ast.BitOr, ast.FloorDiv)
#: Saturations by name: `saturate` is the local alias hdl/core.py binds to `sat` or `sat_by_bits`.
_SAT_FUNCS = {"sat", "sat_by_bits", "_sat_by_bits", "saturate"}
_RND_FUNCS = {"rnd", "rnd_var"}

#: Operator names, in the order of the report's columns.
OPERATORS = ("binop", "compare", "const", "sat", "round", "clamp", "if", "not")


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One mutation: where (file, function, line, column), what (operator, original, replacement)."""

    file: str
    func: str
    line: int
    col: int
    op: str
    original: str
    mutated: str
    #: Character offsets of the replaced text in the file.
    start: int
    end: int
    #: Occurrence of (func, op, original, mutated) within the file: with it `key` is unique.
    nth: int = 0

    @property
    def key(self) -> str:
        """Stable name (no line number: the file may move under it), e.g. for the equivalence notes."""
        return f"{self.file}::{self.func}::{self.op}::{self.original} -> {self.mutated}#{self.nth}"

    @property
    def where(self) -> str:
        return f"hdl/{self.file}:{self.line}"

    def apply(self, source: str) -> str:
        """The mutated text of the file whose original text is `source`."""
        return source[: self.start] + self.mutated + source[self.end :]


def hdl_files(root: Path = ROOT) -> list[str]:
    """The hdl/*.py files that hold hardware, sorted (whatever exists when the tool runs)."""
    return sorted(p.name for p in (root / "hdl").glob("*.py") if p.name not in NOT_HDL)


def tests_for(file: str, root: Path = ROOT) -> list[str]:
    """The test files (relative to the repository root) that run on a mutant of hdl/`file`."""
    tdir = root / "tests" / "hdl"
    stem = file.removesuffix(".py")
    names = TEST_MAP.get(file)
    if names is None:
        names = [f"test_{stem}.py"] if (tdir / f"test_{stem}.py").exists() else None
    if names is None:
        return ["tests/hdl"]
    out = []
    own = f"test_{stem}_mutants.py"
    for i, name in enumerate(names):
        if (tdir / name).exists():
            out.append(f"tests/hdl/{name}")
        # The file's own survivor-killing tests right after its unit test, then the users' ones.
        extra = [own] if i == 0 else []
        extra.append(name.removesuffix(".py") + "_mutants.py")
        for e in dict.fromkeys(extra):
            if (tdir / e).exists() and f"tests/hdl/{e}" not in out:
                out.append(f"tests/hdl/{e}")
    if (tdir / own).exists() and f"tests/hdl/{own}" not in out:
        out.append(f"tests/hdl/{own}")
    return out


def _called_names(fn: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                names.add(f.id)
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "self":
                names.add(f.attr)
    return names


def datapath_functions(tree: ast.Module, file: str = "") -> dict[str, ast.FunctionDef]:
    """Qualified name -> def of the functions whose body is mutated: each ``elaborate`` and the
    module-level functions and same-class methods it calls, transitively (`NOT_DATAPATH` excluded)."""
    defs: dict[str, tuple[str, ast.FunctionDef]] = {}  # bare name -> (qualified name, def)
    roots = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            defs.setdefault(node.name, (node.name, node))
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    q = f"{node.name}.{item.name}"
                    if item.name == "elaborate":
                        roots.append((q, item))
                    else:
                        defs.setdefault(item.name, (q, item))
    skip = NOT_DATAPATH.get(file, set())
    chosen: dict[str, ast.FunctionDef] = {}
    todo = list(roots)
    while todo:
        q, fn = todo.pop()
        if q in chosen:
            continue
        chosen[q] = fn
        for name in sorted(_called_names(fn)):
            if name in defs and name not in skip and defs[name][0] not in chosen:
                todo.append(defs[name])
    return dict(sorted(chosen.items(), key=lambda kv: kv[1].lineno))


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    par = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            par[child] = node
    return par


def _call_name(call: ast.Call) -> str | None:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None


def _skip_context(node: ast.AST, par: dict, fn: ast.AST) -> bool:
    """Whether `node` sits in a width/shape/name/index context or a Python-level test (not mutated)."""
    child, p = node, par.get(node)
    while p is not None and child is not fn:
        if isinstance(p, ast.Subscript) and child is p.slice:
            return True
        if isinstance(p, (ast.JoinedStr, ast.keyword)):
            return True
        if isinstance(p, (ast.If, ast.While, ast.Assert)) and child is p.test:
            return True
        if isinstance(p, ast.IfExp) and child is p.test:
            return True
        if isinstance(p, ast.comprehension) and child in p.ifs:
            return True
        if isinstance(p, ast.Call) and child is not p.func:
            name = _call_name(p)
            if name in _SHAPE_CALLS:
                return True
            if name == "Const" and len(p.args) > 1 and child is p.args[1]:
                return True
        child, p = p, par.get(p)
    return False


def _is_if_call(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("If", "Elif") and len(node.args) == 1)


def _segment(source: str, offsets: list[int], node: ast.AST) -> tuple[int, int]:
    start = offsets[node.lineno - 1] + _col(source, offsets, node.lineno, node.col_offset)
    end = offsets[node.end_lineno - 1] + _col(source, offsets, node.end_lineno, node.end_col_offset)
    return start, end


def _col(source: str, offsets: list[int], line: int, byte_col: int) -> int:
    """ast columns are UTF-8 byte offsets: the character offset within the line."""
    text = source[offsets[line - 1] : offsets[line]]
    return len(text.encode()[:byte_col].decode())


def _line_offsets(source: str) -> list[int]:
    offsets, pos = [], 0
    for line in source.splitlines(keepends=True):
        offsets.append(pos)
        pos += len(line)
    offsets.append(pos)
    return offsets


def _sites(tree: ast.Module, source: str, file: str):
    """(function, node, op, replacement text) for every mutation site, in source order."""
    has_const = any(isinstance(n, ast.ImportFrom) and any(a.name == "Const" for a in n.names)
                    for n in tree.body)
    zero = "Const(0, 1)" if has_const else "0"
    offsets = _line_offsets(source)

    def seg(node):
        start, end = _segment(source, offsets, node)
        return source[start:end]

    for q, fn in datapath_functions(tree, file).items():
        par = _parents(fn)
        for node in ast.walk(fn):
            if not hasattr(node, "lineno") or node is fn or _skip_context(node, par, fn):
                continue
            if isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAP:
                new = ast.BinOp(node.left, _BINOP_SWAP[type(node.op)](), node.right)
                yield q, node, "binop", f"(({seg(node.left)}) {_op_text(new.op)} ({seg(node.right)}))"
            elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP_SWAP:
                op = _CMP_SWAP[type(node.ops[0])]()
                yield q, node, "compare", f"(({seg(node.left)}) {_op_text(op)} ({seg(node.comparators[0])}))"
            elif (isinstance(node, ast.Constant) and type(node.value) is int
                  and _const_context(node, par)):
                for d in (1, -1):
                    v = node.value + d
                    yield q, node, "const", str(v) if v >= 0 else f"({v})"
            elif isinstance(node, ast.Call) and _call_name(node) in _SAT_FUNCS and len(node.args) == 2:
                yield q, node, "sat", f"(({seg(node.args[0])}), {zero})"
            elif isinstance(node, ast.Call) and _call_name(node) in _RND_FUNCS and len(node.args) >= 3:
                args = [seg(a) for a in node.args[:-1]]
                yield q, node, "round", f"{seg(node.func)}({', '.join(args)}, None)"
            elif isinstance(node, ast.Call) and _call_name(node) == "Mux" and len(node.args) == 3:
                cond, a, b = node.args
                if isinstance(cond, ast.Compare) and len(cond.ops) == 1:
                    operands = {seg(cond.left), seg(cond.comparators[0])}
                    if seg(a) in operands and seg(b) in operands:
                        yield q, node, "clamp", f"({seg(b)})"
            elif _is_if_call(node):
                yield q, node.args[0], "if", f"~({seg(node.args[0])})"
            elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
                yield q, node, "not", f"({seg(node.operand)})"


def _const_context(node: ast.Constant, par: dict) -> bool:
    p = par.get(node)
    if isinstance(p, ast.UnaryOp) and isinstance(p.op, ast.USub):
        p = par.get(p)
    return (isinstance(p, ast.BinOp) and isinstance(p.op, _CONST_PARENT_OPS)) or isinstance(p, ast.Compare)


def _op_text(op: ast.AST) -> str:
    return {ast.Add: "+", ast.Sub: "-", ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&", ast.BitOr: "|",
            ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}[type(op)]


def mutants_of(file: str, source: str) -> list[Mutant]:
    """Every mutant of hdl/`file` (text `source`), sorted by position then operator: deterministic."""
    tree = ast.parse(source)
    offsets = _line_offsets(source)
    out = []
    for q, node, op, new in _sites(tree, source, file):
        start, end = _segment(source, offsets, node)
        orig = source[start:end]
        out.append((start, OPERATORS.index(op), new, q, node.lineno, node.col_offset, op, orig, end))
    out.sort(key=lambda t: t[:3])
    seen: Counter = Counter()
    result = []
    for start, _, new, q, line, col, op, orig, end in out:
        flat = lambda s: re.sub(r"\s+", " ", s)  # noqa: E731
        ident = (q, op, flat(orig), flat(new))
        result.append(Mutant(file, q, line, col, op, flat(orig), new, start, end, seen[ident]))
        seen[ident] += 1
    return result


# -- running -------------------------------------------------------------------------------------

_COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "runs", "sim_build", ".pytest_cache", ".ruff_cache", "__pycache__",
    "*.egg-info", "docs",
)


def _package_dirs(root: Path) -> dict[str, str]:
    """Subpackage -> folder, from pyproject.toml's [tool.setuptools.package-dir] (evcore.hdl -> hdl)."""
    text = (root / "pyproject.toml").read_text()
    return dict(re.findall(r'^"evcore\.(\w+)"\s*=\s*"(\w+)"', text, flags=re.M))


def make_sandbox(root: Path, dest: Path) -> Path:
    """A copy of the source tree in which `import evcore.hdl` finds the copy's hdl/: evcore/ gets a
    symlink per subpackage, found by the path finder before the editable install's finder."""
    tree = dest / "src"
    shutil.copytree(root, tree, ignore=_COPY_IGNORE, symlinks=True)
    for sub, folder in _package_dirs(root).items():
        link = tree / "evcore" / sub
        if not link.exists():
            link.symlink_to(Path("..") / folder)
    return tree


def _pytest_cmd(tests: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow", "-p", "no:cacheprovider",
            "-p", "no:xdist", *tests]


def _run(cmd: list[str], cwd: Path, timeout: float) -> tuple[str, float, str]:
    """(passed | failed | timeout, seconds, the first failing test or the last lines) of one pytest run."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return "timeout", time.monotonic() - t0, ""
    dt = time.monotonic() - t0
    if proc.returncode == 0:
        return "passed", dt, ""
    m = re.search(r"^(?:FAILED|ERROR) (\S+)", out, flags=re.M)
    return "failed", dt, m.group(1) if m else "\n".join(out.strip().splitlines()[-3:])


def check_sandbox(tree: Path) -> None:
    """The premise of the sandbox: the copy's hdl is the one the tests import."""
    code = "import evcore.hdl.lif as m; print(m.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), check=True).stdout.strip()
    if not Path(out).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"the sandbox imports {out}, not its own hdl/")


def run_mutants(mutants: list[Mutant], *, root: Path = ROOT, timeout_factor: float = 3.0,
                min_timeout: float = 60.0, tests: dict[str, list[str]] | None = None, log=print) -> dict:
    """Run each mutant's tests (`tests_for`, or `tests[file]`) in one sandbox; returns the report.

    The unmutated tests run first per file (they must pass; their time sets the timeout)."""
    results = []
    baselines = {}
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="evcore-mutate-") as tmp:
        tree = make_sandbox(root, Path(tmp))
        check_sandbox(tree)
        by_file = defaultdict(list)
        for mu in mutants:
            by_file[mu.file].append(mu)
        for file, mus in by_file.items():
            path = tree / "hdl" / file
            original = path.read_text()
            file_tests = (tests or {}).get(file) or tests_for(file, tree)  # what the copy holds
            status, dt, info = _run(_pytest_cmd(file_tests), tree, timeout=3600)
            if status != "passed":
                raise RuntimeError(f"the unmutated tests of hdl/{file} do not pass: {info}")
            baselines[file] = {"tests": file_tests, "seconds": round(dt, 1)}
            timeout = max(min_timeout, timeout_factor * dt)
            log(f"hdl/{file}: {len(mus)} mutants, tests {' '.join(file_tests)} ({dt:.0f} s unmutated)")
            for i, mu in enumerate(mus):
                try:
                    path.write_text(mu.apply(original))
                    shutil.rmtree(tree / "hdl" / "__pycache__", ignore_errors=True)
                    status, dt, info = _run(_pytest_cmd(file_tests), tree, timeout)
                finally:
                    path.write_text(original)
                verdict = {"passed": "survived", "failed": "killed", "timeout": "timeout"}[status]
                results.append({**dataclasses.asdict(mu), "key": mu.key, "status": verdict,
                                "seconds": round(dt, 1), "killed_by": info})
                log(f"  [{i + 1}/{len(mus)}] {verdict:8s} {dt:5.1f} s  {mu.where} {mu.op}: "
                    f"{mu.original} -> {mu.mutated}" + (f"  ({info})" if verdict == "killed" else ""))
    return {"results": results, "baselines": baselines, "wall_seconds": round(time.monotonic() - t_start, 1)}


# -- report --------------------------------------------------------------------------------------

def load_notes(path: Path) -> dict[str, str]:
    """Equivalence arguments and killing tests of survivors, by `Mutant.key` (bench/mutation_notes.json)."""
    return json.loads(path.read_text()) if path.exists() else {}


def merge(reports: list[dict]) -> dict:
    """One report from several runs (a campaign, then re-runs of its survivors with new tests): a
    later result of the same mutant replaces the earlier one and keeps its `first_status`."""
    by_key: dict[str, dict] = {}
    out = {"results": [], "baselines": {}, "sites": {}, "wall_seconds": 0.0, "runs": []}
    for rep in reports:
        for r in rep["results"]:
            old = by_key.get(r["key"])
            new = dict(r, first_status=old["first_status"] if old else r.get("first_status", r["status"]),
                       first_seconds=old["first_seconds"] if old else r.get("first_seconds", r["seconds"]))
            if old:
                out["results"][out["results"].index(old)] = new
            else:
                out["results"].append(new)
            by_key[r["key"]] = new
        for f, v in rep.get("sites", {}).items():
            out["sites"].setdefault(f, v)
        out["baselines"].update(rep.get("baselines", {}))
        out["wall_seconds"] += rep.get("wall_seconds", 0.0)
        out["runs"].append({"args": rep.get("args"), "mutants": len(rep["results"]),
                            "wall_seconds": rep.get("wall_seconds")})
    return out


def markdown(report: dict, notes: dict[str, str]) -> str:
    """The summary: per file and operator, then every survivor of the campaign with its fate: killed by
    a test added since (a later run in the report) or its equivalence argument (`notes`)."""
    res = report["results"]
    sites = report["sites"]
    first = lambda r: r.get("first_status", r["status"])  # noqa: E731
    cols = ["sites", "run", "killed", "timeout", "survived", "killed by new tests", "equivalent", "open",
            "time"]
    is_equiv = lambda r: r["status"] == "survived" and not notes.get(r["key"], "open").startswith("open")  # noqa: E731
    lines = ["| file | " + " | ".join(OPERATORS) + " | " + " | ".join(cols) + " |",
             "|---" * (len(OPERATORS) + len(cols) + 1) + "|"]
    tot = Counter()
    for file in sorted(sites):
        rs = [r for r in res if r["file"] == file]
        st = Counter(first(r) for r in rs)
        surv = [r for r in rs if first(r) == "survived"]
        later = sum(r["status"] != "survived" for r in surv)
        equiv = sum(is_equiv(r) for r in surv)
        still = sum(r["status"] == "survived" for r in surv) - equiv
        per_op = []
        for op in OPERATORS:
            ops = [r for r in rs if r["op"] == op]
            n_sites = sites[file].get(op, 0)
            k = sum(first(r) != "survived" for r in ops)
            cell = f"{k}/{len(ops)}" + (f" ({n_sites})" if n_sites != len(ops) else "")
            per_op.append(cell if n_sites else "")
        secs = sum(r.get("first_seconds", r["seconds"]) for r in rs)
        n_sites = sum(sites[file].values())
        row = [n_sites, len(rs), st["killed"], st["timeout"], st["survived"], later, equiv, still,
               f"{secs / 60:.1f} min"]
        lines.append(f"| hdl/{file} | " + " | ".join(per_op + [str(c) for c in row]) + " |")
        tot.update({"sites": n_sites, "run": len(rs), **st, "later": later, "equiv": equiv, "open": still,
                    "secs": secs})
    row = [tot[c] for c in ("sites", "run", "killed", "timeout", "survived", "later", "equiv", "open")]
    row.append(f"{tot['secs'] / 60:.1f} min")
    lines.append("| **all** | " + " | ".join(["" for _ in OPERATORS] + [str(c) for c in row]) + " |")
    lines += ["", "Operator cells: killed (timeouts included) / run, with the number of sites in parentheses "
              "where only a sample ran. Time: the mutants' test time in the first run (one core).", ""]
    surv = [r for r in res if first(r) == "survived"]
    lines += [f"Survivors ({len(surv)}):", ""]
    groups: dict[tuple, list[dict]] = {}  # one line per (place, fate): a note shared by a line's mutants
    for r in sorted(surv, key=lambda r: (r["file"], r["line"], r["col"])):
        if r["status"] != "survived":
            fate = f"killed now by `{r['killed_by']}`" if r["status"] == "killed" else r["status"]
        else:
            fate = notes.get(r["key"], "**not yet explained**")
        groups.setdefault((r["file"], r["line"], r["func"], fate), []).append(r)
    for (file, line, func, fate), rs in groups.items():
        what = "; ".join(f"{r['op']} `{r['original']}` → `{r['mutated']}`" for r in rs)
        count = f", {len(rs)} mutants" if len(rs) > 1 else ""
        lines.append(f"- `hdl/{file}:{line}` ({func}{count}) {what}: {fate}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evcore.bench.mutate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", nargs="*", help="hdl files (default: every hdl/*.py with hardware)")
    ap.add_argument("--ops", nargs="*", choices=OPERATORS, help="only these operators")
    ap.add_argument("--limit", type=int, help="run at most N mutants per file (a seeded sample)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample (--limit)")
    ap.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    ap.add_argument("--only", nargs="*", help="only the mutants with these keys (re-check survivors)")
    ap.add_argument("--survivors-of", metavar="JSON", help="only the mutants that survived in this report")
    ap.add_argument("--skip-done", nargs="+", metavar="JSON", help="leave out the mutants these reports ran")
    ap.add_argument("--tests", nargs="+", help="run these test files instead of the file's own (TEST_MAP)")
    ap.add_argument("--timeout-factor", type=float, default=3.0, help="timeout = factor x unmutated time")
    ap.add_argument("--json", default=str(ROOT / "build" / "mutation.json"))
    ap.add_argument("--md", default=str(ROOT / "build" / "mutation.md"))
    ap.add_argument("--notes", default=str(ROOT / "bench" / "mutation_notes.json"))
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="run nothing: merge these reports (later runs win) into --json and --md")
    args = ap.parse_args(argv)
    if args.merge:
        report = merge([json.loads(Path(p).read_text()) for p in args.merge])
        Path(args.json).write_text(json.dumps(report, indent=1))
        md = markdown(report, load_notes(Path(args.notes)))
        Path(args.md).write_text(md)
        print(md)
        return 0

    only = set(args.only or [])
    if args.survivors_of:
        prev = json.loads(Path(args.survivors_of).read_text())["results"]
        only |= {r["key"] for r in prev if r["status"] == "survived"}
    done = set()
    for rep in args.skip_done or []:
        done |= {r["key"] for r in json.loads(Path(rep).read_text())["results"]}
    files = args.files or hdl_files()
    all_mutants, chosen = {}, []
    for f in files:
        f = Path(f).name
        ms = mutants_of(f, (HDL / f).read_text())
        if args.ops:
            ms = [mu for mu in ms if mu.op in args.ops]
        all_mutants[f] = ms
        pick = [mu for mu in ms if mu.key not in done]
        if only:
            pick = [mu for mu in ms if mu.key in only]
        elif args.limit is not None and len(pick) > args.limit:
            pick = sorted(random.Random(f"{args.seed}:{f}").sample(pick, args.limit), key=ms.index)
        chosen += pick
    if args.list:
        for mu in chosen:
            print(f"{mu.where:22s} {mu.func:22s} {mu.op:8s} {mu.original}  ->  {mu.mutated}")
        print(f"{len(chosen)} mutants", file=sys.stderr)
        return 0
    tests = {f: args.tests for f in all_mutants} if args.tests else None
    report = run_mutants(chosen, timeout_factor=args.timeout_factor, tests=tests)
    report["sites"] = {f: dict(Counter(mu.op for mu in ms)) for f, ms in all_mutants.items()}
    report["args"] = {"files": files, "ops": args.ops, "limit": args.limit, "seed": args.seed,
                      "tests": args.tests, "survivors_of": args.survivors_of}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1))
    md = markdown(report, load_notes(Path(args.notes)))
    Path(args.md).write_text(md)
    print(md)
    print(f"wall time {report['wall_seconds'] / 60:.1f} min; {args.json}, {args.md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
