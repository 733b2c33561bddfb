"""Leader election on a coordination.k8s.io/v1 Lease: the pure decision, two instances, races, clock skew."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from controller.leader import LeaderElector, LeaseView, lease_decision, run_elections, should_acquire
from tests.controller_helpers import kube_client
from tests.kube_emulator import kube  # noqa: F401 (fixture)

T0 = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(("lease", "identity", "expected"), [
    (None, "b", "create"),
    (LeaseView("a", at(-5), 30), "a", "renew"),
    (LeaseView("a", at(-5), 30), "b", "wait"),
    (LeaseView("a", at(-30), 30), "b", "wait"),       # expires at now: not yet
    (LeaseView("a", at(-31), 30), "b", "take_over"),
    (LeaseView(None, at(-1), 30), "b", "take_over"),  # released
    (LeaseView("a", None, 30), "b", "take_over"),     # never renewed
])
def test_lease_decision_is_pure(lease, identity, expected):
    assert lease_decision(lease, identity, T0) == expected
    assert should_acquire(lease, identity, T0) == (expected != "wait")


def elector(kube, identity: str, duration_s: float = 30) -> LeaderElector:
    return LeaderElector(kube_client(kube), "kis-system", "kis", identity, duration_s=duration_s)


def lease(kube) -> dict:
    return kube.get("leases", "kis-system", "kis")["spec"]


def test_two_instances_one_leader_and_takeover_after_expiry(kube):
    a, b = elector(kube, "a"), elector(kube, "b")
    assert a.step(at(0)) and not b.step(at(1))
    first = lease(kube)
    assert first["holderIdentity"] == "a" and first["leaseDurationSeconds"] == 30 and first["leaseTransitions"] == 0
    assert first["acquireTime"].startswith("2026-11-24T12:00:00")
    assert a.step(at(15)) and not b.step(at(16))
    assert lease(kube)["renewTime"].startswith("2026-11-24T12:00:15") and lease(kube)["acquireTime"] == first["acquireTime"]
    # a stops renewing. b saw the last renewal at 16 s (its own clock): it waits until 16 + 30.
    assert not b.step(at(45))
    assert not b.step(at(46))
    assert b.step(at(47))
    taken = lease(kube)
    assert taken["holderIdentity"] == "b" and taken["leaseTransitions"] == 1 and taken["acquireTime"].startswith("2026-11-24T12:00:47")
    assert not a.step(at(48))  # a comes back: b holds a fresh lease
    b.release(at(50))
    assert lease(kube).get("holderIdentity") is None
    assert a.step(at(51))  # released: no need to wait for expiry
    assert lease(kube)["leaseTransitions"] == 2


def test_a_race_on_the_lease_has_one_winner(kube):
    """Both saw the expired lease; the second write carries a stale resourceVersion and gets 409."""
    a, b, c = elector(kube, "a"), elector(kube, "b"), elector(kube, "c")
    assert a.step(at(0))
    seen = b.kube.read_lease("kis-system", "kis")  # b and c read the same version
    b.kube.read_lease = c.kube.read_lease = lambda namespace, name: seen
    b._seen = c._seen = (seen.metadata.resource_version, at(0))
    assert b.step(at(40))
    assert not c.step(at(40))
    assert lease(kube)["holderIdentity"] == "b"


def test_clock_skew_does_not_make_two_leaders(kube):
    """b's clock runs an hour ahead: judged by renewTime, a's fresh lease would look expired to b."""
    a, b = elector(kube, "a"), elector(kube, "b")
    assert a.step(at(0))
    assert not b.step(at(3600))
    assert a.step(at(10))
    assert not b.step(at(3610)) and lease(kube)["holderIdentity"] == "a"


def test_api_errors_mean_not_leader(kube):
    a = elector(kube, "a")
    assert a.step(at(0))
    kube.inject("*", r"/leases", 500, times=100)
    assert not a.step(at(10)) and not a.is_leader


def test_elections_run_in_a_thread_and_release_on_stop(kube):
    changes: list[bool] = []
    stop = threading.Event()
    thread = run_elections(elector(kube, "a", duration_s=1.0), stop, changes.append)
    deadline = time.monotonic() + 5
    while not changes and time.monotonic() < deadline:
        time.sleep(0.02)
    assert changes[:1] == [True] and lease(kube)["holderIdentity"] == "a"
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and changes[-1] is False and lease(kube).get("holderIdentity") is None


def test_a_stalled_loop_stops_renewing_and_a_standby_takes_over(kube):
    """The elector's thread is alive but the reconcile loop hangs: no renewal, leadership dropped at once, b takes over after expiry."""
    loop_alive = [True]
    a = LeaderElector(kube_client(kube), "kis-system", "kis", "a", duration_s=30, healthy=lambda: loop_alive[0])
    b = elector(kube, "b")
    assert a.step(at(0)) and not b.step(at(1))
    assert a.step(at(10)) and lease(kube)["renewTime"].startswith("2026-11-24T12:00:10")
    loop_alive[0] = False  # the loop stalls at 10 s
    assert not a.step(at(20)) and not a.is_leader  # the fence closes now, not when the lease expires
    assert lease(kube)["renewTime"].startswith("2026-11-24T12:00:10") and lease(kube)["holderIdentity"] == "a"
    assert not b.step(at(21))  # b first sees the renewal of 10 s at 21 s (its clock): it waits until 21 + 30
    assert not a.step(at(30)) and not b.step(at(50))
    assert b.step(at(52)) and lease(kube)["holderIdentity"] == "b"
    loop_alive[0] = True  # a wakes up: b holds a fresh lease
    assert not a.step(at(53))


def test_a_stalled_replica_does_not_acquire_a_free_lease(kube):
    a = LeaderElector(kube_client(kube), "kis-system", "kis", "a", duration_s=30, healthy=lambda: False)
    assert not a.step(at(0)) and kube.get("leases", "kis-system", "kis") is None


def test_lease_duration_is_checked(kube):
    with pytest.raises(ValueError, match="lease duration"):
        elector(kube, "a", duration_s=0.5)
