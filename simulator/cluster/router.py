"""Routers that spread requests over ready replicas.

A router sees each candidate replica through :class:`ReplicaView` (its queue,
batch and outstanding work) and returns the index of the chosen one. Learned
routers implement the same :class:`Router` protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ReplicaView(Protocol):
    """What a router may read of a replica."""

    @property
    def num_outstanding(self) -> int: ...

    @property
    def outstanding_tokens(self) -> int: ...

    @property
    def speed(self) -> float:
        """Relative serving speed (1.0 = the reference GPU); heterogeneous pools differ."""
        ...


@runtime_checkable
class Router(Protocol):
    name: str

    def choose(self, replicas: Sequence[ReplicaView], prompt_tokens: int, output_tokens: int) -> int: ...


class RoundRobin:
    """Cycles through the replicas in order."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def choose(self, replicas: Sequence[ReplicaView], prompt_tokens: int, output_tokens: int) -> int:
        index = self._next % len(replicas)
        self._next = index + 1
        return index


class LeastConnections:
    """Fewest outstanding requests; ties go to the lowest index."""

    name = "least_connections"

    def choose(self, replicas: Sequence[ReplicaView], prompt_tokens: int, output_tokens: int) -> int:
        best, best_load = 0, None
        for i, replica in enumerate(replicas):
            load = replica.num_outstanding
            if best_load is None or load < best_load:
                best, best_load = i, load
        return best


class LeastLoaded:
    """Least outstanding tokens divided by the replica's speed."""

    name = "least_loaded"

    def choose(self, replicas: Sequence[ReplicaView], prompt_tokens: int, output_tokens: int) -> int:
        best, best_load = 0, None
        for i, replica in enumerate(replicas):
            load = replica.outstanding_tokens / replica.speed
            if best_load is None or load < best_load:
                best, best_load = i, load
        return best


class RandomRouter:
    """Uniformly random, from an explicit generator."""

    name = "random"

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def choose(self, replicas: Sequence[ReplicaView], prompt_tokens: int, output_tokens: int) -> int:
        return int(self._rng.integers(len(replicas)))


ROUTERS = ("round_robin", "least_connections", "least_loaded", "random")


def make_router(name: str, rng: np.random.Generator) -> Router:
    """A router by name (one of :data:`ROUTERS`, or ``learned:PATH`` for a trained ``kis lb`` agent)."""
    if name.startswith("learned:"):
        from simulator.lb.router import LearnedRouter

        return LearnedRouter.load(name.removeprefix("learned:"))
    if name == "round_robin":
        return RoundRobin()
    if name == "least_connections":
        return LeastConnections()
    if name == "least_loaded":
        return LeastLoaded()
    if name == "random":
        return RandomRouter(rng)
    raise ValueError(f"unknown router {name!r}; choose one of {', '.join(ROUTERS)}")
