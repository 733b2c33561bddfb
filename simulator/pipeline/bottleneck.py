"""Which stage limits the pipeline: a detector on one snapshot, and the simulator's ground truth.

:func:`detect_bottleneck` estimates, per stage, the seconds one more replica
would take off a request's time there, from what a monitoring system sees:
the stage's latency in excess of its service time (a lone request's time in
one replica: the rest is queueing and batching), plus its backlog in seconds
of its ready capacity, counting the queue's growth over ``GROWTH_HORIZON_S``;
one more replica among ``ready`` removes about ``1 / (ready + 1)`` of that.
Utilisation above 1 (a stage that cannot keep up) adds ``W_OVERLOAD`` per unit.
The highest estimate names the bottleneck. :func:`detect_bottleneck_v1` is the
previous detector (utilisation, backlog and raw latency share), kept to
measure against.

:func:`true_bottleneck` asks the simulator: it forks it once per stage,
gives that stage one more replica ready at once, runs ``horizon_s`` seconds
and measures the request-seconds spent in the pipeline (Little's law: mean
latency times throughput). The stage whose replica saves the most is the
bottleneck; ``None`` when no replica saves at least ``min_gain`` of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from simulator.pipeline.snapshot import PipelineSnapshot, StageSnapshot, nan_to

#: Seconds of queue growth the backlog term looks ahead.
GROWTH_HORIZON_S = 15.0
#: Weight of utilisation above 1.
W_OVERLOAD = 1.0
#: Weights of the previous detector's three terms (:func:`detect_bottleneck_v1`).
W_UTILISATION, W_BACKLOG, W_LATENCY = 1.0, 1.0, 0.3
#: Backlog (seconds of ready capacity) at which the previous detector's backlog term saturates at 1.
BACKLOG_SCALE_S = 10.0
#: A utilisation above this counts as saturated (the previous detector clips there).
UTILISATION_CAP = 2.0


def replica_gain_s(stage: StageSnapshot) -> float:
    """Seconds one more replica would take off a request's time in ``stage`` (infinite with none ready under load)."""
    if stage.ready == 0:
        return math.inf if stage.queue > 0 or stage.arrival_rate > 0 else 0.0
    ready_capacity = stage.ready * stage.capacity_rps
    backlog = (stage.queue + max(0.0, stage.queue_growth) * GROWTH_HORIZON_S) / ready_capacity
    excess = max(0.0, nan_to(stage.latency_s, 0.0) - nan_to(stage.service_s, 0.0))
    overload = max(0.0, nan_to(stage.utilisation, 0.0) - 1.0)
    return (excess + backlog) / (stage.ready + 1) + W_OVERLOAD * overload


def stage_scores(snapshot: PipelineSnapshot) -> dict[str, float]:
    """The detector's score of every stage (higher: more likely the bottleneck)."""
    return {s.name: replica_gain_s(s) for s in snapshot.stages}


def detect_bottleneck(snapshot: PipelineSnapshot) -> str:
    """The stage most likely limiting the pipeline (the first of equals)."""
    scores = stage_scores(snapshot)
    return max(snapshot.names, key=lambda name: scores[name])


def _backlog_s(stage: StageSnapshot) -> float:
    if stage.ready == 0:
        return BACKLOG_SCALE_S if stage.queue > 0 else 0.0
    return stage.queue / (stage.ready * stage.capacity_rps) + max(0.0, stage.queue_growth) / stage.capacity_rps


def stage_scores_v1(snapshot: PipelineSnapshot) -> dict[str, float]:
    """The previous detector's scores: utilisation + saturating backlog + 0.3 x raw latency share."""
    latencies = [nan_to(s.latency_s, 0.0) for s in snapshot.stages]
    total = sum(latencies)
    scores = {}
    for stage, latency in zip(snapshot.stages, latencies):
        utilisation = min(UTILISATION_CAP, nan_to(stage.utilisation, 0.0))
        backlog = min(1.0, _backlog_s(stage) / BACKLOG_SCALE_S)
        share = latency / total if total > 0 else 0.0
        scores[stage.name] = W_UTILISATION * utilisation + W_BACKLOG * backlog + W_LATENCY * share
    return scores


def detect_bottleneck_v1(snapshot: PipelineSnapshot) -> str:
    """The previous detector's answer (for before/after measurements)."""
    scores = stage_scores_v1(snapshot)
    return max(snapshot.names, key=lambda name: scores[name])


def request_seconds(sim, horizon_s: float) -> float:
    """Requests in flight summed over the next ``horizon_s`` seconds of ``sim`` (which it advances)."""
    total = 0.0
    for _ in range(max(1, round(horizon_s))):
        sim.step()
        total += sim.in_flight
    return total


def what_if_gains(sim, horizon_s: float = 30.0, stages: Sequence[str] | None = None) -> dict[str, float]:
    """Request-seconds saved over ``horizon_s`` by one more ready replica of each stage (``sim`` is not changed)."""
    base = request_seconds(sim.fork(), horizon_s)
    gains = {}
    for name in stages or sim.spec.names:
        fork = sim.fork()
        fork.stage(name).add_ready_replica(fork.now)
        gains[name] = base - request_seconds(fork, horizon_s)
    return gains


def true_bottleneck(sim, horizon_s: float = 30.0, min_gain: float = 0.02) -> str | None:
    """The stage whose added replica lowers the request-seconds of the next ``horizon_s`` most; ``None`` when
    none saves a share ``min_gain`` of the baseline's."""
    base = request_seconds(sim.fork(), horizon_s)
    gains = what_if_gains(sim, horizon_s)
    best = max(gains, key=lambda name: gains[name])
    return best if base > 0 and gains[best] > min_gain * base else None
