"""An in-context controller after SAIR: it learns online, within an episode, from its own experience.

Each decision:

1. The outcome of the previous action is observed: the end-to-end P99 over
   the SLO and the cost rate of the fleet. It is stored with the state and
   the action as an :class:`Experience`, with its **surprisal** (``-log p``
   of the observed P99 change under a running Gaussian of the changes that
   action has produced) and its **Pareto-shaped reward**: +1 when the outcome
   Pareto-dominates the one before the action on (P99, cost), -1 when it is
   dominated, plus how much the P99's excess over the SLO shrank
   (``log max(1, P99 / SLO)``) and how much the cost rate fell (``log``).
2. **Retrieval** fills a bounded context: the ``k_surprising`` most
   surprising experiences and the nearest states, ``context_size`` at most.
3. Every decision starts from the **planner's proposal**; the controller
   keeps a per-stage **residual** (replicas added to or taken from it) and an
   action changes the residual of one stage by one: hold, ``+1`` on the stage
   the bottleneck detector names (:func:`~simulator.pipeline.bottleneck.detect_bottleneck`),
   or ``-1`` on the stage it scores lowest. A pluggable **selector** picks one
   from the retrieved experience: :class:`BuiltinSelector` (here), or
   :class:`simulator.pipeline.llm_selector.LLMSelector`. A selector that gives
   no usable answer returns ``None`` and the hold is applied (the planner's
   proposal with the residual learnt so far); the reason is in the decision record.

After an action the residual stays until the action's effect can show (a cold
start when it added replicas, then ``measure_s``), so each experience's
outcome belongs to its action; the planner's proposal is followed meanwhile.
A negative residual (a replica saved) is dropped as soon as the planner asks
for more replicas on that stage: a saving learnt at a trough does not hold a
rising load back.
With no experience saying otherwise the controller is the planner.

The decision functions are pure; the store is part of the returned state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from simulator.pipeline.bottleneck import stage_scores
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


def pareto_reward(after: Outcome, before: Outcome, slo_weight: float = 1.0, cost_weight: float = 1.0) -> float:
    """+1 when the outcome after the action Pareto-dominates the one before it on (P99, cost), -1 when it is
    dominated, 0 otherwise; plus ``slo_weight`` x how much the P99's excess over the SLO shrank and
    ``cost_weight`` x how much the cost rate fell, both in log terms (so a costlier fleet pays for itself
    only by bringing the P99 back towards the SLO)."""
    shaped = 1.0 if after.dominates(before) else -1.0 if before.dominates(after) else 0.0

    def excess(o: Outcome) -> float:
        return math.log(max(1.0, o.p99_ratio))

    saving = math.log(before.cost_per_hour / after.cost_per_hour) if before.cost_per_hour > 0 and after.cost_per_hour > 0 else 0.0
    return shaped + slo_weight * (excess(before) - excess(after)) + cost_weight * saving


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


def candidate_actions(snapshot: PipelineSnapshot, proposal: dict[str, int], demand_rps: float = 0.0,
                      max_utilisation: float = 0.9, residual: dict[str, int] | None = None) -> list[Action]:
    """Residual changes: hold, one more replica on the detected bottleneck, one fewer on the stage scored lowest
    and on every stage whose ``residual`` is positive
    (each only where ``proposal``, the planner's replicas plus the residual, leaves room within the bounds, and
    a replica less only where the others would still serve the stage's arrivals, or ``demand_rps`` (the
    planner's forecast) if higher, below ``max_utilisation``)."""
    n, names = len(snapshot.stages), snapshot.names
    scores = stage_scores(snapshot)
    out: list[Action] = [(0,) * n]
    up = [i for i, s in enumerate(snapshot.stages) if proposal[s.name] + 1 <= s.max_replicas]
    # a replica less only where the rest still serve the stage's arrivals below ``max_utilisation``
    down = [i for i, s in enumerate(snapshot.stages) if proposal[s.name] - 1 >= s.min_replicas
            and max(s.arrival_rate, demand_rps) < max_utilisation * (proposal[s.name] - 1) * s.capacity_rps]
    if up:
        i = max(up, key=lambda j: scores[names[j]])
        out.append(tuple(1 if j == i else 0 for j in range(n)))
    if down:
        i = min(down, key=lambda j: scores[names[j]])
        out.append(tuple(-1 if j == i else 0 for j in range(n)))
    for i in down:  # and one fewer where an earlier action added one (undo)
        if (residual or {}).get(names[i], 0) > 0 and (undo := tuple(-1 if j == i else 0 for j in range(n))) not in out:
            out.append(undo)
    return out


@dataclass(frozen=True)
class SelectionContext:
    """What a selector sees: the state, the candidate residual changes (``planner_action``, the hold, among them)
    and the retrieved experience."""

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

    A candidate never tried near this state scores :meth:`prior`; the planner's proposal (the hold) scores a
    ``planner_bonus`` more, so the first decisions follow the planner until its outcomes disappoint.
    """

    bandwidth: float = 0.5
    exploration: float = 0.2
    optimism: float = 0.0
    planner_bonus: float = 0.05
    name: str = "builtin"

    def kernel_mean(self, action: Action, context: SelectionContext) -> tuple[float | None, float]:
        """Kernel-weighted mean reward of ``action`` over the retrieved experience (``None`` untried), and the weight."""
        weights = [(math.exp(-(distance(e.state, context.state) / self.bandwidth) ** 2), e.reward)
                   for e in context.experiences if e.action == action]
        total = sum(w for w, _ in weights)
        return (sum(w * r for w, r in weights) / total if total > 1e-6 else None), total

    def value(self, action: Action, context: SelectionContext) -> tuple[float, float]:
        mean, total = self.kernel_mean(action, context)
        return (self.prior(action, context) if mean is None else mean) + self.exploration / math.sqrt(1.0 + total), total

    def prior(self, action: Action, context: SelectionContext) -> float:
        """An untried action's value, plus ``optimism``: minus the reward of its inverse where that was tried
        (the Pareto reward is antisymmetric: undoing a step that did not pay pays back), else the mean reward of
        the retrieved experience (no evidence that it differs from what was tried; every action's outcome shares
        the drift of the load)."""
        inverse, _ = self.kernel_mean(tuple(-d for d in action), context)
        if inverse is not None and any(action):
            return -inverse + self.optimism
        rewards = [e.reward for e in context.experiences]
        return (sum(rewards) / len(rewards) if rewards else 0.0) + self.optimism

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
    residual: tuple[tuple[str, int], ...] = ()
    last_state: tuple[float, ...] | None = None
    last_action: Action | None = None
    last_outcome: Outcome | None = None
    last_time_s: float = -math.inf


def with_residual(planned: dict[str, int], residual: dict[str, int], snapshot: PipelineSnapshot) -> dict[str, int]:
    """The planner's replicas plus the residual, within each stage's bounds."""
    return {s.name: min(s.max_replicas, max(s.min_replicas, planned[s.name] + residual.get(s.name, 0))) for s in snapshot.stages}


@dataclass(frozen=True)
class InContextController:
    """The in-context controller (module docstring); ``selector`` defaults to :class:`BuiltinSelector`."""

    planner: PipelinePlanner = PipelinePlanner()
    selector: Any = None
    context_size: int = 16
    k_surprising: int = 4
    store_size: int = 400
    slo_weight: float = 1.0
    cost_weight: float = 1.0
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
        reward = pareto_reward(outcome, state.last_outcome, self.slo_weight, self.cost_weight)
        experience = Experience(snapshot.time_s, state.last_state, state.last_action, outcome, reward, surprisal)
        store = (state.store + (experience,))[-self.store_size:]
        return replace(state, store=store, models=tuple(models.items()))

    def decide(self, snapshot: PipelineSnapshot, state: InContextState) -> tuple[PipelineDecision, InContextState]:
        residual = dict(state.residual)
        own = {s.name: max(s.min_replicas, s.desired - residual.get(s.name, 0)) for s in snapshot.stages}
        planned, planner_state = self.planner.decide_from(snapshot, state.planner, own)
        # a replica taken from the planner's proposal is given back as soon as the planner asks for more there
        residual = {n: 0 if r < 0 and planned.replicas[n] > own[n] else r for n, r in residual.items()}
        proposal = with_residual(planned.replicas, residual, snapshot)
        names = snapshot.names
        if state.last_action is not None and snapshot.time_s - state.last_time_s < self.settle_s(state.last_action):
            return (PipelineDecision(bound(proposal, snapshot, self.budget),
                                     ("settling: the planner's proposal with the residual, waiting for the last action's effect",) + planned.reasons,
                                     {"selector": "settling", "fallback": None, "action": [0] * len(names), "residual": residual}),
                    replace(state, planner=planner_state, residual=tuple(sorted(residual.items()))))
        state = self.observe(snapshot, state)
        features = state_features(snapshot) + tuple(residual.get(n, 0) / 4.0 for n in names)
        hold: Action = (0,) * len(names)
        ahead = planner_state.demand.forecast(self.planner.cold_start_s + self.planner.interval_s)
        demand = ahead if math.isfinite(ahead) else 0.0
        context = SelectionContext(snapshot, features, tuple(candidate_actions(snapshot, proposal, demand, residual=residual)), hold,
                                   tuple(retrieve(state.store, features, self.context_size, self.k_surprising)))
        selector = self.selector if self.selector is not None else BuiltinSelector()
        selection = selector.select(context)
        record: dict[str, Any] = {"selector": selector.name, "retrieved": len(context.experiences), **selection.record}
        action = selection.action
        if action is None or action not in context.candidates:
            record.setdefault("fallback", "not_a_candidate" if action is not None else "no_answer")
            action = hold
        else:
            record.setdefault("fallback", None)
        for name, delta in zip(names, action):
            residual[name] = residual.get(name, 0) + delta
        record["action"], record["residual"] = list(action), dict(residual)
        replicas = bound(with_residual(planned.replicas, residual, snapshot), snapshot, self.budget)
        new_state = replace(state, planner=planner_state, residual=tuple(sorted(residual.items())), last_state=features,
                            last_action=action, last_outcome=outcome_of(snapshot), last_time_s=snapshot.time_s)
        reasons = (f"{selector.name}: residual change {list(action)}" + (f" (fallback to planner: {record['fallback']})" if record["fallback"] else ""),)
        return PipelineDecision(replicas, reasons + planned.reasons, record), new_state
