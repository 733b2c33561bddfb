"""Default policy line-up, workloads and cluster for `kis evaluate` and `kis demo`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from simulator.evaluation.runner import PolicyEntry, WorkloadEntry

DEFAULT_ARTIFACT = Path(__file__).resolve().parents[2] / "controller" / "policies" / "default"

#: Baselines at tuned settings (see bench/results/policy_benchmark.md for the sweeps behind them).
DEFAULT_POLICIES: tuple[PolicyEntry, ...] = (
    PolicyEntry("learned", {"type": "learned", "artifact": str(DEFAULT_ARTIFACT)}),
    PolicyEntry("hpa", {"type": "hpa", "metric": "requests_per_replica", "target": 8.0}),
    PolicyEntry("threshold", {"type": "threshold", "scale_up_tpm": 240_000, "scale_down_tpm": 120_000}),
    PolicyEntry("kpa", {"type": "kpa", "target": 8.0}),
    PolicyEntry("fixed", {"type": "fixed", "replicas": 4}),
)

PATTERNS: tuple[str, ...] = ("ramp", "periodic", "random", "spike", "llm-day")


def preset_workloads(names: Sequence[str], duration_s: float | None = None) -> list[WorkloadEntry]:
    """Workload presets; each seed draws a fresh sample."""
    from simulator.workloads.catalog import make_workload

    return [WorkloadEntry(name, lambda seed, _n=name: make_workload(_n, seed=seed, duration_s=duration_s)) for name in names]


def trace_workload(path: Path, fmt: str, duration_s: float | None = None) -> WorkloadEntry:
    """A trace replayed as is (the seed only changes the cluster's randomness)."""
    from simulator.workloads.catalog import load_trace

    workload = load_trace(path, fmt)
    if duration_s is not None:
        from simulator.workloads.ops import window

        workload = window(workload, 0.0, duration_s)
    return WorkloadEntry(path.stem, lambda seed, _w=workload: _w)


def load_policies(path: Path) -> list[PolicyEntry]:
    """Policies from YAML: a list of ``{name, spec: {type, ...}, behavior: {...}}``."""
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read policies: {exc}") from exc
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a list of policies, got {type(raw).__name__}")
    entries = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "name" not in item or "spec" not in item:
            raise ValueError(f"{path}: policy #{i + 1} needs 'name' and 'spec'")
        entries.append(PolicyEntry(str(item["name"]), dict(item["spec"]), dict(item.get("behavior") or {})))
    return entries
