"""KISim's cluster: node pools, pods with a start-up lifecycle, a router and
one continuous-batching engine per ready pod.

The cluster is driven from outside: :meth:`Cluster.run_until` replays the
workload's arrivals up to a time, :meth:`Cluster.scale` sets the desired
replicas with Deployment semantics, :meth:`Cluster.snapshot` reads the
metrics a Prometheus server would hold. Requests that arrive while no replica
is ready wait in the gateway (they are never lost) and count against the SLO;
their number is the activation signal ``gateway_pending``.

The serving signals are over the Ready pods (draining ones are terminating
pods, which the HPA and Knative leave out). Every second the serving
concurrency (running + waiting) is sampled, and the snapshot averages those
samples over the KPA's windows (``concurrency_stable``, ``concurrency_panic``),
as Knative averages its 1 s buckets.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np

from controller import signals as sig
from simulator.cluster.config import ClusterConfig, NodePool
from simulator.cluster.router import make_router
from simulator.cluster.telemetry import MetricsRecorder
from simulator.copying import attributes, restore
from simulator.engine.activity import KernelActivity
from simulator.engine.metrics import MetricSink
from simulator.engine.replica import EngineConfig, FinishedRequest, ReplicaEngine
from simulator.profiles.latency import IterationTimeModel
from simulator.workloads.workload import Workload

PENDING, STARTING, READY, DRAINING, TERMINATED = "Pending", "Starting", "Ready", "Draining", "Terminated"


@dataclass(frozen=True)
class PoolRuntime:
    """What the simulation needs of a node pool: its latency model, limits and price."""

    pool: NodePool
    model: IterationTimeModel
    engine: EngineConfig
    price_per_gpu_s: float
    speed: float = 1.0

    def __reduce__(self) -> tuple:  # copy and pickle through the constructor (a compiled frozen dataclass has no setstate)
        return PoolRuntime, (self.pool, self.model, self.engine, self.price_per_gpu_s, self.speed)


class Node:
    __slots__ = ("pool", "gpus_free", "has_image", "ready_s")

    def __init__(self, pool: PoolRuntime, ready_s: float) -> None:
        self.pool = pool
        self.gpus_free = pool.pool.gpus_per_node
        self.has_image = False
        self.ready_s = ready_s

    def __reduce__(self) -> tuple:  # copy and pickle, also when compiled (simulator.copying)
        return Node, (self.pool, self.ready_s), attributes(self)

    def __setstate__(self, state: dict) -> None:
        restore(self, state)


class Pod:
    """One replica. Implements the router's ``ReplicaView`` once Ready."""

    __slots__ = ("pid", "phase", "created_s", "scheduled_s", "running_s", "ready_s", "terminated_s", "node", "engine", "activity")

    def __init__(self, pid: int, created_s: float) -> None:
        self.pid = pid
        self.phase = PENDING
        self.created_s = created_s
        self.scheduled_s = math.nan
        self.running_s = math.nan  # image pulled, containers started (phase Running)
        self.ready_s = math.nan
        self.terminated_s = math.nan
        self.node: Node | None = None
        self.engine: ReplicaEngine | None = None
        self.activity = KernelActivity()

    def __reduce__(self) -> tuple:  # copy and pickle, also when compiled (simulator.copying)
        return Pod, (self.pid, self.created_s), attributes(self)

    def __setstate__(self, state: dict) -> None:
        restore(self, state)

    @property
    def num_outstanding(self) -> int:
        engine = self.engine
        return engine.num_outstanding if engine is not None else 0

    @property
    def outstanding_tokens(self) -> int:
        return self.engine.outstanding_tokens if self.engine else 0

    @property
    def speed(self) -> float:
        return self.node.pool.speed if self.node else 1.0


@dataclass
class Timeline:
    """Per control tick: time, desired, ready and starting replicas, GPUs billed and cumulative cost."""

    t: list[float]
    desired: list[int]
    ready: list[int]
    starting: list[int]
    gpus: list[int]
    cost_usd: list[float]

    def __reduce__(self) -> tuple:  # copy and pickle, also when compiled
        return Timeline, (self.t, self.desired, self.ready, self.starting, self.gpus, self.cost_usd)


