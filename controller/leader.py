"""Leader election on a coordination.k8s.io/v1 Lease: only the leader reconciles.

:func:`lease_decision` (and :func:`should_acquire`) is pure: lease fields,
identity and ``now`` in, what to do out. :class:`LeaderElector` does the
I/O, one round per :meth:`LeaderElector.step`: the holder renews
(``renewTime``); another replica takes over once ``renewTime +
leaseDurationSeconds`` has passed, setting ``acquireTime`` and bumping
``leaseTransitions``. Writes are conditional on the Lease's resourceVersion,
so when two replicas race, one gets 409 Conflict and is not leader this
round. As client-go does, expiry is judged by this replica's own clock: a
lease held by another counts from when this replica last saw it change, not
from the ``renewTime`` another host's clock wrote, so clock skew between
hosts cannot make two leaders. :func:`run_elections` repeats rounds in a thread, a third of the lease
duration apart (as client-go's retry period), independently of the
reconcile interval.

The rounds run in their own thread, so a renewal alone would keep a hung
reconcile loop leading forever. With ``healthy`` (the loop's liveness), a
replica whose loop has stalled neither renews nor acquires: it stops
leading at once (the loop's fence closes) and the Lease expires for a
standby to take it ``leaseDurationSeconds`` after the last renewal.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import structlog
from kubernetes import client

from controller.kube import KubeClient, KubeError

Action = Literal["create", "renew", "take_over", "wait"]
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LeaseView:
    holder: str | None
    renew_time: dt.datetime | None
    duration_s: float


def lease_decision(lease: LeaseView | None, identity: str, now: dt.datetime) -> Action:
    """What a candidate should do with the lease as it stands."""
    if lease is None:
        return "create"
    if lease.holder == identity:
        return "renew"
    if not lease.holder or lease.renew_time is None or lease.renew_time + dt.timedelta(seconds=lease.duration_s) < now:
        return "take_over"
    return "wait"


def should_acquire(lease: LeaseView | None, identity: str, now: dt.datetime) -> bool:
    """Whether ``identity`` may hold the lease at ``now``: none exists, it holds it, or it expired or was released."""
    return lease_decision(lease, identity, now) != "wait"


class LeaderElector:
    """Try to acquire or renew the lease once per tick; :meth:`release` on shutdown."""

    def __init__(self, kube: KubeClient, namespace: str, name: str, identity: str, duration_s: float = 15.0,
                 healthy: Callable[[], bool] | None = None) -> None:
        if duration_s < 1:
            raise ValueError(f"lease duration must be >= 1 s, got {duration_s}")
        self.kube, self.namespace, self.name, self.identity, self.duration_s = kube, namespace, name, identity, duration_s
        self.healthy = healthy
        self.is_leader = False
        self._seen: tuple[str | None, dt.datetime] | None = None  # (resourceVersion, when this replica saw it)

    def _view(self, lease: client.V1Lease, now: dt.datetime) -> LeaseView:
        spec = lease.spec
        duration = float(spec.lease_duration_seconds or self.duration_s)
        if spec.holder_identity == self.identity or not spec.holder_identity:
            return LeaseView(spec.holder_identity, spec.renew_time, duration)
        version = lease.metadata.resource_version
        if self._seen is None or self._seen[0] != version:
            self._seen = (version, now)
        return LeaseView(spec.holder_identity, self._seen[1], duration)

    def _body(self, now: dt.datetime, transitions: int, acquire: dt.datetime, resource_version: str | None = None) -> client.V1Lease:
        return client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace, resource_version=resource_version),
            spec=client.V1LeaseSpec(holder_identity=self.identity, lease_duration_seconds=int(self.duration_s),
                                    acquire_time=acquire, renew_time=now, lease_transitions=transitions),
        )

    def step(self, now: dt.datetime) -> bool:
        """One election round; returns whether this replica leads now."""
        try:
            lease = self.kube.read_lease(self.namespace, self.name)
            view = self._view(lease, now) if lease is not None else None
            action = lease_decision(view, self.identity, now)
            if action != "wait" and self.healthy is not None and not self.healthy():
                if self.is_leader or action == "renew":
                    log.warning("lease_not_renewed", lease=f"{self.namespace}/{self.name}", identity=self.identity, reason="reconcile loop stalled")
                action = "wait"
            if action == "create":
                self.kube.create_lease(self.namespace, self._body(now, 0, now))
            elif action == "renew":
                spec = lease.spec  # type: ignore[union-attr]
                self.kube.replace_lease(self.namespace, self.name, self._body(now, spec.lease_transitions or 0, spec.acquire_time or now, lease.metadata.resource_version))  # type: ignore[union-attr]
            elif action == "take_over":
                transitions = (lease.spec.lease_transitions or 0) + 1  # type: ignore[union-attr]
                self.kube.replace_lease(self.namespace, self.name, self._body(now, transitions, now, lease.metadata.resource_version))  # type: ignore[union-attr]
            leading = action != "wait"
        except KubeError as exc:
            log.info("lease_not_acquired", lease=f"{self.namespace}/{self.name}", identity=self.identity, error=str(exc))
            leading = False
        if leading != self.is_leader:
            log.info("leadership_changed", lease=f"{self.namespace}/{self.name}", identity=self.identity, leader=leading)
        self.is_leader = leading
        return leading

    def release(self, now: dt.datetime) -> None:
        """Give the lease up (a successor need not wait for it to expire)."""
        if not self.is_leader:
            return
        try:
            lease = self.kube.read_lease(self.namespace, self.name)
            if lease is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = now
                self.kube.replace_lease(self.namespace, self.name, lease)
        except KubeError:
            pass
        self.is_leader = False


def run_elections(elector: LeaderElector, stop: threading.Event, on_change: Callable[[bool], None] | None = None,
                  clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> threading.Thread:
    """Start a daemon thread that runs an election round every ``duration_s / 3`` until ``stop`` is set, then releases the lease."""

    def loop() -> None:
        leading: bool | None = None
        while not stop.is_set():
            now = elector.step(clock())
            if on_change is not None and now != leading:
                on_change(now)
            leading = now
            stop.wait(elector.duration_s / 3)
        elector.release(clock())
        if on_change is not None:
            on_change(False)

    thread = threading.Thread(target=loop, name="leader-election", daemon=True)
    thread.start()
    return thread
