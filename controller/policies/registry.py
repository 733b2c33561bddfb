"""Build a policy from a plain mapping, as written in an InferenceAutoscaler or an evaluation config.

``{"type": "hpa", "metric": "requests_per_replica", "target": 8}`` and the
like; keys are snake_case or camelCase. Unknown keys and bad values are
rejected with a message naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
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
    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: float = Field(gt=0)


class ScalingRulesSpec(_Spec):
    stabilization_window_seconds: float | None = Field(None, ge=0)
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    policies: list[ScalingPolicySpec] | None = None


class HpaBehaviorSpec(_Spec):
    scale_up: ScalingRulesSpec | None = None
    scale_down: ScalingRulesSpec | None = None


class HpaSpec(_Spec):
    type: Literal["hpa"]
    metric: str = "requests_per_replica"
    target: float = Field(gt=0)
    tolerance: float = Field(0.1, ge=0)
    behavior: HpaBehaviorSpec | None = None


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
    artifact: str


SPECS: dict[str, type[_Spec]] = {"hpa": HpaSpec, "threshold": ThresholdSpec, "kpa": KpaSpec, "fixed": FixedSpec, "learned": LearnedSpec}


def _rules(spec: ScalingRulesSpec | None, default: HpaScalingRules) -> HpaScalingRules:
    if spec is None:
        return default
    return HpaScalingRules(
        default.stabilization_window_s if spec.stabilization_window_seconds is None else spec.stabilization_window_seconds,
        spec.select_policy,
        default.policies if spec.policies is None else tuple(HpaScalingPolicy(p.type, p.value, p.period_seconds) for p in spec.policies),
    )


def validate_policy_spec(spec: Mapping[str, Any]) -> _Spec:
    """The typed spec, or ``ValueError`` naming the bad field."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"policy must be a mapping, got {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in SPECS:
        raise ValueError(f"policy.type: must be one of {', '.join(POLICY_TYPES)}, got {kind!r}")
    try:
        model = SPECS[kind].model_validate(dict(spec))
    except ValidationError as exc:
        problems = "; ".join(f"policy.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ValueError(problems) from exc
    if isinstance(model, HpaSpec) and model.metric not in METRICS:
        raise ValueError(f"policy.metric: unknown metric {model.metric!r}; choose one of {', '.join(METRICS)}")
    if isinstance(model, ThresholdSpec) and model.scale_down_tpm >= model.scale_up_tpm:
        raise ValueError("policy.scaleDownTpm: must be below scaleUpTpm")
    if isinstance(model, KpaSpec) and model.panic_window_s > model.stable_window_s:
        raise ValueError("policy.panicWindowS: must not exceed stableWindowS")
    return model


def build_policy(spec: Mapping[str, Any], *, base_dir: Path | None = None) -> Policy:
    """A ready policy from its spec; a learned policy loads its artifact (``ArtifactError`` on failure)."""
    model = validate_policy_spec(spec)
    if isinstance(model, HpaSpec):
        behavior = HpaBehavior(
            _rules(model.behavior.scale_up if model.behavior else None, HpaBehavior().scale_up),
            _rules(model.behavior.scale_down if model.behavior else None, HpaBehavior().scale_down),
        )
        return HpaPolicy(model.metric, model.target, model.tolerance, behavior)
    if isinstance(model, ThresholdSpec):
        return ThresholdPolicy(model.scale_up_tpm, model.scale_down_tpm, model.step_up, model.step_down)
    if isinstance(model, KpaSpec):
        return KpaPolicy(model.target, model.stable_window_s, model.panic_window_s, model.panic_threshold, model.max_scale_up_rate, model.max_scale_down_rate)
    if isinstance(model, FixedSpec):
        return FixedPolicy(model.replicas)
    from controller.artifact import load_artifact
    from controller.policies.learned import LearnedPolicy

    path = Path(model.artifact)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return LearnedPolicy(load_artifact(path))
