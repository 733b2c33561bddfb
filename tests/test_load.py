"""The per-pod view of a snapshot (controller/load.py): groupPods counts and per-replica load."""

from __future__ import annotations

import math

import pytest

from controller.load import PodGroups, gateway_pending, group_pods, per_replica, pod_groups, reporting_pods, serving_load, total, value


def test_value_and_total_treat_unusable_numbers_as_missing():
    snapshot = {"a": 2.0, "b": math.inf, "c": None, "d": 3}
    assert value(snapshot, "a") == 2.0 and value(snapshot, "d") == 3.0 and isinstance(value(snapshot, "d"), float)
    assert math.isnan(value(snapshot, "b")) and math.isnan(value(snapshot, "c")) and math.isnan(value(snapshot, "zzz"))
    assert total(snapshot, ("a", "d")) == 5.0 and math.isnan(total(snapshot, ("a", "b")))
    assert serving_load({"requests_running": 3.0, "requests_waiting": 4.0}) == 7.0
    assert math.isnan(serving_load({"requests_running": 3.0}))
    assert gateway_pending({}) == 0.0 and gateway_pending({"gateway_pending": math.nan}) == 0.0
    assert gateway_pending({"gateway_pending": 4.0}) == 4.0


def test_group_pods_counts_every_pod():
    pods = [("Running", True, True), ("Pending", False, False), ("Running", False, True), ("Pending", False, False),
            ("Running", False, False), ("Failed", False, True), ("Running", False, True), ("Running", False, False)]
    # A terminating and a Failed pod are skipped, and the pods after them still count.
    assert group_pods(pods) == PodGroups(ready=2, unready=2, missing=2)


def test_pod_groups_from_counts():
    base = {"replicas_desired": 5.0, "replicas_ready": 2.0}
    assert pod_groups(base) == PodGroups(2, 3, 0)  # without the Pending count every pod without a sample is unready
    assert pod_groups({**base, "replicas_reporting": 3.0}) == PodGroups(3, 2, 0)  # reporting wins over ready
    assert pod_groups({**base, "replicas_reporting": 3.0, "replicas_pending": 1.0}) == PodGroups(3, 1, 1)
    assert pod_groups({**base, "replicas_pending": 9.0}) == PodGroups(2, 3, 0)  # at most the pods without a sample
    assert pod_groups({**base, "replicas_pending": -1.0}) == PodGroups(2, 0, 3)
    assert pod_groups({"replicas_ready": math.nan, "replicas_desired": 2.0}) == PodGroups(0, 2, 0)
    assert pod_groups({"replicas_ready": 3.0}) == PodGroups(3, 0, 0)  # desired unknown: the ready pods
    assert pod_groups({"replicas_ready": 4.0, "replicas_desired": 2.0}) == PodGroups(4, 0, 0)  # scaling down: more pods than desired
    assert reporting_pods({**base, "replicas_reporting": 0.0}) == 0


@pytest.mark.parametrize(("snapshot", "expected"), [
    ({"requests_running": 12.0, "replicas_ready": 3.0}, 4.0),
    ({"requests_running": 12.0, "replicas_ready": 3.0, "replicas_reporting": 4.0}, 3.0),
    ({"requests_running": 12.0, "replicas_ready": 0.0}, math.nan),
    ({"replicas_ready": 3.0}, math.nan),
])
def test_per_replica(snapshot, expected):
    got = per_replica(snapshot, ("requests_running",))
    assert (math.isnan(got) and math.isnan(expected)) or got == expected
