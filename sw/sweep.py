"""`evcore sweep`: independent training runs (seeds, design-space axes, random configurations)
on a Dask cluster, local by default (docs/sweeps.md).

A sweep is a list of tasks, each a JSON-able dict holding the *full* configuration of one run
(the resolved TrainConfig or CoreConfig, seed, epochs, data-set limits). Its key is a hash of
that dict, so

* a rerun computes only the keys that have no result yet, and an interrupted sweep resumes;
* the same configuration reached twice (e.g. the base value of two design-space axes) runs once.

The client (this process) writes every result to ``<out>/results/<key>.json`` atomically
(temporary file + os.replace): a crash leaves either the whole entry or none. Workers only
compute; they need the evcore package and the data sets, not the result directory.

By default :func:`run_sweep` starts a LocalCluster with one single-threaded worker process per
core and closes it at the end; ``scheduler="tcp://host:8786"`` uses a running cluster
(`dask scheduler` / `dask worker`, README). A worker that dies mid-run is replaced by the
scheduler, which reruns its task elsewhere (Dask's ``allowed-failures``, 3 by default); a task
that raises is reported with its configuration and the error, and the others go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import math
import os
import random
import tempfile
import time
import tomllib
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..golden.eventprop import ConfigError

__all__ = ["MODELS", "SweepSpec", "load_spec", "parse_seeds", "parse_axis", "make_tasks", "train_task",
           "task_key", "run_task", "ResultStore", "SweepOutcome", "run_sweep", "local_cluster",
           "report_rows", "report_table", "plot_report", "train_seeds"]

MODELS = ("float", "fixed", "rtl")
MODES = ("grid", "one-at-a-time", "random")
#: Bump when run_task's results change meaning, so stored results are recomputed.
TASK_VERSION = 1
#: How often the progress bar asks the scheduler how many tasks are running.
POLL_S = 0.25
#: Times a task lost with its worker (finished, result not yet fetched) is submitted again.
MAX_RESUBMIT = 3


# -- the spec ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What to sweep: one data set and model, config axes, seeds, epochs (TOML or flags)."""

    dataset: str = "yinyang"
    model: str = "float"
    #: Axis name -> values. float: TrainConfig fields (lr, batch_size, revive, ...); fixed/rtl: the
    #: design-space axes of sw/design_space.py (dt_ms, state_bits, ...) or CoreConfig fields.
    axes: dict = dataclasses.field(default_factory=dict)
    seeds: tuple = (0,)
    #: None: the data set's preset (100).
    epochs: int | None = None
    #: grid: every combination; one-at-a-time: each axis varied from the preset (the design-space
    #: sweep); random: ``samples`` configurations drawn from the grid with ``random_seed``.
    mode: str = "grid"
    samples: int | None = None
    random_seed: int = 0
    #: Train on the first N training samples only / evaluate on the first N validation and test
    #: samples (quick sweeps and tests; also skips the fresh-sample accuracy). None: all.
    train_samples: int | None = None
    eval_samples: int | None = None
    #: Core preset of the fixed and rtl models (sw/fixed_train.py CORE_PRESETS).
    core: str = "up5k"
    #: Also the accuracy on 50,000 fresh samples of the distribution (yinyang), as `evcore train`.
    fresh: bool = True

    def __post_init__(self):
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; valid: {', '.join(MODELS)}")
        if self.mode not in MODES:
            raise ConfigError(f"unknown sweep mode {self.mode!r}; valid: {', '.join(MODES)}")
        if not self.seeds:
            raise ConfigError("a sweep needs at least one seed")
        for name, values in self.axes.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"axis {name!r} needs a non-empty list of values")
        for name in ("epochs", "samples", "train_samples", "eval_samples"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if self.mode == "random" and self.samples is None:
            raise ConfigError("mode 'random' needs samples = N (configurations to draw)")


SPEC_KEYS = {f.name for f in dataclasses.fields(SweepSpec)}


def load_spec(path: str | Path, **overrides) -> SweepSpec:
    """A SweepSpec from a TOML file; ``overrides`` (not None) replace its values."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep spec {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not a valid TOML file ({err})") from None
    unknown = set(data) - SPEC_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; valid: "
                          f"{', '.join(sorted(SPEC_KEYS))}")
    return make_spec(data, **overrides)


def make_spec(data: dict, **overrides) -> SweepSpec:
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    if isinstance(data.get("seeds"), str):
        data["seeds"] = parse_seeds(data["seeds"])
    if "seeds" in data:
        data["seeds"] = tuple(int(s) for s in data["seeds"])
    if "axes" in data and not isinstance(data["axes"], dict):
        raise ConfigError("axes must be a table: name = [values]")
    return SweepSpec(**data)


def parse_seeds(text: str) -> list[int]:
    """"0-9", "0,3,5", "0-2,7" -> the seeds, in order, without repeats."""
    seeds: list[int] = []
    for part in str(text).split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            lo = int(lo)
            hi = int(hi) if sep else lo
        except ValueError:
            raise ConfigError(f"bad seeds {text!r}: give e.g. 0-9 or 0,3,5 (seeds are >= 0)") from None
        if hi < lo:
            raise ConfigError(f"bad seed range {part.strip()!r}: the end is below the start")
        seeds += [s for s in range(lo, hi + 1) if s not in seeds]
    return seeds


def _value(text: str):
    text = text.strip()
    for conv in (int, float):
        with contextlib.suppress(ValueError):
            return conv(text)
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_axis(text: str) -> tuple[str, list]:
    """"lr=1e-3,5e-3" -> ("lr", [0.001, 0.005])."""
    name, sep, values = text.partition("=")
    if not sep or not name.strip() or not values.strip():
        raise ConfigError(f"bad axis {text!r}: give NAME=V1,V2,...")
    return name.strip(), [_value(v) for v in values.split(",")]


# -- tasks ------------------------------------------------------------------------------------


def _float_config(dataset: str, axes: dict, epochs: int | None) -> dict:
    from .train import PRESETS, TrainConfig

    if dataset not in PRESETS:
        raise ConfigError(f"unknown data set {dataset!r}; valid: {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"dataset", "epochs", "params"}
    bad = set(axes) - fields
    if bad:
        raise ConfigError(f"model float: unknown axis {', '.join(sorted(bad))}; valid: "
                          f"{', '.join(sorted(fields))}")
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in axes.items()}
    if epochs is not None:
        changes["epochs"] = epochs
    try:
        return dataclasses.replace(PRESETS[dataset], **changes).to_json()
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model float: {err}") from None


def _core_config(dataset: str, core: str, axes: dict) -> dict:
    from ..golden.config import CoreConfig
    from .design_space import AXES, variant
    from .fixed_train import CORE_PRESETS

    if dataset != "yinyang":
        raise ConfigError("models fixed and rtl: the core presets are sized for yinyang (5-200-3)")
    if core not in CORE_PRESETS:
        raise ConfigError(f"unknown core preset {core!r}; valid: {', '.join(CORE_PRESETS)}")
    cfg = CORE_PRESETS[core]()
    fields = {f.name for f in dataclasses.fields(CoreConfig)}
    for name, value in axes.items():
        if name in AXES:
            cfg = variant(cfg, name, value)
        elif name in fields:
            try:
                cfg = cfg.replace(**{name: tuple(value) if isinstance(value, list) else value})
            except (TypeError, ValueError) as err:
                raise ConfigError(f"axis {name}={value!r}: {err}") from None
        else:
            raise ConfigError(f"model fixed: unknown axis {name!r}; valid: the design-space axes "
                              f"({', '.join(AXES)}) or a CoreConfig field")
    return cfg.to_dict()


def train_task(dataset: str, model: str, axes: dict, seed: int, epochs: int | None = None,
               core: str = "up5k", train_samples: int | None = None,
               eval_samples: int | None = None, fresh: bool = True) -> dict:
    """One training run as a task: the axis values resolved into the run's full configuration."""
    from .train import PRESETS

    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; valid: {', '.join(MODELS)}")
    task = {"kind": "train", "version": TASK_VERSION, "dataset": dataset, "model": model,
            "axes": dict(axes), "seed": int(seed), "train_samples": train_samples,
            "eval_samples": eval_samples, "fresh": bool(fresh and eval_samples is None)}
    if model == "float":
        task["config"] = _float_config(dataset, axes, epochs)
        task["epochs"] = task["config"]["epochs"]
    else:
        if model == "rtl":
            _rtl_trainer()  # fail here, once, rather than in every task
        task["config"] = _core_config(dataset, core, axes)
        float_preset = PRESETS[dataset]
        # As `evcore train --model fixed`: the float preset's initialisation and schedule.
        task.update(core=core, epochs=epochs or float_preset.epochs,
                    init=[list(p) for p in float_preset.init], lr_decay=float_preset.lr_decay)
    return task


def _configurations(spec: SweepSpec) -> list[dict]:
    names = list(spec.axes)
    if not names:
        return [{}]
    if spec.mode == "one-at-a-time":
        return [{name: v} for name in names for v in spec.axes[name]]
    grid = [dict(zip(names, combo)) for combo in itertools.product(*(spec.axes[n] for n in names))]
    if spec.mode == "random":
        if spec.samples > len(grid):
            raise ConfigError(f"samples = {spec.samples}, but the grid has only {len(grid)} configurations")
        grid = random.Random(spec.random_seed).sample(grid, spec.samples)
    return grid


def make_tasks(spec: SweepSpec) -> list[dict]:
    """The sweep's tasks: each configuration x each seed."""
    return [train_task(spec.dataset, spec.model, axes, seed, spec.epochs, spec.core, spec.train_samples,
                       spec.eval_samples, spec.fresh)
            for axes in _configurations(spec) for seed in spec.seeds]


def task_key(task: dict) -> str:
    """Hash of the full configuration. The axis values are left out: they only name it."""
    ident = {k: v for k, v in task.items() if k != "axes"}
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# -- running one task (on a worker) ------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _dataset(name: str, train_samples: int | None, eval_samples: int | None):
    from .datasets import load_dataset

    ds = load_dataset(name)
    changes = {}
    if train_samples is not None:
        changes.update(x_train=ds.x_train[:train_samples], y_train=ds.y_train[:train_samples])
    if eval_samples is not None:
        changes.update(x_val=ds.x_val[:eval_samples], y_val=ds.y_val[:eval_samples],
                       x_test=ds.x_test[:eval_samples], y_test=ds.y_test[:eval_samples])
    return dataclasses.replace(ds, **changes) if changes else ds


def _rtl_trainer() -> Callable:
    """The RTL training backend: ``train_rtl(cfg, dataset, epochs, seed=, progress=, init=,
    lr_decay=)`` in sw/fixed_train.py, returning (core, metrics) as ``train_fixed(...,
    return_core=True)`` does (RtlCore under Verilator in place of FixedCore)."""
    from . import fixed_train

    fn = getattr(fixed_train, "train_rtl", None)
    if fn is None:
        raise ConfigError("model rtl: no RTL training backend in this build (sw/fixed_train.py "
                          "train_rtl); use model fixed, the bit-accurate golden model")
    return fn


def _run_train(task: dict):
    ds = _dataset(task["dataset"], task["train_samples"], task["eval_samples"])
    fresh = ds.has_generator and task["fresh"]
    if task["model"] == "float":
        from .train import FRESH_SAMPLES, TrainConfig, train

        cfg = TrainConfig.from_json(task["config"])
        net, metrics = train(cfg, seed=task["seed"], progress=False, dataset=ds,
                             fresh_samples=FRESH_SAMPLES if fresh else 0)
        return metrics, net.state_dict()
    from ..golden.config import CoreConfig
    from ..golden.core import evaluate_fixed, train_fixed
    from ..golden.eventprop import SpikeBatch
    from .train import FRESH_SAMPLES

    cfg = CoreConfig.from_dict(task["config"])
    trainer = _rtl_trainer() if task["model"] == "rtl" else functools.partial(train_fixed, return_core=True)
    core, metrics = trainer(cfg, ds, task["epochs"], seed=task["seed"], progress=False,
                            init=tuple(tuple(p) for p in task["init"]), lr_decay=task["lr_decay"])
    metrics["config"] = {**metrics["config"], "dataset": task["dataset"]}
    if fresh:
        x, y = ds.draw(FRESH_SAMPLES)
        metrics["fresh_accuracy"] = evaluate_fixed(core, SpikeBatch(*ds.encode(x)), y)[0]
        metrics["fresh_samples"] = FRESH_SAMPLES
    arrays = {f"weights_raw_{l}": np.asarray(w, dtype=np.int64) for l, w in enumerate(core.weights_raw)}
    return metrics, arrays


def fidelity_task(cfg, n_nets: int, n_samples: int) -> dict:
    """The design-space gradient fidelity of one core configuration (sw/design_space.py)."""
    from .design_space import FIDELITY_VERSION

    return {"kind": "fidelity", "version": TASK_VERSION, "fidelity_version": FIDELITY_VERSION,
            "config": cfg.to_dict(), "nets": int(n_nets), "samples": int(n_samples)}


def _run_fidelity(task: dict):
    from ..golden.config import CoreConfig
    from .datasets import load_dataset
    from .design_space import gradient_fidelity

    cfg = CoreConfig.from_dict(task["config"])
    return gradient_fidelity(cfg, load_dataset("yinyang"), task["nets"], task["samples"]), {}


#: Task kinds: kind -> function(task) -> (JSON-able result, dict of arrays to keep).
KINDS = {"train": _run_train, "fidelity": _run_fidelity}


def run_task(task: dict) -> dict:
    """Run one task, in a worker process or in-process (``--serial``): the same function.

    Numba gets one thread: a worker is one core, and a single thread keeps the run independent of
    how many threads the process has. Every run is seeded from its task, so the result does not
    depend on where it ran.
    """
    import platform

    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        result, arrays = KINDS[task["kind"]](task)
    finally:
        numba.set_num_threads(threads)
    return {"result": result, "arrays": arrays, "run_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - cpu0, "host": platform.node(), "pid": os.getpid()}


# -- the result store -------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def _atomic_write(path: Path, write: Callable):
    """``write(file)`` into a temporary file beside ``path``, then os.replace: all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; the result is an ordinary file
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | Path, data) -> None:
    _atomic_write(Path(path), lambda fh: fh.write(json.dumps(data, indent=1).encode()))


class ResultStore:
    """``<root>/results/<key>.json`` (+ ``<key>.npz`` for arrays) and ``<root>/errors/<key>.json``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.results = self.root / "results"
        self.errors = self.root / "errors"

    def has(self, key: str) -> bool:
        return (self.results / f"{key}.json").is_file()

    def done(self) -> set[str]:
        return {p.stem for p in self.results.glob("*.json")} if self.results.is_dir() else set()

    def load(self, key: str) -> dict:
        return json.loads((self.results / f"{key}.json").read_text())

    def arrays(self, key: str) -> dict:
        with np.load(self.results / f"{key}.npz", allow_pickle=False) as f:
            return {k: f[k] for k in f.files}

    def load_all(self, keys=None) -> dict[str, dict]:
        keys = self.done() if keys is None else [k for k in keys if self.has(k)]
        return {k: self.load(k) for k in sorted(keys)}

    def save(self, key: str, task: dict, out: dict) -> dict:
        entry = {"key": key, "task": task, "result": out["result"], "run_s": out["run_s"],
                 "cpu_s": out["cpu_s"], "host": out["host"], "pid": out["pid"],
                 "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if out["arrays"]:
            # The arrays first: a result JSON on disk always has its arrays beside it.
            _atomic_write(self.results / f"{key}.npz", lambda fh: np.savez(fh, **out["arrays"]))
        write_json_atomic(self.results / f"{key}.json", entry)
        with contextlib.suppress(FileNotFoundError):
            (self.errors / f"{key}.json").unlink()
        return entry

    def save_error(self, key: str, task: dict, error: str, trace: str) -> dict:
        entry = {"key": key, "task": task, "error": error, "traceback": trace}
        write_json_atomic(self.errors / f"{key}.json", entry)
        return entry


# -- the runner -------------------------------------------------------------------------------


@dataclasses.dataclass
class SweepOutcome:
    results: dict  # key -> stored entry, for every task of the sweep that has a result
    errors: dict  # key -> error entry of the tasks that raised in this call
    computed: list  # keys computed in this call (the others were stored already)
    wall_s: float  # from the first submission to the last result stored (cluster start excluded)


@contextlib.contextmanager
def local_cluster(n_workers: int | None = None, silence_logs: int = logging.ERROR):
    """A LocalCluster of single-threaded worker processes (default: one per core) and its client,
    closed on exit. The scheduler's HTTP server (metrics, and the dashboard if bokeh is installed)
    takes a free local port: the default 8787 may be taken by another cluster on the machine."""
    from distributed import Client, LocalCluster

    n = n_workers or os.cpu_count() or 1
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                      silence_logs=silence_logs) as cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None):
    if scheduler is None:
        with local_cluster(workers) as client:
            yield client
        return
    from distributed import Client

    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as err:
        raise ConfigError(f"no Dask scheduler at {scheduler} ({err}); start one with `dask scheduler`"
                          ) from None
    with client:
        yield client


def _bar(total: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not progress, unit="run", desc="sweep", dynamic_ncols=True)


def _describe(task: dict) -> str:
    axes = ", ".join(f"{k}={v}" for k, v in task.get("axes", {}).items())
    what = f"{task['kind']} {task.get('dataset', '')} {task.get('model', '')}".strip()
    return f"{what} [{axes or 'preset'}] seed {task.get('seed', '-')}"


def run_sweep(tasks: list[dict], store: ResultStore, scheduler: str | None = None,
              workers: int | None = None, serial: bool = False, progress: bool = True,
              client=None, on_result: Callable | None = None, log: Callable | None = None,
              timeout_s: float | None = None) -> SweepOutcome:
    """Compute the tasks that have no stored result; store each as it arrives.

    ``client``: an existing dask.distributed Client (tests, benchmarks); else ``scheduler`` (an
    address) or a local cluster of ``workers`` processes. ``serial``: in this process, no Dask.
    ``on_result(key, entry)`` is called once per newly stored result. ``timeout_s``: raise
    TimeoutError when the cluster has not finished by then (what has finished stays stored).
    ``log``: where failed tasks are reported (default: printed above the progress bar).
    A script that starts a local cluster this way needs ``if __name__ == "__main__":`` (the
    workers are spawned and import the main module).
    """
    if log is None:
        from tqdm.auto import tqdm

        log = tqdm.write
    unique = {}
    for t in tasks:
        unique.setdefault(task_key(t), t)
    todo = {k: t for k, t in unique.items() if not store.has(k)}
    errors: dict = {}
    computed: list = []

    def finished(key, out):
        entry = store.save(key, todo[key], out)
        computed.append(key)
        if on_result is not None:
            on_result(key, entry)

    def failed(key, err, trace):
        errors[key] = store.save_error(key, todo[key], f"{type(err).__name__}: {err}", trace)
        log(f"evcore: sweep: task failed: {_describe(todo[key])}: {type(err).__name__}: {err} "
            f"(traceback in {store.errors / f'{key}.json'})")

    t0 = time.perf_counter()
    wall = 0.0
    if todo and serial:
        with _bar(len(todo), progress) as bar:
            for key, task in todo.items():
                bar.set_postfix(running=1)
                try:
                    out = run_task(task)
                except Exception as err:
                    failed(key, err, traceback.format_exc())
                else:
                    finished(key, out)
                bar.update(1)
        wall = time.perf_counter() - t0
    elif todo:
        ctx = contextlib.nullcontext(client) if client is not None else _client(scheduler, workers)
        with ctx as cl:
            t0 = time.perf_counter()
            _run_on(cl, todo, finished, failed, progress, timeout_s)
            wall = time.perf_counter() - t0
    results = store.load_all(unique)
    return SweepOutcome(results, errors, computed, wall)


def _run_on(client, todo: dict, finished, failed, progress: bool, timeout_s: float | None):
    from distributed import as_completed

    # Named futures: the key on the cluster is the result key, so a resubmitted task (another
    # client, a rerun while the first is alive) is the same computation, not a second one.
    futures = {client.submit(run_task, task, key=f"evcore-sweep-{key}", pure=False): key
               for key, task in todo.items()}
    pending = as_completed(futures, with_results=False)
    names = {f.key: k for f, k in futures.items()}
    resubmitted: dict = {}
    deadline = math.inf if timeout_s is None else time.monotonic() + timeout_s
    with _bar(len(futures), progress) as bar:
        last_poll, shown = 0.0, None
        while not pending.is_empty():
            if time.monotonic() > deadline:
                client.cancel(list(futures))
                raise TimeoutError(f"sweep: {pending.count()} of {len(futures)} runs unfinished after "
                                   f"{timeout_s:.0f} s")
            for fut in pending.next_batch(block=False):
                key = futures[fut]
                if fut.status == "finished":
                    finished(key, fut.result())
                elif fut.status == "error":
                    # The task raised, or killed `allowed-failures` workers (KilledWorker).
                    err, tb = fut.exception(), fut.traceback()
                    failed(key, err, "".join(traceback.format_tb(tb)) if tb is not None else "")
                elif resubmitted.get(key, 0) < MAX_RESUBMIT:
                    # "lost": it had finished on a worker that died before its result was fetched.
                    # Submit it again under the same key; nothing of it was stored.
                    resubmitted[key] = resubmitted.get(key, 0) + 1
                    fut.release()
                    again = client.submit(run_task, todo[key], key=fut.key, pure=False)
                    futures[again] = key
                    pending.add(again)
                    continue
                else:
                    failed(key, RuntimeError(f"the task was {fut.status} on the cluster "
                                             f"{MAX_RESUBMIT + 1} times"), "")
                fut.release()
                bar.update(1)
            if progress and time.monotonic() - last_poll > 1.0:
                last_poll = time.monotonic()
                running = _running(client, names)
                if running != shown:  # redraw on change only (tqdm redraws by itself for the ETA)
                    shown = running
                    bar.set_postfix(running=running)
            time.sleep(POLL_S)


def _running(client, names: dict) -> int:
    """Tasks of this sweep that are executing now (assigned to a worker, at most one per thread)."""
    try:
        processing = client.processing()
        nthreads = client.nthreads()
    except OSError:
        return 0
    return sum(min(sum(1 for k in keys if k in names), nthreads.get(w, 1)) for w, keys in processing.items())


# -- the report ---------------------------------------------------------------------------------


def report_rows(entries: dict) -> list[dict]:
    """One row per configuration (its axis values), accuracies over its seeds."""
    groups: dict = {}
    for e in entries.values():
        task = e["task"]
        if task["kind"] != "train":
            continue
        ident = (task["dataset"], task["model"], task["epochs"], json.dumps(task["axes"], sort_keys=True))
        groups.setdefault(ident, []).append(e)
    rows = []
    for (dataset, model, epochs, axes), es in sorted(groups.items()):
        res = [e["result"] for e in es]
        test = np.array([r["test_accuracy"] for r in res])
        best = np.array([r["best_val_test_accuracy"] for r in res])
        fresh = [r["fresh_accuracy"] for r in res if "fresh_accuracy" in r]
        rows.append({"dataset": dataset, "model": model, "epochs": epochs, "axes": json.loads(axes),
                     "seeds": sorted(e["task"]["seed"] for e in es), "test": test.tolist(),
                     "test_mean": float(test.mean()),
                     "test_sd": float(test.std(ddof=1)) if len(test) > 1 else math.nan,
                     "best_val_test_mean": float(best.mean()),
                     "fresh_mean": float(np.mean(fresh)) if len(fresh) == len(res) else math.nan,
                     "run_s": float(np.mean([e["run_s"] for e in es]))})
    return rows


def report_table(rows: list[dict]) -> str:
    lines = ["| data set | model | epochs | configuration | seeds | test % (last epoch), mean ± sd "
             "| test % at best validation | fresh % | s / run |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        axes = ", ".join(f"{k} = {v}" for k, v in r["axes"].items()) or "preset"
        sd = "" if math.isnan(r["test_sd"]) else f" ± {100 * r['test_sd']:.2f}"
        fresh = "–" if math.isnan(r["fresh_mean"]) else f"{100 * r['fresh_mean']:.2f}"
        lines.append(f"| {r['dataset']} | {r['model']} | {r['epochs']} | {axes} | {len(r['seeds'])} "
                     f"| {100 * r['test_mean']:.2f}{sd} | {100 * r['best_val_test_mean']:.2f} | {fresh} "
                     f"| {r['run_s']:.1f} |")
    return "\n".join(lines)


def plot_report(rows: list[dict], path: str | Path) -> Path:
    """Test accuracy against each axis: every seed as a dot, mean ± sd over seeds as a line; one
    line per combination of the other axes (one-at-a-time sweeps: the preset elsewhere)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(k for r in rows for k in r["axes"]))
    fig, axs = plt.subplots(1, max(1, len(names)), figsize=(4.2 * max(1, len(names)), 3.6), squeeze=False)
    for ax, name in zip(axs[0], names or [None]):
        if name is None:  # no axes: seeds only
            for i, r in enumerate(rows):
                ax.plot([i] * len(r["test"]), 100 * np.array(r["test"]), "o", color="C0", alpha=0.5)
                ax.errorbar([i], [100 * r["test_mean"]], yerr=[100 * np.nan_to_num(r["test_sd"])], fmt="s",
                            color="C3", capsize=4)
            ax.set_xticks(range(len(rows)), [f"{r['model']}, {len(r['seeds'])} seeds" for r in rows])
            ax.set_ylabel("test accuracy (%)")
            continue
        mine = [r for r in rows if name in r["axes"]]
        values = list(dict.fromkeys(r["axes"][name] for r in mine))
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        pos = {v: (v if numeric else i) for i, v in enumerate(values)}
        lines: dict = {}
        for r in mine:
            others = tuple((k, v) for k, v in r["axes"].items() if k != name)
            lines.setdefault(others, []).append(r)
        for i, (others, rs) in enumerate(sorted(lines.items(), key=lambda kv: str(kv[0]))[:8]):
            rs = sorted(rs, key=lambda r: values.index(r["axes"][name]))
            xs = [pos[r["axes"][name]] for r in rs]
            for x, r in zip(xs, rs):
                ax.plot([x] * len(r["test"]), 100 * np.array(r["test"]), ".", color=f"C{i}", alpha=0.4)
            ax.errorbar(xs, [100 * r["test_mean"] for r in rs],
                        yerr=[100 * np.nan_to_num(r["test_sd"]) for r in rs], fmt="o-", color=f"C{i}",
                        capsize=3, label=", ".join(f"{k}={v}" for k, v in others) or None)
        if not numeric:
            ax.set_xticks(range(len(values)), [str(v) for v in values])
        elif min(values) > 0 and max(values) >= 10 * min(values):
            ax.set_xscale("log")  # learning rates and the like
        ax.set_xlabel(name)
        ax.set_ylabel("test accuracy (%), mean ± sd over seeds")
        if len(lines) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"sweep: {', '.join(sorted({r['dataset'] + ' ' + r['model'] for r in rows}))}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_report(store: ResultStore, keys=None, figure: str | Path | None = None) -> int:
    entries = store.load_all(keys)
    rows = report_rows(entries)
    if not rows:
        raise FileNotFoundError(f"no sweep results in {store.results}/")
    print(report_table(rows))
    errors = sorted(store.errors.glob("*.json")) if store.errors.is_dir() else []
    if errors:
        print(f"{len(errors)} task(s) failed; their configurations and errors: {store.errors}/")
    figure = Path(figure) if figure else store.root / "sweep.png"
    plot_report(rows, figure)
    print(f"wrote {figure}")
    return 0


# -- the commands -------------------------------------------------------------------------------


def add_arguments(p):
    from .cli import _positive_int  # the CLI's argument types, one copy

    p.add_argument("spec", nargs="?", help="sweep spec (TOML: dataset, model, axes, seeds, epochs, ...; "
                   "docs/sweeps.md); flags override it")
    p.add_argument("--dataset", choices=["yinyang", "mnist"])
    p.add_argument("--model", choices=MODELS)
    p.add_argument("--axis", action="append", default=[], metavar="NAME=V1,V2",
                   help="a config axis and its values (repeatable)")
    p.add_argument("--seeds", help="seeds, e.g. 0-9 or 0,3,5 (default 0)")
    p.add_argument("--epochs", type=_positive_int)
    p.add_argument("--mode", choices=MODES)
    p.add_argument("--samples", type=_positive_int, help="mode random: configurations drawn from the grid")
    p.add_argument("--train-samples", type=_positive_int, help="train on the first N training samples")
    p.add_argument("--eval-samples", type=_positive_int,
                   help="validate and test on the first N samples (no fresh draw)")
    p.add_argument("--core", choices=["up5k", "ecp5-85f"])
    p.add_argument("--out", help="result directory (default runs/sweeps/<spec name or data set-model>)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="use a running Dask cluster (tcp://host:8786) instead of a local one")
    p.add_argument("--workers", type=_positive_int,
                   help="local cluster: worker processes (default: one per core)")
    p.add_argument("--serial", action="store_true", help="run in this process, one run after the other")
    p.add_argument("--report", action="store_true", help="only print the table and plot of stored results")
    p.add_argument("--figure", help="plot path (default <out>/sweep.png)")
    p.add_argument("--bench", action="store_true",
                   help="time a fixed small sweep at 1 and 2 workers (bench/sweep_bench.py)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def spec_from_args(args) -> tuple[SweepSpec, str]:
    overrides = {"dataset": args.dataset, "model": args.model, "epochs": args.epochs, "mode": args.mode,
                 "samples": args.samples, "train_samples": args.train_samples,
                 "eval_samples": args.eval_samples, "core": args.core,
                 "seeds": parse_seeds(args.seeds) if args.seeds else None}
    if args.axis:
        overrides["axes"] = dict(parse_axis(a) for a in args.axis)
    if args.spec:
        return load_spec(args.spec, **overrides), Path(args.spec).stem
    spec = make_spec({}, **overrides)
    return spec, f"{spec.dataset}-{spec.model}"


def cmd_sweep(args) -> int:
    if args.bench:
        from ..bench.sweep_bench import main_figures

        main_figures()
        return 0
    spec, name = spec_from_args(args)
    store = ResultStore(args.out or Path("runs") / "sweeps" / name)
    tasks = make_tasks(spec)
    keys = [task_key(t) for t in tasks]
    if args.report:
        return print_report(store, keys, args.figure)
    n_done = sum(store.has(k) for k in set(keys))
    where = ("this process" if args.serial else f"the Dask cluster at {args.scheduler}" if args.scheduler
             else f"a local Dask cluster of {args.workers or os.cpu_count()} workers")
    print(f"evcore: sweep of {len(set(keys))} runs ({n_done} stored already) on {where} -> {store.root}")
    write_json_atomic(store.root / "spec.json", dataclasses.asdict(spec))
    outcome = run_sweep(tasks, store, args.scheduler, args.workers, args.serial, progress=not args.quiet)
    if outcome.computed:
        print(f"{len(outcome.computed)} runs in {outcome.wall_s:.1f} s")
    if outcome.results:
        print_report(store, keys, args.figure)
    if outcome.errors:
        print(f"evcore: {len(outcome.errors)} of {len(set(keys))} runs failed (see above); "
              "rerun to retry them")
        return 1
    return 0


def cmd_report(path: str | Path, figure=None) -> int:
    """`evcore report --sweep DIR`: every result stored in a sweep directory."""
    store = ResultStore(path)
    if not store.results.is_dir():
        raise FileNotFoundError(f"{path} is not a sweep directory (no results/ inside)")
    return print_report(store, None, figure)


def train_seeds(args, cfg, seeds: list[int]) -> int:
    """`evcore train DATASET --seeds 0-9`: one sweep over the seeds, then one run directory per
    seed as a single `evcore train` writes it (metrics.json, checkpoint.npz, learning curve)."""
    from .train import plot_learning_curve, save_fixed_checkpoint, save_run

    model = args.model
    # The flags that changed the preset (--lr, --batch-size, ...) are the run's config axes.
    preset = _preset(cfg)
    axes = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if f.name not in ("dataset", "epochs") and getattr(cfg, f.name) != getattr(preset, f.name)}
    if model != "float":
        axes = {}  # the core trains with its preset; the CLI refuses the float-only flags
    tasks = [train_task(args.dataset, model, axes, s, cfg.epochs if model == "float" else args.epochs,
                        core=getattr(args, "core", "up5k")) for s in seeds]
    base = Path(args.out) if args.out else Path("runs")
    store = ResultStore(base / "sweeps" / f"train-{args.dataset}-{model}")

    def run_dir(seed):
        return base / f"{args.dataset}-{model}-seed{seed}"

    def write(key, entry):
        seed, metrics = entry["task"]["seed"], entry["result"]
        arrays = store.arrays(key)
        out = run_dir(seed)
        if model == "float":
            from ..golden.eventprop import Network

            save_run(Network.from_state_dict(arrays), cfg, metrics, out)
        else:
            from ..golden.config import CoreConfig
            from ..golden.core import FixedCore

            out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(out / "metrics.json", metrics)
            core = FixedCore(CoreConfig.from_dict(entry["task"]["config"]),
                             [arrays[f"weights_raw_{l}"] for l in range(len(arrays))])
            save_fixed_checkpoint(out / "checkpoint.npz", core, args.dataset)
            plot_learning_curve(metrics, out / "learning_curve.png")

    print(f"evcore: training {args.dataset} ({model}) for seeds {', '.join(map(str, seeds))} on "
          f"{args.scheduler or 'a local Dask cluster'} -> "
          f"{run_dir('<S>')}")
    serial = getattr(args, "serial", False)
    outcome = run_sweep(tasks, store, args.scheduler, args.workers, serial, progress=not args.quiet,
                        on_result=write)
    for key, entry in outcome.results.items():
        if key not in outcome.computed and not (run_dir(entry["task"]["seed"]) / "metrics.json").is_file():
            write(key, entry)  # stored by an earlier, interrupted call
    rows = report_rows(outcome.results)
    if rows:
        print(report_table(rows))
    if outcome.errors:
        print(f"evcore: {len(outcome.errors)} of {len(seeds)} runs failed (see above); rerun to retry them")
        return 1
    return 0


def _preset(cfg):
    from .train import PRESETS

    return PRESETS[cfg.dataset]
