"""KISim for pipelines: requests flow through a chain of stages in 1 s ticks.

Each tick, every stage (in order) serves from ``t`` to ``t + 1``; a request
that leaves stage ``i`` at time ``s`` reaches stage ``i + 1`` at ``s`` (plus
the KV transfer time from a prefill stage to its decode stage), so it can
cross several stages in one tick. A request that leaves the last stage is
complete; its end-to-end latency runs from its arrival. Requests are never
dropped: ``arrived == completed + in_flight + rejected`` at every tick
(``rejected``: a request an LLM engine can never hold, none with the built-ins).
"""

from __future__ import annotations

import copy
import heapq
import math
from collections import deque
from collections.abc import Mapping

import numpy as np

from simulator.pipeline.capacity import stage_capacity_rps, stage_concurrency_at_capacity, stage_service_s
from simulator.pipeline.snapshot import PipelineSnapshot, StageSnapshot
from simulator.pipeline.spec import PipelineSpec
from simulator.pipeline.stages import Stage
from simulator.workloads.workload import Workload

TICK_S = 1.0
#: Knative's stable and panic windows, seconds, over which the snapshot averages each stage's concurrency.
STABLE_WINDOW_S, PANIC_WINDOW_S = 60, 6


class PipelineSim:
    """A pipeline replaying ``workload``; drive it with :meth:`step`, :meth:`scale` and :meth:`snapshot`.

    :param capacity: requests per second per replica of each stage (default: :func:`stage_capacity_rps` at the
        workload's mean token lengths); what snapshots report and planners read.
    :param window_s: window of the snapshot's rates, latencies and P99.
    """

    def __init__(self, spec: PipelineSpec, workload: Workload, *, capacity: Mapping[str, float] | None = None,
                 window_s: float = 30.0) -> None:
        self.spec = spec
        self.workload = workload
        self.window_s = window_s
        self.now = 0.0
        self._arrivals = workload.arrival_s.tolist()
        prompts, outputs = workload.prompt_tokens.tolist(), workload.output_tokens.tolist()
        self._next = 0
        self.stages = [Stage(s, prompts, outputs) for s in spec.stages]
        if capacity is None:
            p = float(np.mean(workload.prompt_tokens)) if len(workload) else 1000.0
            o = float(np.mean(workload.output_tokens)) if len(workload) else 130.0
            capacity = {s.name: stage_capacity_rps(s, p, o) for s in spec.stages}
        self.capacity = dict(capacity)
        p = float(np.mean(workload.prompt_tokens)) if len(workload) else 1000.0
        o = float(np.mean(workload.output_tokens)) if len(workload) else 130.0
        self.service_s = {s.name: stage_service_s(s, p, o) for s in spec.stages}
        self.concurrency_capacity = {s.name: stage_concurrency_at_capacity(s, p, o) for s in spec.stages}
        #: per tick, requests inside each stage (queued and in service), the last STABLE_WINDOW_S ticks
        self._concurrency: deque[tuple[int, ...]] = deque(maxlen=STABLE_WINDOW_S)
        self._done: list[tuple[float, int]] = []  # left the last stage, (time, rid)
        self.latencies: list[float] = []  # end-to-end, of every completed request, in completion order
        self._recent: deque[tuple[float, float]] = deque()  # (finish time, e2e)
        self._history: deque[tuple[float, tuple[int, ...], tuple[int, ...], tuple[int, ...], int]] = deque()
        self._record()

    # --------------------------------------------------------------- counts
    @property
    def arrived(self) -> int:
        return self._next

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def rejected(self) -> int:
        return sum(s.rejected for s in self.stages)

    @property
    def in_flight(self) -> int:
        return sum(s.holding() for s in self.stages) + len(self._done)

    @property
    def done(self) -> bool:
        """No arrivals left and nothing in flight."""
        return self._next >= len(self._arrivals) and self.in_flight == 0

    def cost_usd(self) -> float:
        return sum(s.gpu_seconds * s.spec.price_per_hour / 3600.0 for s in self.stages)

    def gpu_seconds(self) -> float:
        return sum(s.gpu_seconds for s in self.stages)

    @property
    def scale_events(self) -> int:
        return sum(s.scale_events for s in self.stages)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.spec.name == name:
                return s
        raise KeyError(f"no stage {name!r}; stages: {', '.join(self.spec.names)}")

    def fork(self) -> PipelineSim:
        """An independent copy to run a what-if on (the workload and latency models are shared, not copied)."""
        memo: dict[int, object] = {id(self.workload): self.workload, id(self._arrivals): self._arrivals}
        for stage in self.stages:
            memo[id(stage._prompts)] = stage._prompts
            memo[id(stage._outputs)] = stage._outputs
            memo[id(stage.spec)] = stage.spec
            if stage.spec.is_llm:
                memo[id(stage._model)] = stage._model
                memo[id(stage._engine)] = stage._engine
        return copy.deepcopy(self, memo)

    # -------------------------------------------------------------- control
    def scale(self, stage: str, replicas: int) -> None:
        """Set the desired replicas of one stage now (scale-down drains, never drops)."""
        self.stage(stage).scale(replicas, self.now)

    def step(self, seconds: float = TICK_S) -> None:
        """Run ``seconds`` (whole ticks) from :attr:`now`."""
        for _ in range(max(1, round(seconds / TICK_S))):
            self._tick()

    def run_until(self, t: float) -> None:
        while self.now + 1e-9 < t:
            self._tick()

    def finish(self, max_s: float = 3600.0) -> None:
        """Run on (without new arrivals past the workload) until nothing is in flight, at most ``max_s``."""
        end = self.now + max_s
        while not self.done and self.now < end:
            self._tick()

    def _tick(self) -> None:
        t0, t1 = self.now, self.now + TICK_S
        first = self.stages[0]
        arrivals = self._arrivals
        while self._next < len(arrivals) and arrivals[self._next] < t1:
            first.push(self._next, arrivals[self._next])
            self._next += 1
        for i, stage in enumerate(self.stages):
            stage.run(t0, t1, self._emitter(i))
        done = self._done
        while done and done[0][0] <= t1:
            finish, rid = heapq.heappop(done)
            e2e = finish - arrivals[rid]
            self.latencies.append(e2e)
            self._recent.append((finish, e2e))
        self.now = t1
        self._record()

    def _emitter(self, i: int):
        if i + 1 == len(self.stages):
            done = self._done
            return lambda rid, t: heapq.heappush(done, (t, rid))
        nxt = self.stages[i + 1]
        delay = self.spec.kv_transfer_s if self.stages[i].spec.kind == "prefill" else 0.0
        if delay:
            return lambda rid, t: nxt.push(rid, t + delay)
        return nxt.push

    def _record(self) -> None:
        now = self.now
        waiting = tuple(s.waiting(now) for s in self.stages)
        self._history.append((now, tuple(s.entered for s in self.stages), tuple(s.left for s in self.stages),
                              waiting, self._next))
        self._concurrency.append(tuple(w + s.in_service(now) for w, s in zip(waiting, self.stages)))
        horizon = now - self.window_s
        while len(self._history) > 1 and self._history[1][0] <= horizon:
            self._history.popleft()
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        for s in self.stages:
            while s.latencies and s.latencies[0][0] < horizon:
                s.latencies.popleft()

    # -------------------------------------------------------------- metrics
    def snapshot(self) -> PipelineSnapshot:
        """Per-stage and end-to-end metrics over the last window."""
        now = self.now
        then, entered0, left0, queue0, arrived0 = self._history[0]
        _, entered1, left1, queue1, arrived1 = self._history[-1]
        span = max(now - then, TICK_S)
        stages = []
        for i, stage in enumerate(self.stages):
            spec = stage.spec
            rate = (entered1[i] - entered0[i]) / span
            cap = self.capacity[spec.name]
            ready = len(stage.ready)
            if ready:
                util = rate / (ready * cap)
            else:
                util = 2.0 if rate > 0 or queue1[i] > 0 else 0.0
            recent = [lat for t, lat in stage.latencies if t <= now]
            stages.append(StageSnapshot(
                spec.name, spec.kind, ready, len(stage.starting), len(stage.draining), spec.min_replicas, spec.max_replicas,
                queue1[i], (queue1[i] - queue0[i]) / span, stage.in_service(now), rate, (left1[i] - left0[i]) / span, cap,
                util, float(np.mean(recent)) if recent else math.nan, spec.price_per_hour, self.service_s[spec.name],
                concurrency_capacity=self.concurrency_capacity[spec.name], **self._concurrency_of(i)))
        e2e = [lat for _, lat in self._recent]
        return PipelineSnapshot(now, tuple(stages), (arrived1 - arrived0) / span,
                                float(np.percentile(e2e, 99)) if e2e else math.nan, float(np.mean(e2e)) if e2e else math.nan,
                                self.completed, self.in_flight, self.cost_usd(), self.spec.slo_p99_s)

    def _concurrency_of(self, i: int) -> dict[str, float]:
        """Stage ``i``'s mean concurrency over the stable and the panic window (per-second readings)."""
        readings = [c[i] for c in self._concurrency]
        panic = readings[-PANIC_WINDOW_S:]
        return {"concurrency_stable": float(np.mean(readings)), "concurrency_panic": float(np.mean(panic))}
