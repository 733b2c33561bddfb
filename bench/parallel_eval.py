"""Wall time of a reduced policy-benchmark grid: serial, local process pool, local Ray.

The grid is the policy benchmark's own ``evaluate`` call, cut down: the
shipped learned policy and HPA at three targets, plus the clairvoyant oracle
(a bisection of about ten simulations per cell), on the Azure code and
conversation traces and two patterns (the first 30 minutes of each), over two
seeds. Every mode must give the same records; the speed-up is serial time over
parallel time (target: at least 1.7x on 2 cores). Rounds alternate the modes;
the table quotes medians.

    .venv/bin/python bench/parallel_eval.py [--workers 2] [--rounds 3] [--out bench/results/parallel_eval.md]
    .venv/bin/python bench/parallel_eval.py --ray ray://127.0.0.1:10001 --rounds 1   # a Ray cluster (deploy/ray/)
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import statistics
import time
from pathlib import Path

from controller.slo import SLO
from simulator.cluster.config import ClusterConfig, NodePool
from simulator.evaluation.presets import DEFAULT_POLICIES, preset_workloads, trace_workload
from simulator.evaluation.runner import EvaluationSetup, PolicyEntry, evaluate
from simulator.executor import ProcessExecutor, RayExecutor, SerialExecutor

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "azure2023"
DURATION_S = 1800.0
SEEDS = (0, 1)


def grid():
    setup = EvaluationSetup(
        cluster=ClusterConfig(pools=(NodePool(name="h100", gpu="H100", gpus_per_node=8, initial_nodes=1, max_nodes=1),), model="llama-8b"),
        slo=SLO(), interval_s=15.0, max_replicas=8, initial_replicas=2,
    )
    learned = next(p for p in DEFAULT_POLICIES if p.name == "learned")
    policies = [learned] + [PolicyEntry(f"hpa@{t:g}", {"type": "hpa", "metric": "requests_per_replica", "target": float(t)}) for t in (4, 8, 16)]
    workloads = [trace_workload(TRACES / f"AzureLLMInferenceTrace_{name}.csv", "azure", DURATION_S) for name in ("code", "conv")]
    workloads += preset_workloads(["spike", "periodic"], DURATION_S)
    return policies, workloads, setup


def timed_cell(plan, cell):
    """``run_cell`` with the CPU seconds it took and the process it ran in."""
    from simulator.evaluation.cells import run_cell

    start = time.process_time()
    record = run_cell(plan, cell)
    return record, time.process_time() - start, os.getpid()


def cpu_balance(executor, policies, workloads, setup) -> tuple[float, float]:
    """Total CPU seconds of the cells, and the most that one worker spent: the critical path on idle cores."""
    from simulator.evaluation.cells import make_plan
    from simulator.evaluation.runner import evaluation_cells

    plan = make_plan(policies, workloads, setup, keep_results=False)
    cells = evaluation_cells(len(policies), len(workloads), SEEDS, True)
    outcomes = executor.map(timed_cell, plan, cells, weights=[10.0 if c.policy is None else 1.0 for c in cells])
    per_worker: dict[int, float] = {}
    for outcome in outcomes:
        _, cpu, pid = outcome.value
        per_worker[pid] = per_worker.get(pid, 0.0) + cpu
    return sum(per_worker.values()), max(per_worker.values())


def same(a, b) -> bool:
    def eq(x, y):
        return x == y or (math.isnan(x) and math.isnan(y))

    return [(r.policy, r.workload, r.seed) for r in a] == [(r.policy, r.workload, r.seed) for r in b] and all(
        r.summary.keys() == s.summary.keys() and all(eq(r.summary[k], s.summary[k]) for k in r.summary) for r, s in zip(a, b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ray", default="auto", help="Ray for the Ray mode: auto (a local instance of --workers CPUs) or ray://HOST:10001")
    parser.add_argument("--out", type=Path, default=Path("bench/results/parallel_eval.md"))
    args = parser.parse_args()
    policies, workloads, setup = grid()
    runs = len(workloads) * len(SEEDS) * (len(policies) + 1)
    load_before = os.getloadavg()
    started = time.perf_counter()
    ray = RayExecutor(args.ray, num_cpus=args.workers if args.ray == "auto" else None)
    ray_cpus = ray.workers  # start Ray before the clock runs; its start-up is reported apart
    ray_start = time.perf_counter() - started
    ray_name = f"local Ray ({ray_cpus} CPUs)" if args.ray == "auto" else f"Ray cluster ({ray_cpus} CPUs)"
    modes = {"serial": SerialExecutor(), f"process pool ({args.workers})": ProcessExecutor(args.workers), ray_name: ray}
    walls: dict[str, list[float]] = {name: [] for name in modes}
    reference = None
    identical = True
    for round_ in range(args.rounds):
        for name, executor in modes.items():
            t0 = time.perf_counter()
            records = evaluate(policies, workloads, SEEDS, setup, keep_results=False, executor=executor)
            walls[name].append(time.perf_counter() - t0)
            print(f"round {round_ + 1}: {name}: {walls[name][-1]:.1f} s", flush=True)
            reference = reference or records
            identical = identical and same(reference, records)
    total_cpu, busiest = cpu_balance(modes[f"process pool ({args.workers})"], policies, workloads, setup)
    ray.close()
    load_after = os.getloadavg()
    serial = statistics.median(walls["serial"])
    rows = "\n".join(f"| {name} | {statistics.median(w):.1f} s | {min(w):.1f} / {max(w):.1f} s | {serial / statistics.median(w):.2f}x |"
                     for name, w in walls.items())
    text = f"""# Parallel evaluation: serial vs process pool vs local Ray

Command: `.venv/bin/python bench/parallel_eval.py --workers {args.workers} --rounds {args.rounds}{"" if args.ray == "auto" else " --ray " + args.ray}`
Date: {dt.date.today().isoformat()}; machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()};
load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (other work was running on the machine when > 0.5).

Grid: {len(policies)} policies ({", ".join(p.name for p in policies)}) and the oracle, on {len(workloads)} workloads
({", ".join(w.name for w in workloads)}; first {DURATION_S / 60:.0f} minutes each), seeds {list(SEEDS)}:
{runs} cells, the same `evaluate` call as `bench/policy_benchmark.py`. Records identical in every mode and round: **{"yes" if identical else "NO"}**.

| mode | wall time (median of {args.rounds}) | min / max | speed-up over serial |
|---|---:|---:|---:|
{rows}

Ray's start-up (`ray.init`, once, not in the times above): {ray_start:.1f} s. The pool's start-up (a fresh pool
per `evaluate` call) is inside its times. Target: at least 1.7x on 2 cores.

CPU time, which other load on the machine does not inflate: the cells took {total_cpu:.1f} CPU-s in all on the
pool; its busiest worker spent {busiest:.1f} CPU-s, so on {args.workers} idle cores the pool's run would take about that
long (plus start-up): **{total_cpu / busiest:.2f}x** the work of one core in the same time.
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
