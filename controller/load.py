"""The per-pod view of a snapshot: pods grouped as the HPA groups them, per-replica load.

The one place where per-replica load is computed (the HPA, the threshold
policy, the observation and the KPA read it from here).

Pods are grouped as kube-controller-manager's ``groupPods``
(``pkg/controller/podautoscaler/replica_calculator.go``) groups them for a
metric other than CPU:

- *ignored*: terminating (deletion timestamp) or Failed pods; their samples
  are dropped too. The serving signals already leave them out (see
  :mod:`controller.signals`);
- *unready*: pods in phase Pending (not scheduled, or pulling the image);
- *missing*: Running pods without a sample (a vLLM server loading its model
  exports no metrics yet);
- *ready*: pods with a sample, Ready or not.

From a snapshot: ready = ``replicas_reporting`` (pods with a sample; without
that signal, the ready replicas), unready = ``replicas_pending``, missing =
the rest of the scale's ``replicas_desired`` pods. Without
``replicas_pending`` every pod without a sample counts as unready (the
conservative reading: it is left out of a scale-down).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller import signals as sig

#: Pod phases (``v1.PodPhase``).
PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"


def value(snapshot: Mapping[str, float], key: str) -> float:
    """``snapshot[key]`` as a float; NaN when absent, NaN or infinite."""
    raw = snapshot.get(key, math.nan)
    return float(raw) if sig.is_usable(raw) else math.nan


def total(snapshot: Mapping[str, float], keys: Iterable[str]) -> float:
    """Sum of ``keys``; NaN when any is unusable."""
    return sum(value(snapshot, k) for k in keys)


def serving_load(snapshot: Mapping[str, float]) -> float:
    """Requests on the serving pods: running plus waiting (NaN when either is unknown)."""
    return total(snapshot, ("requests_running", "requests_waiting"))


def gateway_pending(snapshot: Mapping[str, float]) -> float:
    """Requests held at the gateway; 0 where the snapshot has no activation signal."""
    pending = value(snapshot, sig.GATEWAY_PENDING)
    return pending if math.isfinite(pending) else 0.0


@dataclass(frozen=True)
class PodGroups:
    """``groupPods``' result as counts: ``ready`` pods have a sample."""

    ready: int
    unready: int
    missing: int


def group_pods(pods: Iterable[tuple[str, bool, bool]]) -> PodGroups:
    """``groupPods`` for a non-CPU metric over (phase, terminating, has_sample) per pod."""
    ready = unready = missing = 0
    for phase, terminating, has_sample in pods:
        if terminating or phase == FAILED:
            continue
        if phase == PENDING:
            unready += 1
        elif not has_sample:
            missing += 1
        else:
            ready += 1
    return PodGroups(ready, unready, missing)


def pod_groups(snapshot: Mapping[str, float]) -> PodGroups:
    """The groups of the target's pods, from the snapshot's counts (module docstring)."""
    reporting = value(snapshot, sig.REPLICAS_REPORTING)
    ready = reporting if math.isfinite(reporting) else value(snapshot, sig.REPLICAS_READY)
    ready_pods = max(0, int(ready)) if math.isfinite(ready) else 0
    desired = value(snapshot, sig.REPLICAS_DESIRED)
    pods = max(ready_pods, int(desired)) if math.isfinite(desired) else ready_pods
    pending = value(snapshot, sig.REPLICAS_PENDING)
    if not math.isfinite(pending):
        return PodGroups(ready_pods, pods - ready_pods, 0)
    unready = min(max(0, int(pending)), pods - ready_pods)
    return PodGroups(ready_pods, unready, pods - ready_pods - unready)


def reporting_pods(snapshot: Mapping[str, float]) -> int:
    """Pods whose samples make up the serving signals."""
    return pod_groups(snapshot).ready


def per_replica(snapshot: Mapping[str, float], keys: Iterable[str]) -> float:
    """The sum of ``keys`` per pod with a sample; NaN without such a pod or a value."""
    pods = reporting_pods(snapshot)
    return total(snapshot, keys) / pods if pods > 0 else math.nan
