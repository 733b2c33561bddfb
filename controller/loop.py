"""The reconcile loop: list autoscalers, read Prometheus once, decide, scale, report.

Each :meth:`Reconciler.tick` (time passed in):

1. list InferenceAutoscalers; a malformed one gets the ``InvalidSpec``
   condition and an Event, and nothing is patched for it;
2. build (per spec generation) each target's policy, baseline and guardrails;
   a learned policy whose artifact is missing, corrupt or of another schema
   falls back to the baseline with ``PolicyLoaded=False``;
3. read every target's Scale and Deployment status;
4. read Prometheus for all targets in one batched call (unreachable:
   every snapshot is stale, so the stale-metrics rule holds or scales up);
5. per target: snapshot -> :func:`controller.autoscaling.decide` -> patch the
   Scale only when the value changes (not in shadow mode, not in dry run),
   Event with the reason, status (conditions, last decision), metrics.

One target's failure never stops the others: errors are caught per target
and counted by kind.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from controller import signals as sig
from controller.artifact import ArtifactError, load_artifact
from controller.autoscaling import Autoscaler, AutoscalerState, decide
from controller.decision import DecisionRecord
from controller.kube import KubeClient, KubeError, TargetMissing
from controller.policies.learned import LearnedPolicy
from controller.policies.registry import build_policy
from controller.prometheus import MetricsUnavailable, TargetQuery
from controller.spec import AutoscalerSpec, InvalidSpec, parse_autoscaler

log = structlog.get_logger(__name__)
CONDITION_TYPES = ("Ready", "ScalingActive", "AbleToScale", "MetricsAvailable", "PolicyLoaded", "InvalidSpec")


class SnapshotReader(Protocol):
    def read(self, targets: Sequence[TargetQuery], *, time_s: float | None = None) -> dict[str, dict[str, float]]: ...


def iso(now_s: float) -> str:
    return dt.datetime.fromtimestamp(now_s, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(old: Sequence[Mapping[str, Any]], updates: Mapping[str, tuple[str, str, str]], now_s: float) -> list[dict[str, Any]]:
    """Conditions after ``updates`` (type -> (status, reason, message)); the transition time moves only when the status does."""
    by_type = {c["type"]: dict(c) for c in old if "type" in c}
    for kind, (status, reason, message) in updates.items():
        previous = by_type.get(kind)
        changed = previous is None or previous.get("status") != status
        by_type[kind] = {"type": kind, "status": status, "reason": reason, "message": message[:1024],
                         "lastTransitionTime": iso(now_s) if changed else previous.get("lastTransitionTime", iso(now_s))}
    return [by_type[t] for t in CONDITION_TYPES if t in by_type] + [c for t, c in by_type.items() if t not in CONDITION_TYPES]


@dataclass
class Target:
    """What the loop keeps per autoscaler (keyed by uid)."""

    namespace: str
    name: str
    generation: int
    spec: AutoscalerSpec
    autoscaler: Autoscaler
    state: AutoscalerState
    policy_loaded: tuple[bool, str]
    last_desired: int | None = None
    last_scale_time: str | None = None


@dataclass
class TickReport:
    decisions: dict[str, DecisionRecord] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    patched: list[tuple[str, int]] = field(default_factory=list)


class Reconciler:
    """Owns the per-target state; :meth:`tick` is one reconcile pass."""

    def __init__(self, kube: KubeClient, reader: SnapshotReader, *, metrics: Any = None, status: Any = None,
                 namespace: str | None = None, interval_s: float = 15.0, dry_run: bool = False, artifact_cache: Path | None = None) -> None:
        self.kube, self.reader, self.metrics, self.status = kube, reader, metrics, status
        self.namespace, self.interval_s, self.dry_run = namespace, interval_s, dry_run
        self.targets: dict[str, Target] = {}
        self._invalid: dict[str, str] = {}
        self._artifact_cache = artifact_cache or Path(tempfile.gettempdir()) / "kis-artifacts"

    # ---------------------------------------------------------------- util
    def _error(self, report: TickReport, kind: str, message: str, **context: Any) -> None:
        report.errors.append((kind, message))
        if self.metrics is not None:
            self.metrics.observe_error(kind)
        log.warning("reconcile_error", kind=kind, error=message, **context)

    def _event(self, obj: Mapping[str, Any], reason: str, message: str, type_: str = "Normal") -> None:
        try:
            self.kube.emit_event(obj["metadata"]["namespace"], dict(obj), reason, message, type_)
        except KubeError as exc:
            log.warning("event_failed", reason=reason, error=str(exc))

    def _artifact_path(self, namespace: str, spec: AutoscalerSpec) -> Path:
        ref = spec.policy.artifact
        assert ref is not None
        if ref.path:
            return Path(ref.path)
        name = ref.config_map["name"]  # type: ignore[index]
        files = self.kube.read_config_map_files(namespace, name)
        folder = self._artifact_cache / namespace / name
        folder.mkdir(parents=True, exist_ok=True)
        for file_name, content in files.items():
            (folder / file_name).write_bytes(content)
        return folder

    def _build(self, obj: Mapping[str, Any], spec: AutoscalerSpec) -> Target:
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        baseline = build_policy(spec.baseline_mapping())
        loaded = (True, "policy ready")
        if spec.policy.type == "learned":
            try:
                policy: Any = LearnedPolicy(load_artifact(self._artifact_path(namespace, spec)))
            except (ArtifactError, KubeError, OSError) as exc:
                policy, loaded = baseline, (False, f"{exc}; falling back to the baseline ({baseline.name})")
        else:
            policy = build_policy(spec.policy_mapping())
        autoscaler = Autoscaler(policy, spec.behavior_config(), spec.slo_config(), self.interval_s, baseline=baseline)
        return Target(namespace, name, int(meta.get("generation", 1)), spec, autoscaler, autoscaler.initial_state(), loaded)

    # ---------------------------------------------------------------- tick
    def tick(self, now_s: float | None = None) -> TickReport:
        now_s = time.time() if now_s is None else now_s
        report = TickReport()
        started = time.perf_counter()
        try:
            objects = self.kube.list_autoscalers(self.namespace)
        except KubeError as exc:
            self._error(report, exc.kind, str(exc))
            return report
        live: dict[str, tuple[Mapping[str, Any], Target]] = {}
        for obj in objects:
            meta = obj.get("metadata", {})
            uid = meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"
            try:
                spec = parse_autoscaler(obj)
            except InvalidSpec as exc:
                self._invalid_spec(obj, uid, str(exc), now_s, report)
                continue
            self._invalid.pop(uid, None)
            target = self.targets.get(uid)
            if target is None or target.generation != int(meta.get("generation", 1)):
                try:
                    target = self._build(obj, spec)
                except (ValueError, KubeError) as exc:
                    self._invalid_spec(obj, uid, str(exc), now_s, report)
                    continue
                self.targets[uid] = target
            live[uid] = (obj, target)
        for uid in [u for u in self.targets if u not in live]:
            gone = self.targets.pop(uid)
            if self.metrics is not None:
                self.metrics.forget(gone.namespace, gone.name)
            if self.status is not None:
                self.status.forget(gone.namespace, gone.name)
        scales: dict[str, tuple[Any, Any]] = {}
        for uid, (obj, target) in live.items():
            ref = target.spec.scale_target_ref.name
            try:
                scales[uid] = (self.kube.read_scale(target.namespace, ref), self.kube.read_deployment(target.namespace, ref))
            except KubeError as exc:
                self._error(report, exc.kind, str(exc), namespace=target.namespace, autoscaler=target.name)
                self._patch_status(obj, target, now_s, {"AbleToScale": ("False", "TargetMissing" if isinstance(exc, TargetMissing) else "KubernetesError", str(exc)),
                                                       "Ready": ("False", "TargetUnavailable", str(exc))}, None, report)
                if isinstance(exc, TargetMissing):
                    self._event(obj, "TargetMissing", str(exc), "Warning")
        queries = [TargetQuery(uid, t.spec.selector(t.namespace), t.spec.metrics.overrides, t.spec.metrics.window_seconds, t.spec.metrics.long_window_seconds)
                   for uid, (_, t) in live.items() if uid in scales]
        snapshots: dict[str, dict[str, float]] = {}
        metrics_error = ""
        if queries:
            try:
                snapshots = self.reader.read(queries)
            except MetricsUnavailable as exc:
                metrics_error = str(exc)
                self._error(report, "prometheus", metrics_error)
        for uid, (obj, target) in live.items():
            if uid not in scales:
                continue
            try:
                self._reconcile(obj, target, scales[uid], snapshots.get(uid, {}), metrics_error, now_s, report)
            except Exception as exc:  # one target never stops the others
                kind = exc.kind if isinstance(exc, KubeError) else "internal"
                self._error(report, kind, f"{type(exc).__name__}: {exc}", namespace=target.namespace, autoscaler=target.name)
        if self.metrics is not None:
            self.metrics.set_autoscalers(len(live))
            self.metrics.observe_loop(time.perf_counter() - started)
        if self.status is not None:
            self.status.tick_completed()
        return report

    def _invalid_spec(self, obj: Mapping[str, Any], uid: str, message: str, now_s: float, report: TickReport) -> None:
        self._error(report, "invalid_spec", message, namespace=obj.get("metadata", {}).get("namespace"), autoscaler=obj.get("metadata", {}).get("name"))
        if self._invalid.get(uid) == message:
            return  # already reported; no event storm
        self._invalid[uid] = message
        self._event(obj, "InvalidSpec", message, "Warning")
        conditions = merge_conditions((obj.get("status") or {}).get("conditions", []), {"InvalidSpec": ("True", "InvalidSpec", message), "Ready": ("False", "InvalidSpec", message)}, now_s)
        try:
            self.kube.patch_status(obj["metadata"]["namespace"], obj["metadata"]["name"], {"conditions": conditions, "observedGeneration": obj["metadata"].get("generation", 1)})
        except KubeError as exc:
            self._error(report, exc.kind, str(exc))

    def _reconcile(self, obj: Mapping[str, Any], target: Target, scale_state: tuple[Any, Any], raw: Mapping[str, float],
                   metrics_error: str, now_s: float, report: TickReport) -> None:
        scale, deployment = scale_state
        current = scale.replicas
        if target.last_desired is not None and current != target.last_desired:
            log.info("external_scale", namespace=target.namespace, autoscaler=target.name, expected=target.last_desired, found=current)
            self._event(obj, "ExternalScale", f"replicas changed outside the autoscaler: {target.last_desired} -> {current}; adopting")
        snapshot = {name: raw.get(name, math.nan) for name in sig.SIGNAL_NAMES}
        snapshot[sig.REPLICAS_DESIRED] = float(current)
        snapshot[sig.REPLICAS_READY] = float(deployment.ready)
        snapshot[sig.REPLICAS_STARTING] = float(max(0, deployment.replicas - deployment.ready))
        snapshot[sig.TIME_OF_DAY_S] = now_s % 86400.0
        started = time.perf_counter()
        record, target.state = decide(target.autoscaler, snapshot, now_s, current, target.state)
        if self.metrics is not None:
            self.metrics.observe_policy_latency(target.autoscaler.policy.name, time.perf_counter() - started)
        report.decisions[f"{target.namespace}/{target.name}"] = record
        apply = record.final
        shadow = target.spec.mode == "shadow"
        if shadow:
            apply = current
            if target.spec.shadow_apply_baseline and record.baseline is not None:
                behavior = target.autoscaler.behavior
                apply = min(max(record.baseline, behavior.min_replicas), behavior.max_replicas)
        scaled = False
        if apply != current and not self.dry_run:
            self.kube.patch_scale(target.namespace, target.spec.scale_target_ref.name, apply, scale.resource_version)
            scaled = True
            report.patched.append((f"{target.namespace}/{target.name}", apply))
            target.last_scale_time = iso(now_s)
            self._event(obj, "Scaled", f"{current} -> {apply}: {record.reason}")
            if self.metrics is not None:
                self.metrics.observe_scale_event(target.namespace, target.name, current, apply)
        target.last_desired = apply if scaled else current
        if self.metrics is not None:
            self.metrics.observe_decision(target.namespace, target.name, record)
            self.metrics.set_stale(target.namespace, target.name, record.stale)
            if shadow:
                self.metrics.observe_shadow(target.namespace, target.name, target.autoscaler.policy.name, record.final)
                self.metrics.observe_shadow(target.namespace, target.name, "baseline", record.baseline)
        if self.status is not None:
            self.status.record_decision(target.namespace, target.name, record)
        metrics_ok = not record.stale
        loaded, loaded_message = target.policy_loaded
        updates = {
            "InvalidSpec": ("False", "Valid", "spec is valid"),
            "AbleToScale": ("True", "SucceededRescale" if scaled else "ReadyForNewScale", "the scale subresource is writable"),
            "MetricsAvailable": ("True", "MetricsRead", "serving metrics read") if metrics_ok else ("False", "StaleMetrics", metrics_error or "required signals missing or not finite"),
            "PolicyLoaded": ("True", "PolicyReady", loaded_message) if loaded else ("False", "FallbackToBaseline", loaded_message),
            "ScalingActive": ("False", "ShadowMode", "shadow mode: decisions are computed, not applied") if shadow else
                             ("False", "DryRun", "dry run") if self.dry_run else ("True", "ValidDecision", record.reason),
            "Ready": ("True", "Reconciled", record.reason),
        }
        self._patch_status(obj, target, now_s, updates, record, report, desired=apply)

    def _patch_status(self, obj: Mapping[str, Any], target: Target, now_s: float, updates: Mapping[str, tuple[str, str, str]],
                      record: DecisionRecord | None, report: TickReport, desired: int | None = None) -> None:
        status: dict[str, Any] = {
            "observedGeneration": int(obj["metadata"].get("generation", 1)),
            "conditions": merge_conditions((obj.get("status") or {}).get("conditions", []), updates, now_s),
        }
        if record is not None:
            status |= {
                "currentReplicas": record.current_replicas,
                "desiredReplicas": desired if desired is not None else record.final,
                "lastDecision": {"time": iso(record.time_s), "policy": record.policy, "proposal": record.proposal, "final": record.final,
                                 "reason": record.reason, "steps": [f"{s.guard}: {s.before} -> {s.after} ({s.reason})" for s in record.steps],
                                 "stale": record.stale},
            }
            if target.spec.mode == "shadow":
                status["shadow"] = {"learned": record.final, "baseline": record.baseline}
        if target.last_scale_time:
            status["lastScaleTime"] = target.last_scale_time
        try:
            self.kube.patch_status(target.namespace, target.name, status)
        except KubeError as exc:
            self._error(report, exc.kind, str(exc), namespace=target.namespace, autoscaler=target.name)

