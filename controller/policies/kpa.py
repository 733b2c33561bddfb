"""Knative's KPA: stable and panic windows over observed concurrency.

Follows knative/serving ``pkg/autoscaler/scaling/autoscaler.go`` (``Scale``):

- observed concurrency (running + waiting requests over all replicas) is
  averaged over the stable window (60 s) and the panic window (6 s);
- desired pods = ceil(average / target per pod) for each window, kept in
  ``[floor(ready / max_scale_down_rate), ceil(max_scale_up_rate * ready)]``
  (ready counts as at least 1);
- panic starts when the panic window's desired pods reach
  ``panic_threshold`` x ready pods, is extended while that holds, and ends
  once it has not held for a whole stable window;
- in panic the desired count is the larger of the two windows and never
  falls: it keeps the highest count seen since panic began.

The state is the sample history (time, concurrency) pruned to the stable
window, plus the panic start and the panic maximum. Samples are taken at each
decision, so windows shorter than the control interval hold one sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from controller import signals as sig
from controller.decision import Proposal
from controller.policies.base import PolicyContext


@dataclass(frozen=True)
class KpaState:
    """:param samples: (time, concurrency) within the stable window.
    :param panic_time_s: when the panic threshold last held (``None``: not in panic).
    :param max_panic_pods: highest desired count since panic began."""

    samples: tuple[tuple[float, float], ...] = ()
    panic_time_s: float | None = None
    max_panic_pods: int = 0

    @property
    def panicking(self) -> bool:
        return self.panic_time_s is not None


@dataclass(frozen=True)
class KpaPolicy:
    """Knative's ``DeciderSpec``, flattened.

    :param target: concurrency per replica (Knative's ``TargetValue``: target x utilisation).
    :param stable_window_s: stable window (Knative default 60 s).
    :param panic_window_s: panic window (default 6 s, 10% of the stable window).
    :param panic_threshold: panic when panic-window desired pods >= this x ready pods (default 2.0, i.e. 200%).
    :param max_scale_up_rate: at most this x ready pods (default 1000).
    :param max_scale_down_rate: at least ready pods / this (default 2).
    """

    target: float
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    name: str = "kpa"

    required_signals: ClassVar[tuple[str, ...]] = ("requests_running", "requests_waiting")

    def __post_init__(self) -> None:
        if not self.target > 0:
            raise ValueError(f"KPA target must be positive, got {self.target}")
        if not 0 < self.panic_window_s <= self.stable_window_s:
            raise ValueError(f"need 0 < panic_window_s <= stable_window_s, got {self.panic_window_s}, {self.stable_window_s}")
        if self.panic_threshold <= 1 or self.max_scale_up_rate <= 1 or self.max_scale_down_rate <= 1:
            raise ValueError("panic_threshold, max_scale_up_rate and max_scale_down_rate must exceed 1")

    def initial_state(self) -> KpaState:
        return KpaState()

    @staticmethod
    def _average(samples: tuple[tuple[float, float], ...], since: float) -> float:
        values = [v for t, v in samples if t > since]
        return sum(values) / len(values) if values else math.nan

    def decide(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: KpaState) -> tuple[Proposal, KpaState]:
        now = ctx.now_s
        samples = tuple(s for s in state.samples if s[0] > now - self.stable_window_s)
        running, waiting = snapshot.get("requests_running"), snapshot.get("requests_waiting")
        if not (sig.is_usable(running) and sig.is_usable(waiting)):  # metrics.ErrNoData: invalid result
            return Proposal(None, ("no concurrency data",)), KpaState(samples, state.panic_time_s, state.max_panic_pods)
        samples = samples + ((now, float(running) + float(waiting)),)  # type: ignore[arg-type]
        ready_value = snapshot.get(sig.REPLICAS_READY)
        ready = max(1.0, float(int(ready_value)) if sig.is_usable(ready_value) else 0.0)  # type: ignore[arg-type]

        stable = self._average(samples, now - self.stable_window_s)
        panic = self._average(samples, now - self.panic_window_s)
        max_up = math.ceil(self.max_scale_up_rate * ready)
        max_down = math.floor(ready / self.max_scale_down_rate)
        dspc, dppc = math.ceil(stable / self.target), math.ceil(panic / self.target)
        stable_pods = int(min(max(dspc, max_down), max_up))
        panic_pods = int(min(max(dppc, max_down), max_up))

        over = dppc / ready >= self.panic_threshold
        panic_time, max_panic = state.panic_time_s, state.max_panic_pods
        if over:
            panic_time = now  # start, or extend, the panic
        elif panic_time is not None and panic_time + self.stable_window_s < now:
            panic_time, max_panic = None, 0  # the surge has reached the stable window: un-panic

        if panic_time is None:
            reason = f"stable: concurrency {stable:.1f} over {self.stable_window_s:g} s / target {self.target:g} -> {stable_pods}"
            return Proposal(stable_pods, (reason,)), KpaState(samples, None, 0)
        desired = max(stable_pods, panic_pods)
        max_panic = max(max_panic, desired)  # never scale down in panic
        reason = (f"panic: concurrency {panic:.1f} over {self.panic_window_s:g} s -> {panic_pods}, "
                  f"stable -> {stable_pods}, holding {max_panic}")
        return Proposal(max_panic, (reason,)), KpaState(samples, panic_time, max_panic)
