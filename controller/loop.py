"""The reconcile loop: list autoscalers, read Prometheus once, decide, scale, report.

Each :meth:`Reconciler.tick` (time passed in):

1. list InferenceAutoscalers (all namespaces, or one) from the informer
   cache (:class:`controller.informer.KubeCache`; a LIST when there is none or
   it is not fresh); a malformed one gets the ``InvalidSpec`` condition and a
   Warning Event, and nothing is patched for it;
2. per autoscaler, build its policy, baseline and guardrails when its spec
   generation (or its learned artifact's version) changes, keeping the
   guardrail history; a learned policy whose artifact is missing, corrupt or
   of another observation schema falls back to the baseline with
   ``PolicyLoaded=False`` and the loader's message;
3. read each target Deployment (replicas, ready replicas, resourceVersion)
   from the cache; without a fresh cache, a GET each, or one LIST for a
   namespace holding at least ``list_threshold`` targets (1,000 GETs every
   15 s would be 67 requests a second against the API server); a LIST that
   fails falls back to the GETs;
4. read Prometheus for all targets in one batched call (unreachable: every
   snapshot is stale, so the stale-metrics rule holds or scales up, never
   down);
5. per target: snapshot (+ replicas desired/ready/starting, time of day) ->
   :func:`controller.autoscaling.decide` -> patch the Scale only when the
   value changes (not in shadow mode unless ``shadowApplyBaseline``, never in
   dry run, never once ``fence`` says this replica may no longer act) ->
   Event with the reason -> status (conditions, last decision) -> metrics.
   Replicas changed by someone else are logged and adopted; a write that
   finds them changed meanwhile (409, then a Scale with other replicas) is
   dropped, to be decided again next tick. Step 5 runs for ``workers``
   targets at a time (their writes overlap; the decisions stay per target).

One target's failure never stops the others: errors are caught per target
and counted by kind. The status is written only when it changed (besides the
decision time), so a steady state costs the API server no writes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from controller import signals as sig
from controller.autoscaling import Autoscaler, AutoscalerState, decide
from controller.decision import DecisionRecord
from controller.kube import KubeClient, KubeError, TargetMissing, TargetState
from controller.policies.learned import LearnedPolicy
from controller.policies.registry import build_policy
from controller.policy_store import ArtifactStore, Loaded, Source, source_of
from controller.prometheus import MetricsUnavailable, TargetQuery
from controller.spec import AutoscalerSpec, InvalidSpec, TargetSpec, parse_autoscaler

PIPELINE_WARN_PREFIX = "pipeline:"  # controller.pipeline_loop.WARN_PREFIX (that module builds on this one)

log = structlog.get_logger(__name__)
CONDITION_TYPES = ("Ready", "ScalingActive", "AbleToScale", "MetricsAvailable", "PolicyLoaded", "InvalidSpec")
Conditions = Mapping[str, tuple[str, str, str]]


class SnapshotReader(Protocol):
    """What the loop needs of :class:`controller.prometheus.PrometheusReader`."""

    def read(self, targets: Sequence[TargetQuery], *, time_s: float | None = None) -> dict[str, dict[str, float]]: ...


def iso(now_s: float) -> str:
    return dt.datetime.fromtimestamp(now_s, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> float:
    """An RFC 3339 time of the status (``-inf`` when absent or malformed)."""
    if not isinstance(value, str):
        return -math.inf
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        return -math.inf


def merge_conditions(old: Sequence[Mapping[str, Any]], updates: Conditions, now_s: float) -> list[dict[str, Any]]:
    """Conditions after ``updates`` (type -> (status, reason, message)); the transition time moves only when the status does."""
    by_type = {c["type"]: dict(c) for c in old if "type" in c}
    for kind, (status, reason, message) in updates.items():
        previous = by_type.get(kind)
        changed = previous is None or previous.get("status") != status
        by_type[kind] = {"type": kind, "status": status, "reason": reason, "message": message[:1024],
                         "lastTransitionTime": iso(now_s) if changed else previous.get("lastTransitionTime", iso(now_s))}
    return [by_type[t] for t in CONDITION_TYPES if t in by_type] + [c for t, c in by_type.items() if t not in CONDITION_TYPES]


def status_unchanged(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether writing ``new`` as a merge patch over ``old`` would change nothing but the decision time."""
    for key, value in new.items():
        before = old.get(key)
        if value is None:
            if before is not None:
                return False
        elif key == "lastDecision" and isinstance(before, Mapping):
            if {k: v for k, v in value.items() if k != "time"} != {k: v for k, v in before.items() if k != "time"}:
                return False
        elif before != value:
            return False
    return True


