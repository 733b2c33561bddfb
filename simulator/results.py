"""Per-request outcomes and the summary every report uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from controller.decision import DecisionRecord
from controller.slo import SLO
from simulator.cluster.cluster import Timeline
from simulator.engine.replica import FinishedRequest

PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class RequestTable:
    """Finished requests, column-wise (seconds), sorted by arrival."""

    arrival_s: np.ndarray
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray
    queue_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    @classmethod
    def from_finished(cls, finished: Sequence[FinishedRequest]) -> RequestTable:
        if not finished:
            empty = np.zeros(0)
            return cls(empty, empty, empty, empty, empty, empty.astype(np.int64), empty.astype(np.int64))
        a = np.array(finished, dtype=np.float64)
        order = np.argsort(a[:, 1], kind="stable")
        a = a[order]
        arrival, admitted, first, finish, prompt, output = a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5], a[:, 6]
        tpot = np.where(output > 1, (finish - first) / np.maximum(output - 1, 1), 0.0)
        return cls(arrival, first - arrival, tpot, finish - arrival, admitted - arrival, prompt.astype(np.int64), output.astype(np.int64))

    def __len__(self) -> int:
        return len(self.arrival_s)

    def meets(self, slo: SLO) -> np.ndarray:
        return (self.ttft_s <= slo.ttft_s) & (self.tpot_s <= slo.tpot_s)


@dataclass
class SimulationResult:
    """Everything one simulated run produced."""

    name: str
    slo: SLO
    duration_s: float
    arrived: int
    requests: RequestTable
    timeline: Timeline
    gpu_seconds: float
    cost_usd: float
    scale_events: int
    rejected: int = 0
    unserved: int = 0
    snapshots: list[dict[str, float]] = field(default_factory=list)
    decisions: list[DecisionRecord] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return summarize(self)


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def summarize(result: SimulationResult) -> dict[str, float]:
    """SLO attainment (over every request that arrived: unfinished and rejected
    ones miss), latency percentiles, GPU-hours, cost, GPU utilisation."""
    req = result.requests
    met = int(req.meets(result.slo).sum())
    out: dict[str, float] = {
        "requests": float(result.arrived),
        "slo_attainment": met / result.arrived if result.arrived else 1.0,
    }
    for name, values in (("ttft", req.ttft_s), ("tpot", req.tpot_s), ("e2e", req.e2e_s)):
        for q in PERCENTILES:
            out[f"{name}_p{q}_s"] = _pct(values, q)
    utils = [s.get("gpu_utilization", float("nan")) for s in result.snapshots]
    finite = [u for u in utils if u == u]
    out["gpu_utilization_pct"] = float(np.mean(finite)) if finite else float("nan")
    out["gpu_hours"] = result.gpu_seconds / 3600.0
    out["cost_usd"] = result.cost_usd
    out["scale_events"] = float(result.scale_events)
    out["mean_replicas"] = float(np.mean(result.timeline.ready)) if result.timeline.ready else float("nan")
    out["rejected"] = float(result.rejected)
    out["unserved"] = float(result.unserved)
    return out
