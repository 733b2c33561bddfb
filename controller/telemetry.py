"""The controller's own Prometheus metrics (served at ``/metrics``).

:class:`ControllerMetrics` owns a private :class:`CollectorRegistry` (one per
instance, so tests and several controllers in one process do not collide)
holding exactly the ``kis_controller_*`` metrics below. The reconcile loop
calls the ``observe_*``/``set_*`` methods; :meth:`ControllerMetrics.forget`
drops the label sets of a deleted autoscaler.

==========================================  =========  ==================================
metric                                      type       labels
==========================================  =========  ==================================
kis_controller_decisions_total              counter    namespace, autoscaler, reason
kis_controller_desired_replicas             gauge      namespace, autoscaler
kis_controller_current_replicas             gauge      namespace, autoscaler
kis_controller_shadow_replicas              gauge      namespace, autoscaler, policy
kis_controller_policy_latency_seconds       histogram  policy
kis_controller_errors_total                 counter    kind (:data:`ERROR_KINDS`)
kis_controller_loop_duration_seconds        histogram
kis_controller_is_leader                    gauge      (0/1)
kis_controller_metrics_stale                gauge      namespace, autoscaler (0/1)
kis_controller_scale_events_total           counter    namespace, autoscaler, direction (up/down)
kis_controller_autoscalers                  gauge      (autoscalers watched)
kis_controller_last_progress_seconds        gauge      (Unix time of the loop's last progress)
kis_controller_interval_seconds             gauge      (the reconcile interval)
kis_controller_pipeline_stage_decisions_total  counter  namespace, pipeline, stage, reason
kis_controller_pipeline_stage_desired_replicas gauge    namespace, pipeline, stage
kis_controller_pipeline_stage_current_replicas gauge    namespace, pipeline, stage
kis_controller_pipeline_budget_cuts_total   counter    namespace, pipeline, stage (the budget cut it)
kis_controller_pipeline_gpus                gauge      namespace, pipeline, kind (wanted, desired, budget)
==========================================  =========  ==================================

The last two make the stalled-loop alert: ``time() - last_progress > 4 * interval``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from controller.decision import DecisionRecord

#: Values of the ``kind`` label of ``kis_controller_errors_total``.
ERROR_KINDS: tuple[str, ...] = (
    "prometheus", "kubernetes", "conflict", "invalid_spec", "policy_load", "target_missing", "internal", "not_leader",
)
#: Metric names, for documentation and tests.
METRIC_NAMES: tuple[str, ...] = (
    "kis_controller_decisions_total",
    "kis_controller_desired_replicas",
    "kis_controller_current_replicas",
    "kis_controller_shadow_replicas",
    "kis_controller_policy_latency_seconds",
    "kis_controller_errors_total",
    "kis_controller_loop_duration_seconds",
    "kis_controller_is_leader",
    "kis_controller_metrics_stale",
    "kis_controller_scale_events_total",
    "kis_controller_autoscalers",
    "kis_controller_policy_fallbacks_total",
    "kis_controller_last_progress_seconds",
    "kis_controller_interval_seconds",
    "kis_controller_pipeline_stage_decisions_total",
    "kis_controller_pipeline_stage_desired_replicas",
    "kis_controller_pipeline_stage_current_replicas",
    "kis_controller_pipeline_budget_cuts_total",
    "kis_controller_pipeline_gpus",
)
POLICY_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
LOOP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_REASON_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def reason_code(reason: str) -> str:
    """The ``reason`` label for a decision: the leading identifier of ``reason``.

    Keeps label cardinality bounded when reasons carry details
    (``"ScaleUpLimit: 3 -> 5"`` -> ``"ScaleUpLimit"``); ``"unknown"`` if none.
    """
    match = _REASON_CODE.match(reason.strip())
    return match.group(0) if match else "unknown"


class ControllerMetrics:
    """The ``kis_controller_*`` metrics in a registry of their own.

    :param registry: where to register them; a fresh one when ``None``.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        target = ("namespace", "autoscaler")
        self.decisions = Counter("kis_controller_decisions", "Scaling decisions made, by final reason.", (*target, "reason"), registry=r)
        self.desired_replicas = Gauge("kis_controller_desired_replicas", "Replicas the last decision asked for.", target, registry=r)
        self.current_replicas = Gauge("kis_controller_current_replicas", "Replicas of the target when the last decision was made.", target, registry=r)
        self.shadow_replicas = Gauge("kis_controller_shadow_replicas", "Replicas a shadow-evaluated policy would have chosen.", (*target, "policy"), registry=r)
        self.policy_latency = Histogram("kis_controller_policy_latency_seconds", "Time to compute one policy proposal.", ("policy",), buckets=POLICY_LATENCY_BUCKETS, registry=r)
        self.errors = Counter("kis_controller_errors", "Errors by kind.", ("kind",), registry=r)
        self.loop_duration = Histogram("kis_controller_loop_duration_seconds", "Duration of one reconcile tick over all autoscalers.", buckets=LOOP_DURATION_BUCKETS, registry=r)
        self.is_leader = Gauge("kis_controller_is_leader", "1 while this replica holds the leader lease.", registry=r)
        self.metrics_stale = Gauge("kis_controller_metrics_stale", "1 while the autoscaler's metrics are missing or stale.", target, registry=r)
        self.scale_events = Counter("kis_controller_scale_events", "Scale operations applied to targets.", (*target, "direction"), registry=r)
        self.autoscalers = Gauge("kis_controller_autoscalers", "InferenceAutoscalers watched.", registry=r)
        self.fallbacks = Counter("kis_controller_policy_fallbacks", "Decisions where a learned policy's proposal was replaced by "
                                 "its planner (out_of_range: features outside the training range; actor_error).", (*target, "reason"), registry=r)
        self.last_progress = Gauge("kis_controller_last_progress_seconds", "Unix time of the reconcile loop's last progress (a target reconciled, a tick, a standby's pass).", registry=r)
        self.interval = Gauge("kis_controller_interval_seconds", "The reconcile interval.", registry=r)
        stage = ("namespace", "pipeline", "stage")
        self.stage_decisions = Counter("kis_controller_pipeline_stage_decisions", "Decisions per pipeline stage, by final reason.", (*stage, "reason"), registry=r)
        self.stage_desired = Gauge("kis_controller_pipeline_stage_desired_replicas", "Replicas the last decision asked for the stage.", stage, registry=r)
        self.stage_current = Gauge("kis_controller_pipeline_stage_current_replicas", "Replicas of the stage when the last decision was made.", stage, registry=r)
        self.budget_cuts = Counter("kis_controller_pipeline_budget_cuts", "Stage decisions the pipeline's shared GPU budget cut.", stage, registry=r)
        self.pipeline_gpus = Gauge("kis_controller_pipeline_gpus", "GPUs of the pipeline's last decision: wanted by the stages, desired after the "
                                   "budget, and the budget.", ("namespace", "pipeline", "kind"), registry=r)
        for kind in ERROR_KINDS:
            self.errors.labels(kind=kind)  # export zeros so rate() works from the start
        self._lock = threading.Lock()
        self._owned: dict[tuple[str, str], set[tuple[object, tuple[str, ...]]]] = {}

    # -- per-autoscaler ------------------------------------------------------
    def observe_decision(self, namespace: str, name: str, record: DecisionRecord) -> None:
        """Count the decision and set the desired/current gauges from ``record``."""
        self._child(self.decisions, namespace, name, reason_code(record.reason)).inc()
        self._child(self.desired_replicas, namespace, name).set(record.final)
        self._child(self.current_replicas, namespace, name).set(record.current_replicas)
        if record.fallback is not None:
            self._child(self.fallbacks, namespace, name, record.fallback).inc()

    def observe_shadow(self, namespace: str, name: str, policy: str, replicas: int | None) -> None:
        """What ``policy`` would have chosen; ``None`` (no valid answer) drops the series."""
        if replicas is None:
            self._drop(self.shadow_replicas, namespace, name, policy)
        else:
            self._child(self.shadow_replicas, namespace, name, policy).set(replicas)

    def set_stale(self, namespace: str, name: str, stale: bool) -> None:
        self._child(self.metrics_stale, namespace, name).set(1 if stale else 0)

    def observe_scale_event(self, namespace: str, name: str, before: int, after: int) -> None:
        """Count a scale applied to the target (nothing when ``before == after``)."""
        if after != before:
            self._child(self.scale_events, namespace, name, "up" if after > before else "down").inc()

    # -- per pipeline ---------------------------------------------------------
    def observe_stage(self, namespace: str, pipeline: str, stage: str, record: DecisionRecord, budget_cut: bool) -> None:
        """One stage's decision (its final reason, desired and current replicas; whether the budget cut it)."""
        owner = _pipeline_owner(pipeline)
        self._child(self.stage_decisions, namespace, pipeline, stage, reason_code(record.reason), owner=owner).inc()
        self._child(self.stage_desired, namespace, pipeline, stage, owner=owner).set(record.final)
        self._child(self.stage_current, namespace, pipeline, stage, owner=owner).set(record.current_replicas)
        cuts = self._child(self.budget_cuts, namespace, pipeline, stage, owner=owner)
        if budget_cut:
            cuts.inc()

    def set_pipeline_gpus(self, namespace: str, pipeline: str, wanted: int, desired: int, budget: int | None) -> None:
        owner = _pipeline_owner(pipeline)
        self._child(self.pipeline_gpus, namespace, pipeline, "wanted", owner=owner).set(wanted)
        self._child(self.pipeline_gpus, namespace, pipeline, "desired", owner=owner).set(desired)
        if budget is None:
            self._drop(self.pipeline_gpus, namespace, pipeline, "budget", owner=owner)
        else:
            self._child(self.pipeline_gpus, namespace, pipeline, "budget", owner=owner).set(budget)

    def forget_pipeline(self, namespace: str, pipeline: str) -> None:
        """Remove every label set of the pipeline ``namespace/pipeline``."""
        self.forget(namespace, _pipeline_owner(pipeline))

    def forget(self, namespace: str, name: str) -> None:
        """Remove every label set of the autoscaler ``namespace/name``."""
        with self._lock:
            owned = self._owned.pop((namespace, name), set())
        for metric, labels in owned:
            metric.remove(*labels)  # type: ignore[attr-defined]

    # -- process-wide --------------------------------------------------------
    def observe_error(self, kind: str) -> None:
        """Count an error of ``kind`` (one of :data:`ERROR_KINDS`)."""
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r}; use one of {ERROR_KINDS}")
        self.errors.labels(kind=kind).inc()

    def observe_policy_latency(self, policy: str, seconds: float) -> None:
        self.policy_latency.labels(policy=policy).observe(seconds)

    @contextmanager
    def time_policy(self, policy: str) -> Iterator[None]:
        """Time the enclosed policy call into ``kis_controller_policy_latency_seconds``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe_policy_latency(policy, time.perf_counter() - start)

    def observe_loop(self, seconds: float) -> None:
        self.loop_duration.observe(seconds)

    @contextmanager
    def time_loop(self) -> Iterator[None]:
        """Time the enclosed reconcile tick into ``kis_controller_loop_duration_seconds``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe_loop(time.perf_counter() - start)

    def set_leader(self, leader: bool) -> None:
        self.is_leader.set(1 if leader else 0)

    def set_autoscalers(self, count: int) -> None:
        self.autoscalers.set(count)

    def bind_progress(self, last_progress_wall: Callable[[], float], interval_s: float) -> None:
        """Export the loop's last progress (read at scrape time from ``last_progress_wall``) and its interval."""
        self.last_progress.set_function(last_progress_wall)
        self.interval.set(interval_s)

    def exposition(self) -> tuple[bytes, str]:
        """The registry in the Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4

    # -- internals -----------------------------------------------------------
    def _child(self, metric: Counter | Gauge, namespace: str, name: str, *extra: str, owner: str | None = None):  # type: ignore[no-untyped-def]
        labels = (namespace, name, *extra)
        with self._lock:
            self._owned.setdefault((namespace, owner or name), set()).add((metric, labels))
        return metric.labels(*labels)

    def _drop(self, metric: Counter | Gauge, namespace: str, name: str, *extra: str, owner: str | None = None) -> None:
        labels = (namespace, name, *extra)
        with self._lock:
            self._owned.get((namespace, owner or name), set()).discard((metric, labels))
        try:
            metric.remove(*labels)
        except KeyError:
            pass


def _pipeline_owner(pipeline: str) -> str:
    """The key a pipeline's label sets are kept under (never an autoscaler's name: those have no ``/``)."""
    return f"pipeline/{pipeline}"
