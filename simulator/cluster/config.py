"""Configuration of a simulated GPU cluster: node pools, pod start-up, serving limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.profiles.engines import get_engine


@dataclass(frozen=True)
class NodePool:
    """A group of identical GPU nodes (a cloud node pool / node group).

    :param name: pool name, unique in the cluster.
    :param gpu: GPU type (a name known to :mod:`simulator.profiles.specs`).
    :param gpus_per_node: GPUs on each node.
    :param initial_nodes: nodes present at the start.
    :param max_nodes: most nodes the cluster autoscaler may run in this pool.
    :param provisioning_delay_s: time from asking for a node until it accepts pods.
    :param hourly_price_per_gpu: USD per GPU-hour; ``None`` takes the GPU's on-demand list price.
    """

    name: str = "h100"
    gpu: str = "H100"
    gpus_per_node: int = 8
    initial_nodes: int = 1
    max_nodes: int = 2
    provisioning_delay_s: float = 180.0
    hourly_price_per_gpu: float | None = None

    def __post_init__(self) -> None:
        if self.gpus_per_node < 1:
            raise ValueError(f"pool {self.name}: gpus_per_node must be >= 1")
        if not 0 <= self.initial_nodes <= self.max_nodes:
            raise ValueError(f"pool {self.name}: need 0 <= initial_nodes <= max_nodes, got {self.initial_nodes}, {self.max_nodes}")
        if self.provisioning_delay_s < 0:
            raise ValueError(f"pool {self.name}: provisioning_delay_s must be >= 0")


@dataclass(frozen=True)
class PodLifecycle:
    """Durations a new replica spends before it is Ready (seconds).

    Defaults give a mean start of about 85 s on a node that has not pulled the
    image yet, the figure reported for a 32B model on H100. Each duration is
    multiplied by a factor drawn uniformly from ``[1 - jitter, 1 + jitter]``.

    :param image_pull_s: pulling the serving image on a node that lacks it.
    :param image_pull_cached_s: starting the container when the node has the image.
    :param model_load_s: loading weights onto the GPU and warming up.
    :param jitter: relative spread of each duration (0 = deterministic).
    """

    image_pull_s: float = 30.0
    image_pull_cached_s: float = 2.0
    model_load_s: float = 55.0
    jitter: float = 0.2

    @property
    def cold_start_s(self) -> float:
        """Mean time to Ready on a node without the image: what a planner must plan ahead for."""
        return self.image_pull_s + self.model_load_s

    def __post_init__(self) -> None:
        if min(self.image_pull_s, self.image_pull_cached_s, self.model_load_s) < 0:
            raise ValueError("pod lifecycle durations must be >= 0")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")


@dataclass(frozen=True)
class ClusterConfig:
    """A serving Deployment on a GPU cluster.

    :param pools: node pools in scheduling preference order.
    :param model: model shape name or shape/profile JSON path served by every replica.
    :param timing: ``kernel`` (GPU time) or ``wall`` (with the eager engine's host launch time) iteration times.
    :param engine: serving engine mode (:mod:`simulator.profiles.engines`): ``paged`` (vLLM), ``eager`` (Hugging Face).
    :param calibration: a calibration JSON or measured profiles to calibrate on; empty: the shipped calibration.
    :param lifecycle: pod start-up durations.
    :param router: request router (see :data:`simulator.cluster.router.ROUTERS`).
    :param max_num_seqs: running-batch limit of each replica.
    :param max_batched_tokens: per-iteration token budget of each replica.
    :param gpu_memory_utilization: share of GPU memory the server claims.
    :param window_s: rate and quantile window of the metrics snapshot.
    :param long_window_s: long rate window (trend).
    """

    pools: tuple[NodePool, ...] = field(default_factory=lambda: (NodePool(),))
    model: str = "llama-8b"
    timing: str = "kernel"
    engine: str = "paged"
    calibration: tuple[str, ...] = ()
    lifecycle: PodLifecycle = field(default_factory=PodLifecycle)
    router: str = "least_connections"
    max_num_seqs: int = 256
    max_batched_tokens: int = 2048
    gpu_memory_utilization: float = 0.9
    window_s: float = 60.0
    long_window_s: float = 300.0

    def __post_init__(self) -> None:
        if not self.pools:
            raise ValueError("a cluster needs at least one node pool")
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError(f"node pool names must be unique, got {names}")
        if self.timing not in ("kernel", "wall"):
            raise ValueError(f"timing must be 'kernel' or 'wall', got {self.timing!r}")
        get_engine(self.engine)
        if not 0 < self.window_s <= self.long_window_s:
            raise ValueError("need 0 < window_s <= long_window_s")

    @property
    def max_gpus(self) -> int:
        return sum(p.max_nodes * p.gpus_per_node for p in self.pools)
