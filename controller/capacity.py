"""Per-replica capacity at the SLO: the numbers the planner and the observation read.

A :class:`CapacityProfile` is computed offline from the simulator's latency
model for one GPU, model and engine configuration (``kis capacity``;
:func:`simulator.planning.capacity.capacity_profile`) and shipped as plain
numbers in the InferenceAutoscaler (``spec.capacity``) or a policy artifact,
so the controller never imports the simulator.

It holds, for a grid of mean prompt and output lengths, the largest request
rate one replica serves while the SLO holds (``max_rps``, requests per second;
token throughput follows as ``rps x tokens``), and the mean requests in flight
at that rate (``max_concurrency``). Load with another token mix is
read off the grid by bilinear interpolation of ``log(max_rps)`` over
``log(tokens)``, clamped to the grid's edges. Load relative to this capacity
is the quantity that carries across GPUs, models and traffic levels.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Fleets larger than this get the pooling gain of this size (the gain is measured on small fleets).
MAX_POOLING_FLEET = 16.0


@dataclass(frozen=True)
class CapacityProfile:
    """Largest request rate per replica at the SLO, on a grid of mean token lengths.

    :param prompt_tokens: increasing mean prompt lengths of the grid.
    :param output_tokens: increasing mean output lengths of the grid.
    :param max_rps: ``max_rps[i][j]``: requests/s one replica serves at the SLO with mean prompt
        ``prompt_tokens[i]`` and mean output ``output_tokens[j]`` (all > 0).
    :param source: how the numbers were made (GPU, model, engine, SLO, attainment target).
    :param max_concurrency: ``max_concurrency[i][j]``: the mean requests in flight on a replica at that rate
        (running and waiting; ``max_rps x`` mean end-to-end latency, Little's law), or ``None``.
    :param pooled_rps: ``pooled_rps[i][j]``: requests/s *per replica* that a fleet of ``pool_size`` replicas
        behind the router serves at the SLO (more than one replica alone: the router evens out bursts and
        long prompts), or ``None``.
    :param pool_size: the fleet size of ``pooled_rps``.
    """

    prompt_tokens: tuple[float, ...]
    output_tokens: tuple[float, ...]
    max_rps: tuple[tuple[float, ...], ...]
    source: str = ""
    max_concurrency: tuple[tuple[float, ...], ...] | None = None
    pooled_rps: tuple[tuple[float, ...], ...] | None = None
    pool_size: int = 4

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "output_tokens"):
            grid = getattr(self, name)
            if not grid or any(v <= 0 for v in grid) or any(b <= a for a, b in zip(grid, grid[1:])):
                raise ValueError(f"capacity.{name}: must be a non-empty increasing list of positive numbers, got {list(grid)}")
        if len(self.max_rps) != len(self.prompt_tokens) or any(len(row) != len(self.output_tokens) for row in self.max_rps):
            raise ValueError(f"capacity.maxRps: must be {len(self.prompt_tokens)} rows of {len(self.output_tokens)} numbers")
        if self.pool_size < 2:
            raise ValueError(f"capacity.poolSize: must be at least 2, got {self.pool_size}")
        for name, table in (("maxRps", self.max_rps), ("maxConcurrency", self.max_concurrency), ("pooledRps", self.pooled_rps)):
            if table is None:
                continue
            if len(table) != len(self.prompt_tokens) or any(len(row) != len(self.output_tokens) for row in table):
                raise ValueError(f"capacity.{name}: must be {len(self.prompt_tokens)} rows of {len(self.output_tokens)} numbers")
            if any(not (math.isfinite(v) and v > 0) for row in table for v in row):
                raise ValueError(f"capacity.{name}: every entry must be a positive finite number")

    def rps(self, prompt_tokens: float, output_tokens: float, replicas: float = 1) -> float:
        """Requests/s per replica that a fleet of ``replicas`` serves at the SLO for this token mix.

        One replica: ``max_rps``, interpolated and clamped. A fleet: the pooling gain measured at
        ``pool_size`` replicas, ``(pooled / alone) ** (log n / log pool_size)`` (a power law in the fleet
        size, which fits the simulator's fleets of 1 to 8), for ``n`` up to :data:`MAX_POOLING_FLEET`.
        """
        alone = self._interpolate(self.max_rps, prompt_tokens, output_tokens)
        if self.pooled_rps is None or replicas <= 1:
            return alone
        gain = max(1.0, self._interpolate(self.pooled_rps, prompt_tokens, output_tokens) / alone)
        n = min(float(replicas), MAX_POOLING_FLEET)
        return alone * gain ** (math.log(n) / math.log(self.pool_size))

    def fleet(self, demand_rps: float, prompt_tokens: float, output_tokens: float, utilization: float = 1.0,
              limit: int = 100_000) -> int:
        """The smallest fleet whose capacity at the SLO, at ``utilization`` of it, holds ``demand_rps``
        (``limit`` when none up to it does). The fleet's capacity ``n x rps(n)`` grows with ``n``."""
        if not demand_rps > 0:
            return 0
        if not utilization > 0:
            raise ValueError(f"utilization must be positive, got {utilization}")

        def holds(n: int) -> bool:
            return n * self.rps(prompt_tokens, output_tokens, n) * utilization >= demand_rps * (1 - 1e-9)

        hi = min(limit, max(1, math.ceil(demand_rps / (self.rps(prompt_tokens, output_tokens) * utilization))))
        if not holds(hi):
            return limit
        lo = 1
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if holds(mid) else (mid + 1, hi)
        return lo

    def concurrency(self, prompt_tokens: float, output_tokens: float) -> float:
        """Mean requests in flight on one replica at that rate (NaN without a concurrency table)."""
        if self.max_concurrency is None:
            return math.nan
        return self._interpolate(self.max_concurrency, prompt_tokens, output_tokens)

    def _interpolate(self, m: tuple[tuple[float, ...], ...], prompt_tokens: float, output_tokens: float) -> float:
        i, u = _cell(self.prompt_tokens, prompt_tokens)
        j, v = _cell(self.output_tokens, output_tokens)
        i1, j1 = min(i + 1, len(m) - 1), min(j + 1, len(m[0]) - 1)
        log = math.log
        value = ((1 - u) * (1 - v) * log(m[i][j]) + u * (1 - v) * log(m[i1][j]) + (1 - u) * v * log(m[i][j1]) + u * v * log(m[i1][j1]))
        return math.exp(value)

    def to_dict(self) -> dict[str, Any]:
        """The camelCase mapping written in a spec or artifact."""
        out: dict[str, Any] = {"promptTokens": list(self.prompt_tokens), "outputTokens": list(self.output_tokens),
                               "maxRps": [list(row) for row in self.max_rps], "source": self.source}
        if self.max_concurrency is not None:
            out["maxConcurrency"] = [list(row) for row in self.max_concurrency]
        if self.pooled_rps is not None:
            out["pooledRps"] = [list(row) for row in self.pooled_rps]
            out["poolSize"] = self.pool_size
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "capacity") -> CapacityProfile:
        """Parse :meth:`to_dict`'s mapping (camelCase or snake_case); ``ValueError`` names the field."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: must be a mapping, got {type(data).__name__}")

        def field(camel: str, snake: str) -> Any:
            if camel in data:
                return data[camel]
            if snake in data:
                return data[snake]
            raise ValueError(f"{where}.{camel}: missing")

        try:
            prompt = tuple(float(v) for v in field("promptTokens", "prompt_tokens"))
            output = tuple(float(v) for v in field("outputTokens", "output_tokens"))
            table = tuple(tuple(float(v) for v in row) for row in field("maxRps", "max_rps"))
            optional = {}
            for camel, snake in (("maxConcurrency", "max_concurrency"), ("pooledRps", "pooled_rps")):
                raw = data.get(camel, data.get(snake))
                optional[snake] = None if raw is None else tuple(tuple(float(v) for v in row) for row in raw)
            pool_size = int(data.get("poolSize", data.get("pool_size", 4)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: grid, maxRps, maxConcurrency and pooledRps must be lists of numbers ({exc})") from exc
        try:
            return cls(prompt, output, table, str(data.get("source", "")), pool_size=pool_size, **optional)
        except ValueError as exc:
            raise ValueError(str(exc).replace("capacity.", f"{where}.", 1)) from exc


def _cell(grid: Sequence[float], value: float) -> tuple[int, float]:
    """Index of the grid cell holding ``value`` and the position inside it (0..1), in log space."""
    if not math.isfinite(value) or value <= grid[0]:
        return 0, 0.0
    if value >= grid[-1]:
        return len(grid) - 1, 0.0
    i = bisect_right(grid, value) - 1
    return i, (math.log(value) - math.log(grid[i])) / (math.log(grid[i + 1]) - math.log(grid[i]))
