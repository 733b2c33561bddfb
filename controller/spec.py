"""The InferenceAutoscaler custom resource: spec models and their conversion.

Group ``autoscaling.kis-s.dev``, version ``v1alpha1`` (CRD in
``charts/kis-s/crds/inferenceautoscalers.yaml``). :func:`parse_autoscaler`
validates an object as the API server returned it and raises
:class:`InvalidSpec` naming the field path; the controller then sets the
``InvalidSpec`` condition and patches nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from controller.capacity import CapacityProfile
from controller.guardrails import Behavior
from controller.policies.base import DEFAULT_COLD_START_S
from controller.policies.registry import validate_policy_spec
from controller.signals import GATEWAY_PENDING
from controller.slo import SLO

GROUP = "autoscaling.kis-s.dev"
VERSION = "v1alpha1"
PLURAL = "inferenceautoscalers"
KIND = "InferenceAutoscaler"
DEFAULT_BASELINE: dict[str, Any] = {"type": "hpa", "metric": "requests_per_replica", "target": 8.0}


class InvalidSpec(ValueError):
    """A malformed InferenceAutoscaler; the message names the field."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ScaleTargetRef(_Model):
    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["Deployment"] = "Deployment"
    name: str = Field(min_length=1)


class ArtifactRef(_Model):
    path: str | None = None
    config_map: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one(self) -> ArtifactRef:
        if (self.path is None) == (self.config_map is None):
            raise ValueError("give exactly one of path or configMap")
        if self.config_map is not None and "name" not in self.config_map:
            raise ValueError("configMap needs a name")
        return self


class BaselineSpec(_Model):
    type: Literal["hpa", "threshold", "kpa", "planner", "fixed"]
    parameters: dict[str, Any] = Field(default_factory=dict)


class PolicySpec(_Model):
    type: Literal["learned", "planner", "hpa", "threshold", "kpa", "fixed"]
    parameters: dict[str, Any] = Field(default_factory=dict)
    artifact: ArtifactRef | None = None
    baseline: BaselineSpec | None = None


class SloSpec(_Model):
    ttft_ms: float = Field(500.0, gt=0)
    tpot_ms: float = Field(50.0, gt=0)


class MetricsSpec(_Model):
    selector: dict[str, str] | None = None
    window_seconds: int = Field(60, ge=5)
    long_window_seconds: int = Field(300, ge=5)
    overrides: dict[str, str] = Field(default_factory=dict)


class BehaviorSpec(_Model):
    max_step_up: int | None = Field(None, ge=1)
    max_step_down: int | None = Field(None, ge=1)
    #: unset: 0 for policies with their own scale-down window (hpa, kpa, planner, learned), 300 otherwise
    scale_down_stabilization_seconds: float | None = Field(None, ge=0)
    #: after a scale event, no further scale for this long (both directions; the two below override it per direction)
    cooldown_seconds: float = Field(0.0, ge=0)
    cooldown_up_seconds: float | None = Field(None, ge=0)
    cooldown_down_seconds: float | None = Field(None, ge=0)
    stale_metrics: Literal["hold", "baseline", "scaleUpOnly"] = "hold"


class CapacitySpec(_Model):
    """``spec.capacity``: per-replica capacity at the SLO (``kis capacity`` prints it for a GPU and model)."""

    prompt_tokens: list[float] = Field(min_length=1)
    output_tokens: list[float] = Field(min_length=1)
    max_rps: list[list[float]] = Field(min_length=1)
    max_concurrency: list[list[float]] | None = None
    pooled_rps: list[list[float]] | None = None
    pool_size: int = Field(4, ge=2)
    source: str = ""

    @model_validator(mode="after")
    def _profile(self) -> CapacitySpec:
        self.profile()  # the grid's own checks, as messages naming the field
        return self

    def profile(self) -> CapacityProfile:
        return CapacityProfile.from_dict(self.model_dump(exclude_none=True), "capacity")


class ScaleToZeroSpec(_Model):
    #: PromQL for the requests held at the gateway ({sel} placeholder): the activation signal
    activation_query: str | None = Field(None, min_length=1)
    activation_threshold: float = Field(0.0, ge=0)
    idle_seconds: float = Field(300.0, ge=0)


