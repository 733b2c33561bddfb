"""The InferencePipelineAutoscaler custom resource: several Deployments scaled jointly under one GPU budget.

A kind of its own (CRD in ``charts/kis-s/crds/inferencepipelineautoscalers.yaml``),
not a ``stages`` list in the InferenceAutoscaler: the budget belongs to the
pipeline, not to any one target; each stage has its own ``scaleTargetRef``,
policy, guardrails and metric selector, which is an InferenceAutoscaler's
spec (:class:`controller.spec.TargetSpec`) plus a name and the GPUs one
replica holds; and one target per InferenceAutoscaler keeps that kind's
printer columns, status and existing clients unchanged. The cost is one more
list/watch and status verb in the controller's RBAC, and one more CRD.

:func:`parse_pipeline` validates an object as the API server returned it and
raises :class:`controller.spec.InvalidSpec` with one line naming each field
path (``spec.stages[1].maxReplicas: ...``); the controller then sets the
``InvalidSpec`` condition on that pipeline and goes on with the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError, model_validator

from controller.spec import GROUP, VERSION, InvalidSpec, TargetSpec, _Model, check_policies

PIPELINE_PLURAL = "inferencepipelineautoscalers"
PIPELINE_KIND = "InferencePipelineAutoscaler"
PIPELINE_API_VERSION = f"{GROUP}/{VERSION}"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class StageSpec(TargetSpec):
    """One stage: a Deployment decided like an InferenceAutoscaler's target."""

    name: str = Field(min_length=1, max_length=63, pattern=_DNS_LABEL)
    #: GPUs one replica of the stage holds (0: a CPU stage, outside the budget)
    gpus_per_replica: int = Field(1, ge=0)


class BudgetSpec(_Model):
    #: most GPUs all stages together may hold; unset: no shared budget
    max_gpus: int | None = Field(None, ge=0)


class PipelineSpec(_Model):
    """``spec`` of an InferencePipelineAutoscaler."""

    stages: list[StageSpec] = Field(min_length=1, max_length=16)
    budget: BudgetSpec = BudgetSpec()

    @model_validator(mode="after")
    def _checks(self) -> PipelineSpec:
        names = [s.name for s in self.stages]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"stage names must be unique: {', '.join(twice)} given twice")
        targets = [s.scale_target_ref.name for s in self.stages]
        shared = sorted({t for t in targets if targets.count(t) > 1})
        if shared:
            raise ValueError(f"each stage scales its own Deployment: {', '.join(shared)} is the target of several stages")
        floor = sum(s.min_replicas * s.gpus_per_replica for s in self.stages)
        if self.budget.max_gpus is not None and floor > self.budget.max_gpus:
            raise ValueError(f"budget.maxGpus {self.budget.max_gpus} is below the {floor} GPUs the stages' minReplicas hold")
        return self

    def stage(self, name: str) -> StageSpec:
        return next(s for s in self.stages if s.name == name)


def _path(loc: tuple[Any, ...]) -> str:
    """``("stages", 1, "maxReplicas")`` -> ``stages[1].maxReplicas``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def parse_pipeline(obj: Mapping[str, Any]) -> PipelineSpec:
    """Validate ``obj["spec"]``; :class:`InvalidSpec` says, in one line, which fields are wrong and why."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise InvalidSpec("spec: missing or not an object")
    try:
        parsed = PipelineSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise InvalidSpec("; ".join(f"spec.{_path(e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())) from exc
    for i, stage in enumerate(parsed.stages):
        check_policies(stage, f"spec.stages[{i}]")
    return parsed


def stage_key(pipeline_key: str, stage: str) -> str:
    """The key of a stage in reports and Prometheus reads: ``<namespace>/<pipeline>/<stage>``."""
    return f"{pipeline_key}/{stage}"

