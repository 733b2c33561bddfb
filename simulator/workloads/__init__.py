"""Workloads: synthetic LLM load, traffic patterns, trace replay, transforms."""

from simulator.workloads.catalog import PRESET_NAMES, load_trace, make_workload
from simulator.workloads.traces import PRESETS, TraceFormat, WorkloadError, read_trace
from simulator.workloads.workload import Workload

__all__ = ["PRESETS", "PRESET_NAMES", "TraceFormat", "Workload", "WorkloadError", "load_trace", "make_workload", "read_trace"]