class TargetSpec(_Model):
    """What one scale target is decided with: an InferenceAutoscaler's spec, or one stage of an
    InferencePipelineAutoscaler (:mod:`controller.pipeline_spec`)."""

    scale_target_ref: ScaleTargetRef
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(ge=1)
    #: seconds a new replica takes to become Ready (the planner forecasts this far ahead)
    cold_start_seconds: float = Field(DEFAULT_COLD_START_S, ge=0)
    capacity: CapacitySpec | None = None
    policy: PolicySpec
    slo: SloSpec = SloSpec()
    metrics: MetricsSpec = MetricsSpec()
    behavior: BehaviorSpec = BehaviorSpec()
    scale_to_zero: ScaleToZeroSpec = ScaleToZeroSpec()

    @model_validator(mode="after")
    def _checks(self) -> TargetSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        if self.capacity is None and (self.policy.type == "planner" or (self.policy.baseline and self.policy.baseline.type == "planner")):
            raise ValueError("a planner needs spec.capacity: the per-replica capacity at the SLO (`kis capacity --gpu GPU --model MODEL`)")
        if self.min_replicas == 0 and self.scale_to_zero.activation_query is None:
            raise ValueError("minReplicas 0 needs scaleToZero.activationQuery: at zero replicas no pod exports a metric, "
                             "so only requests held at the gateway can bring the target back")
        if self.metrics.long_window_seconds < self.metrics.window_seconds:
            raise ValueError("metrics.longWindowSeconds must be at least metrics.windowSeconds")
        return self

    # ------------------------------------------------------------ derived
    def artifact_ref(self) -> ArtifactRef:
        """Where the learned policy's artifact is: ``policy.artifact``, else the default shipped in the image."""
        from controller.artifact import DEFAULT_ARTIFACT

        return self.policy.artifact or ArtifactRef(path=str(DEFAULT_ARTIFACT))

    def policy_mapping(self) -> dict[str, Any]:
        """The registry mapping of the main policy (learned: its artifact is resolved by the loop)."""
        return {"type": self.policy.type, **self.policy.parameters}

    def baseline_mapping(self) -> dict[str, Any]:
        if self.policy.baseline is None:
            return dict(DEFAULT_BASELINE)
        return {"type": self.policy.baseline.type, **self.policy.baseline.parameters}

    def behavior_config(self) -> Behavior:
        b = self.behavior
        rule = {"hold": "hold", "baseline": "baseline", "scaleUpOnly": "scale_up_only"}[b.stale_metrics]
        up = b.cooldown_seconds if b.cooldown_up_seconds is None else b.cooldown_up_seconds
        down = b.cooldown_seconds if b.cooldown_down_seconds is None else b.cooldown_down_seconds
        z = self.scale_to_zero
        return Behavior(self.min_replicas, self.max_replicas, b.max_step_up, b.max_step_down,
                        b.scale_down_stabilization_seconds, up, down, rule,  # type: ignore[arg-type]
                        z.activation_threshold, z.idle_seconds)

    def metric_overrides(self) -> dict[str, str]:
        """``metrics.overrides`` plus the activation query as the ``gateway_pending`` signal."""
        overrides = dict(self.metrics.overrides)
        if self.scale_to_zero.activation_query is not None:
            overrides[GATEWAY_PENDING] = self.scale_to_zero.activation_query
        return overrides

    def slo_config(self) -> SLO:
        return SLO(self.slo.ttft_ms / 1000.0, self.slo.tpot_ms / 1000.0)

    def selector(self, namespace: str) -> dict[str, str]:
        return dict(self.metrics.selector) if self.metrics.selector else {"namespace": namespace, "deployment": self.scale_target_ref.name}


class AutoscalerSpec(TargetSpec):
    """``spec`` of an InferenceAutoscaler: one target, optionally in shadow mode."""

    mode: Literal["active", "shadow"] = "active"
    shadow_apply_baseline: bool = False


def problems(exc: ValidationError, prefix: str = "spec") -> str:
    """A pydantic error as one line, each problem at its field path."""
    return "; ".join(f"{prefix}.{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())


def check_policies(parsed: TargetSpec, where: str = "spec") -> None:
    """The policy's and baseline's parameters, as the registry checks them; :class:`InvalidSpec` names the field."""
    checks = [(f"{where}.policy", parsed.policy_mapping())] if parsed.policy.type != "learned" else []
    if parsed.policy.baseline is not None:
        checks.append((f"{where}.policy.baseline", parsed.baseline_mapping()))
    for at, mapping in checks:
        try:
            validate_policy_spec(mapping)
        except ValueError as exc:  # the registry names fields "policy.<field>"; say where they are in the resource
            message = re.sub(r"\bpolicy\.", f"{at}.parameters.", str(exc)).replace(f"{at}.parameters.type", f"{at}.type")
            raise InvalidSpec(message) from exc


def parse_autoscaler(obj: Mapping[str, Any]) -> AutoscalerSpec:
    """Validate ``obj["spec"]``; :class:`InvalidSpec` says which field is wrong and why."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise InvalidSpec("spec: missing or not an object")
    try:
        parsed = AutoscalerSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise InvalidSpec(problems(exc)) from exc
    check_policies(parsed)
    return parsed