def target_signals(*autoscalers: Autoscaler | None) -> tuple[tuple[str, ...], dict[str, float]]:
    """The on-demand signals the autoscalers' policies read, and their windows."""
    policies = [p for a in autoscalers if a is not None for p in (a.policy, a.baseline) if p is not None]
    wants = tuple(dict.fromkeys([sig.REPLICAS_REPORTING] + [n for p in policies for n in sig.wanted_signals(p)]))
    windows: dict[str, float] = {}
    for policy in reversed(policies):  # the main policy's windows win
        windows.update(getattr(policy, "windows", {}) or {})
    return wants, windows


def target_snapshot(state: TargetState, raw: Mapping[str, float], now_s: float) -> dict[str, float]:
    """The metrics snapshot of one target: every signal read (NaN where absent), plus its replicas and the time of day."""
    snapshot = {name: raw.get(name, math.nan) for name in sig.ALL_SIGNAL_NAMES}
    snapshot[sig.REPLICAS_DESIRED] = float(state.replicas)
    snapshot[sig.REPLICAS_READY] = float(state.ready)
    snapshot[sig.REPLICAS_STARTING] = float(state.starting)
    snapshot[sig.TIME_OF_DAY_S] = now_s % 86400.0
    return snapshot


def target_query(key: str, target: Target) -> TargetQuery:
    """What Prometheus is asked for one target: its selector, overrides, windows and the signals its policies read."""
    spec = target.spec
    return TargetQuery(key, spec.selector(target.namespace), spec.metric_overrides(), spec.metrics.window_seconds,
                       spec.metrics.long_window_seconds, *target_signals(target.autoscaler, target.shadow))


def with_scale_time(state: AutoscalerState, last_scale_s: float) -> AutoscalerState:
    """``state`` with the guardrails' last scale event set to the one really applied."""
    if state.guard_state.last_scale_s == last_scale_s:
        return state
    return dataclasses.replace(state, guard_state=dataclasses.replace(state.guard_state, last_scale_s=last_scale_s))


@dataclass
class Target:
    """What the loop keeps per autoscaler (keyed by uid)."""

    namespace: str
    name: str
    generation: int
    spec: TargetSpec
    autoscaler: Autoscaler
    state: AutoscalerState
    policy_loaded: tuple[bool, str]
    artifact: tuple[Source, str] | None = None
    shadow: Autoscaler | None = None
    shadow_state: AutoscalerState | None = None
    last_desired: int | None = None
    last_scale_s: float = -math.inf
    fresh: bool = True  #: no decision yet in this process: the state is seeded from the status first

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class TickReport:
    """What one tick did, for logs and tests."""

    decisions: dict[str, DecisionRecord] = field(default_factory=dict)
    shadow: dict[str, DecisionRecord] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    patched: list[tuple[str, int]] = field(default_factory=list)
    status_writes: int = 0


