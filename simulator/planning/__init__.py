"""Offline inputs of the planner: per-replica capacity at the SLO from the latency model."""
