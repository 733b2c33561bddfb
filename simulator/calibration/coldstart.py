"""Fit the simulator's pod start-up (:class:`~simulator.cluster.config.PodLifecycle`) to observed pods.

A simulated pod waits for a node (``provisioning_delay_s`` when none is free),
then pulls the image (``image_pull_s`` on a node without it,
``image_pull_cached_s`` on one that has it) and loads the model
(``model_load_s``), each duration times a factor uniform in
``[1 - jitter, 1 + jitter]``. From kube-state-metrics we see, per pod, the
time from creation to scheduling (waiting for a node, when long) and from
scheduling to Ready (pull and load). Pods that waited longer than
``fresh_node_s`` are taken to have landed on a new node (and pulled the
image); the others on a node that had it. Pull and load cannot be told apart
on a warm node, so ``image_pull_cached_s`` keeps its value and the load time
takes the rest of the mean. The jitter matches the spread of warm starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulator.calibration.history import PodTimes


@dataclass(frozen=True)
class StartupFit:
    """Observed start-ups and the lifecycle fitted to them (``None`` where the data say nothing)."""

    pods: int
    warm: int
    fresh: int
    startup_mean_s: float
    startup_p90_s: float
    model_load_s: float | None
    image_pull_s: float | None
    jitter: float | None
    provisioning_delay_s: float | None

    def lifecycle_fields(self) -> dict[str, float]:
        """The ``ClusterSection`` fields this fit sets."""
        out = {"model_load_s": self.model_load_s, "image_pull_s": self.image_pull_s, "lifecycle_jitter": self.jitter,
               "provisioning_delay_s": self.provisioning_delay_s}
        return {k: round(v, 3) for k, v in out.items() if v is not None}


def fit_startup(pods: Sequence[PodTimes], *, image_pull_cached_s: float = 2.0, image_pull_s: float = 30.0, fresh_node_s: float = 30.0) -> StartupFit:
    """Fit start-up durations of ``pods`` (those with created, scheduled and ready times).

    Without warm starts the load time is the fresh start-up less ``image_pull_s``, which is kept.
    """
    complete = [p for p in pods if all(math.isfinite(v) for v in (p.created_s, p.scheduled_s, p.ready_s)) and p.startup_s >= 0 and p.pending_s >= 0]
    if not complete:
        return StartupFit(0, 0, 0, math.nan, math.nan, None, None, None, None)
    startup = np.array([p.startup_s for p in complete])
    warm = np.array([p.startup_s for p in complete if p.pending_s <= fresh_node_s])
    fresh = [p for p in complete if p.pending_s > fresh_node_s]
    load = jitter = pull = delay = None
    if len(warm):
        load = max(0.0, float(warm.mean()) - image_pull_cached_s)
        if len(warm) >= 2 and warm.mean() > 0:
            # factor spread: std of (U1 * cached + U2 * load) = jitter * sqrt(cached^2 + load^2) / sqrt(3)
            jitter = float(min(0.9, math.sqrt(3.0) * warm.std(ddof=1) / math.hypot(image_pull_cached_s, load)))
    if fresh:
        fresh_startup = float(np.mean([p.startup_s for p in fresh]))
        if load is None:
            load = max(0.0, fresh_startup - image_pull_s)
        else:
            pull = max(0.0, fresh_startup - load)
        delay = float(np.median([p.pending_s for p in fresh]))
    return StartupFit(len(complete), len(warm), len(fresh), float(startup.mean()), float(np.percentile(startup, 90)), load, pull, jitter, delay)
