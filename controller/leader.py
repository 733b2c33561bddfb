"""Leader election on a coordination.k8s.io/v1 Lease: only the leader reconciles.

:func:`lease_decision` is pure (lease fields, identity and ``now`` in; what
to do out); :class:`LeaderElector` does the I/O. A holder renews every tick;
another replica takes over once ``renewTime + leaseDurationSeconds`` has
passed, bumping ``leaseTransitions``. A conflict (409) means another replica
wrote first: not leader this round.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from kubernetes import client

from controller.kube import KubeClient, KubeError

Action = Literal["create", "renew", "take_over", "wait"]


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


class LeaderElector:
    """Try to acquire or renew the lease once per tick; :meth:`release` on shutdown."""

    def __init__(self, kube: KubeClient, namespace: str, name: str, identity: str, duration_s: float = 30.0) -> None:
        self.kube, self.namespace, self.name, self.identity, self.duration_s = kube, namespace, name, identity, duration_s
        self.is_leader = False

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
            view = None
            if lease is not None:
                spec = lease.spec
                view = LeaseView(spec.holder_identity, spec.renew_time, float(spec.lease_duration_seconds or self.duration_s))
            action = lease_decision(view, self.identity, now)
            if action == "create":
                self.kube.create_lease(self.namespace, self._body(now, 0, now))
            elif action == "renew":
                spec = lease.spec  # type: ignore[union-attr]
                self.kube.replace_lease(self.namespace, self.name, self._body(now, spec.lease_transitions or 0, spec.acquire_time or now, lease.metadata.resource_version))  # type: ignore[union-attr]
            elif action == "take_over":
                transitions = (lease.spec.lease_transitions or 0) + 1  # type: ignore[union-attr]
                self.kube.replace_lease(self.namespace, self.name, self._body(now, transitions, now, lease.metadata.resource_version))  # type: ignore[union-attr]
            self.is_leader = action != "wait"
        except KubeError:
            self.is_leader = False
        return self.is_leader

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
