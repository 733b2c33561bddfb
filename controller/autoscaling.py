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

**An empty fleet.** With no ready replica and no pod reporting, the sums over
the serving pods are 0, not missing: online, Prometheus has no series to sum
(:func:`with_empty_fleet`). The requests held at the gateway
(``gateway_pending``) then drive the guardrails' activation step, the same
for every policy, on every path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller import load
from controller import signals as sig
from controller.capacity import CapacityProfile
from controller.decision import DecisionRecord, Proposal
from controller.guardrails import Behavior, GuardState, apply_guardrails, first_state
from controller.policies.base import DEFAULT_COLD_START_S, Policy, PolicyContext
from controller.slo import SLO

#: Without these the load is unknown: the snapshot is stale whatever the policy.
REQUIRED_SIGNALS: tuple[str, ...] = ("requests_running", "requests_waiting")


def required_signals(policy: Policy | None) -> tuple[str, ...]:
    """:data:`REQUIRED_SIGNALS` plus the policy's own ``required_signals`` (if it declares any)."""
    extra = tuple(getattr(policy, "required_signals", ()) or ()) if policy is not None else ()
    return REQUIRED_SIGNALS + tuple(s for s in extra if s not in REQUIRED_SIGNALS)


def stabilizes_scale_down(policy: Policy | None) -> bool:
    """Whether ``policy`` damps its own scale-downs (its optional ``stabilizes_scale_down`` attribute)."""
    return bool(getattr(policy, "stabilizes_scale_down", False))


def missing_signals(snapshot: Mapping[str, float], required: Iterable[str] = REQUIRED_SIGNALS) -> tuple[str, ...]:
    """The ``required`` signals that are absent, NaN or infinite in ``snapshot``."""
    return tuple(name for name in required if not sig.is_usable(snapshot.get(name)))


#: Sums over the serving pods: 0 when there are none.
EMPTY_FLEET_ZERO: tuple[str, ...] = ("requests_running", "requests_waiting", sig.CONCURRENCY_STABLE, sig.CONCURRENCY_PANIC)


def with_empty_fleet(snapshot: Mapping[str, float]) -> Mapping[str, float]:
    """``snapshot`` with the serving sums set to 0 where no replica is ready and no pod reports."""
    ready, reporting = load.value(snapshot, sig.REPLICAS_READY), load.value(snapshot, sig.REPLICAS_REPORTING)
    if ready != 0.0 or not (reporting == 0.0 or math.isnan(reporting)):
        return snapshot
    gaps = [k for k in EMPTY_FLEET_ZERO if not sig.is_usable(snapshot.get(k))]
    return {**snapshot, **{k: 0.0 for k in gaps}} if gaps else snapshot


def has_traffic(snapshot: Mapping[str, float]) -> bool:
    """Requests held at the gateway, on a serving replica, or completed over the window (unknown: yes)."""
    serving = load.serving_load(snapshot)
    if not math.isfinite(serving):
        return True
    rate = load.value(snapshot, "request_rate")
    return load.gateway_pending(snapshot) > 0 or serving > 0 or (math.isfinite(rate) and rate > 0)


def is_stale(snapshot: Mapping[str, float], required: Iterable[str] = REQUIRED_SIGNALS) -> bool:
    """Stale when a required signal (by default the serving load) is missing, NaN or Inf."""
    return bool(missing_signals(snapshot, required))


