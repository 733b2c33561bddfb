"""An in-context controller after SAIR: it learns online, within an episode, from its own experience.

Each decision:

1. The outcome of the previous action is observed: the end-to-end P99 over
   the SLO and the cost rate of the fleet. It is stored with the state and
   the action as an :class:`Experience`, with its **surprisal** (``-log p``
   of the observed P99 change under a running Gaussian of the changes that
   action has produced) and its **Pareto-shaped reward**: +1 when the outcome
   Pareto-dominates the one before the action on (P99, cost), -1 when it is
   dominated, plus how much the P99's excess over the SLO shrank
   (``log max(1, P99 / SLO)``).
2. **Retrieval** fills a bounded context: the ``k_surprising`` most
   surprising experiences and the nearest states, ``context_size`` at most.
3. A pluggable **selector** picks one of the candidate actions (hold, one
   replica more or less on one stage, the planner's proposal) from the
   retrieved experience: :class:`BuiltinSelector` (here), or
   :class:`simulator.pipeline.llm_selector.LLMSelector`. A selector that
   gives no usable answer returns ``None`` and the planner's proposal is
   applied; the reason is in the decision record.

After an action the controller holds until its effect can show (a cold
start when it added replicas, then ``measure_s``), so each experience's
outcome belongs to its action.

The decision functions are pure; the store is part of the returned state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from simulator.pipeline.controllers import PipelineDecision, PipelinePlanner, PlannerState, bound
from simulator.pipeline.snapshot import PipelineSnapshot, nan_to

Action = tuple[int, ...]


@dataclass(frozen=True)
class Outcome:
    """P99 over the SLO (``p99_ratio``) and the fleet's cost rate (USD/h)."""

    p99_ratio: float
    cost_per_hour: float

    def dominates(self, other: Outcome) -> bool:
        return (self.p99_ratio <= other.p99_ratio and self.cost_per_hour <= other.cost_per_hour
                and (self.p99_ratio < other.p99_ratio or self.cost_per_hour < other.cost_per_hour))


@dataclass(frozen=True)
class Experience:
    time_s: float
    state: tuple[float, ...]
    action: Action
    outcome: Outcome
    reward: float
    surprisal: float


def state_features(snapshot: PipelineSnapshot) -> tuple[float, ...]:
    """Per stage: utilisation (clipped at 2), log backlog, replicas over max; then arrivals over the slowest capacity."""
    features: list[float] = []
    for s in snapshot.stages:
        features += [min(2.0, nan_to(s.utilisation, 0.0)), math.log1p(max(0, s.queue)) / 5.0, s.desired / s.max_replicas]
    features.append(snapshot.arrival_rate / max(1e-9, min(s.capacity_rps for s in snapshot.stages)) / 4.0)
    return tuple(features)


def projected_wait_s(snapshot: PipelineSnapshot, horizon_s: float = 30.0) -> float:
    """Seconds of queued work the stages will hold ``horizon_s`` from now at their current queue growth."""
    total = 0.0
    for s in snapshot.stages:
        queue = max(0.0, s.queue + s.queue_growth * horizon_s)
        total += queue / (max(1, s.ready) * s.capacity_rps)
    return total


def outcome_of(snapshot: PipelineSnapshot) -> Outcome:
    """The latency a controller answers for: queued work ahead while there is a backlog (it responds to
    an action within one interval, where the window's P99 lags), else the window's P99."""
    wait = projected_wait_s(snapshot)
    latency = wait if wait > 0.5 else nan_to(snapshot.p99_s, 0.0)
    return Outcome(latency / snapshot.slo_p99_s, snapshot.cost_rate_per_hour)


def pareto_reward(after: Outcome, before: Outcome, slo_weight: float = 1.0) -> float:
    """+1 when the outcome after the action Pareto-dominates the one before it on (P99, cost), -1 when it is
    dominated, 0 otherwise; plus ``slo_weight`` x how much the P99's excess over the SLO shrank, in log terms."""
    shaped = 1.0 if after.dominates(before) else -1.0 if before.dominates(after) else 0.0

    def excess(o: Outcome) -> float:
        return math.log(max(1.0, o.p99_ratio))

    return shaped + slo_weight * (excess(before) - excess(after))


