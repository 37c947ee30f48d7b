"""The sweep row of `make bench` (also `evcore sweep --bench`): one fixed small sweep (sw/sweep.py)
in this process and on a local Dask cluster of 1 and of 2 worker processes.

The sweep: float EventProp on Yin-Yang, 3 learning rates x 4 seeds, 2 epochs on the first 500
training samples, validated and tested on 500 (about a second per run). Printed per setting:

- the cluster's start-up (LocalCluster with its worker processes, and one warm-up run per worker
  so that the Numba kernels are loaded; neither is part of the sweep's time);
- the sweep's wall time, from the first submission to the last result stored on disk;
- the sum of the runs' own times, measured inside the tasks (``run_s``), and their CPU time
  (``cpu_s``): on a busy machine a run's wall time exceeds its CPU time;
- the speed-up of 2 workers over 1, and the engine's overhead per task: the worker time not spent
  in a run, (workers x wall - sum of run times) / tasks. It includes the scheduler's round trips,
  sending the task and its result, and the client writing the result atomically;
- the scheduler's own cost per task: 200 empty tasks (client.map) through the same cluster.

The machine may be shared (its load average is printed): the figures are of this machine now.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from ..sw.sweep import ResultStore, SweepSpec, local_cluster, make_tasks, run_sweep, run_task, train_task
from .machine import machine_description

SPEC = SweepSpec(axes={"lr": [2e-3, 5e-3, 1e-2]}, seeds=(0, 1, 2, 3), epochs=2, train_samples=500,
                 eval_samples=500)


def _warm_task() -> dict:
    # Not one of the sweep's runs (seed 999): loads the kernels and the data set in a process.
    return train_task("yinyang", "float", {}, 999, epochs=1, train_samples=32, eval_samples=32)


#: Empty tasks timed through the scheduler: its cost per task with no work in it.
N_EMPTY = 200


def _empty(i):
    return i


def _one(workers: int | None, tasks) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(tmp)
        if workers is None:
            run_task(_warm_task())
            out = run_sweep(tasks, store, serial=True, progress=False)
            runs = out.results.values()
            return {"workers": 0, "wall_s": out.wall_s, "sum_run_s": sum(e["run_s"] for e in runs),
                    "sum_cpu_s": sum(e["cpu_s"] for e in runs)}
        t0 = time.perf_counter()
        with local_cluster(workers) as client:
            client.wait_for_workers(workers, timeout=120)
            client.run(run_task, _warm_task())
            startup = time.perf_counter() - t0
            out = run_sweep(tasks, store, client=client, progress=False, timeout_s=600)
            t1 = time.perf_counter()
            client.gather(client.map(_empty, range(N_EMPTY), pure=False))
            empty_s = (time.perf_counter() - t1) / N_EMPTY
        runs = out.results.values()
        return {"workers": workers, "startup_s": startup, "wall_s": out.wall_s, "empty_task_s": empty_s,
                "sum_run_s": sum(e["run_s"] for e in runs), "sum_cpu_s": sum(e["cpu_s"] for e in runs),
                "processes": len({e["pid"] for e in runs})}


def main_figures(worker_counts=(1, 2)) -> dict:
    tasks = make_tasks(SPEC)
    n = len(tasks)
    load = os.getloadavg()
    print(f"\nSweep engine (sw/sweep.py, Dask distributed): {n} float runs (3 lr x 4 seeds, 2 epochs on 500 "
          f"Yin-Yang samples); load average {load[0]:.1f} on {os.cpu_count()} cores before (shared machine)")
    rows = [_one(None, tasks)] + [_one(w, tasks) for w in worker_counts]
    base = next((r for r in rows if r["workers"] == 1), None)
    print(f"  {'setting':>18} {'start-up s':>11} {'sweep wall s':>13} {'sum of runs s':>14} "
          f"{'their CPU s':>12} {'speed-up':>9} {'overhead/task s':>16}")
    for r in rows:
        name = "serial, in-process" if r["workers"] == 0 else f"{r['workers']} worker(s)"
        slots = max(r["workers"], 1)
        r["overhead_per_task_s"] = (slots * r["wall_s"] - r["sum_run_s"]) / n
        r["speedup_vs_1_worker"] = base["wall_s"] / r["wall_s"] if base else None
        startup = f"{r['startup_s']:.1f}" if "startup_s" in r else "-"
        speed = f"{r['speedup_vs_1_worker']:.2f}x" if base else "-"
        print(f"  {name:>18} {startup:>11} {r['wall_s']:>13.1f} {r['sum_run_s']:>14.1f} "
              f"{r['sum_cpu_s']:>12.1f} {speed:>9} {r['overhead_per_task_s']:>16.3f}")
    for r in rows[1:]:
        print(f"  {r['workers']} worker(s): {N_EMPTY} empty tasks through the scheduler, "
              f"{1e3 * r['empty_task_s']:.2f} ms per task ({1 / r['empty_task_s']:.0f} tasks/s)")
    after = os.getloadavg()[0]
    print(f"  mean run {rows[0]['sum_run_s'] / n:.2f} s in-process; load average {after:.1f} after. A run's "
          "wall time above its CPU time is time the machine gave to other work.")
    return {"machine": machine_description(), "tasks": n, "load_before": load[0], "load_after": after,
            "rows": rows}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    figures = main_figures()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=1)


if __name__ == "__main__":
    main()
