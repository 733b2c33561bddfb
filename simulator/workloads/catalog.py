"""Named workload presets shared by the simulator, training and evaluation."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from simulator.workloads.patterns import PATTERNS, PatternSpec, generate_pattern
from simulator.workloads.synthetic import SyntheticSpec, generate_synthetic
from simulator.workloads.traces import read_trace
from simulator.workloads.workload import Workload

PRESET_NAMES: tuple[str, ...] = (*PATTERNS, "llm-day")


def _known(cls: type, params: dict[str, Any], name: str) -> dict[str, Any]:
    allowed = {f.name for f in fields(cls)}
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(f"workload {name!r} has no parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(allowed))}")
    return params


def make_workload(name: str, *, seed: int, duration_s: float | None = None, **params: Any) -> Workload:
    """A preset by name (``ramp``, ``periodic``, ``random``, ``spike``, ``llm-day``), seeded.

    ``params`` override the preset's spec fields (:class:`PatternSpec` or :class:`SyntheticSpec`).
    Spike timing scales with the duration unless given.
    """
    rng = np.random.default_rng(seed)
    if name in PATTERNS:
        values: dict[str, Any] = {"kind": name}
        if duration_s is not None:
            values |= {"duration_s": duration_s, "spike_start_s": duration_s / 3, "spike_length_s": duration_s / 12, "period_s": duration_s / 3}
        return generate_pattern(PatternSpec(**(values | _known(PatternSpec, params, name))), rng, name)
    if name == "llm-day":
        values = {} if duration_s is None else {"duration_s": duration_s, "day_length_s": duration_s}
        return generate_synthetic(SyntheticSpec(**(values | _known(SyntheticSpec, params, name))), rng, name)
    raise ValueError(f"unknown workload {name!r}; presets: {', '.join(PRESET_NAMES)} (or replay a trace)")


def load_trace(path: str | Path, fmt: str, *, skip_bad_rows: bool = False, seed: int = 0) -> Workload:
    """A trace file's workload (see :func:`simulator.workloads.traces.read_trace` for the count of skipped rows)."""
    return read_trace(path, fmt, skip_bad_rows=skip_bad_rows, seed=seed).workload