class Reconciler:
    """Owns the per-target state; :meth:`tick` is one reconcile pass.

    :param kube: Kubernetes I/O.
    :param reader: Prometheus (or a fake with the same ``read``).
    :param metrics: a :class:`controller.telemetry.ControllerMetrics`, or ``None``.
    :param status: a :class:`controller.server.ControllerStatus`, or ``None``.
    :param namespace: only this namespace (``None``: all).
    :param interval_s: control interval, seconds (the policies' and guardrails' step).
    :param dry_run: decide and report, patch no Scale.
    :param artifact_cache: where ConfigMap artifacts are unpacked.
    :param artifact_refresh_s: how often an artifact source is looked at for a new version.
    :param list_threshold: targets in one namespace from which its Deployments are read with one LIST (without a cache).
    :param cache: informers of the autoscalers and Deployments (:class:`controller.informer.KubeCache`); ``None``: read the API server.
    :param workers: targets reconciled at a time (decide, write); 1: one after another.
    :param fence: asked before each target's writes; ``False`` (this replica lost the Lease) skips them.
    :param events: where Events go (:class:`controller.events.EventRecorder`: in the background); ``None``: ``kube``, in the tick.
    """

    def __init__(self, kube: KubeClient, reader: SnapshotReader, *, metrics: Any = None, status: Any = None,
                 namespace: str | None = None, interval_s: float = 15.0, dry_run: bool = False,
                 artifact_cache: Path | None = None, artifact_refresh_s: float = 60.0, list_threshold: int = 10,
                 cache: Any = None, workers: int = 1, fence: Callable[[], bool] | None = None, events: Any = None) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.kube, self.reader, self.metrics, self.status = kube, reader, metrics, status
        if list_threshold < 1:
            raise ValueError(f"list_threshold must be >= 1, got {list_threshold}")
        self.namespace, self.interval_s, self.dry_run, self.list_threshold = namespace, interval_s, dry_run, list_threshold
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.cache, self.workers, self.fence = cache, workers, fence
        self.events = events if events is not None else kube
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="reconcile") if workers > 1 else None
        self.targets: dict[str, Target] = {}
        self.artifacts = ArtifactStore(kube, artifact_cache or Path(tempfile.gettempdir()) / "kis-artifacts", artifact_refresh_s)
        self._warned: dict[tuple[str, str], str] = {}
        from controller.pipeline_loop import PipelineReconciler  # it builds on this module

        self.pipelines = PipelineReconciler(self)

    # ---------------------------------------------------------------- util
    def _error(self, report: TickReport, kind: str, message: str, **context: Any) -> None:
        report.errors.append((kind, message))
        if self.metrics is not None:
            self.metrics.observe_error(kind)
        log.warning("reconcile_error", kind=kind, error=message, **context)

    def _event(self, obj: Mapping[str, Any], reason: str, message: str, now_s: float, type_: str = "Normal") -> None:
        try:
            when = dt.datetime.fromtimestamp(now_s, dt.timezone.utc)
            self.events.emit_event(obj["metadata"]["namespace"], dict(obj), reason, message, type_, now=when)
        except KubeError as exc:
            log.warning("event_failed", reason=reason, error=str(exc))

    def _warn(self, obj: Mapping[str, Any], uid: str, reason: str, message: str, now_s: float) -> None:
        """A Warning Event, once per distinct message (no event storm while a problem lasts)."""
        if self._warned.get((uid, reason)) != message:
            self._warned[(uid, reason)] = message
            self._event(obj, reason, message, now_s, "Warning")

    def _resolved(self, uid: str, *reasons: str) -> None:
        for reason in reasons:
            self._warned.pop((uid, reason), None)

    # --------------------------------------------------------------- build
    def _build(self, obj: Mapping[str, Any], spec: AutoscalerSpec, loaded: Loaded | None, previous: Target | None,
               report: TickReport) -> Target:
        meta = obj["metadata"]
        return self.build_target(meta["namespace"], meta["name"], int(meta.get("generation", 1)), spec, loaded, previous, report)

    def build_target(self, namespace: str, name: str, generation: int, spec: TargetSpec, loaded: Loaded | None, previous: Target | None,
                     report: TickReport) -> Target:
        """The policy, baseline and guardrails of one scale target (an autoscaler's, or a pipeline stage's: ``name`` ``pipeline/stage``)."""
        mode = getattr(spec, "mode", "active")
        baseline = build_policy(spec.baseline_mapping())
        policy_loaded = (True, "policy ready")
        artifact = None
        if spec.policy.type == "learned":
            assert loaded is not None
            artifact = (source_of(namespace, spec.artifact_ref()), loaded.version)
            if loaded.artifact is not None:
                policy: Any = LearnedPolicy.from_artifact(loaded.artifact)
                policy_loaded = (True, f"learned policy loaded from {artifact[0][2]} (version {loaded.version})")
            else:
                policy = baseline
                policy_loaded = (False, f"{loaded.error}; falling back to the baseline ({baseline.name})")
                self._error(report, "policy_load", str(loaded.error), namespace=namespace, autoscaler=name)
        else:
            policy = build_policy(spec.policy_mapping())
        behavior, slo = spec.behavior_config(), spec.slo_config()
        capacity = spec.capacity.profile() if spec.capacity is not None else None
        if capacity is None and loaded is not None and loaded.artifact is not None:
            capacity = loaded.artifact.capacity  # the training cluster's, when the target gives none
        autoscaler = Autoscaler(policy, behavior, slo, self.interval_s, baseline=baseline, capacity=capacity,
                                cold_start_s=spec.cold_start_seconds)
        shadow = Autoscaler(baseline, behavior, slo, self.interval_s, capacity=capacity,
                            cold_start_s=spec.cold_start_seconds) if mode == "shadow" else None
        state, shadow_state = autoscaler.initial_state(), shadow.initial_state() if shadow else None
        target = Target(namespace, name, generation, spec, autoscaler, state, policy_loaded, artifact, shadow, shadow_state)
        if previous is not None:  # a new spec or artifact keeps the guardrails' history and what was last applied
            target.state = dataclasses.replace(state, guard_state=previous.state.guard_state)
            if shadow is not None:
                guard = (previous.shadow_state or previous.state).guard_state
                target.shadow_state = dataclasses.replace(shadow.initial_state(), guard_state=guard)
            target.last_desired, target.last_scale_s, target.fresh = previous.last_desired, previous.last_scale_s, previous.fresh
        log.info("autoscaler_configured", namespace=namespace, autoscaler=name, generation=target.generation, policy=policy.name,
                 policy_loaded=policy_loaded[0], mode=mode)
        return target

    # ---------------------------------------------------------------- tick
    def tick(self, now_s: float) -> TickReport:
        """One pass over every autoscaler at time ``now_s`` (Unix seconds)."""
        report = TickReport()
        started = time.perf_counter()
        try:
            objects = self._autoscalers()
        except KubeError as exc:
            self._error(report, exc.kind, str(exc))
            return report
        live: dict[str, tuple[Mapping[str, Any], Target]] = {}
        seen: set[str] = set()
        for obj in objects:
            meta = obj.get("metadata", {})
            uid = meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"
            seen.add(uid)
            try:
                spec = parse_autoscaler(obj)
                loaded = None
                if spec.policy.type == "learned":
                    loaded = self.artifacts.resolve(source_of(meta["namespace"], spec.artifact_ref()), now_s)
                target = self.targets.get(uid)
                version = loaded.version if loaded is not None else None
                if target is None or target.generation != int(meta.get("generation", 1)) or (target.artifact and target.artifact[1]) != version:
                    target = self._build(obj, spec, loaded, target, report)
                    self.targets[uid] = target
            except (InvalidSpec, ValueError) as exc:
                self.targets.pop(uid, None)
                self._invalid_spec(obj, uid, str(exc), now_s, report)
                continue
            self._resolved(uid, "InvalidSpec")
            live[uid] = (obj, target)
        self._prune(seen)
        pipelines = self.pipelines.configure(now_s, report)
        stages = self.pipelines.stage_targets(pipelines)
        self.artifacts.forget_unused({t.artifact[0] for _, t in [*live.values(), *stages.values()] if t.artifact})

        states = self._read_targets(live, now_s, report)
        stage_states = self._read_targets(stages, now_s, report, unreadable=self.pipelines.stage_unreadable)

        queries = [target_query(uid, t) for uid, (_, t) in [*live.items(), *stages.items()] if uid in states or uid in stage_states]
        snapshots: dict[str, dict[str, float]] = {}
        metrics_error = ""
        if queries:
            try:
                snapshots = self.reader.read(queries)
            except MetricsUnavailable as exc:
                metrics_error = str(exc)
                self._error(report, "prometheus", metrics_error)
        fenced: list[str] = []

        def reconcile(uid: str) -> None:
            obj, target = live[uid]
            if self.fence is not None and not self.fence():  # lost the Lease during this tick: no more writes
                fenced.append(target.key)
                return
            try:
                self._reconcile(obj, uid, target, states[uid], snapshots.get(uid, {}), metrics_error, now_s, report)
            except Exception as exc:  # one target never stops the others
                kind = exc.kind if isinstance(exc, KubeError) else "internal"
                self._error(report, kind, f"{type(exc).__name__}: {exc}", namespace=target.namespace, autoscaler=target.name)
            if self.status is not None:
                self.status.progress()  # liveness: a long tick that moves on is not a stalled one

        todo = [uid for uid in live if uid in states]
        if self._pool is None:
            for uid in todo:
                reconcile(uid)
        else:
            list(self._pool.map(reconcile, todo))
            order = {live[uid][1].key: i for i, uid in enumerate(todo)}
            report.patched.sort(key=lambda item: order.get(item[0], 0))
        for uid in pipelines:
            if self.fence is not None and not self.fence():
                fenced.append(pipelines[uid][1].key)
                continue
            try:
                self.pipelines.reconcile(uid, pipelines[uid], stage_states, snapshots, metrics_error, now_s, report)
            except Exception as exc:  # one pipeline never stops the others
                kind = exc.kind if isinstance(exc, KubeError) else "internal"
                self._error(report, kind, f"{type(exc).__name__}: {exc}", namespace=pipelines[uid][1].namespace, pipeline=pipelines[uid][1].name)
        if fenced:
            self._error(report, "not_leader", f"this replica no longer holds the leader Lease; {len(fenced)} autoscalers left to the new leader")
        if self.metrics is not None:
            self.metrics.set_autoscalers(len(seen))
            self.metrics.observe_loop(time.perf_counter() - started)
        if self.status is not None:
            self.status.tick_completed()
        return report

    def _autoscalers(self) -> list[dict[str, Any]]:
        """The InferenceAutoscalers to reconcile: from the cache when it is fresh, else one LIST."""
        if self.cache is not None and self.cache.autoscalers.fresh():
            return self.cache.autoscalers.items()
        return self.kube.list_autoscalers(self.namespace)

    def _read_targets(self, live: Mapping[str, tuple[Mapping[str, Any], Target]], now_s: float, report: TickReport,
                      unreadable: Callable[..., None] | None = None) -> dict[str, TargetState]:
        """Each live target's Deployment state; an unreadable target is reported (``unreadable``, default
        :meth:`_target_unreadable`) and left out."""
        unreadable = unreadable or self._target_unreadable
        by_namespace: dict[str, list[str]] = {}
        for uid, (_, target) in live.items():
            by_namespace.setdefault(target.namespace, []).append(uid)
        states: dict[str, TargetState] = {}
        cached = self.cache is not None and self.cache.deployments.fresh()
        for namespace, uids in by_namespace.items():
            listed = None
            if cached:
                listed = self.cache.deployments.in_namespace(namespace)  # type: ignore[union-attr]
            elif len(uids) >= self.list_threshold:
                try:
                    listed = self.kube.list_targets(namespace)
                except KubeError as exc:
                    self._error(report, exc.kind, f"{exc}; reading the targets one by one", namespace=namespace)
            for uid in uids:
                obj, target = live[uid]
                name = target.spec.scale_target_ref.name
                try:
                    if listed is None:
                        states[uid] = self.kube.read_target(namespace, name)
                    elif name in listed:
                        states[uid] = listed[name]
                    else:
                        raise TargetMissing(f"read deployment {namespace}/{name}: not found")
                except KubeError as exc:
                    unreadable(obj, uid, target, exc, now_s, report)
        return states

    def _prune(self, seen: set[str]) -> None:
        """Forget autoscalers that went away: their state, metrics, decisions and warnings."""
        for uid in [u for u in self.targets if u not in seen]:
            gone = self.targets.pop(uid)
            if self.metrics is not None:
                self.metrics.forget(gone.namespace, gone.name)
            if self.status is not None:
                self.status.forget(gone.namespace, gone.name)
            log.info("autoscaler_removed", namespace=gone.namespace, autoscaler=gone.name)
        for key in [k for k in self._warned if k[0] not in seen and not k[0].startswith(PIPELINE_WARN_PREFIX)]:  # a pipeline's: its own prune
            self._warned.pop(key)

    # ------------------------------------------------------- failure paths
    def _invalid_spec(self, obj: Mapping[str, Any], uid: str, message: str, now_s: float, report: TickReport,
                      patch: Callable[[str, str, dict[str, Any]], None] | None = None) -> None:
        meta = obj.get("metadata", {})
        self._error(report, "invalid_spec", message, namespace=meta.get("namespace"), autoscaler=meta.get("name"))
        if "namespace" not in meta or "name" not in meta:
            return
        self._warn(obj, uid, "InvalidSpec", message, now_s)
        updates = {"InvalidSpec": ("True", "InvalidSpec", message), "Ready": ("False", "InvalidSpec", message),
                   "ScalingActive": ("False", "InvalidSpec", "nothing is scaled until the spec is fixed")}
        self._write_status(obj, meta["namespace"], meta["name"], {"observedGeneration": int(meta.get("generation", 1))}, updates, now_s, report,
                           patch)

    def _target_unreadable(self, obj: Mapping[str, Any], uid: str, target: Target, exc: KubeError, now_s: float, report: TickReport) -> None:
        self._error(report, exc.kind, str(exc), namespace=target.namespace, autoscaler=target.name)
        reason = "TargetMissing" if isinstance(exc, TargetMissing) else "FailedGetScale"
        message = f"deployment {target.namespace}/{target.spec.scale_target_ref.name}: " + (
            "not found" if isinstance(exc, TargetMissing) else str(exc))
        self._warn(obj, uid, reason, message, now_s)
        updates = {"AbleToScale": ("False", reason, message), "Ready": ("False", reason, message), "InvalidSpec": ("False", "Valid", "spec is valid")}
        self._write_status(obj, target.namespace, target.name, {"observedGeneration": target.generation}, updates, now_s, report)

    # ---------------------------------------------------------- reconcile
    def _reconcile(self, obj: Mapping[str, Any], uid: str, target: Target, current_state: TargetState, raw: Mapping[str, float],
                   metrics_error: str, now_s: float, report: TickReport) -> None:
        self._resolved(uid, "TargetMissing", "FailedGetScale")
        current = current_state.replicas
        if target.last_desired is not None and current != target.last_desired:
            message = f"replicas changed outside the autoscaler: {target.last_desired} -> {current}; adopting {current}"
            log.info("external_scale", namespace=target.namespace, autoscaler=target.name, expected=target.last_desired, found=current)
            self._event(obj, "ExternalScale", message, now_s)
        if target.fresh:
            self._seed(obj, target, current, now_s)
        snapshot = target_snapshot(current_state, raw, now_s)

        record, state = self._decide(target.autoscaler, snapshot, now_s, current, target.state)
        report.decisions[target.key] = record
        shadow_record = None
        if target.shadow is not None and target.shadow_state is not None:
            shadow_record, target.shadow_state = self._decide(target.shadow, snapshot, now_s, current, target.shadow_state)
            report.shadow[target.key] = shadow_record

        if target.spec.mode == "active":
            acted = record
        elif target.spec.shadow_apply_baseline and shadow_record is not None:
            acted = shadow_record
        else:
            acted = dataclasses.replace(record, final=current, reason=f"ShadowMode: not applied ({record.reason})")
        target.state = state
        scaled, scale_error = self.apply(obj, target, acted, current_state, now_s, report)
        desired = acted.final

        if self.metrics is not None:
            self.metrics.observe_decision(target.namespace, target.name, acted)
            self.metrics.set_stale(target.namespace, target.name, record.stale)
            if scaled:
                self.metrics.observe_scale_event(target.namespace, target.name, current, desired)
            if shadow_record is not None:
                self.metrics.observe_shadow(target.namespace, target.name, target.autoscaler.policy.name, record.final)
                self.metrics.observe_shadow(target.namespace, target.name, "baseline", shadow_record.final)
        if self.status is not None:
            self.status.record_decision(target.namespace, target.name, record)
        self._report_status(obj, target, record, shadow_record, current, desired, scaled, scale_error, metrics_error, now_s, report)

    def apply(self, obj: Mapping[str, Any], target: Target, acted: DecisionRecord, current_state: TargetState, now_s: float,
              report: TickReport) -> tuple[bool, str]:
        """Patch the target's Scale to ``acted.final`` when it changes (never in dry run), with its Event; then the
        guardrails' state learns the scale time really applied. Returns (scaled, the write's error or "")."""
        current, desired = current_state.replicas, acted.final
        scaled, scale_error = False, ""
        # a pipeline's Events are on the pipeline: they name the stage's Deployment
        where = f"deployment {target.spec.scale_target_ref.name}: " if "/" in target.name else ""
        if desired != current and not self.dry_run:
            try:
                self.kube.patch_scale(target.namespace, target.spec.scale_target_ref.name, desired, current_state.resource_version,
                                      expected_replicas=current)
                scaled = True
            except KubeError as exc:
                scale_error = str(exc)
                self._error(report, exc.kind, scale_error, namespace=target.namespace, autoscaler=target.name)
                self._event(obj, "FailedRescale", f"{where}New size: {desired}; reason: {acted.reason}; error: {scale_error}", now_s, "Warning")
        if scaled:
            target.last_scale_s = now_s
            report.patched.append((target.key, desired))
            self._event(obj, "SuccessfulRescale", f"{where}New size: {desired} (was {current}); reason: {acted.reason}", now_s)
            log.info("scaled", namespace=target.namespace, autoscaler=target.name, before=current, after=desired, reason=acted.reason)
        # The guardrails' cooldown counts from scale events that happened, not from decisions that were not applied.
        target.state = with_scale_time(target.state, target.last_scale_s)
        if target.shadow_state is not None:
            target.shadow_state = with_scale_time(target.shadow_state, target.last_scale_s)
        target.last_desired = desired if scaled else current
        return scaled, scale_error

    def _seed(self, obj: Mapping[str, Any], target: Target, current: int, now_s: float) -> None:
        """After a (re)start or a change of leader: rebuild the policy and guardrail state from the
        target's replicas and the history in the autoscaler's status, so no replica is shed."""
        status = obj.get("status") or {}
        self.seed(target, status.get("history"), parse_time(status.get("lastScaleTime")), current, now_s)

    def seed(self, target: Target, history: Any, last_scale: float, current: int, now_s: float) -> None:
        """Seed ``target`` from its status ``history`` (``main``, ``shadow``) and last scale time."""
        history = history if isinstance(history, Mapping) else {}
        target.state = target.autoscaler.restored_state(history.get("main"), now_s, current, last_scale)
        if target.shadow is not None:
            target.shadow_state = target.shadow.restored_state(history.get("shadow"), now_s, current, last_scale)
        target.last_scale_s = max(target.last_scale_s, last_scale)
        target.fresh = False
        log.info("state_seeded", namespace=target.namespace, autoscaler=target.name, replicas=current, history=dict(history))

    def _decide(self, autoscaler: Autoscaler, snapshot: Mapping[str, float], now_s: float, current: int,
                state: AutoscalerState) -> tuple[DecisionRecord, AutoscalerState]:
        started = time.perf_counter()
        result = decide(autoscaler, snapshot, now_s, current, state)
        if self.metrics is not None:
            self.metrics.observe_policy_latency(autoscaler.policy.name, time.perf_counter() - started)
        return result

    def _report_status(self, obj: Mapping[str, Any], target: Target, record: DecisionRecord, shadow_record: DecisionRecord | None,
                       current: int, desired: int, scaled: bool, scale_error: str, metrics_error: str, now_s: float,
                       report: TickReport) -> None:
        loaded, loaded_message = target.policy_loaded
        if target.spec.mode == "shadow":
            active = ("True", "ShadowApplyingBaseline", "shadow mode: the baseline's decisions are applied") if target.spec.shadow_apply_baseline \
                else ("False", "ShadowMode", "shadow mode: decisions are computed, not applied")
        elif self.dry_run:
            active = ("False", "DryRun", "dry run: decisions are computed, not applied")
        elif record.stale:
            active = ("False", "StaleMetrics", record.reason)
        else:
            active = ("True", "ValidDecision", record.reason)
        updates = {
            "InvalidSpec": ("False", "Valid", "spec is valid"),
            "AbleToScale": ("False", "FailedUpdateScale", scale_error) if scale_error else
                           ("True", "SucceededRescale" if scaled else "ReadyForNewScale", "the scale subresource is writable"),
            "MetricsAvailable": ("True", "MetricsRead", "serving metrics read") if not record.stale else
                                ("False", "StaleMetrics", metrics_error or "required serving signals are missing or not finite"),
            "PolicyLoaded": ("True", "PolicyReady", loaded_message) if loaded else ("False", "FallbackToBaseline", loaded_message),
            "ScalingActive": active,
            "Ready": ("True", "Reconciled", record.reason) if not scale_error else ("False", "FailedUpdateScale", scale_error),
        }
        fields: dict[str, Any] = {
            "observedGeneration": target.generation,
            "currentReplicas": current,
            "desiredReplicas": desired,
            "lastDecision": {"time": iso(record.time_s), "policy": record.policy, "proposal": record.proposal, "final": record.final,
                             "reason": record.reason, "steps": [f"{s.guard}: {s.before} -> {s.after} ({s.reason})" for s in record.steps],
                             "stale": record.stale},
            # shadow mode: the main (usually learned) policy's decision next to the baseline's, both through the guardrails
            "shadow": {"learned": record.final, "baseline": shadow_record.final} if shadow_record is not None else None,
            "history": {"main": target.autoscaler.history(target.state),
                        **({"shadow": target.shadow.history(target.shadow_state)} if target.shadow and target.shadow_state else {})},
        }
        if target.last_scale_s > -math.inf:
            fields["lastScaleTime"] = iso(target.last_scale_s)
        self._write_status(obj, target.namespace, target.name, fields, updates, now_s, report)

    def _write_status(self, obj: Mapping[str, Any], namespace: str, name: str, fields: dict[str, Any], updates: Conditions,
                      now_s: float, report: TickReport, patch: Callable[[str, str, dict[str, Any]], None] | None = None) -> None:
        """Merge-patch the status (``patch``: default the InferenceAutoscaler's), only when it changed."""
        old = obj.get("status") or {}
        status = {**fields, "conditions": merge_conditions(old.get("conditions", []), updates, now_s)}
        if status_unchanged(old, status):
            return
        try:
            (patch or self.kube.patch_status)(namespace, name, status)
            report.status_writes += 1
        except KubeError as exc:
            self._error(report, exc.kind, str(exc), namespace=namespace, autoscaler=name)