@dataclass(frozen=True)
class Gaussian:
    """Running mean and variance (Welford) of one action's P99 changes."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def update(self, x: float) -> Gaussian:
        n = self.n + 1
        delta = x - self.mean
        mean = self.mean + delta / n
        return Gaussian(n, mean, self.m2 + delta * (x - mean))

    def surprisal(self, x: float, floor: float = 0.05) -> float:
        """``-log p(x)`` under the running Gaussian (a wide prior before two readings)."""
        var = self.m2 / (self.n - 1) if self.n > 1 else 1.0
        sd = max(floor, math.sqrt(var))
        return 0.5 * ((x - self.mean) / sd) ** 2 + math.log(sd * math.sqrt(2 * math.pi))


def retrieve(store: Sequence[Experience], state: tuple[float, ...], context_size: int, k_surprising: int) -> list[Experience]:
    """The ``k_surprising`` most surprising experiences, then the nearest states, ``context_size`` in all."""
    surprising = sorted(store, key=lambda e: -e.surprisal)[:k_surprising]
    chosen = {id(e) for e in surprising}
    nearest = sorted((e for e in store if id(e) not in chosen), key=lambda e: distance(e.state, state))
    return surprising + nearest[: max(0, context_size - len(surprising))]


def distance(a: Sequence[float], b: Sequence[float]) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def candidate_actions(snapshot: PipelineSnapshot, planner_action: Action) -> list[Action]:
    """Hold, one replica more or less on one stage (within bounds), and the planner's proposal."""
    n = len(snapshot.stages)
    out: list[Action] = [(0,) * n]
    for i, s in enumerate(snapshot.stages):
        for delta in (1, -1):
            if s.min_replicas <= s.desired + delta <= s.max_replicas:
                out.append(tuple(delta if j == i else 0 for j in range(n)))
    if planner_action not in out:
        out.append(planner_action)
    return out


@dataclass(frozen=True)
class SelectionContext:
    """What a selector sees: the state, the candidates (the planner's among them) and the retrieved experience."""

    snapshot: PipelineSnapshot
    state: tuple[float, ...]
    candidates: tuple[Action, ...]
    planner_action: Action
    experiences: tuple[Experience, ...]


@dataclass(frozen=True)
class Selection:
    """A selector's answer: the action (``None``: no usable answer) and what to record."""

    action: Action | None
    record: dict[str, Any] = field(default_factory=dict)


class Selector(Protocol):
    name: str

    def select(self, context: SelectionContext) -> Selection: ...


@dataclass(frozen=True)
class BuiltinSelector:
    """Kernel-weighted mean reward of each candidate over the retrieved experience, plus an exploration bonus.

    A candidate never tried near this state scores ``optimism``; the planner's proposal scores a
    ``planner_bonus`` more, so the first decisions follow the planner until its outcomes disappoint.
    """

    bandwidth: float = 0.5
    exploration: float = 0.2
    optimism: float = 0.0
    planner_bonus: float = 0.05
    name: str = "builtin"

    def value(self, action: Action, context: SelectionContext) -> tuple[float, float]:
        weights = [(math.exp(-(distance(e.state, context.state) / self.bandwidth) ** 2), e.reward)
                   for e in context.experiences if e.action == action]
        total = sum(w for w, _ in weights)
        mean = sum(w * r for w, r in weights) / total if total > 1e-6 else self.optimism
        return mean + self.exploration / math.sqrt(1.0 + total), total

    def select(self, context: SelectionContext) -> Selection:
        scored = {}
        for action in context.candidates:
            value, _ = self.value(action, context)
            scored[action] = value + (self.planner_bonus if action == context.planner_action else 0.0)
        best = max(context.candidates, key=lambda a: scored[a])
        return Selection(best, {"values": {str(list(a)): round(v, 4) for a, v in scored.items()}})


