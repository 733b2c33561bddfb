"""The simulated control loop: cluster -> snapshot -> decision -> cluster.scale().

This is the offline edge of the sim-to-real bridge. The decision function is
the controller's own (see :mod:`controller.autoscaling`); only where the
snapshot comes from and where the replicas go differ from the online path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from controller.autoscaling import Autoscaler, decide
from controller.decision import DecisionRecord
from controller.guardrails import Behavior
from controller.policies.base import Policy
from controller.slo import SLO
from simulator.cluster.build import build_cluster
from simulator.cluster.cluster import PoolRuntime
from simulator.cluster.config import ClusterConfig
from simulator.results import RequestTable, SimulationResult
from simulator.workloads.workload import Workload

#: ``decide(snapshot, now_s, current_replicas) -> DecisionRecord``: a stateful closure over the controller's decision step.
#: It may carry ``windows`` (the policy's named windows, see :func:`controller.signals.policy_windows`).
DecideFn = Callable[[Mapping[str, float], float, int], DecisionRecord]

#: After the last arrival, control ticks go on while requests wait in the gateway (at most this long).
DRAIN_LIMIT_S = 3600.0


def sim_autoscaler(policy: Policy, config: ClusterConfig, behavior: Behavior, *, slo: SLO = SLO(), interval_s: float = 15.0,
                   pools: tuple[PoolRuntime, ...] | None = None) -> Autoscaler:
    """The controller's :class:`Autoscaler` for ``policy`` on a simulated cluster: the cluster's capacity
    profile (for policies that read one) and cold start fill in what ``spec.capacity`` and
    ``spec.coldStartSeconds`` give online. Training, evaluation and ``kis simulate`` all build it here."""
    capacity = None
    if getattr(policy, "reads_capacity", False):
        from simulator.planning.capacity import cluster_capacity

        capacity = cluster_capacity(config, slo, pools=pools)
    return Autoscaler(policy, behavior, slo, interval_s, capacity=capacity, cold_start_s=config.lifecycle.cold_start_s)


def decider(autoscaler: Autoscaler) -> DecideFn:
    """A stateful closure over :func:`controller.autoscaling.decide` for one run."""
    from controller.signals import policy_windows

    state = [autoscaler.initial_state()]

    def step(snapshot: Mapping[str, float], now_s: float, current: int) -> DecisionRecord:
        record, state[0] = decide(autoscaler, snapshot, now_s, current, state[0])
        return record

    step.windows = policy_windows(autoscaler.policy)  # type: ignore[attr-defined]
    return step


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
    (latency models) across runs. Requests still held in the gateway when the
    workload ends (a fleet at zero) keep the control loop running until a
    replica serves them (:data:`DRAIN_LIMIT_S` at most).
    """
    if interval_s <= 0:
        raise ValueError(f"interval_s must be positive, got {interval_s}")
    cluster = build_cluster(config, workload, initial_replicas=replicas, rng=np.random.default_rng(seed), pools=pools,
                            windows=getattr(decide, "windows", None))
    snapshots: list[dict[str, float]] = []
    decisions: list[DecisionRecord] = []
    t = 0.0
    end = workload.duration_s
    while t < end or (decide is not None and cluster.unserved and t < end + DRAIN_LIMIT_S):
        t = min(t + interval_s, end) if t < end else t + interval_s
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
