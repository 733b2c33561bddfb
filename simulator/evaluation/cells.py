"""Evaluation as independent cells: one simulation of a policy, or one oracle search, per cell.

A :class:`Plan` (policies, workloads, the shared setup) travels once to each
worker; a :class:`Cell` names a policy (or the oracle), a workload and a seed
by index. :func:`run_cell` rebuilds what it needs inside the worker and keeps
the heavy parts per process: the resolved pools (latency models) per cluster,
and the last workloads drawn. Every cell is a pure function of the plan and
its indexes, so the executor that ran it does not change its result.
"""

from __future__ import annotations

import hashlib
import itertools
import tempfile
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from simulator.cluster.cluster import PoolRuntime
from simulator.cluster.config import ClusterConfig
from simulator.workloads.workload import Workload

#: Relative cost of an oracle cell (a bisection of about ten simulations) against one policy run.
ORACLE_WEIGHT = 10.0
_WORKLOADS_KEPT = 8

_pools: dict[ClusterConfig, tuple[PoolRuntime, ...]] = {}
_workloads: OrderedDict[tuple[str, int, int], Workload] = OrderedDict()
_ids = itertools.count()


@dataclass(frozen=True)
class Plan:
    """What every cell of one evaluation shares (``PolicyEntry``, ``WorkloadEntry`` and ``EvaluationSetup`` of the runner).

    ``artifacts`` carries the files of every learned policy's artifact (by policy
    index: the driver's absolute path and the files' bytes), so that a worker on
    another machine (a Ray cluster) runs the same network.
    """

    policies: tuple
    workloads: tuple
    setup: object
    keep_results: bool = True
    artifacts: dict = field(default_factory=dict)
    token: str = field(default_factory=lambda: f"{uuid.uuid4().hex}-{next(_ids)}")  # names this plan in workers' caches


def make_plan(policies: Sequence, workloads: Sequence, setup, keep_results: bool = True) -> Plan:
    return Plan(tuple(policies), tuple(workloads), setup, keep_results, bundle_artifacts(policies))


def bundle_artifacts(policies: Sequence) -> dict[int, tuple[str, dict[str, bytes]]]:
    """The files of each learned policy's artifact folder, read here (a missing one is left to fail in its runs)."""
    out = {}
    for i, entry in enumerate(policies):
        artifact = entry.spec.get("artifact") if entry.spec.get("type") == "learned" else None
        if isinstance(artifact, str):
            path = Path(artifact).expanduser().resolve()
            if path.is_dir():
                out[i] = (str(path), {f.name: f.read_bytes() for f in sorted(path.iterdir()) if f.is_file()})
    return out


def policy_entry(plan: Plan, index: int):
    """Policy ``index`` with its artifact at a path of this machine: the driver's, or a copy of its files."""
    entry = plan.policies[index]
    bundled = plan.artifacts.get(index)
    if bundled is None:
        return entry
    path, files = bundled
    if not Path(path).is_dir():
        digest = hashlib.sha256(b"".join(name.encode() + b"\0" + data for name, data in sorted(files.items()))).hexdigest()[:16]
        target = Path(tempfile.gettempdir()) / "kis-artifacts" / digest
        if not target.is_dir():
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f"{digest}.", dir=target.parent))
            for name, data in files.items():
                (staging / name).write_bytes(data)
            try:
                staging.rename(target)
            except OSError:  # another worker wrote it first
                pass
        path = str(target)
    return replace(entry, spec={**entry.spec, "artifact": path})


@dataclass(frozen=True)
class Cell:
    """Policy ``policy`` (an index into the plan; ``None`` is the oracle) on workload ``workload`` with ``seed``."""

    policy: int | None
    workload: int
    seed: int
    oracle_target: float | None = None  # overrides the setup's target attainment (sweeps)


def label(plan: Plan, cell: Cell) -> str:
    from simulator.evaluation.runner import ORACLE

    policy = ORACLE if cell.policy is None else plan.policies[cell.policy].name
    if cell.oracle_target is not None:
        policy = f"{policy}@{cell.oracle_target:g}"
    return f"{policy} on {plan.workloads[cell.workload].name} (seed {cell.seed})"


def weights(cells: Sequence[Cell]) -> list[float]:
    return [ORACLE_WEIGHT if c.policy is None else 1.0 for c in cells]


def pools_for(config: ClusterConfig) -> tuple[PoolRuntime, ...]:
    """The resolved pools of ``config``, once per process."""
    from simulator.cluster.build import resolve_pools

    if config not in _pools:
        _pools[config] = resolve_pools(config)
    return _pools[config]


def workload_for(plan: Plan, index: int, seed: int) -> Workload:
    """Workload ``index`` of the plan drawn with ``seed``; the last few drawn are kept per process."""
    key = (plan.token, index, seed)
    workload = _workloads.get(key)
    if workload is None:
        workload = _workloads[key] = plan.workloads[index].make(seed)
        while len(_workloads) > _WORKLOADS_KEPT:
            _workloads.popitem(last=False)
    else:
        _workloads.move_to_end(key)
    return workload


def run_cell(plan: Plan, cell: Cell):
    """One policy run or one oracle search: a ``RunRecord``."""
    from simulator.evaluation.oracle import oracle
    from simulator.evaluation.runner import ORACLE, make_decider, record
    from simulator.runner import simulate

    setup = plan.setup
    pools = pools_for(setup.cluster)
    workload = workload_for(plan, cell.workload, cell.seed)
    name = plan.workloads[cell.workload].name
    if cell.policy is None:
        target = setup.oracle_target if cell.oracle_target is None else cell.oracle_target
        found = oracle(
            workload, setup.cluster, pools, slo=setup.slo, target_attainment=target, interval_s=setup.interval_s,
            min_replicas=setup.min_replicas, max_replicas=setup.max_replicas, seed=cell.seed,
        )
        return record(ORACLE, name, cell.seed, workload, found.result, plan.keep_results)
    entry = policy_entry(plan, cell.policy)
    result = simulate(
        workload, setup.cluster, replicas=setup.initial_replicas, decide=make_decider(entry, setup, pools),
        interval_s=setup.interval_s, slo=setup.slo, seed=cell.seed, name=entry.name, pools=pools,
    )
    return record(entry.name, name, cell.seed, workload, result, plan.keep_results)