class Cluster:
    """A simulated serving Deployment on a GPU cluster, replaying one workload.

    :param config: pools, model, lifecycle and serving limits.
    :param workload: the requests to replay.
    :param pools: the resolved pools (latency model, KV capacity, price), see :func:`simulator.cluster.build.resolve_pools`.
    :param initial_replicas: replicas Ready at ``t = 0`` (a warm start; nodes beyond the initial ones are
        added as needed, up to each pool's ``max_nodes``).
    :param rng: the only source of randomness (start-up jitter, random router).
    :param windows: the windows (s) of ``concurrency_stable`` and ``concurrency_panic``
        (``stable_window``, ``panic_window``; Knative's 60 s and 6 s by default).
    """

    def __init__(
        self,
        config: ClusterConfig,
        workload: Workload,
        pools: tuple[PoolRuntime, ...],
        *,
        initial_replicas: int = 1,
        rng: np.random.Generator,
        windows: Mapping[str, float] | None = None,
    ) -> None:
        if initial_replicas < 0:
            raise ValueError(f"initial_replicas must be >= 0, got {initial_replicas}")
        self.windows = {**sig.DEFAULT_WINDOWS, **dict(windows or {})}
        self._concurrency: deque[float] = deque(maxlen=max(1, math.ceil(max(self.windows.values()))))
        self._next_sample = 1.0
        self.config = config
        self.workload = workload
        self.now = 0.0
        self.rng = rng
        self.router = make_router(config.router, rng)
        self.sink = MetricSink()
        self.recorder = MetricsRecorder(config.window_s, config.long_window_s)
        self.finished: list[FinishedRequest] = []
        self.rejected = 0
        self.scale_events = 0
        self.desired = 0
        self._arrivals = workload.arrival_s.tolist()  # Python floats and ints: the event loop reads one at a time
        self._prompts = workload.prompt_tokens.tolist()
        self._outputs = workload.output_tokens.tolist()
        self._next_arrival = 0
        self._gateway: list[int] = []
        self._events: list[tuple[float, int, str, object]] = []
        self._seq = 0
        self._pods: list[Pod] = []  # live: Pending, Starting, Ready (creation order)
        self._ready: list[Pod] = []
        self._draining: list[Pod] = []
        self._billed: dict[Pod, None] = {}  # insertion-ordered: sums over it are reproducible
        self._closed_cost = 0.0
        self._closed_gpu_s = 0.0
        self._next_pid = 0
        self.nodes: list[Node] = []
        self._provisioning: dict[str, int] = {}
        self.pools = pools
        for runtime in pools:
            self._provisioning[runtime.pool.name] = 0
            for _ in range(runtime.pool.initial_nodes):
                node = Node(runtime, 0.0)
                node.has_image = True
                self.nodes.append(node)
        self.timeline = Timeline([], [], [], [], [], [])
        self._warm_start(initial_replicas)
        self.recorder.record(0.0, self.sink)

    def __reduce__(self) -> tuple:
        """Copy and pickle (also when compiled): an empty cluster on the same inputs, then every attribute."""
        return _empty_cluster, (self.config, self.workload, self.pools, self.rng, self.windows), attributes(self)

    def __setstate__(self, state: dict) -> None:
        restore(self, state)

    # ------------------------------------------------------------- counts
    @property
    def ready_replicas(self) -> int:
        return len(self._ready)

    @property
    def starting_replicas(self) -> int:
        return len(self._pods) - len(self._ready)

    @property
    def gpus_in_use(self) -> int:
        return len(self._billed)

    @property
    def done(self) -> bool:
        return self._next_arrival >= len(self._arrivals)

    def gpu_seconds(self) -> float:
        """GPU-seconds billed so far: every scheduled pod from scheduling to termination (or now)."""
        return self._closed_gpu_s + sum(self.now - p.scheduled_s for p in self._billed)

    def cost_usd(self) -> float:
        return self._closed_cost + sum((self.now - p.scheduled_s) * cast(Node, p.node).pool.price_per_gpu_s for p in self._billed)

    # ------------------------------------------------------------ control
    def scale(self, replicas: int) -> None:
        """Set the desired replicas now, with Deployment semantics.

        Scale-down removes Pending pods first, then Starting ones, then Ready
        ones, newest first in each group. A removed Ready pod gets no new
        requests, serves what it holds, then terminates.
        """
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        if replicas != self.desired:
            self.scale_events += 1
        self.desired = replicas
        live = len(self._pods)
        if replicas > live:
            for _ in range(replicas - live):
                pod = Pod(self._next_pid, self.now)
                self._next_pid += 1
                self._pods.append(pod)
            self._schedule_pending()
        elif replicas < live:
            rank = {PENDING: 0, STARTING: 1, READY: 2}
            victims = sorted(self._pods, key=lambda p: (rank[p.phase], -p.created_s, -p.pid))[: live - replicas]
            for pod in victims:
                self._remove(pod)

    def run_until(self, t: float) -> None:
        """Replay arrivals and cluster events up to time ``t``."""
        arrivals = self._arrivals
        n = len(arrivals)
        events = self._events
        route = self._route
        while True:
            i = self._next_arrival
            next_arrival = arrivals[i] if i < n else math.inf
            next_event = events[0][0] if events else math.inf
            first = next_arrival if next_arrival < next_event else next_event
            if self._next_sample <= t and self._next_sample < first:
                self._sample_concurrency(self._next_sample)
                continue
            if first > t:
                break
            if next_event <= next_arrival:
                when, _, kind, obj = heapq.heappop(events)
                self.now = when
                if kind == "pod_ready":
                    self._pod_ready(obj)  # type: ignore[arg-type]
                else:
                    self._node_ready(obj)  # type: ignore[arg-type]
            else:
                self.now = next_arrival
                self._next_arrival = i + 1
                if self._ready:
                    route(i)
                else:
                    self._gateway.append(i)
        self.now = t
        for pod in self._ready:
            pod.engine.advance(t)  # type: ignore[union-attr]
        self._reap_drained(t)
        self._collect()

    def _sample_concurrency(self, when: float) -> None:
        """One 1 s reading of the serving concurrency (requests on the Ready pods)."""
        self.now = when
        total = 0
        for pod in self._ready:
            engine = pod.engine
            if when >= engine.finish_bound_s:  # type: ignore[union-attr]  # engine.sync(when), written out: every second
                engine.advance(when)  # type: ignore[union-attr]
            total += engine.num_outstanding  # type: ignore[union-attr]
        self._concurrency.append(float(total))
        self._next_sample = when + 1.0

    def concurrency_average(self, window_s: float) -> float:
        """Mean of the per-second concurrency readings of the last ``window_s`` seconds (NaN before the first)."""
        n = min(len(self._concurrency), max(1, int(round(window_s))))
        if n == 0:
            return math.nan
        return sum(list(self._concurrency)[-n:]) / n

    @property
    def pending_pods(self) -> int:
        """Pods in phase Pending: not scheduled yet, or pulling the image."""
        now = self.now
        return sum(1 for p in self._pods if p.phase == PENDING or (p.phase == STARTING and not now >= p.running_s))

    def snapshot(self) -> dict[str, float]:
        """The metrics snapshot at :attr:`now` (record it; call once per control tick)."""
        now = self.now
        self.recorder.record(now, self.sink)
        snap = self.recorder.signals()
        serving = self._ready
        snap["requests_running"] = float(sum(cast(ReplicaEngine, p.engine).num_running for p in serving))
        snap["requests_waiting"] = float(sum(cast(ReplicaEngine, p.engine).num_waiting for p in serving))
        snap[sig.REPLICAS_REPORTING] = float(len(serving))
        snap[sig.REPLICAS_PENDING] = float(self.pending_pods)
        snap[sig.GATEWAY_PENDING] = float(len(self._gateway))
        snap[sig.CONCURRENCY_STABLE] = self.concurrency_average(self.windows["stable_window"])
        snap[sig.CONCURRENCY_PANIC] = self.concurrency_average(self.windows["panic_window"])
        if self._ready:
            snap["kv_cache_usage"] = sum(cast(ReplicaEngine, p.engine).kv_cache_usage for p in self._ready) / len(self._ready)
            # DCGM_FI_DEV_GPU_UTIL of each ready pod (percent of the last second with a kernel running), averaged
            utils = [pod.activity.utilization(cast(ReplicaEngine, pod.engine), now) for pod in self._ready]
            snap["gpu_utilization"] = sum(utils) / len(utils)
        else:
            snap["kv_cache_usage"] = math.nan
            snap["gpu_utilization"] = math.nan
        snap[sig.REPLICAS_DESIRED] = float(self.desired)
        snap[sig.REPLICAS_READY] = float(len(self._ready))
        snap[sig.REPLICAS_STARTING] = float(self.starting_replicas)
        snap[sig.TIME_OF_DAY_S] = (self.workload.start_time_of_day_s + now) % 86400.0
        tl = self.timeline
        tl.t.append(now)
        tl.desired.append(self.desired)
        tl.ready.append(len(self._ready))
        tl.starting.append(self.starting_replicas)
        tl.gpus.append(len(self._billed))
        tl.cost_usd.append(self.cost_usd())
        return snap

    def finish(self) -> None:
        """Serve every request still in the system (no further arrivals are replayed)."""
        for pod in self._ready + self._draining:
            pod.engine.drain()  # type: ignore[union-attr]
        self._collect()

    @property
    def unserved(self) -> int:
        """Requests that arrived but were never handed to a replica (still in the gateway)."""
        return len(self._gateway)

    # ----------------------------------------------------------- internals
    def _warm_start(self, replicas: int) -> None:
        self.desired = replicas
        for _ in range(replicas):
            pod = Pod(self._next_pid, 0.0)
            self._next_pid += 1
            self._pods.append(pod)
            node = self._free_node() or self._warm_node()
            if node is None:
                raise ValueError(f"initial_replicas={replicas} exceeds the GPUs the node pools can hold ({self.config.max_gpus})")
            self._bind(pod, node)
            pod.running_s = 0.0
            self._pod_ready(pod)

    def _warm_node(self) -> Node | None:
        """A node added at the start for a warm fleet larger than the initial nodes (as if it had been running)."""
        for runtime in self.pools:
            if sum(1 for n in self.nodes if n.pool is runtime) < runtime.pool.max_nodes:
                node = Node(runtime, 0.0)
                node.has_image = True
                self.nodes.append(node)
                return node
        return None

    def _free_node(self) -> Node | None:
        for node in self.nodes:
            if node.gpus_free > 0 and node.ready_s <= self.now:
                return node
        return None

    def _bind(self, pod: Pod, node: Node) -> None:
        node.gpus_free -= 1
        pod.node = node
        pod.phase = STARTING
        pod.scheduled_s = self.now
        self._billed[pod] = None

    def _jitter(self, duration: float) -> float:
        j = self.config.lifecycle.jitter
        return duration * (1.0 + j * (2.0 * self.rng.random() - 1.0)) if j > 0 else duration

    def _push(self, when: float, kind: str, obj: object) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, kind, obj))

    def _schedule_pending(self) -> None:
        lifecycle = self.config.lifecycle
        unscheduled = 0
        for pod in self._pods:
            if pod.phase != PENDING:
                continue
            node = self._free_node()
            if node is None:
                unscheduled += 1
                continue
            self._bind(pod, node)
            pull = lifecycle.image_pull_cached_s if node.has_image else lifecycle.image_pull_s
            node.has_image = True
            pod.running_s = self.now + self._jitter(pull)
            self._push(pod.running_s + self._jitter(lifecycle.model_load_s), "pod_ready", pod)
        if unscheduled:
            self._provision(unscheduled)

    def _provision(self, gpus_needed: int) -> None:
        """Cluster-autoscaler: add nodes for pods that no node can take."""
        for runtime in self.pools:
            pool = runtime.pool
            incoming = self._provisioning[pool.name] * pool.gpus_per_node
            gpus_needed -= incoming
            if gpus_needed <= 0:
                return
            present = sum(1 for n in self.nodes if n.pool is runtime) + self._provisioning[pool.name]
            room = pool.max_nodes - present
            add = min(room, math.ceil(gpus_needed / pool.gpus_per_node))
            for _ in range(add):
                self._provisioning[pool.name] += 1
                self._push(self.now + pool.provisioning_delay_s, "node_ready", runtime)
            gpus_needed -= add * pool.gpus_per_node

    def _node_ready(self, runtime: PoolRuntime) -> None:
        self._provisioning[runtime.pool.name] -= 1
        self.nodes.append(Node(runtime, self.now))
        self._schedule_pending()

    def _pod_ready(self, pod: Pod) -> None:
        if pod.phase != STARTING:  # removed while starting
            return
        runtime = pod.node.pool  # type: ignore[union-attr]
        pod.phase = READY
        pod.ready_s = self.now
        pod.engine = ReplicaEngine(runtime.model, runtime.engine, sink=self.sink, start_s=self.now)
        self._ready.append(pod)
        if self._gateway:
            waiting, self._gateway = self._gateway, []
            for i in waiting:
                self._route(i)

    def _route(self, i: int) -> None:
        now = self.now
        ready = self._ready
        synced = []
        for pod in ready:
            engine = pod.engine
            if engine is None:  # never, for a Ready pod (narrows the type)
                continue
            if now >= engine.finish_bound_s:  # engine.sync(now), written out: once per replica per arrival
                engine.advance(now)
                synced.append(engine)
        prompt, output = self._prompts[i], self._outputs[i]
        pod = ready[self.router.choose(ready, prompt, output)] if len(ready) > 1 else ready[0]
        engine = cast(ReplicaEngine, pod.engine)
        if engine not in synced:  # a second advance(now) in a row changes nothing
            engine.advance(now)
        pod.activity.before_submit(engine, now)
        if not engine.submit(i, self._arrivals[i], prompt, output):
            self.rejected += 1

    def _remove(self, pod: Pod) -> None:
        self._pods.remove(pod)
        if pod.phase == PENDING:
            pod.phase = TERMINATED
            pod.terminated_s = self.now
        elif pod.phase == STARTING:
            self._terminate(pod, self.now)
        else:
            pod.phase = DRAINING
            self._ready.remove(pod)
            self._draining.append(pod)
            pod.engine.advance(self.now)  # type: ignore[union-attr]
            if pod.engine.is_idle:  # type: ignore[union-attr]
                self._draining.remove(pod)
                self._collect_from(pod)
                self._terminate(pod, self.now)

    def _terminate(self, pod: Pod, when: float) -> None:
        pod.phase = TERMINATED
        pod.terminated_s = when
        self._billed.pop(pod, None)
        seconds = when - pod.scheduled_s
        self._closed_gpu_s += seconds
        self._closed_cost += seconds * pod.node.pool.price_per_gpu_s  # type: ignore[union-attr]
        pod.node.gpus_free += 1  # type: ignore[union-attr]
        if any(p.phase == PENDING for p in self._pods):
            self._schedule_pending()

    def _reap_drained(self, t: float) -> None:
        for pod in list(self._draining):
            engine = pod.engine
            engine.advance(t)  # type: ignore[union-attr]
            if engine.is_idle:  # type: ignore[union-attr]
                self._draining.remove(pod)
                self._collect_from(pod)
                self._terminate(pod, min(t, engine.last_finish_s))  # type: ignore[union-attr]

    def _collect(self) -> None:
        for pod in self._ready + self._draining:
            self._collect_from(pod)

    def _collect_from(self, pod: Pod) -> None:
        engine = pod.engine
        if engine is not None and engine.finished:
            self.finished.extend(engine.finished)
            engine.finished.clear()

    def pods_by_phase(self) -> Mapping[str, int]:
        counts = {PENDING: 0, STARTING: 0, READY: 0, DRAINING: len(self._draining)}
        for pod in self._pods:
            counts[pod.phase] += 1
        return counts


def _empty_cluster(config: ClusterConfig, workload: Workload, pools: tuple[PoolRuntime, ...], rng: np.random.Generator,
                   windows: Mapping[str, float]) -> Cluster:
    """A cluster with no replicas on these inputs, for a copy's state to fill (:meth:`Cluster.__reduce__`)."""
    return Cluster(config, workload, pools, initial_replicas=0, rng=rng, windows=windows)
