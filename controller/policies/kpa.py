"""Knative's KPA: stable and panic windows over observed concurrency.

Follows knative/serving pkg/autoscaler/scaling/autoscaler.go (``Scale``):
desired pods = ceil(average concurrency over the window / target per pod),
bounded by the max scale-up and scale-down rates. Panic starts when the
panic window's desired pods reach ``panic_threshold`` x ready pods, is
extended while that holds, and ends a stable window after it last held; in
panic the desired count never falls (it keeps the panic maximum).
Concurrency is running plus waiting requests over all replicas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from controller import signals as sig
from controller.decision import Proposal
from controller.policies.base import PolicyContext


@dataclass(frozen=True)
class KpaState:
    samples: tuple[tuple[float, float], ...] = ()
    panic_since_s: float | None = None
    max_panic_pods: int = 0


@dataclass(frozen=True)
class KpaPolicy:
    """:param target: concurrency per replica. :param stable_window_s: 60 s. :param panic_window_s: 6 s.
    :param panic_threshold: 2.0 (200%). :param max_scale_up_rate: 1000. :param max_scale_down_rate: 2."""

    target: float
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    name: str = "kpa"

    def __post_init__(self) -> None:
        if self.target <= 0 or not 0 < self.panic_window_s <= self.stable_window_s:
            raise ValueError("need target > 0 and 0 < panic_window_s <= stable_window_s")
        if self.panic_threshold <= 1 or self.max_scale_up_rate <= 1 or self.max_scale_down_rate <= 1:
            raise ValueError("panic_threshold and the max scale rates must exceed 1")

    def initial_state(self) -> KpaState:
        return KpaState()

    @staticmethod
    def _average(samples: tuple[tuple[float, float], ...], since: float) -> float:
        values = [v for t, v in samples if t > since]
        return sum(values) / len(values) if values else math.nan

    def decide(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: KpaState) -> tuple[Proposal, KpaState]:
        now = ctx.now_s
        running, waiting = snapshot.get("requests_running", math.nan), snapshot.get("requests_waiting", math.nan)
        samples = tuple(s for s in state.samples if s[0] > now - self.stable_window_s)
        if not (sig.is_usable(running) and sig.is_usable(waiting)):
            return Proposal(None, ("concurrency unavailable",)), KpaState(samples, state.panic_since_s, state.max_panic_pods)
        samples = samples + ((now, running + waiting),)
        ready_value = snapshot.get(sig.REPLICAS_READY, math.nan)
        ready = max(1, int(ready_value) if sig.is_usable(ready_value) else 1)
        stable = self._average(samples, now - self.stable_window_s)
        panic = self._average(samples, now - self.panic_window_s)
        max_up = math.ceil(self.max_scale_up_rate * ready)
        max_down = math.floor(ready / self.max_scale_down_rate)
        dspc, dppc = math.ceil(stable / self.target), math.ceil(panic / self.target)
        stable_pods = min(max(dspc, max_down), max_up)
        panic_pods = min(max(dppc, max_down), max_up)
        over = dppc / ready >= self.panic_threshold
        panic_since = state.panic_since_s
        if over:
            panic_since = now
        elif panic_since is not None and panic_since + self.stable_window_s < now:
            panic_since = None
        if panic_since is not None:
            max_panic = max(state.max_panic_pods, panic_pods)
            return Proposal(max_panic, (f"panic: concurrency {panic:.1f} over {self.panic_window_s:g} s -> {panic_pods}, holding {max_panic}",)), KpaState(samples, panic_since, max_panic)
        return Proposal(stable_pods, (f"stable: concurrency {stable:.1f} over {self.stable_window_s:g} s / target {self.target:g} -> {stable_pods}",)), KpaState(samples, None, 0)
