"""evcore sweep (sw/sweep.py): spec, keys, resume, atomic results, faults, serial = cluster.

The cluster tests share one LocalCluster of 2 single-threaded worker processes and a tiny sweep
(64 training samples, 200 validation/test samples, 1-2 epochs: a fraction of a second per run).
Every wait has a deadline (``timeout_s``), so a hung cluster fails the test instead of the suite.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time

import numpy as np
import pytest

from evcore.golden.eventprop import ConfigError
from evcore.sw import sweep
from evcore.sw.cli import main
from evcore.sw.sweep import ResultStore, SweepSpec, make_tasks, run_sweep, task_key

#: Seconds a cluster test may take. A fresh machine compiles the Numba kernels in every worker
#: process first (about 10 s each, both at once on 2 cores).
DEADLINE_S = 150


def tiny_spec(**kw) -> SweepSpec:
    args = {"axes": {"lr": [2e-3, 1e-2]}, "seeds": (0, 1), "epochs": 1, "train_samples": 64,
            "eval_samples": 200, **kw}
    return SweepSpec(**args)


#: Wall-clock fields of a metrics dict.
TIMING_KEYS = ("wall_s", "wall_time_s", "train_epoch_s")


def strip_timing(x):
    """A result without its wall-clock fields, the only part that may differ between runs."""
    if isinstance(x, dict):
        return {k: strip_timing(v) for k, v in x.items() if k not in TIMING_KEYS}
    if isinstance(x, list):
        return [strip_timing(v) for v in x]
    return x


@pytest.fixture(scope="module")
def client():
    with sweep.local_cluster(2, silence_logs=logging.CRITICAL) as c:
        c.wait_for_workers(2, timeout=DEADLINE_S)
        yield c


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory):
    """The tiny sweep run in this process, no Dask: the reference for the cluster runs."""
    store = ResultStore(tmp_path_factory.mktemp("serial"))
    tasks = make_tasks(tiny_spec())
    out = run_sweep(tasks, store, serial=True, progress=False)
    assert len(out.results) == 4 and not out.errors
    return store, tasks


def test_parse_seeds_and_axes():
    assert sweep.parse_seeds("0-2,5,1") == [0, 1, 2, 5]
    assert sweep.parse_seeds("7") == [7]
    for bad in ("3-1", "a", "0-", "-1"):
        with pytest.raises(ConfigError):
            sweep.parse_seeds(bad)
    assert sweep.parse_axis("lr=1e-3,5e-3") == ("lr", [1e-3, 5e-3])
    assert sweep.parse_axis("optimizer=adam,lion") == ("optimizer", ["adam", "lion"])
    with pytest.raises(ConfigError):
        sweep.parse_axis("lr")


def test_spec_file_modes_and_errors(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('model = "fixed"\nmode = "one-at-a-time"\nseeds = "0-2"\nepochs = 3\n'
                    '[axes]\nw_bits = [8, 16]\noptimizer = ["sgd", "adam"]\n')
    spec = sweep.load_spec(path)
    assert spec.seeds == (0, 1, 2) and spec.model == "fixed"
    tasks = make_tasks(spec)
    assert len(tasks) == 4 * 3
    # w_bits = 16 and optimizer = adam are both the up5k preset: the same configuration, one key.
    keys = {task_key(t) for t in tasks}
    assert len(keys) == 3 * 3
    grid = make_tasks(sweep.load_spec(path, mode="grid", seeds=(0,)))
    assert len(grid) == 4 and len({task_key(t) for t in grid}) == 4
    drawn = make_tasks(sweep.load_spec(path, mode="random", samples=3, seeds=(0,)))
    assert len(drawn) == 3 and {task_key(t) for t in drawn} <= {task_key(t) for t in grid}
    # Flags override the file; errors are one-line ConfigErrors.
    assert sweep.load_spec(path, epochs=5).epochs == 5
    path.write_text('modell = "fixed"\n')
    with pytest.raises(ConfigError, match="unknown key"):
        sweep.load_spec(path)
    path.write_text('mode = "random"\n[axes]\nlr = [1e-3]\n')
    with pytest.raises(ConfigError, match="samples"):
        sweep.load_spec(path)
    with pytest.raises(ConfigError, match="unknown axis"):
        make_tasks(SweepSpec(axes={"learning_rate": [1e-3]}))
    with pytest.raises(ConfigError, match="yinyang"):
        make_tasks(SweepSpec(dataset="mnist", model="fixed"))


def test_spec_files_in_docs():
    """docs/sweeps/design_space.toml is the training part of sw/design_space.py: the same keys."""
    from pathlib import Path

    from evcore.sw import design_space

    docs = Path(__file__).parents[2] / "docs" / "sweeps"
    spec = sweep.load_spec(docs / "design_space.toml")
    assert spec.axes == design_space.AXES
    ours = {task_key(t) for t in make_tasks(spec)}
    theirs = {task_key(design_space.training_task(a, v, s, 30)) for a, vs in design_space.AXES.items()
              for v in vs for s in range(3)}
    assert ours == theirs
    assert len(make_tasks(sweep.load_spec(docs / "tiny.toml"))) == 6


def test_key_is_the_full_configuration():
    base = sweep.train_task("yinyang", "float", {}, 0, epochs=2)
    assert task_key(base) == task_key(sweep.train_task("yinyang", "float", {}, 0, epochs=2))
    # An axis set to the preset's own value is the same run; the key ignores how it was named.
    assert task_key(base) == task_key(sweep.train_task("yinyang", "float", {"lr": 5e-3}, 0, epochs=2))
    others = [sweep.train_task("yinyang", "float", {}, 1, epochs=2),
              sweep.train_task("yinyang", "float", {}, 0, epochs=3),
              sweep.train_task("yinyang", "float", {"lr": 1e-3}, 0, epochs=2),
              sweep.train_task("yinyang", "float", {}, 0, epochs=2, train_samples=64)]
    assert len({task_key(t) for t in [base, *others]}) == 5
    assert base["config"]["lr"] == 5e-3 and base["config"]["epochs"] == 2


def test_atomic_write_leaves_old_entry_or_new(tmp_path):
    path = tmp_path / "r.json"
    sweep.write_json_atomic(path, {"a": 1})

    def crash(fh):
        fh.write(b'{"a": 2, "half')
        raise KeyboardInterrupt  # e.g. the process is stopped mid-write

    with pytest.raises(KeyboardInterrupt):
        sweep._atomic_write(path, crash)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_cluster_equals_serial_bit_for_bit(client, serial_reference, tmp_path):
    ref_store, tasks = serial_reference
    store = ResultStore(tmp_path)
    out = run_sweep(tasks, store, client=client, progress=False, timeout_s=DEADLINE_S)
    assert sorted(out.computed) == sorted(ref_store.done()) and not out.errors
    assert len({e["pid"] for e in out.results.values()}) == 2, "both workers ran tasks"
    for key, entry in out.results.items():
        ref = ref_store.load(key)
        assert strip_timing(entry["result"]) == strip_timing(ref["result"])
        a, b = store.arrays(key), ref_store.arrays(key)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # Seeds differ, so the runs do: the equality above is not that of constant results.
    accs = {json.dumps(e["result"]["epochs"][0]["train_loss"]) for e in out.results.values()}
    assert len(accs) == 4


def test_rerun_computes_only_what_is_missing(client, serial_reference, tmp_path):
    ref_store, tasks = serial_reference
    store = ResultStore(tmp_path)
    first = run_sweep(tasks[:2], store, client=client, progress=False, timeout_s=DEADLINE_S)
    assert len(first.computed) == 2
    stamps = {k: (store.results / f"{k}.json").stat().st_mtime_ns for k in first.computed}
    again = run_sweep(tasks, store, client=client, progress=False, timeout_s=DEADLINE_S)
    assert sorted(again.computed) == sorted(ref_store.done() - set(first.computed))
    assert {k: (store.results / f"{k}.json").stat().st_mtime_ns for k in first.computed} == stamps
    assert len(again.results) == 4
    assert run_sweep(tasks, store, client=client, progress=False).computed == []


def test_killed_sweep_resumes(client, tmp_path):
    """The sweep's own process killed (SIGKILL) after its first results: what is stored is whole,
    and the next run computes exactly the rest."""
    import subprocess
    import sys

    spec = tiny_spec(seeds=(0, 1, 2))
    cmd = [sys.executable, "-m", "evcore.sw.cli", "sweep", "--axis", "lr=0.002,0.01", "--seeds", "0-2",
           "--epochs", "1", "--train-samples", "64", "--eval-samples", "200", "--out", str(tmp_path),
           "--serial", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = ResultStore(tmp_path)
    deadline = time.monotonic() + DEADLINE_S
    try:
        while len(store.done()) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait(timeout=DEADLINE_S)
    before = store.done()
    assert 2 <= len(before) < 6, "the sweep finished before it could be killed"
    for key in before:
        assert store.load(key)["key"] == key and store.arrays(key)  # whole entries, arrays beside
    out = run_sweep(make_tasks(spec), store, client=client, progress=False, timeout_s=DEADLINE_S)
    assert set(out.computed) == {task_key(t) for t in make_tasks(spec)} - before
    assert len(out.results) == 6 and not out.errors


def test_failing_task_is_reported_and_others_go_on(client, tmp_path, capsys):
    # batch_size 0 passes the config but raises in the training loop, on the worker.
    tasks = make_tasks(tiny_spec(axes={"batch_size": [0, 16]}, seeds=(0,)))
    bad, good = (task_key(t) for t in tasks)
    with pytest.raises(Exception) as direct:
        sweep.run_task(tasks[0])
    expected = f"{type(direct.value).__name__}: {direct.value}"
    for kw in ({"client": client, "timeout_s": DEADLINE_S}, {"serial": True}):
        store = ResultStore(tmp_path / ("serial" if "serial" in kw else "cluster"))
        logged = []
        out = run_sweep(tasks, store, progress=False, log=logged.append, **kw)
        assert list(out.results) == [good] and list(out.errors) == [bad]
        assert not store.has(bad)  # a rerun retries it
        err = json.loads((store.errors / f"{bad}.json").read_text())
        assert err["task"]["config"]["batch_size"] == 0 and err["error"] == expected
        assert "train.py" in err["traceback"]
        assert len(logged) == 1 and "batch_size=0" in logged[0] and expected in logged[0]


def test_killed_worker_task_is_rerun_and_nothing_lost(client, serial_reference, tmp_path):
    _, tasks = serial_reference
    # Longer runs (about a second each) so that one is surely running when its worker dies.
    tasks = make_tasks(tiny_spec(seeds=(0, 1, 2), epochs=2, train_samples=256))
    store = ResultStore(tmp_path)
    pids = client.run(os.getpid)
    killed = {}
    arrived = []

    def on_result(key, entry):
        arrived.append(key)
        if killed:
            return
        busy = {w: ks for w, ks in client.processing().items() if ks}
        if busy:
            worker, keys = next(iter(busy.items()))
            killed.update(pid=pids[worker], keys={k.removeprefix("evcore-sweep-") for k in keys})
            os.kill(pids[worker], signal.SIGKILL)

    out = run_sweep(tasks, store, client=client, progress=False, on_result=on_result, timeout_s=DEADLINE_S)
    assert killed, "no task was running when the first result came in"
    assert not out.errors
    assert sorted(arrived) == sorted(set(arrived)) == sorted(task_key(t) for t in tasks)
    assert len(out.results) == len(tasks) == len(list(store.results.glob("*.json")))
    # What ran on the killed worker was computed again by a live one.
    assert all(out.results[k]["pid"] != killed["pid"] for k in killed["keys"] if k in out.results)
    # And its results are those of an undisturbed serial run.
    ref = ResultStore(tmp_path / "serial")
    run_sweep(tasks[:2], ref, serial=True, progress=False)
    for key in ref.done():
        assert strip_timing(out.results[key]["result"]) == strip_timing(ref.load(key)["result"])
    client.wait_for_workers(2, timeout=DEADLINE_S)  # the nanny restarts the worker
    deadline = time.monotonic() + DEADLINE_S
    while len(client.nthreads()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)


def test_cli_sweep_report_and_errors(tmp_path, capsys):
    out = tmp_path / "sw"
    args = ["sweep", "--axis", "lr=2e-3,1e-2", "--seeds", "0-1", "--epochs", "1", "--train-samples", "64",
            "--eval-samples", "200", "--out", str(out), "--serial", "--quiet"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "4 runs (0 stored already)" in text and "| lr = 0.002 | 2 |" in text
    assert (out / "sweep.png").is_file() and len(list((out / "results").glob("*.json"))) == 4
    # The table's mean is that of the stored results.
    entries = ResultStore(out).load_all()
    accs = sorted(e["result"]["test_accuracy"] for e in entries.values() if e["task"]["axes"]["lr"] == 2e-3)
    assert f"| {100 * np.mean(accs):.2f} ± {100 * np.std(accs, ddof=1):.2f} |" in text
    assert main(args) == 0
    assert "4 stored already" in capsys.readouterr().out
    assert main([*args, "--report"]) == 0 and "| lr = 0.002 | 2 |" in capsys.readouterr().out
    assert main(["report", "--sweep", str(out), "--figure", str(tmp_path / "r.png")]) == 0
    assert "| lr = 0.01 | 2 |" in capsys.readouterr().out and (tmp_path / "r.png").is_file()
    for bad in (["sweep", "--axis", "nope=1", "--serial"], ["sweep", "--seeds", "2-1"],
                ["sweep", str(tmp_path / "missing.toml")],
                ["report", "--sweep", str(tmp_path)], ["train", "yinyang", "--seeds", "0-1",
                                                       "--method", "smooth-qif"]):
        assert main(bad) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("evcore: error: ") and err.count("\n") == 1, err


def _train_seeds_and_check(tmp_path, capsys, n_eval=None):
    from evcore.sw.datasets import load_dataset
    from evcore.sw.train import encode, evaluate, load_checkpoint

    assert main(["train", "yinyang", "--seeds", "0-1", "--epochs", "1", "--lr", "1e-2", "--out",
                 str(tmp_path), "--quiet"]) == 0
    assert "| lr = 0.01 | 2 |" in capsys.readouterr().out
    ds = load_dataset("yinyang")
    x, y = ds.x_test[:n_eval], ds.y_test[:n_eval]
    for seed in (0, 1):
        run = tmp_path / f"yinyang-float-seed{seed}"
        m = json.loads((run / "metrics.json").read_text())
        assert m["seed"] == seed and m["config"]["lr"] == 1e-2 and len(m["epochs"]) == 1
        net, cfg = load_checkpoint(run / "checkpoint.npz")
        # The checkpoint holds the weights that were measured.
        assert evaluate(net, encode(ds, x), y, cfg.loss_fn())[0] == m["test_accuracy"]
        assert (run / "learning_curve.png").is_file()


def test_train_seeds_writes_one_run_per_seed(client, tmp_path, monkeypatch, capsys):
    """`evcore train yinyang --seeds 0-1` on the cluster: run directories as a single run writes
    (here on 64 training and 200 test samples: the tasks say so, the workers follow)."""
    import contextlib

    train_task = sweep.train_task
    monkeypatch.setattr(sweep, "_client", lambda *a: contextlib.nullcontext(client))
    monkeypatch.setattr(sweep, "train_task",
                        lambda *a, **kw: train_task(*a, **kw, train_samples=64, eval_samples=200))
    _train_seeds_and_check(tmp_path, capsys, n_eval=200)


@pytest.mark.slow
def test_train_seeds_full_size_on_its_own_cluster(tmp_path, capsys):
    """The same without patches: `evcore train` starts and stops its own local cluster."""
    _train_seeds_and_check(tmp_path, capsys)


@pytest.mark.slow
def test_seed_on_the_cluster_equals_the_published_serial_run(tmp_path, capsys):
    """`evcore train yinyang --seeds 1` on a local cluster reproduces, bit for bit, the committed
    metrics of the serial `evcore train yinyang --seed 1` (docs/results/yinyang-float-seed1.json),
    wall times and host aside. About a minute on a free core."""
    from pathlib import Path

    ref_path = Path(__file__).parents[2] / "docs" / "results" / "yinyang-float-seed1.json"
    ref = json.loads(ref_path.read_text())
    args = ["train", "yinyang", "--seeds", "1", "--workers", "1", "--out", str(tmp_path), "--quiet"]
    assert main(args) == 0
    got = json.loads((tmp_path / "yinyang-float-seed1" / "metrics.json").read_text())
    ref.pop("host"), got.pop("host")
    assert strip_timing(got) == strip_timing(ref)
