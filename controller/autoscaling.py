"""The decision step that both paths call: snapshot -> policy -> guardrails -> record.

The simulator (:mod:`simulator.runner`) and the controller
(:mod:`controller.loop`) both call :func:`decide`; nothing else decides.
Pure: time comes in as ``now_s``, history as :class:`AutoscalerState`, and a
new state comes out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller import signals as sig
from controller.decision import DecisionRecord, Proposal
from controller.guardrails import Behavior, GuardState, apply_guardrails
from controller.policies.base import Policy, PolicyContext
from controller.slo import SLO

#: Without these the load is unknown: the snapshot is stale.
REQUIRED_SIGNALS: tuple[str, ...] = ("requests_running", "requests_waiting")


def is_stale(snapshot: Mapping[str, float]) -> bool:
    """Stale when the serving load itself is unknown (a required signal missing, NaN or Inf)."""
    return not all(sig.is_usable(snapshot.get(name)) for name in REQUIRED_SIGNALS)


@dataclass(frozen=True)
class Autoscaler:
    """One scale target's decision configuration.

    :param policy: proposes replicas.
    :param behavior: guardrails.
    :param slo: latency objective the policy may read.
    :param interval_s: control interval.
    :param baseline: a second policy computed side by side (shadow mode) and used by the ``baseline`` stale rule.
    """

    policy: Policy
    behavior: Behavior = field(default_factory=Behavior)
    slo: SLO = SLO()
    interval_s: float = 15.0
    baseline: Policy | None = None

    def initial_state(self) -> AutoscalerState:
        return AutoscalerState(self.policy.initial_state(), self.baseline.initial_state() if self.baseline else None, GuardState())


@dataclass(frozen=True)
class AutoscalerState:
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
    """One decision with its full record, and the next state."""
    behavior = autoscaler.behavior
    ctx = PolicyContext(now_s, current_replicas, behavior.min_replicas, behavior.max_replicas, autoscaler.slo, autoscaler.interval_s)
    stale = is_stale(snapshot)
    proposal, policy_state = autoscaler.policy.decide(snapshot, ctx, state.policy_state)
    baseline: Proposal | None = None
    baseline_state = state.baseline_state
    if autoscaler.baseline is not None:
        baseline, baseline_state = autoscaler.baseline.decide(snapshot, ctx, baseline_state)
    guarded = apply_guardrails(proposal, current_replicas, now_s, behavior, state.guard_state, stale=stale, baseline=baseline)
    final = guarded.final
    if guarded.steps:
        last = guarded.steps[-1]
        reason = f"{last.guard}: {last.reason}"
    elif final > current_replicas:
        reason = f"ScaleUp: {current_replicas} -> {final}"
    elif final < current_replicas:
        reason = f"ScaleDown: {current_replicas} -> {final}"
    else:
        reason = f"NoChange: {final}"
    record = DecisionRecord(
        time_s=now_s,
        policy=autoscaler.policy.name,
        current_replicas=current_replicas,
        proposal=proposal.replicas,
        final=final,
        reason=reason,
        steps=guarded.steps,
        policy_reasons=proposal.reasons,
        inputs={k: float(v) for k, v in snapshot.items() if isinstance(v, (int, float)) and math.isfinite(v)},
        baseline=baseline.replicas if baseline is not None else None,
        stale=stale,
    )
    return record, AutoscalerState(policy_state, baseline_state, guarded.state)
