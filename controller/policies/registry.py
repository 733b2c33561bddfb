"""Build a policy from a plain mapping, as written in an InferenceAutoscaler or an evaluation config.

``{"type": "hpa", "metric": "requests_per_replica", "target": 8}`` and the
like; keys are snake_case or camelCase. Unknown keys and bad values are
rejected with a ``ValueError`` naming the field (``policy.target: ...``).

=========  ==============================================================================
type       parameters
=========  ==============================================================================
hpa        metric, target (or metrics: [{metric, target}, ...]: the largest proposal wins), tolerance,
           behavior {scaleUp, scaleDown: {stabilizationWindowSeconds, selectPolicy, tolerance,
           policies: [{type: Pods|Percent, value, periodSeconds}]}}; no behavior: the legacy path
threshold  scale_up_tpm, scale_down_tpm, step_up, step_down
kpa        target, stable_window_s, panic_window_s, panic_threshold, max_scale_up_rate, max_scale_down_rate,
           activation_scale, scale_to_zero_grace_s
planner    target_utilization, scale_down_margin, scale_down_delay_s, horizon_s, drain_s, alpha, beta, mix_smoothing,
           burst_z, burst_window_s, trend_damping_s, feedback_down, feedback_recovery_s, min_correction, peak_hold_s
           (the capacity profile and cold start come from the autoscaler)
fixed      replicas
learned    artifact (folder; relative to ``base_dir``; omitted: the shipped default), deterministic, seed
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
from controller.policies.planner import PlannerPolicy
from controller.policies.threshold import ThresholdPolicy

POLICY_TYPES: tuple[str, ...] = ("learned", "planner", "hpa", "threshold", "kpa", "fixed")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class ScalingPolicySpec(_Spec):
    """``HPAScalingPolicy``."""

    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: int = Field(gt=0, le=1800)


class ScalingRulesSpec(_Spec):
    """``HPAScalingRules``; omitted fields take the Kubernetes defaults of their direction."""

    stabilization_window_seconds: int | None = Field(None, ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    policies: list[ScalingPolicySpec] | None = Field(None, min_length=1)
    tolerance: float | None = Field(None, ge=0)


class HpaBehaviorSpec(_Spec):
    scale_up: ScalingRulesSpec | None = None
    scale_down: ScalingRulesSpec | None = None


def _known_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return metric


class HpaMetricSpec(_Spec):
    metric: str
    target: float = Field(gt=0)

    _metric = field_validator("metric")(classmethod(lambda cls, m: _known_metric(m)))


class HpaSpec(_Spec):
    type: Literal["hpa"]
    metric: str = "requests_per_replica"
    target: float | None = Field(None, gt=0)
    metrics: list[HpaMetricSpec] | None = Field(None, min_length=1)
    tolerance: float = Field(0.1, ge=0)
    behavior: HpaBehaviorSpec | None = None

    _metric = field_validator("metric")(classmethod(lambda cls, m: _known_metric(m)))


class ThresholdSpec(_Spec):
    type: Literal["threshold"]
    scale_up_tpm: float = Field(gt=0)
    scale_down_tpm: float = Field(ge=0)
    step_up: int = Field(1, ge=1)
    step_down: int = Field(1, ge=1)


class KpaSpec(_Spec):
    type: Literal["kpa"]
    target: float = Field(gt=0)
    stable_window_s: float = Field(60.0, ge=6, le=3600)
    panic_window_s: float = Field(6.0, ge=1)
    panic_threshold: float = Field(2.0, gt=1)
    max_scale_up_rate: float = Field(1000.0, gt=1)
    max_scale_down_rate: float = Field(2.0, gt=1)
    activation_scale: int = Field(1, ge=1)
    scale_to_zero_grace_s: float = Field(30.0, ge=0)


class PlannerSpec(_Spec):
    type: Literal["planner"]
    target_utilization: float = Field(0.8, gt=0, le=4)
    scale_down_margin: float = Field(0.9, gt=0, le=1)
    scale_down_delay_s: float | None = Field(None, ge=0)
    horizon_s: float | None = Field(None, ge=0)
    drain_s: float = Field(60.0, gt=0)
    alpha: float = Field(0.5, gt=0, le=1)
    beta: float = Field(0.3, ge=0, le=1)
    mix_smoothing: float = Field(0.3, gt=0, le=1)
    burst_z: float = Field(1.0, ge=0)
    burst_window_s: float | None = Field(None, gt=0)
    trend_damping_s: float = Field(60.0, gt=0)
    feedback_down: float = Field(0.85, gt=0, le=1)
    feedback_recovery_s: float = Field(1800.0, gt=0)
    min_correction: float = Field(0.4, gt=0, le=1)
    peak_hold_s: float | None = Field(600.0, gt=0)


class FixedSpec(_Spec):
    type: Literal["fixed"]
    replicas: int = Field(ge=0)


class LearnedSpec(_Spec):
    type: Literal["learned"]
    artifact: str | None = Field(None, min_length=1)  # None: the shipped default
    deterministic: bool = True
    seed: int = 0


#: Any policy spec, told apart by ``type``.
PolicySpec = Annotated[Union[HpaSpec, ThresholdSpec, KpaSpec, PlannerSpec, FixedSpec, LearnedSpec], Field(discriminator="type")]
SPECS: dict[str, type[_Spec]] = {"hpa": HpaSpec, "threshold": ThresholdSpec, "kpa": KpaSpec, "planner": PlannerSpec, "fixed": FixedSpec,
                                 "learned": LearnedSpec}

#: Cross-field rules: (spec type, check, field named in the error, message).
_CROSS_CHECKS: tuple[tuple[type[_Spec], Any, str, str], ...] = (
    (ThresholdSpec, lambda m: m.scale_down_tpm < m.scale_up_tpm, "scaleDownTpm", "must be below scaleUpTpm"),
    (KpaSpec, lambda m: m.panic_window_s <= m.stable_window_s, "panicWindowS", "must not exceed stableWindowS"),
    (HpaSpec, lambda m: (m.target is None) != (m.metrics is None), "target", "give exactly one of target (with metric) or metrics"),
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
        spec.tolerance,
    )


def hpa_behavior(spec: HpaBehaviorSpec | None) -> HpaBehavior:
    """``spec.behavior`` with Kubernetes' defaults filled in per direction (``None``: all defaults)."""
    default = HpaBehavior()
    if spec is None:
        return default
    return HpaBehavior(_rules(spec.scale_up, default.scale_up), _rules(spec.scale_down, default.scale_down))


