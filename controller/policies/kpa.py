"""Knative's KPA: stable and panic windows over observed concurrency.

Follows knative/serving ``pkg/autoscaler/scaling/autoscaler.go``:

- ``New``: an autoscaler (re)started over more than one ready pod starts in
  panic mode with ``maxPanicPods = ready``, so a restart, which loses the
  metric history, never scales down before it has seen enough data;
- ``Scale`` (:func:`knative_scale`): desired pods = ceil(observed / target)
  for the stable and the panic window, kept in
  ``[floor(ready / max_scale_down_rate), ceil(max_scale_up_rate * ready)]``
  (ready counts as at least 1; the revision is reachable), raised to
  ``activation_scale`` when there is any traffic; panic starts when the panic
  window's desired pods reach ``panic_threshold`` x ready, is extended while
  that holds, and ends once it has not held for a whole stable window; in
  panic the count is the larger of the two windows and never falls;
- ``pkg/reconciler/autoscaling/kpa/scaler.go`` (``handleScaleToZero``): the
  last pod goes only after the autoscaler has wanted zero for
  ``scale_to_zero_grace_s``; until then it keeps one.

The observed values are window averages of per-second readings of the
serving concurrency (running + waiting), as Knative's
``aggregation.TimedFloat64Buckets`` averages its 1 s buckets: the snapshot's
``concurrency_stable`` and ``concurrency_panic`` (the simulator samples every
second; online, ``avg_over_time`` over a 1 s subquery of the window). The
requests held at the gateway (``gateway_pending``) are added to both, as
Knative's activator reports the requests it buffers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace as _replace
from typing import ClassVar

from controller import load
from controller import signals as sig
from controller.decision import Proposal
from controller.policies.base import PolicyContext


@dataclass(frozen=True)
class KpaState:
    """:param started: the first decision has been made (``New`` has run).
    :param panic_time_s: when the panic threshold last held (``None``: not in panic).
    :param max_panic_pods: highest desired count since panic began.
    :param zero_since_s: since when the autoscaler has wanted zero pods (``None``: it does not)."""

    started: bool = False
    panic_time_s: float | None = None
    max_panic_pods: int = 0
    zero_since_s: float | None = None

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
    :param activation_scale: at least this many pods whenever there is traffic (default 1).
    :param scale_to_zero_grace_s: wanted zero this long before the last pod goes (default 30 s).
    """

    target: float
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    activation_scale: int = 1
    scale_to_zero_grace_s: float = 30.0
    name: str = "kpa"

    required_signals = (sig.CONCURRENCY_STABLE, sig.CONCURRENCY_PANIC)
    reads = (sig.GATEWAY_PENDING,)
    #: The stable window and ``max_scale_down_rate`` damp the KPA's scale-downs.
    stabilizes_scale_down: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not self.target > 0:
            raise ValueError(f"KPA target must be positive, got {self.target}")
        if not 0 < self.panic_window_s <= self.stable_window_s:
            raise ValueError(f"need 0 < panic_window_s <= stable_window_s, got {self.panic_window_s}, {self.stable_window_s}")
        if self.panic_threshold <= 1 or self.max_scale_up_rate <= 1 or self.max_scale_down_rate <= 1:
            raise ValueError("panic_threshold, max_scale_up_rate and max_scale_down_rate must exceed 1")
        if self.activation_scale < 1 or self.scale_to_zero_grace_s < 0:
            raise ValueError("activation_scale must be >= 1 and scale_to_zero_grace_s >= 0")

    @property
    def windows(self) -> dict[str, float]:
        """The windows of ``concurrency_stable`` and ``concurrency_panic``."""
        return {"stable_window": self.stable_window_s, "panic_window": self.panic_window_s}

    def initial_state(self) -> KpaState:
        return KpaState()

    def dump_state(self, state: KpaState) -> dict[str, int]:
        """The panic maximum, while in panic, for a restart."""
        return {"maxPanicPods": state.max_panic_pods} if state.panicking else {}

    def load_state(self, data: Mapping[str, object], now_s: float, current: int) -> KpaState:
        """After a restart in panic: in panic again, holding the current replicas (never above the
        stored maximum); otherwise ``New``'s rule applies at the first decision."""
        stored = data.get("maxPanicPods")
        if isinstance(stored, (int, float)) and math.isfinite(stored) and stored > 0:
            return KpaState(True, now_s, min(int(stored), current))
        return KpaState()

    def start(self, ready: int, now_s: float) -> KpaState:
        """``New``: in panic with ``maxPanicPods = ready`` when more than one pod is ready."""
        return KpaState(True, now_s if ready > 1 else None, ready)

    def decide(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: KpaState) -> tuple[Proposal, KpaState]:
        ready_value = load.value(snapshot, sig.REPLICAS_READY)
        ready = int(ready_value) if math.isfinite(ready_value) else 0
        if not state.started:
            state = self.start(ready, ctx.now_s)
        stable = load.value(snapshot, sig.CONCURRENCY_STABLE)
        panic = load.value(snapshot, sig.CONCURRENCY_PANIC)
        if not (math.isfinite(stable) and math.isfinite(panic)):  # metrics.ErrNoData: an invalid result
            return Proposal(None, ("no concurrency data",)), state
        pending = load.gateway_pending(snapshot)
        desired, state, reason = knative_scale(self, stable + pending, panic + pending, ready, ctx.now_s, state)
        return self._grace(desired, ctx, state, reason)

    def _grace(self, desired: int, ctx: PolicyContext, state: KpaState, reason: str) -> tuple[Proposal, KpaState]:
        """``handleScaleToZero``: keep one pod until zero has been wanted for the grace period."""
        if desired != 0:
            return Proposal(desired, (reason,)), _replace(state, zero_since_s=None)
        since = state.zero_since_s if state.zero_since_s is not None else ctx.now_s
        state = _replace(state, zero_since_s=since)
        if ctx.current_replicas > 0 and ctx.now_s - since < self.scale_to_zero_grace_s:
            return Proposal(1, (reason, f"scale-to-zero grace: zero wanted for {ctx.now_s - since:.0f} s < {self.scale_to_zero_grace_s:g} s")), state
        return Proposal(0, (reason,)), state


