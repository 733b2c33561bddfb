"""Default policy line-up, workloads and cluster for `kis evaluate` and `kis demo`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from controller.artifact import DEFAULT_ARTIFACT
from simulator.evaluation.runner import PolicyEntry, WorkloadEntry
from simulator.workloads.workload import Workload

#: The line-up of ``kis evaluate`` and ``kis demo``; the rules at the settings the benchmark's sweeps found best
#: over all its workloads (bench/results/policy_benchmark.md).
DEFAULT_POLICIES: tuple[PolicyEntry, ...] = (
    PolicyEntry("learned", {"type": "learned", "artifact": str(DEFAULT_ARTIFACT)}),
    PolicyEntry("planner", {"type": "planner", "target_utilization": 0.8}),
    PolicyEntry("hpa", {"type": "hpa", "metric": "requests_per_replica", "target": 8.0}),
    PolicyEntry("kpa", {"type": "kpa", "target": 8.0}),
    PolicyEntry("threshold", {"type": "threshold", "scale_up_tpm": 240_000, "scale_down_tpm": 120_000}),
    PolicyEntry("fixed", {"type": "fixed", "replicas": 4}),
)

PATTERNS: tuple[str, ...] = ("ramp", "periodic", "random", "spike", "llm-day")


@dataclass(frozen=True)
class PresetWorkload:
    """``make(seed)`` of a workload preset: each seed draws a fresh sample."""

    name: str
    duration_s: float | None = None

    def __call__(self, seed: int) -> Workload:
        from simulator.workloads.catalog import make_workload

        return make_workload(self.name, seed=seed, duration_s=self.duration_s)


@dataclass(frozen=True, eq=False)
class FixedWorkload:
    """``make(seed)`` of a loaded trace: the same requests for every seed (the seed only changes the cluster's randomness)."""

    workload: Workload

    def __call__(self, seed: int) -> Workload:
        return self.workload


@dataclass(frozen=True, eq=False)
class ScaledWorkload:
    """``make(seed)`` of another maker's workload at ``factor`` times its rate, thinned or
    duplicated with ``seed`` (the base is drawn with ``base_seed``, or with ``seed`` when ``None``)."""

    base: Callable[[int], Workload]
    factor: float
    base_seed: int | None = 0

    def __call__(self, seed: int) -> Workload:
        from simulator.workloads.ops import scale_rate

        return scale_rate(self.base(seed if self.base_seed is None else self.base_seed), self.factor, np.random.default_rng(seed))


def preset_workloads(names: Sequence[str], duration_s: float | None = None, rate_scale: float = 1.0) -> list[WorkloadEntry]:
    """Workload presets; each seed draws a fresh sample (at ``rate_scale`` times its rate, thinned or copied with the seed)."""
    entries = [WorkloadEntry(name, PresetWorkload(name, duration_s)) for name in names]
    return entries if rate_scale == 1.0 else [
        WorkloadEntry(f"{e.name}_x{rate_scale:g}", ScaledWorkload(e.make, rate_scale, base_seed=None)) for e in entries]


def trace_workload(path: Path, fmt: str, duration_s: float | None = None, *, rate_scale: float = 1.0,
                   skip_bad_rows: bool = False) -> WorkloadEntry:
    """A trace replayed as is: the seed only changes the cluster's randomness (and, with ``rate_scale``,
    which requests are thinned or copied)."""
    from simulator.workloads.catalog import load_trace

    workload = load_trace(path, fmt, skip_bad_rows=skip_bad_rows)
    if duration_s is not None:
        from simulator.workloads.ops import window

        workload = window(workload, 0.0, duration_s)
    entry = WorkloadEntry(path.stem, FixedWorkload(workload))
    return entry if rate_scale == 1.0 else scaled(entry, rate_scale)


def scaled(entry: WorkloadEntry, factor: float, name: str | None = None) -> WorkloadEntry:
    """``entry`` at ``factor`` times its rate (its seed-0 sample, thinned or duplicated per seed), under ``name`` (default ``NAME_xFACTOR``)."""
    return WorkloadEntry(name or f"{entry.name}_x{factor:g}", ScaledWorkload(entry.make, factor))


def load_policies(path: Path) -> list[PolicyEntry]:
    """Policies from YAML: a list of ``{name, spec: {type, ...}, behavior: {...}}``."""
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read policies: {exc}") from exc
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a list of policies, got {type(raw).__name__}")
    from controller.guardrails import Behavior
    from controller.policies.registry import build_policy

    entries = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "name" not in item or not isinstance(item.get("spec"), dict):
            raise ValueError(f"{path}: policy #{i + 1} needs 'name' and a 'spec' mapping")
        name, spec, behavior = str(item["name"]), dict(item["spec"]), item.get("behavior") or {}
        if spec.get("type") == "learned" and spec.get("artifact") and not Path(spec["artifact"]).is_absolute():
            spec["artifact"] = str(path.parent / spec["artifact"])  # relative to the policies file
        try:
            if not isinstance(behavior, dict):
                raise ValueError("behavior: must be a mapping of guardrail settings")
            Behavior(**behavior)
            build_policy(spec)  # a learned one loads its artifact (the shipped default without one)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: policy #{i + 1} ({name}): {exc}") from exc
        entries.append(PolicyEntry(name, spec, dict(behavior)))
    return entries
