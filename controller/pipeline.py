"""The joint decision of a pipeline: every stage through :func:`controller.autoscaling.decide`, then the shared GPU budget.

A pipeline is several Deployments (an embedder, a retriever, an LLM...) that
serve one request in turn. Each stage is a scale target of its own: its own
:class:`~controller.autoscaling.Autoscaler` (policy, guardrails, SLO) and its
own :class:`~controller.autoscaling.AutoscalerState`, decided on its own
metrics snapshot by the one decision path. What the stages share is the
budget: at most ``max_gpus`` GPUs for the whole pipeline.
:func:`within_budget` then takes replicas away, one at a time, from the stage
under the least pressure (never below its minimum) until the pipeline fits.

Pure, like ``decide``: the simulator (:mod:`simulator.pipeline.stagewise`,
``kis pipeline evaluate``) and the controller (:mod:`controller.pipeline_loop`)
both call :func:`decide_pipeline`; every other pipeline controller of the
simulator bounds its joint proposal with :func:`within_budget`. No second copy.

**Pressure.** Which stage gives a replica up is the one whose ``pressure(name,
n)`` (its load per replica were it to keep ``n``) is lowest, ties by name.
The simulator knows each stage's arrival rate and per-replica capacity
(:func:`simulator.pipeline.controllers.load_pressure`). Online,
:func:`sticky_share`: the cut is spread in proportion to the stages' own wants
(``wanted / n``), a running replica counting :data:`HOLD` times as much as one
not started yet, so a binding budget moves a running replica from one stage
to another only for a clear imbalance, not back and forth every tick.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.autoscaling import Autoscaler, AutoscalerState, decide
from controller.decision import DecisionRecord, GuardStep

#: The guard step a budget cut adds to a stage's decision record.
BUDGET_GUARD = "BudgetLimit"
#: ``pressure(stage, n)``: how much the stage needs its ``n``-th replica (a number, or a tuple of them); the lowest gives one up first.
Pressure = Callable[[str, int], Any]


@dataclass(frozen=True)
class StageLimits:
    """What the budget knows of a stage: its replica bounds and the GPUs one replica holds."""

    name: str
    min_replicas: int
    max_replicas: int
    gpus_per_replica: int = 1


def gpus(replicas: Mapping[str, int], stages: Sequence[StageLimits]) -> int:
    """GPUs the stages hold at ``replicas``."""
    return sum(replicas[s.name] * s.gpus_per_replica for s in stages)


def within_budget(wanted: Mapping[str, int], stages: Sequence[StageLimits], max_gpus: int | None = None,
                  pressure: Pressure | None = None) -> dict[str, int]:
    """``wanted`` within each stage's ``[min, max]`` and, with ``max_gpus``, at most that many GPUs in all.

    The stage of lowest ``pressure`` gives up one replica at a time (default: ``wanted / n``); when every
    stage is at its minimum the minimums stand, even over the budget.
    """
    out = {s.name: min(s.max_replicas, max(s.min_replicas, int(wanted[s.name]))) for s in stages}
    if max_gpus is None:
        return out
    key = pressure or (lambda name, n: wanted[name] / n)
    while gpus(out, stages) > max_gpus:
        shrinkable = [s for s in stages if s.gpus_per_replica > 0 and out[s.name] > s.min_replicas]  # a CPU stage frees no GPU
        if not shrinkable:
            break
        victim = min(shrinkable, key=lambda s: (key(s.name, out[s.name]), s.name))
        out[victim.name] -= 1
    return out


#: How much more a running replica weighs than one not started yet, when the budget chooses (hysteresis).
HOLD = 1.25


def sticky_share(wanted: Mapping[str, int], current: Mapping[str, int], hold: float = HOLD) -> Pressure:
    """``wanted / n``, times ``hold`` while ``n`` replicas already run: the stage keeping the largest share of what
    it asked for gives one up first, and a running replica only for a stage that needs it clearly more."""
    return lambda name, n: wanted[name] * (hold if n <= current[name] else 1.0) / n


@dataclass(frozen=True)
class PipelineStage:
    """One stage: its name, its autoscaler, and the GPUs one of its replicas holds (for the budget)."""

    name: str
    autoscaler: Autoscaler
    gpus_per_replica: int = 1

    @property
    def limits(self) -> StageLimits:
        b = self.autoscaler.behavior
        return StageLimits(self.name, b.min_replicas, b.max_replicas, self.gpus_per_replica)


def budget_cut(record: DecisionRecord, after: int, max_gpus: int, wanted_gpus: int) -> DecisionRecord:
    """``record`` with the budget's cut as its last guard step and its reason (as :mod:`controller.guardrails` words them)."""
    why = f"the pipeline's stages share {max_gpus} GPUs and asked for {wanted_gpus}"
    return dataclasses.replace(record, final=after, reason=f"{BUDGET_GUARD}: {why}",
                               steps=record.steps + (GuardStep(BUDGET_GUARD, record.final, after, why),))


def decide_pipeline(
    stages: Sequence[PipelineStage],
    snapshots: Mapping[str, Mapping[str, float]],
    now_s: float,
    current: Mapping[str, int],
    states: Mapping[str, AutoscalerState],
    max_gpus: int | None = None,
    pressure: Pressure | None = None,
) -> tuple[dict[str, DecisionRecord], dict[str, AutoscalerState]]:
    """Each stage's :func:`decide` on its snapshot, then :func:`within_budget` across them.

    :param states: per stage, the state of the previous call (absent: ``autoscaler.initial_state()``).
    :param pressure: which stage the budget cuts first (default :func:`sticky_share`).
    :returns: per stage, the decision record (a budget cut is its last step and its reason) and the next state.
    """
    records: dict[str, DecisionRecord] = {}
    new_states: dict[str, AutoscalerState] = {}
    for stage in stages:
        previous = states.get(stage.name) or stage.autoscaler.initial_state()
        records[stage.name], new_states[stage.name] = decide(stage.autoscaler, snapshots[stage.name], now_s, current[stage.name], previous)
    if max_gpus is None:
        return records, new_states
    limits = [s.limits for s in stages]
    wanted = {name: r.final for name, r in records.items()}
    kept = within_budget(wanted, limits, max_gpus, pressure or sticky_share(wanted, current))
    used = gpus(wanted, limits)
    for name, n in kept.items():
        if n != wanted[name]:
            records[name] = budget_cut(records[name], n, max_gpus, used)
    return records, new_states
