"""The reconcile loop's pipelines: InferencePipelineAutoscalers, their stages scaled jointly.

Each :meth:`controller.loop.Reconciler.tick` also, through :class:`PipelineReconciler`:

1. reads the InferencePipelineAutoscalers from the informer cache (a LIST
   when it is not fresh; their CRD not installed: none, said once in the log);
   a malformed one gets the ``InvalidSpec`` condition and a Warning Event, and
   the other pipelines and autoscalers are served as usual;
2. builds each stage as a scale target of the loop
   (:meth:`~controller.loop.Reconciler.build_target`: policy, baseline,
   guardrails, learned artifact), named ``<pipeline>/<stage>``;
3. reads the stages' Deployments and Prometheus with the autoscalers' targets
   (the same batched read; each stage through its own selector, default
   ``{namespace, deployment}``, and its own overrides);
4. decides the stages jointly with :func:`controller.pipeline.decide_pipeline`
   (each stage's ``decide``, then the shared GPU budget), patches each stage's
   Scale that changes (:meth:`~controller.loop.Reconciler.apply`), and writes
   the pipeline's status: per stage its replicas, last decision and history,
   the GPUs wanted and desired, and the conditions (``BudgetLimited`` when
   the budget cut a stage). A stage whose Deployment cannot be read holds the
   whole pipeline this tick: the budget is shared, so no stage is decided
   without the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from controller.kube import KubeError, TargetMissing, TargetState
from controller.loop import PIPELINE_WARN_PREFIX, Reconciler, Target, TickReport, iso, parse_time, target_snapshot
from controller.pipeline import BUDGET_GUARD, PipelineStage, decide_pipeline, gpus
from controller.pipeline_spec import PIPELINE_KIND, PipelineSpec, parse_pipeline, stage_key
from controller.policy_store import Loaded, source_of
from controller.spec import InvalidSpec

log = structlog.get_logger(__name__)
#: Prefix of a pipeline's key among the loop's warnings (an autoscaler's uid never has it).
WARN_PREFIX = PIPELINE_WARN_PREFIX


@dataclass
class PipelineTarget:
    """What the loop keeps per pipeline (keyed by uid): its spec and one loop target per stage, in order."""

    namespace: str
    name: str
    generation: int
    spec: PipelineSpec
    stages: dict[str, Target]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def last_decision(record: Any) -> dict[str, Any]:
    """A stage's decision as its status shows it (the time is the pipeline's ``lastDecision.time``)."""
    return {"policy": record.policy, "proposal": record.proposal, "final": record.final, "reason": record.reason,
            "steps": [f"{s.guard}: {s.before} -> {s.after} ({s.reason})" for s in record.steps], "stale": record.stale}


class PipelineReconciler:
    """The pipelines' part of a tick (module docstring); uses its :class:`~controller.loop.Reconciler`'s I/O and helpers."""

    def __init__(self, owner: Reconciler) -> None:
        self.owner = owner
        self.pipelines: dict[str, PipelineTarget] = {}
        self._crd_missing = False

    # ---------------------------------------------------------- configure
    def configure(self, now_s: float, report: TickReport) -> dict[str, tuple[Mapping[str, Any], PipelineTarget]]:
        """The live pipelines of this tick, each built (again) when its generation or an artifact changed."""
        r = self.owner
        try:
            fresh = r.cache is not None and getattr(r.cache, "pipelines", None) is not None and r.cache.pipelines.fresh()
            objects = r.cache.pipelines.items() if fresh else r.kube.list_pipelines(r.namespace)
        except TargetMissing:
            if not self._crd_missing:
                log.info("pipelines_unavailable", reason="the InferencePipelineAutoscaler CRD is not installed")
            self._crd_missing = True
            self._prune(set())
            return {}
        except KubeError as exc:
            r._error(report, exc.kind, str(exc))
            return {}
        self._crd_missing = False
        live: dict[str, tuple[Mapping[str, Any], PipelineTarget]] = {}
        for obj in objects:
            obj = {**obj, "kind": PIPELINE_KIND}
            meta = obj.get("metadata", {})
            uid = WARN_PREFIX + self._uid(obj)
            try:
                spec = parse_pipeline(obj)
                loaded = {s.name: r.artifacts.resolve(source_of(meta["namespace"], s.artifact_ref()), now_s)
                          for s in spec.stages if s.policy.type == "learned"}
                pipeline = self.pipelines.get(uid)
                if pipeline is None or pipeline.generation != int(meta.get("generation", 1)) or self._versions(pipeline) != {
                        k: v.version for k, v in loaded.items()}:
                    pipeline = self._build(obj, spec, loaded, pipeline, report)
                    self.pipelines[uid] = pipeline
            except (InvalidSpec, ValueError) as exc:
                self.pipelines.pop(uid, None)
                r._invalid_spec(obj, uid, str(exc), now_s, report, patch=r.kube.patch_pipeline_status)
                continue
            r._resolved(uid, "InvalidSpec")
            live[uid] = (obj, pipeline)
        self._prune({WARN_PREFIX + self._uid(o) for o in objects})
        return live

    @staticmethod
    def _uid(obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata", {})
        return meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"

    @staticmethod
    def _versions(pipeline: PipelineTarget) -> dict[str, str]:
        return {name: t.artifact[1] for name, t in pipeline.stages.items() if t.artifact}

    def _build(self, obj: Mapping[str, Any], spec: PipelineSpec, loaded: Mapping[str, Loaded], previous: PipelineTarget | None,
               report: TickReport) -> PipelineTarget:
        meta = obj["metadata"]
        namespace, name, generation = meta["namespace"], meta["name"], int(meta.get("generation", 1))
        old = previous.stages if previous is not None else {}
        stages = {s.name: self.owner.build_target(namespace, f"{name}/{s.name}", generation, s, loaded.get(s.name), old.get(s.name), report)
                  for s in spec.stages}
        log.info("pipeline_configured", namespace=namespace, pipeline=name, generation=generation, stages=list(stages),
                 max_gpus=spec.budget.max_gpus)
        return PipelineTarget(namespace, name, generation, spec, stages)

    def _prune(self, seen: set[str]) -> None:
        """Forget pipelines that went away: their state, metrics, decisions and warnings."""
        r = self.owner
        for uid in [u for u in self.pipelines if u not in seen]:
            gone = self.pipelines.pop(uid)
            if r.metrics is not None:
                r.metrics.forget_pipeline(gone.namespace, gone.name)
            if r.status is not None:
                for target in gone.stages.values():
                    r.status.forget(target.namespace, target.name)
            log.info("pipeline_removed", namespace=gone.namespace, pipeline=gone.name)
        for key in [k for k in r._warned if k[0].startswith(WARN_PREFIX) and k[0] not in seen]:
            r._warned.pop(key)

    def stage_targets(self, live: Mapping[str, tuple[Mapping[str, Any], PipelineTarget]]) -> dict[str, tuple[Mapping[str, Any], Target]]:
        """Every stage of the live pipelines as a loop target, keyed ``<pipeline uid>/<stage>``."""
        return {stage_key(uid, name): (obj, target) for uid, (obj, pipeline) in live.items() for name, target in pipeline.stages.items()}

    def stage_unreadable(self, obj: Mapping[str, Any], key: str, target: Target, exc: KubeError, now_s: float, report: TickReport) -> None:
        """A stage's Deployment cannot be read: reported on the pipeline (which then holds, see :meth:`reconcile`)."""
        r = self.owner
        r._error(report, exc.kind, str(exc), namespace=target.namespace, pipeline=target.name)
        reason = "TargetMissing" if isinstance(exc, TargetMissing) else "FailedGetScale"
        stage = target.name.split("/", 1)[1]
        message = f"stage {stage}: deployment {target.namespace}/{target.spec.scale_target_ref.name}: " + (
            "not found" if isinstance(exc, TargetMissing) else str(exc))
        r._warn(obj, key.rsplit("/", 1)[0], reason, message, now_s)

    # ---------------------------------------------------------- reconcile
    def reconcile(self, uid: str, entry: tuple[Mapping[str, Any], PipelineTarget], states: Mapping[str, TargetState],
                  snapshots: Mapping[str, Mapping[str, float]], metrics_error: str, now_s: float, report: TickReport) -> None:
        """Decide every stage jointly, patch the Scales that change, write the pipeline's status."""
        r = self.owner
        obj, pipeline = entry
        status = obj.get("status") or {}
        keys = {name: stage_key(uid, name) for name in pipeline.stages}
        missing = [name for name, key in keys.items() if key not in states]
        if missing:
            message = f"stages {', '.join(missing)}: deployment not readable; the pipeline holds (its budget is shared)"
            updates = {"AbleToScale": ("False", "TargetMissing", message), "Ready": ("False", "TargetMissing", message),
                       "InvalidSpec": ("False", "Valid", "spec is valid")}
            r._write_status(obj, pipeline.namespace, pipeline.name, {"observedGeneration": pipeline.generation}, updates, now_s, report,
                            patch=r.kube.patch_pipeline_status)
            return
        r._resolved(uid, "TargetMissing", "FailedGetScale")
        current, snaps = {}, {}
        for name, target in pipeline.stages.items():
            state = states[keys[name]]
            current[name] = state.replicas
            if target.last_desired is not None and state.replicas != target.last_desired:
                r._event(obj, "ExternalScale", f"stage {name}: replicas changed outside the autoscaler: {target.last_desired} -> "
                         f"{state.replicas}; adopting {state.replicas}", now_s)
            if target.fresh:
                stage_status = (status.get("stages") or {}).get(name) or {}
                r.seed(target, (status.get("history") or {}).get(name), parse_time(stage_status.get("lastScaleTime")), state.replicas, now_s)
            snaps[name] = target_snapshot(state, snapshots.get(keys[name], {}), now_s)

        specs = {s.name: s for s in pipeline.spec.stages}
        stages = [PipelineStage(name, t.autoscaler, specs[name].gpus_per_replica) for name, t in pipeline.stages.items()]
        max_gpus = pipeline.spec.budget.max_gpus
        records, new_states = decide_pipeline(stages, snaps, now_s, current, {n: t.state for n, t in pipeline.stages.items()}, max_gpus)

        limits = [s.limits for s in stages]
        wanted = {n: (rec.steps[-1].before if rec.steps and rec.steps[-1].guard == BUDGET_GUARD else rec.final) for n, rec in records.items()}
        desired = {n: rec.final for n, rec in records.items()}
        errors, stale, cut, fallbacks = [], [], [], []
        stage_status: dict[str, Any] = {}
        for name, target in pipeline.stages.items():
            record, state = records[name], states[keys[name]]
            target.state = new_states[name]
            report.decisions[target.key] = record
            scaled, scale_error = r.apply(obj, target, record, state, now_s, report)
            budget_cut = desired[name] != wanted[name]
            if scale_error:
                errors.append(f"stage {name}: {scale_error}")
            if record.stale:
                stale.append(name)
            if budget_cut:
                cut.append(f"{name} {wanted[name]} -> {desired[name]}")
            if not target.policy_loaded[0]:
                fallbacks.append(f"stage {name}: {target.policy_loaded[1]}")
            if r.metrics is not None:
                r.metrics.observe_stage(pipeline.namespace, pipeline.name, name, record, budget_cut)
            if r.status is not None:
                r.status.record_decision(target.namespace, target.name, record)
            stage_status[name] = {"currentReplicas": state.replicas, "desiredReplicas": record.final, "lastDecision": last_decision(record),
                                  **({"lastScaleTime": iso(target.last_scale_s)} if target.last_scale_s > -math.inf else {})}
        gpu = {"wanted": gpus(wanted, limits), "desired": gpus(desired, limits), **({"budget": max_gpus} if max_gpus is not None else {})}
        if r.metrics is not None:
            r.metrics.set_pipeline_gpus(pipeline.namespace, pipeline.name, gpu["wanted"], gpu["desired"], max_gpus)
        if r.dry_run:
            active = ("False", "DryRun", "dry run: decisions are computed, not applied")
        elif stale:
            active = ("False", "StaleMetrics", f"stages {', '.join(stale)}: metrics stale; they hold or scale up only")
        else:
            active = ("True", "ValidDecision", "; ".join(f"{n}: {rec.reason}" for n, rec in records.items()))
        updates = {
            "InvalidSpec": ("False", "Valid", "spec is valid"),
            "AbleToScale": ("False", "FailedUpdateScale", "; ".join(errors)) if errors else ("True", "ReadyForNewScale", "the stages' scale subresources are writable"),
            "MetricsAvailable": ("False", "StaleMetrics", metrics_error or f"stages {', '.join(stale)}: required serving signals missing") if stale
                                else ("True", "MetricsRead", "serving metrics read for every stage"),
            "PolicyLoaded": ("False", "FallbackToBaseline", "; ".join(fallbacks)) if fallbacks else ("True", "PolicyReady", "every stage's policy is ready"),
            "ScalingActive": active,
            "BudgetLimited": ("True", BUDGET_GUARD, f"{max_gpus} GPUs shared, {gpu['wanted']} wanted: {', '.join(cut)}") if cut
                             else ("False", "WithinBudget", "the stages' decisions fit the budget" if max_gpus is not None else "no shared budget"),
            "Ready": ("False", "FailedUpdateScale", "; ".join(errors)) if errors else ("True", "Reconciled", f"{len(records)} stages decided"),
        }
        # the decision time apart, at the top: a steady state (same decisions) then writes no status
        fields = {"observedGeneration": pipeline.generation, "lastDecision": {"time": iso(now_s)}, "gpus": gpu, "stages": stage_status,
                  "history": {n: {"main": t.autoscaler.history(t.state)} for n, t in pipeline.stages.items()}}
        r._write_status(obj, pipeline.namespace, pipeline.name, fields, updates, now_s, report, patch=r.kube.patch_pipeline_status)
