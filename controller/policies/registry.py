"""Build a policy from a plain mapping, as written in an InferenceAutoscaler or an evaluation config.

``{"type": "hpa", "metric": "requests_per_replica", "target": 8}`` and the
like; keys are snake_case or camelCase. Unknown keys and bad values are
rejected with a ``ValueError`` naming the field (``policy.target: ...``).

=========  ==============================================================================
type       parameters
=========  ==============================================================================
hpa        metric, target, tolerance, behavior {scaleUp, scaleDown: {stabilizationWindowSeconds,
           selectPolicy, policies: [{type: Pods|Percent, value, periodSeconds}]}}
threshold  scale_up_tpm, scale_down_tpm, step_up, step_down
kpa        target, stable_window_s, panic_window_s, panic_threshold, max_scale_up_rate, max_scale_down_rate
fixed      replicas
learned    artifact (folder; relative to ``base_dir``), deterministic, seed
=========  ==============================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from controller.policies.base import Policy
from controller.policies.fixed import FixedPolicy
from controller.policies.hpa import METRICS, HpaBehavior, HpaPolicy, HpaScalingPolicy, HpaScalingRules
from controller.policies.kpa import KpaPolicy
from controller.policies.threshold import ThresholdPolicy

POLICY_TYPES: tuple[str, ...] = ("learned", "hpa", "threshold", "kpa", "fixed")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class ScalingPolicySpec(_Spec):
    """``HPAScalingPolicy``."""

    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: float = Field(gt=0, le=1800)


class ScalingRulesSpec(_Spec):
    """``HPAScalingRules``; omitted fields take the Kubernetes defaults of their direction."""

    stabilization_window_seconds: float | None = Field(None, ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    policies: list[ScalingPolicySpec] | None = Field(None, min_length=1)


class HpaBehaviorSpec(_Spec):
    scale_up: ScalingRulesSpec | None = None
    scale_down: ScalingRulesSpec | None = None


class HpaSpec(_Spec):
    type: Literal["hpa"]
    metric: str = "requests_per_replica"
    target: float = Field(gt=0)
    tolerance: float = Field(0.1, ge=0)
    behavior: HpaBehaviorSpec | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        return metric


class ThresholdSpec(_Spec):
    type: Literal["threshold"]
    scale_up_tpm: float = Field(gt=0)
    scale_down_tpm: float = Field(ge=0)
    step_up: int = Field(1, ge=1)
    step_down: int = Field(1, ge=1)


class KpaSpec(_Spec):
    type: Literal["kpa"]
    target: float = Field(gt=0)
    stable_window_s: float = Field(60.0, gt=0)
    panic_window_s: float = Field(6.0, gt=0)
    panic_threshold: float = Field(2.0, gt=1)
    max_scale_up_rate: float = Field(1000.0, gt=1)
    max_scale_down_rate: float = Field(2.0, gt=1)


class FixedSpec(_Spec):
    type: Literal["fixed"]
    replicas: int = Field(ge=0)


class LearnedSpec(_Spec):
    type: Literal["learned"]
    artifact: str = Field(min_length=1)
    deterministic: bool = True
    seed: int = 0


#: Any policy spec, told apart by ``type``.
PolicySpec = Annotated[Union[HpaSpec, ThresholdSpec, KpaSpec, FixedSpec, LearnedSpec], Field(discriminator="type")]
SPECS: dict[str, type[_Spec]] = {"hpa": HpaSpec, "threshold": ThresholdSpec, "kpa": KpaSpec, "fixed": FixedSpec, "learned": LearnedSpec}

#: Cross-field rules: (spec type, check, field named in the error, message).
_CROSS_CHECKS: tuple[tuple[type[_Spec], Any, str, str], ...] = (
    (ThresholdSpec, lambda m: m.scale_down_tpm < m.scale_up_tpm, "scaleDownTpm", "must be below scaleUpTpm"),
    (KpaSpec, lambda m: m.panic_window_s <= m.stable_window_s, "panicWindowS", "must not exceed stableWindowS"),
)


def _field_path(loc: tuple[Any, ...]) -> str:
    return "policy" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def validate_policy_spec(spec: Mapping[str, Any] | _Spec) -> _Spec:
    """The typed spec of ``spec``, or ``ValueError`` naming the bad field."""
    if isinstance(spec, _Spec):
        return spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"policy: must be a mapping with a 'type', got {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in SPECS:
        raise ValueError(f"policy.type: must be one of {', '.join(POLICY_TYPES)}, got {kind!r}")
    try:
        model = SPECS[kind].model_validate(dict(spec))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{_field_path(error['loc'])}: {message}")
        raise ValueError("; ".join(problems)) from exc
    for spec_type, check, field_name, message in _CROSS_CHECKS:
        if isinstance(model, spec_type) and not check(model):
            raise ValueError(f"policy.{field_name}: {message}")
    return model


def _rules(spec: ScalingRulesSpec | None, default: HpaScalingRules) -> HpaScalingRules:
    if spec is None:
        return default
    return HpaScalingRules(
        default.stabilization_window_s if spec.stabilization_window_seconds is None else spec.stabilization_window_seconds,
        spec.select_policy,
        default.policies if spec.policies is None else tuple(HpaScalingPolicy(p.type, p.value, p.period_seconds) for p in spec.policies),
    )


def hpa_behavior(spec: HpaBehaviorSpec | None) -> HpaBehavior:
    """``spec.behavior`` with Kubernetes' defaults filled in per direction."""
    default = HpaBehavior()
    if spec is None:
        return default
    return HpaBehavior(_rules(spec.scale_up, default.scale_up), _rules(spec.scale_down, default.scale_down))


def build_policy(spec: Mapping[str, Any] | _Spec, *, base_dir: Path | None = None) -> Policy:
    """A ready policy from its spec; a learned policy loads its artifact (``ArtifactError`` on failure).

    :param spec: a mapping ``{"type": ..., **parameters}`` or an already validated spec model.
    :param base_dir: folder that a relative learned-policy ``artifact`` path is relative to.
    """
    model = validate_policy_spec(spec)
    if isinstance(model, HpaSpec):
        return HpaPolicy(model.metric, model.target, hpa_behavior(model.behavior), model.tolerance)
    if isinstance(model, ThresholdSpec):
        return ThresholdPolicy(model.scale_up_tpm, model.scale_down_tpm, model.step_up, model.step_down)
    if isinstance(model, KpaSpec):
        return KpaPolicy(model.target, model.stable_window_s, model.panic_window_s, model.panic_threshold,
                         model.max_scale_up_rate, model.max_scale_down_rate)
    if isinstance(model, FixedSpec):
        return FixedPolicy(model.replicas)
    assert isinstance(model, LearnedSpec)
    from controller.artifact import load_artifact
    from controller.policies.learned import LearnedPolicy

    path = Path(model.artifact)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return LearnedPolicy(load_artifact(path), model.deterministic, model.seed)
