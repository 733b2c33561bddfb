"""The simulated control loop: cluster -> snapshot -> decision -> cluster.scale().

This is the offline edge of the sim-to-real bridge. The decision function is
the controller's own (see :mod:`controller.autoscaling`); only where the
snapshot comes from and where the replicas go differ from the online path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from controller.decision import DecisionRecord
from controller.slo import SLO
from simulator.cluster.build import build_cluster
from simulator.cluster.cluster import PoolRuntime
from simulator.cluster.config import ClusterConfig
from simulator.results import RequestTable, SimulationResult
from simulator.workloads.workload import Workload

#: ``decide(snapshot, now_s, current_replicas) -> DecisionRecord``: a stateful closure over the controller's decision step.
DecideFn = Callable[[Mapping[str, float], float, int], DecisionRecord]


def simulate(
    workload: Workload,
    config: ClusterConfig,
    *,
    replicas: int,
    decide: DecideFn | None = None,
    interval_s: float = 15.0,
    slo: SLO = SLO(),
    seed: int = 0,
    name: str | None = None,
    on_tick: Callable[[float], None] | None = None,
    keep_snapshots: bool = True,
    pools: tuple[PoolRuntime, ...] | None = None,
) -> SimulationResult:
    """Replay ``workload`` on a cluster that starts with ``replicas`` Ready.

    Every ``interval_s`` the cluster's snapshot is taken and, when ``decide``
    is given, its decision is applied with :meth:`Cluster.scale`. Without
    ``decide`` the replica count stays fixed. ``pools`` reuses resolved pools
    (latency models) across runs.
    """
    if interval_s <= 0:
        raise ValueError(f"interval_s must be positive, got {interval_s}")
    cluster = build_cluster(config, workload, initial_replicas=replicas, rng=np.random.default_rng(seed), pools=pools)
    snapshots: list[dict[str, float]] = []
    decisions: list[DecisionRecord] = []
    t = 0.0
    while t < workload.duration_s:
        t = min(t + interval_s, workload.duration_s)
        cluster.run_until(t)
        snap = cluster.snapshot()
        if keep_snapshots:
            snapshots.append(snap)
        if decide is not None:
            record = decide(snap, t, cluster.desired)
            decisions.append(record)
            cluster.scale(record.final)
        if on_tick is not None:
            on_tick(t)
    cluster.finish()
    return SimulationResult(
        name=name or workload.name,
        slo=slo,
        duration_s=workload.duration_s,
        arrived=len(workload),
        requests=RequestTable.from_finished(cluster.finished),
        timeline=cluster.timeline,
        gpu_seconds=cluster.gpu_seconds(),
        cost_usd=cluster.cost_usd(),
        scale_events=cluster.scale_events,
        rejected=cluster.rejected,
        unserved=cluster.unserved,
        snapshots=snapshots,
        decisions=decisions,
    )
