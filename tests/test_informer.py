"""The informer caches against the API emulator: list, watch events, resync, 410 Gone, failures, and the loop reading them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from kubernetes import client

from controller.events import EventRecorder
from controller.informer import Informer, KubeCache
from controller.kube import Backoff, KubeError, TargetState
from tests.controller_helpers import NOW, NS, FakeReader, autoscaler, deployment, kube_client, reconciler, replicas, scale_writes
from tests.kube_emulator import KubeEmulator, kube  # noqa: F401 (fixture)


def eventually(predicate: Callable[[], object], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout_s}s")


@pytest.fixture
def cache(kube) -> Iterator[KubeCache]:
    caches: list[KubeCache] = []

    def make(**options) -> KubeCache:
        options.setdefault("rng", np.random.default_rng(0))
        made = KubeCache(kube.api_client(), options.pop("namespace", None), **options).start()
        caches.append(made)
        assert made.wait_synced(10)
        eventually(lambda: kube.open_watches >= 3 * len(caches), what="the watches open")  # so none opens during the test's requests
        return made

    yield make  # type: ignore[misc]
    for made in caches:
        made.stop()


def names(informer: Informer) -> list[str]:
    return [o["metadata"]["name"] if isinstance(o, dict) else o for o in informer.items()]


# ----------------------------------------------------------------- events
def test_list_then_watch_events_keep_the_cache_current(kube, cache):
    kube.put("deployments", deployment("a", 2))
    kube.put("inferenceautoscalers", autoscaler("a", "a"))
    c = cache()
    assert c.deployments.in_namespace(NS) == {"a": TargetState(2, 2, c.deployments.get(NS, "a").resource_version)}
    assert names(c.autoscalers) == ["a"]
    kube.put("deployments", deployment("b", 3))  # ADDED
    eventually(lambda: c.deployments.get(NS, "b") is not None, what="ADDED")
    kube.put("deployments", deployment("a", 5))  # MODIFIED
    eventually(lambda: c.deployments.get(NS, "a").replicas == 5, what="MODIFIED")
    kube.delete("deployments", NS, "b")  # DELETED
    eventually(lambda: c.deployments.get(NS, "b") is None, what="DELETED")
    eventually(lambda: c.deployments.resource_version == str(kube.revision), what="resourceVersion of the last event")
    stats = c.deployments.stats
    assert stats.lists == 1 and stats.events == 3 and stats.errors == 0 and stats.gone == 0
    # the watch started where the LIST left off: one LIST, then WATCH requests only
    reads = [r for r in kube.requests if r[1] == "/apis/apps/v1/deployments"]
    assert reads[0][0] == "GET" and {m for m, _ in reads[1:]} == {"WATCH"}


def test_a_namespaced_cache_sees_only_its_namespace(kube, cache):
    kube.put("deployments", deployment("a", 2))
    kube.put("deployments", deployment("x", 2, namespace="other"))
    c = cache(namespace="other")
    kube.put("deployments", deployment("b", 2))
    kube.put("deployments", deployment("y", 2, namespace="other"))
    eventually(lambda: c.deployments.get("other", "y") is not None)
    assert sorted(c.deployments.in_namespace("other")) == ["x", "y"] and c.deployments.in_namespace(NS) == {}


def test_resync_relists_and_heals_a_lost_event(kube, cache):
    kube.put("deployments", deployment("a", 2))
    c = cache(resync_s=0.5)
    kube.put("deployments", deployment("a", 7), watch_event=False)  # the watch never hears of it
    time.sleep(0.1)
    assert c.deployments.get(NS, "a").replicas == 2
    eventually(lambda: c.deployments.get(NS, "a").replicas == 7, timeout_s=5, what="resync")
    assert c.deployments.stats.lists >= 2


def test_410_gone_relists_at_once(kube, cache):
    kube.put("deployments", deployment("a", 2))
    c = cache()
    kube.put("deployments", deployment("b", 1), watch_event=False)  # an event the watch missed ...
    kube.compact()  # ... and the history that held it is gone
    kube.drop_watches()  # the informer watches again from its (now too old) resourceVersion: 410
    eventually(lambda: c.deployments.get(NS, "b") is not None, what="relist after 410")
    assert c.deployments.stats.gone >= 1 and c.deployments.stats.errors == 0
    kube.put("deployments", deployment("c", 1))  # and it watches again
    eventually(lambda: c.deployments.get(NS, "c") is not None, what="watch after relist")


def test_a_dropped_watch_resumes_without_a_relist(kube, cache):
    kube.put("deployments", deployment("a", 2))
    c = cache()
    kube.drop_watches()
    kube.put("deployments", deployment("b", 1))
    eventually(lambda: c.deployments.get(NS, "b") is not None)
    assert c.deployments.stats.lists == 1 and c.deployments.stats.watches >= 2


def test_failures_back_off_and_the_cache_goes_stale(kube):
    now = [0.0]
    kube.put("deployments", deployment("a", 2))
    apps = client.AppsV1Api(kube.api_client())

    def list_call(**kwargs):  # no return annotation: see controller.informer._bind
        return apps.list_namespaced_deployment(NS, **kwargs)

    informer = Informer("deployments", list_call, stale_after_s=30, backoff=Backoff(1, 0.01, 0.05), rng=np.random.default_rng(0),
                        clock=lambda: now[0])
    informer.start()
    try:
        assert informer.wait_synced(10)
        eventually(lambda: kube.open_watches >= 1, what="the watch opens")
        kube.inject("*", r"/deployments$", 500, times=10_000)  # the API server fails every LIST and WATCH from now on
        kube.drop_watches()  # an open watch would only end at its timeout; the informer must ask again now
        eventually(lambda: informer.stats.errors >= 3, what="retries")
        assert informer.fresh()  # listed within stale_after_s
        now[0] += 31
        assert not informer.fresh()  # not watching, last listed 31 s ago: the loop reads the API server instead
    finally:
        informer.stop()


def test_stop_ends_the_thread(kube):
    c = KubeCache(kube.api_client()).start()
    assert c.wait_synced(10)
    c.stop()
    assert all(i._thread is None for i in c)


# --------------------------------------------------------------- the loop
def test_the_loop_reads_the_cache_not_the_api_server(kube, cache):
    for name in ("a", "b"):
        kube.put("deployments", deployment(name, 2))
        kube.put("inferenceautoscalers", autoscaler(name, name))
    c = cache()
    rec = reconciler(kube, cache=c)
    before = len(kube.requests)
    report = rec.tick(NOW)
    assert [p for _, p in report.patched] == [4, 4]  # the HPA's legacy path from 2: at most max(2 x 2, 4)
    during = kube.requests[before:]
    assert not [r for r in during if r[0] == "GET"], during  # no LIST, no GET: the writes only
    assert {m for m, _ in during} == {"PATCH", "POST"}


def test_deleted_and_recreated_target_through_the_cache(kube, cache):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm"))
    c = cache()
    rec = reconciler(kube, cache=c)
    assert rec.tick(NOW).patched == [("serving/llm", 4)]
    eventually(lambda: c.deployments.get(NS, "llm").replicas == 4)
    kube.delete("deployments", NS, "llm")
    eventually(lambda: c.deployments.get(NS, "llm") is None)
    report = rec.tick(NOW + 15)
    assert report.patched == [] and [k for k, _ in report.errors] == ["target_missing"]
    kube.put("deployments", deployment("llm", 1))  # recreated, new object, one replica
    eventually(lambda: c.deployments.get(NS, "llm") is not None)
    report = rec.tick(NOW + 30)
    assert report.patched == [("serving/llm", 4)] and replicas(kube, "llm") == 4  # from the new object's 1 replica: max(2 x 1, 4)


def test_a_stale_cache_is_not_trusted(kube):
    kube.put("deployments", deployment("llm", 2))
    kube.put("inferenceautoscalers", autoscaler("llm", "llm"))

    class Stale:
        """A cache that has not synced (or has been failing for long)."""

        def __init__(self) -> None:
            self.autoscalers = self.deployments = self

        def fresh(self) -> bool:
            return False

    rec = reconciler(kube, cache=Stale())
    assert rec.tick(NOW).patched == [("serving/llm", 4)]
    assert ("GET", "/apis/autoscaling.kis-s.dev/v1alpha1/inferenceautoscalers") in kube.requests  # read from the API server


def test_a_write_from_stale_replicas_is_dropped_not_forced(kube):
    """The cache said 2 replicas; someone scaled to 9 in between: the 409 re-read shows 9, and 6 is not written over it."""
    kube.put("deployments", deployment("llm", 2))
    stale = kube.get("deployments", NS, "llm")["metadata"]["resourceVersion"]
    kube.put("deployments", deployment("llm", 9))
    kc = kube_client(kube)
    with pytest.raises(KubeError) as info:
        kc.patch_scale(NS, "llm", 6, stale, expected_replicas=2)
    assert info.value.kind == "conflict" and "replicas changed to 9 meanwhile" in str(info.value)
    assert replicas(kube, "llm") == 9 and [m for m, _ in scale_writes(kube)] == ["PATCH"]
    # replicas unchanged but the object moved on (e.g. its status): retried with the new resourceVersion
    kube.set_ready(NS, "llm", 9)
    kc.patch_scale(NS, "llm", 6, stale, expected_replicas=9)
    assert replicas(kube, "llm") == 6


def test_workers_reconcile_targets_at_a_time_with_the_same_outcome(kube, cache):
    for i in range(12):
        kube.put("deployments", deployment(f"d{i}", 2))
        kube.put("inferenceautoscalers", autoscaler(f"a{i:02d}", f"d{i}"))
    c = cache()
    report = reconciler(kube, cache=c, workers=4).tick(NOW)
    assert report.patched == [(f"serving/a{i:02d}", 4) for i in range(12)]  # in autoscaler order whatever finished first
    assert all(replicas(kube, f"d{i}") == 4 for i in range(12)) and report.status_writes == 12 and not report.errors


def test_fence_stops_a_replica_that_lost_the_lease(kube):
    kube.put("deployments", deployment("a", 2))
    kube.put("inferenceautoscalers", autoscaler("a", "a"))
    leading = [False]
    report = reconciler(kube, fence=lambda: leading[0]).tick(NOW)
    assert report.patched == [] and scale_writes(kube) == [] and not kube.writes(r"/status$")
    assert [k for k, _ in report.errors] == ["not_leader"]
    leading[0] = True
    assert reconciler(kube, fence=lambda: leading[0]).tick(NOW).patched == [("serving/a", 4)]


# ----------------------------------------------------------------- events
def test_events_are_sent_in_the_background(kube):
    kube.put("deployments", deployment("a", 2))
    kube.put("inferenceautoscalers", autoscaler("a", "a"))
    kube.inject("POST", r"/events$", None, delay_s=0.5, times=10)  # a slow API server
    recorder = EventRecorder(kube_client(kube))
    try:
        started = time.monotonic()
        report = reconciler(kube, events=recorder).tick(NOW)
        assert report.patched == [("serving/a", 4)] and time.monotonic() - started < 0.5  # the tick did not wait for the Event
        assert recorder.flush(5)
        (event,) = [e for e in kube.events(NS) if e["reason"] == "SuccessfulRescale"]
        assert "New size: 4 (was 2)" in event["message"] and recorder.sent == 1
    finally:
        recorder.close()


def test_events_beyond_the_queue_are_dropped_and_failures_counted(kube):
    obj = kube.put("inferenceautoscalers", autoscaler("a", "a"))
    kube.inject("POST", r"/namespaces/serving/events$", None, delay_s=0.3, times=100)  # every Event is slow
    recorder = EventRecorder(kube_client(kube, attempts=1), capacity=2, workers=1)
    try:
        for i in range(6):
            recorder.emit_event(NS, obj, "Test", f"event {i}")  # never blocks
        assert recorder.dropped >= 2  # 2 queued, 1 taken by the sender, 1 in flight at most
        assert recorder.flush(10) and recorder.sent + recorder.dropped == 6 and recorder.failed == 0
        kube.inject("POST", r"/namespaces/other/events$", 403, times=1)
        recorder.emit_event("other", obj, "Test", "refused")
        assert recorder.flush(5) and recorder.failed == 1
    finally:
        recorder.close()


def test_status_writes_are_unaffected_by_a_stopped_informer(kube: KubeEmulator, cache):
    kube.put("deployments", deployment("a", 2))
    kube.put("inferenceautoscalers", autoscaler("a", "a"))
    c = cache()
    c.stop()  # not watching: fresh only while listed within stale_after_s, then the loop reads the API server
    assert reconciler(kube, cache=c, reader=FakeReader()).tick(NOW).patched == [("serving/a", 4)]


def test_events_are_rate_limited_after_a_burst(kube):
    """A token bucket: 3 at once, then 2 a second (the sleeps it asks for say so; no time passes in the test)."""
    obj = kube.put("inferenceautoscalers", autoscaler("a", "a"))
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 3))
        now[0] += seconds

    recorder = EventRecorder(kube_client(kube), rate_per_s=2.0, burst=3, workers=1, clock=lambda: now[0], sleep=sleep)
    try:
        for i in range(6):
            recorder.emit_event(NS, obj, "Test", f"event {i}")
        assert recorder.flush(10) and recorder.sent == 6
        assert sleeps == [0.5, 0.5, 0.5]  # the burst of 3 went at once, then one every half second
    finally:
        recorder.close()