@dataclass(frozen=True)
class Autoscaler:
    """One scale target's decision configuration.

    :param policy: proposes replicas.
    :param behavior: guardrails; an unset scale-down stabilisation window is resolved for
        ``policy`` (see :meth:`controller.guardrails.Behavior.resolved`).
    :param slo: latency objective the policy may read.
    :param interval_s: control interval, seconds.
    :param baseline: a second policy computed side by side on every decision (shadow mode
        compares it with ``policy``); required by the ``baseline`` stale rule.
    :param capacity: the target's per-replica capacity at the SLO (planner and learned policies read it).
    :param cold_start_s: seconds a new replica takes to become Ready.
    """

    policy: Policy
    behavior: Behavior = field(default_factory=Behavior)
    slo: SLO = SLO()
    interval_s: float = 15.0
    baseline: Policy | None = None
    capacity: CapacityProfile | None = None
    cold_start_s: float = DEFAULT_COLD_START_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "behavior", self.behavior.resolved(stabilizes_scale_down(self.policy)))
        if not self.interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {self.interval_s}")
        if not self.cold_start_s >= 0:
            raise ValueError(f"cold_start_s must be >= 0, got {self.cold_start_s}")
        if self.behavior.stale_rule == "baseline" and self.baseline is None:
            raise ValueError("stale_rule 'baseline' needs a baseline policy (Autoscaler(baseline=...))")

    def context(self, now_s: float, current_replicas: int) -> PolicyContext:
        """What the policy may know besides the snapshot, at ``now_s``."""
        b = self.behavior
        return PolicyContext(now_s, current_replicas, b.min_replicas, b.max_replicas, self.slo, self.interval_s,
                             self.capacity, self.cold_start_s)

    def initial_state(self) -> AutoscalerState:
        return AutoscalerState(self.policy.initial_state(), self.baseline.initial_state() if self.baseline else None, GuardState())

    def history(self, state: AutoscalerState) -> dict[str, Any]:
        """What a restarted controller needs to go on where this one stopped (JSON, small, changing
        only when a hold changes): the guardrails' stabilisation hold, the policies' own."""
        out: dict[str, Any] = {}
        guard = state.guard_state
        window = self.behavior.scale_down_stabilization_s
        recent = [r for t, r in guard.recommendations if t > guard.last_decision_s - window]
        if recent:
            out["hold"] = max(recent)
        if guard.last_scale_direction:
            out["lastScaleDirection"] = guard.last_scale_direction
        for key, policy, policy_state in (("policy", self.policy, state.policy_state), ("baseline", self.baseline, state.baseline_state)):
            dump = getattr(policy, "dump_state", None)
            if dump is not None and policy_state is not None:
                data = dump(policy_state)
                if data:
                    out[key] = data
        return out

    def restored_state(self, history: Mapping[str, Any] | None, now_s: float, current_replicas: int,
                       last_scale_s: float = -math.inf) -> AutoscalerState:
        """The state after a controller (re)start, seeded from the target's current replicas and the
        history written in its status (:meth:`history`). Conservative: every hold restarts at
        ``now_s`` (it lasts a whole window from the restart), the idle clock of scale to zero too, so a
        restart or a change of leader never sheds replicas."""
        history = history if isinstance(history, Mapping) else {}
        hold = history.get("hold")
        hold = max(current_replicas, int(hold)) if isinstance(hold, (int, float)) and math.isfinite(hold) else current_replicas
        direction = history.get("lastScaleDirection")
        guard = first_state(now_s, current_replicas, hold, last_scale_s, int(direction) if direction in (-1, 1) else 0)

        def seeded(policy: Policy | None, data: Any) -> Any:
            if policy is None:
                return None
            load_state = getattr(policy, "load_state", None)
            if load_state is None:
                return policy.initial_state()
            return load_state(data if isinstance(data, Mapping) else {}, now_s, current_replicas)

        return AutoscalerState(seeded(self.policy, history.get("policy")), seeded(self.baseline, history.get("baseline")), guard)


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
    :param state: the state returned by the previous call (or ``autoscaler.initial_state()``; the
        first decision seeds the guardrails with the fleet as found, :func:`controller.guardrails.first_state`).
    """
    behavior = autoscaler.behavior
    snapshot = with_empty_fleet(snapshot)
    ctx = autoscaler.context(now_s, current_replicas)
    missing = missing_signals(snapshot, required_signals(autoscaler.policy))
    stale = bool(missing)
    proposal, policy_state = autoscaler.policy.decide(snapshot, ctx, state.policy_state)
    baseline: Proposal | None = None
    baseline_state = state.baseline_state
    if autoscaler.baseline is not None:
        baseline, baseline_state = autoscaler.baseline.decide(snapshot, ctx, baseline_state)
    guard_state = state.guard_state
    if guard_state.last_decision_s == -math.inf:
        guard_state = first_state(now_s, current_replicas, last_scale_s=guard_state.last_scale_s)
    guarded = apply_guardrails(proposal, current_replicas, now_s, behavior, guard_state, stale=stale, baseline=baseline,
                               pending=load.gateway_pending(snapshot), traffic=has_traffic(snapshot))
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
        fallback=proposal.fallback,
    )
    return record, AutoscalerState(policy_state, baseline_state, guarded.state)


def finite_inputs(snapshot: Mapping[str, float]) -> dict[str, float]:
    """The snapshot's finite numeric values, as recorded in a decision."""
    return {k: float(v) for k, v in snapshot.items() if isinstance(v, (int, float)) and math.isfinite(v)}
