"""The decision step that both paths call: snapshot -> policy -> guardrails -> record.

The simulator (:mod:`simulator.evaluation.runner`, ``kis simulate``) and the
controller (:mod:`controller.loop`) both call :func:`decide`; nothing else
decides. Pure: time comes in as ``now_s``, history as :class:`AutoscalerState`,
and a new state comes out; the input state is never mutated.

**Stale metrics.** A snapshot is stale for an autoscaler when a signal it
rests on is missing, NaN or infinite: always the serving load itself
(:data:`REQUIRED_SIGNALS`: running and waiting requests, the gauges every
replica exports from its first scrape), plus the signals the policy reads
(its optional ``required_signals`` attribute, e.g. ``gpu_utilization`` for an
HPA on GPU utilisation, the token rates for the threshold policy). Counters
such as the request rate are not required: before the first completed
request their series may not exist yet, and a fresh deployment must still be
able to scale. On stale data the guardrails' stale rule decides (never a
scale-down).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller import signals as sig
from controller.decision import DecisionRecord, Proposal
from controller.guardrails import Behavior, GuardState, apply_guardrails
from controller.policies.base import Policy, PolicyContext
from controller.slo import SLO

#: Without these the load is unknown: the snapshot is stale whatever the policy.
REQUIRED_SIGNALS: tuple[str, ...] = ("requests_running", "requests_waiting")


def required_signals(policy: Policy | None) -> tuple[str, ...]:
    """:data:`REQUIRED_SIGNALS` plus the policy's own ``required_signals`` (if it declares any)."""
    extra = tuple(getattr(policy, "required_signals", ()) or ()) if policy is not None else ()
    return REQUIRED_SIGNALS + tuple(s for s in extra if s not in REQUIRED_SIGNALS)


def missing_signals(snapshot: Mapping[str, float], required: Iterable[str] = REQUIRED_SIGNALS) -> tuple[str, ...]:
    """The ``required`` signals that are absent, NaN or infinite in ``snapshot``."""
    return tuple(name for name in required if not sig.is_usable(snapshot.get(name)))


def is_stale(snapshot: Mapping[str, float], required: Iterable[str] = REQUIRED_SIGNALS) -> bool:
    """Stale when a required signal (by default the serving load) is missing, NaN or Inf."""
    return bool(missing_signals(snapshot, required))


@dataclass(frozen=True)
class Autoscaler:
    """One scale target's decision configuration.

    :param policy: proposes replicas.
    :param behavior: guardrails.
    :param slo: latency objective the policy may read.
    :param interval_s: control interval, seconds.
    :param baseline: a second policy computed side by side on every decision (shadow mode
        compares it with ``policy``); required by the ``baseline`` stale rule.
    """

    policy: Policy
    behavior: Behavior = field(default_factory=Behavior)
    slo: SLO = SLO()
    interval_s: float = 15.0
    baseline: Policy | None = None

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {self.interval_s}")
        if self.behavior.stale_rule == "baseline" and self.baseline is None:
            raise ValueError("stale_rule 'baseline' needs a baseline policy (Autoscaler(baseline=...))")

    def initial_state(self) -> AutoscalerState:
        return AutoscalerState(self.policy.initial_state(), self.baseline.initial_state() if self.baseline else None, GuardState())


@dataclass(frozen=True)
class AutoscalerState:
    """Everything :func:`decide` remembers: the policy's, the baseline's and the guardrails' state."""

    policy_state: Any
    baseline_state: Any
    guard_state: GuardState


def decide(
    autoscaler: Autoscaler,
    snapshot: Mapping[str, float],
    now_s: float,
    current_replicas: int,
    state: AutoscalerState,
) -> tuple[DecisionRecord, AutoscalerState]:
    """One decision with its full record, and the next state.

    :param autoscaler: policy, guardrails, SLO, interval and optional baseline.
    :param snapshot: the metrics snapshot (see :mod:`controller.signals`).
    :param now_s: decision time, seconds.
    :param current_replicas: the scale target's replicas now.
    :param state: the state returned by the previous call (or ``autoscaler.initial_state()``).
    """
    behavior = autoscaler.behavior
    ctx = PolicyContext(now_s, current_replicas, behavior.min_replicas, behavior.max_replicas, autoscaler.slo, autoscaler.interval_s)
    missing = missing_signals(snapshot, required_signals(autoscaler.policy))
    stale = bool(missing)
    proposal, policy_state = autoscaler.policy.decide(snapshot, ctx, state.policy_state)
    baseline: Proposal | None = None
    baseline_state = state.baseline_state
    if autoscaler.baseline is not None:
        baseline, baseline_state = autoscaler.baseline.decide(snapshot, ctx, baseline_state)
    guarded = apply_guardrails(proposal, current_replicas, now_s, behavior, state.guard_state, stale=stale, baseline=baseline)
    reasons = proposal.reasons + ((f"stale: {', '.join(missing)} missing",) if stale else ())
    record = DecisionRecord(
        time_s=now_s,
        policy=autoscaler.policy.name,
        current_replicas=current_replicas,
        proposal=proposal.replicas,
        final=guarded.final,
        reason=guarded.reason,
        steps=guarded.steps,
        policy_reasons=reasons,
        inputs=finite_inputs(snapshot),
        baseline=baseline.replicas if baseline is not None else None,
        stale=stale,
    )
    return record, AutoscalerState(policy_state, baseline_state, guarded.state)


def finite_inputs(snapshot: Mapping[str, float]) -> dict[str, float]:
    """The snapshot's finite numeric values, as recorded in a decision."""
    return {k: float(v) for k, v in snapshot.items() if isinstance(v, (int, float)) and math.isfinite(v)}