def _hpa(model: HpaSpec) -> HpaPolicy:
    pairs = [(model.metric, model.target)] if model.metrics is None else [(m.metric, m.target) for m in model.metrics]
    behavior = None if model.behavior is None else hpa_behavior(model.behavior)
    return HpaPolicy(pairs[0][0], float(pairs[0][1]), behavior, model.tolerance, tuple((m, float(t)) for m, t in pairs[1:]))


def build_policy(spec: Mapping[str, Any] | _Spec, *, base_dir: Path | None = None) -> Policy:
    """A ready policy from its spec; a learned policy loads its artifact (``ArtifactError`` on failure).

    :param spec: a mapping ``{"type": ..., **parameters}`` or an already validated spec model.
    :param base_dir: folder that a relative learned-policy ``artifact`` path is relative to.
    """
    model = validate_policy_spec(spec)
    if isinstance(model, HpaSpec):
        return _hpa(model)
    if isinstance(model, ThresholdSpec):
        return ThresholdPolicy(model.scale_up_tpm, model.scale_down_tpm, model.step_up, model.step_down)
    if isinstance(model, KpaSpec):
        return KpaPolicy(model.target, model.stable_window_s, model.panic_window_s, model.panic_threshold,
                         model.max_scale_up_rate, model.max_scale_down_rate, model.activation_scale, model.scale_to_zero_grace_s)
    if isinstance(model, PlannerSpec):
        return PlannerPolicy(**model.model_dump(exclude={"type"}))
    if isinstance(model, FixedSpec):
        return FixedPolicy(model.replicas)
    assert isinstance(model, LearnedSpec)
    from controller.artifact import DEFAULT_ARTIFACT, load_artifact
    from controller.policies.learned import LearnedPolicy

    path = DEFAULT_ARTIFACT if model.artifact is None else Path(model.artifact)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return LearnedPolicy.from_artifact(load_artifact(path), model.deterministic, model.seed)