@dataclass(frozen=True)
class InContextState:
    planner: PlannerState = PlannerState()
    store: tuple[Experience, ...] = ()
    models: tuple[tuple[Action, Gaussian], ...] = ()
    last_state: tuple[float, ...] | None = None
    last_action: Action | None = None
    last_outcome: Outcome | None = None
    last_time_s: float = -math.inf


@dataclass(frozen=True)
class InContextController:
    """The in-context controller (module docstring); ``selector`` defaults to :class:`BuiltinSelector`."""

    planner: PipelinePlanner = PipelinePlanner()
    selector: Any = None
    context_size: int = 16
    k_surprising: int = 4
    store_size: int = 400
    slo_weight: float = 1.0
    measure_s: float = 20.0
    budget: int | None = None
    name: str = "incontext"

    def settle_s(self, action: Action) -> float:
        """How long an action's effect takes to show: a cold start when it adds replicas, then ``measure_s``."""
        return (self.planner.cold_start_s if any(d > 0 for d in action) else 0.0) + self.measure_s

    def initial_state(self) -> InContextState:
        return InContextState(self.planner.initial_state())

    def observe(self, snapshot: PipelineSnapshot, state: InContextState) -> InContextState:
        """The previous action's outcome stored as an experience (a pure update)."""
        if state.last_action is None or state.last_state is None or state.last_outcome is None:
            return state
        outcome = outcome_of(snapshot)
        models = dict(state.models)
        model = models.get(state.last_action, Gaussian())
        change = outcome.p99_ratio - state.last_outcome.p99_ratio
        surprisal = model.surprisal(change)
        models[state.last_action] = model.update(change)
        reward = pareto_reward(outcome, state.last_outcome, self.slo_weight)
        experience = Experience(snapshot.time_s, state.last_state, state.last_action, outcome, reward, surprisal)
        store = (state.store + (experience,))[-self.store_size:]
        return replace(state, store=store, models=tuple(models.items()))

    def decide(self, snapshot: PipelineSnapshot, state: InContextState) -> tuple[PipelineDecision, InContextState]:
        if state.last_action is not None and snapshot.time_s - state.last_time_s < self.settle_s(state.last_action):
            _, planner_state = self.planner.decide(snapshot, state.planner)  # keep the forecast current
            return (PipelineDecision(snapshot.replicas, ("settling: waiting for the last action's effect",),
                                     {"selector": "settling", "fallback": None, "action": [0] * len(snapshot.stages)}),
                    replace(state, planner=planner_state))
        state = self.observe(snapshot, state)
        planned, planner_state = self.planner.decide(snapshot, state.planner)
        names = snapshot.names
        current = snapshot.replicas
        planner_action = tuple(planned.replicas[n] - current[n] for n in names)
        features = state_features(snapshot)
        context = SelectionContext(snapshot, features, tuple(candidate_actions(snapshot, planner_action)), planner_action,
                                   tuple(retrieve(state.store, features, self.context_size, self.k_surprising)))
        selector = self.selector if self.selector is not None else BuiltinSelector()
        selection = selector.select(context)
        record: dict[str, Any] = {"selector": selector.name, "retrieved": len(context.experiences), **selection.record}
        action = selection.action
        if action is None or action not in context.candidates:
            record.setdefault("fallback", "not_a_candidate" if action is not None else "no_answer")
            action = planner_action
        else:
            record.setdefault("fallback", None)
        record["action"] = list(action)
        replicas = bound({n: current[n] + d for n, d in zip(names, action)}, snapshot, self.budget)
        new_state = replace(state, planner=planner_state, last_state=features, last_action=action,
                            last_outcome=outcome_of(snapshot), last_time_s=snapshot.time_s)
        reasons = (f"{selector.name}: action {list(action)}" + (f" (fallback to planner: {record['fallback']})" if record["fallback"] else ""),)
        return PipelineDecision(replicas, reasons + planned.reasons, record), new_state
