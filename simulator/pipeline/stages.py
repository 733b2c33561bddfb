"""The servers of one pipeline stage: replicas with a cold start, a FIFO queue, draining on scale-down.

A stage receives requests with :meth:`Stage.push` (the time they reach it)
and :meth:`Stage.run` serves them from ``t0`` to ``t1``, handing each request
that leaves to ``emit(rid, time)``. An LLM stage routes each request to the
ready replica with the fewest outstanding requests, each replica a
:class:`~simulator.engine.replica.ReplicaEngine`; a batch stage serves FIFO
batches of up to ``max_batch`` on the first free replica. A replica asked for
at ``t`` is ready at ``t + cold_start_s`` (at the first tick boundary after).
A removed replica takes no new requests, serves what it holds, then stops.
Every replica is billed from the time it was asked for until it stops.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from simulator.engine.replica import ReplicaEngine
from simulator.pipeline.spec import StageSpec

Emit = Callable[[int, float], None]


@dataclass
class Replica:
    """One replica: asked for at ``created_s``, ready from ``ready_s``; an engine (LLM) or a busy-until time (batch)."""

    created_s: float
    ready_s: float
    engine: ReplicaEngine | None = None
    free_at: float = 0.0
    carry_busy_s: float = 0.0
    batch: int = 0


class Stage:
    """One stage's replicas and queue; see the module docstring."""

    def __init__(self, spec: StageSpec, prompts: list[int], outputs: list[int]) -> None:
        self.spec = spec
        self._prompts, self._outputs = prompts, outputs
        self._queue: list[tuple[float, int]] = []  # (time it reached the stage, rid)
        self.starting: list[Replica] = []
        self.ready: list[Replica] = []
        self.draining: list[Replica] = []
        self.entered_s: dict[int, float] = {}
        self.entered = 0
        self.left = 0
        self.rejected = 0
        self.gpu_seconds = 0.0
        self.scale_events = 0
        self.busy_s = 0.0  # batch stages: busy replica-seconds of the last run
        #: (time it left, seconds it spent in the stage) of recent requests; the simulator trims it.
        self.latencies: deque[tuple[float, float]] = deque()
        if spec.is_llm:
            from simulator.pipeline.runtime import llm_runtime

            self._model, self._engine = llm_runtime(spec)
        for _ in range(spec.initial_replicas):
            self.ready.append(self._new_replica(0.0, 0.0))

    # ---------------------------------------------------------------- state
    @property
    def desired(self) -> int:
        return len(self.starting) + len(self.ready)

    @property
    def live(self) -> int:
        """Replicas billed now: starting, ready and draining."""
        return len(self.starting) + len(self.ready) + len(self.draining)

    def waiting(self, now: float) -> int:
        """Requests at the stage not being served: in its queue, or waiting inside an engine."""
        queued = sum(1 for t, _ in self._queue if t <= now)
        if self.spec.is_llm:
            queued += sum(r.engine.num_waiting for r in self.ready + self.draining)  # type: ignore[union-attr]
        return queued

    def in_service(self, now: float) -> int:
        """Requests being served: the engines' running batches, or the batches not finished by ``now``."""
        if self.spec.is_llm:
            return sum(r.engine.num_running for r in self.ready + self.draining)  # type: ignore[union-attr]
        return sum(r.batch for r in self.ready + self.draining if r.free_at > now)

    def holding(self) -> int:
        """Every request inside the stage: queued (including those on their way in) or in an engine."""
        held = len(self._queue)
        if self.spec.is_llm:
            held += sum(r.engine.num_outstanding for r in self.ready + self.draining)  # type: ignore[union-attr]
        return held

    # --------------------------------------------------------------- inputs
    def push(self, rid: int, t: float) -> None:
        """Request ``rid`` reaches the stage at ``t``."""
        heapq.heappush(self._queue, (t, rid))
        self.entered_s[rid] = t
        self.entered += 1

    def scale(self, replicas: int, now: float) -> None:
        """Set the desired replicas: add starting ones, or remove starting (newest first), then ready ones (drained)."""
        if replicas < 0:
            raise ValueError(f"stage {self.spec.name}: replicas must be >= 0, got {replicas}")
        if replicas != self.desired:
            self.scale_events += 1
        while self.desired < replicas:
            self.starting.append(self._new_replica(now, now + self.spec.cold_start_s))
        while self.desired > replicas:
            if self.starting:
                self.starting.pop()
            else:
                self.draining.append(self.ready.pop())

    def add_ready_replica(self, now: float) -> None:
        """One more replica, ready at once (the ground truth's what-if)."""
        self.ready.append(self._new_replica(now, now))

    # ------------------------------------------------------------ simulation
    def run(self, t0: float, t1: float, emit: Emit) -> None:
        """Start replicas due by ``t0``, serve from ``t0`` to ``t1``, bill the interval, stop drained replicas."""
        for replica in [r for r in self.starting if r.ready_s <= t0]:
            self.starting.remove(replica)
            if self.spec.is_llm:
                replica.engine = ReplicaEngine(self._model, self._engine, start_s=t0)
            replica.free_at = t0
            self.ready.append(replica)
        if self.spec.is_llm:
            self._run_llm(t1, emit)
        else:
            self._run_batch(t0, t1, emit)
        self.gpu_seconds += self.live * (t1 - t0)
        if self.spec.is_llm:
            self.draining = [r for r in self.draining if not r.engine.is_idle]  # type: ignore[union-attr]
        else:
            self.draining = [r for r in self.draining if r.free_at > t1]

    def _leave(self, rid: int, t: float, emit: Emit) -> None:
        self.left += 1
        self.latencies.append((t, t - self.entered_s.pop(rid)))
        emit(rid, t)

    def _run_llm(self, t1: float, emit: Emit) -> None:
        queue, ready = self._queue, self.ready
        kind = self.spec.kind
        while queue and queue[0][0] <= t1 and ready:
            t, rid = heapq.heappop(queue)
            for replica in ready:
                replica.engine.sync(t)  # type: ignore[union-attr]
            engine = min(ready, key=lambda r: r.engine.num_outstanding).engine  # type: ignore[union-attr]
            engine.advance(t)  # type: ignore[union-attr]
            prompt, output = self._prompts[rid], self._outputs[rid]
            if kind == "prefill":
                output = 1
            elif kind == "decode":
                prompt, output = prompt + 1, max(1, output - 1)
            if not engine.submit(rid, t, prompt, output):  # type: ignore[union-attr]
                self.rejected += 1
                self.entered_s.pop(rid, None)
        for replica in ready + self.draining:
            engine = replica.engine
            engine.advance(t1)  # type: ignore[union-attr]
            for done in engine.finished:  # type: ignore[union-attr]
                self._leave(done.rid, done.finish_s, emit)
            engine.finished.clear()  # type: ignore[union-attr]

    def _run_batch(self, t0: float, t1: float, emit: Emit) -> None:
        spec, queue = self.spec, self._queue
        busy = 0.0
        for replica in self.ready + self.draining:
            part = min(replica.carry_busy_s, t1 - t0)
            busy += part
            replica.carry_busy_s -= part
        while queue and self.ready:
            replica = min(self.ready, key=lambda r: r.free_at)
            start = max(replica.free_at, queue[0][0], t0)
            if start >= t1:
                break
            batch = []
            while queue and queue[0][0] <= start and len(batch) < spec.max_batch:
                batch.append(heapq.heappop(queue)[1])
            duration = spec.base_s + spec.per_item_s * len(batch)
            replica.free_at = start + duration
            replica.batch = len(batch)
            inside = min(replica.free_at, t1) - start
            busy += inside
            replica.carry_busy_s += duration - inside
            for rid in batch:
                self._leave(rid, replica.free_at, emit)
        self.busy_s = busy

    def _new_replica(self, created_s: float, ready_s: float) -> Replica:
        replica = Replica(created_s, ready_s, free_at=ready_s)
        if self.spec.is_llm and ready_s <= created_s:
            replica.engine = ReplicaEngine(self._model, self._engine, start_s=created_s)
        return replica