def knative_scale(kpa: KpaPolicy, stable: float, panic: float, ready_pods: int, now_s: float,
                  state: KpaState) -> tuple[int, KpaState, str]:
    """``autoscaler.Scale`` on observed stable and panic values: (desired pods, new state, reason)."""
    ready = max(1.0, float(ready_pods))  # "use 1 if there are zero current pods"
    max_up = math.ceil(kpa.max_scale_up_rate * ready)
    max_down = math.floor(ready / kpa.max_scale_down_rate)
    dspc, dppc = math.ceil(stable / kpa.target), math.ceil(panic / kpa.target)
    stable_pods = int(min(max(dspc, max_down), max_up))
    panic_pods = int(min(max(dppc, max_down), max_up))
    if kpa.activation_scale > 1:
        if dspc > 0 and kpa.activation_scale > stable_pods:
            stable_pods = kpa.activation_scale
        if dppc > 0 and kpa.activation_scale > panic_pods:
            panic_pods = kpa.activation_scale

    over = dppc / ready >= kpa.panic_threshold
    panic_time, max_panic = state.panic_time_s, state.max_panic_pods
    if over:
        panic_time = now_s  # begin, or extend, the panic
    elif panic_time is not None and panic_time + kpa.stable_window_s < now_s:
        panic_time, max_panic = None, 0  # the surge has made its way into the stable window: un-panic

    if panic_time is None:
        reason = f"stable: concurrency {stable:.1f} over {kpa.stable_window_s:g} s / target {kpa.target:g} -> {stable_pods}"
        return stable_pods, _replace(state, panic_time_s=None, max_panic_pods=max_panic), reason
    desired = max(stable_pods, panic_pods)
    max_panic = max(max_panic, desired)  # never scale down in panic
    reason = (f"panic: concurrency {panic:.1f} over {kpa.panic_window_s:g} s -> {panic_pods}, "
              f"stable -> {stable_pods}, holding {max_panic}")
    return max_panic, _replace(state, panic_time_s=panic_time, max_panic_pods=max_panic), reason
