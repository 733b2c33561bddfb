"""A predictive, model-based planner: replicas from per-replica capacity at the SLO.

After NVIDIA Dynamo's SLA planner and llm-d's variant autoscaler: the load a
target sees is divided by what one replica serves while the SLO holds (a
:class:`~controller.capacity.CapacityProfile`, computed offline from the
latency model of the target's GPU and model), forecast one cold start ahead.

Each decision:

1. **Demand** (requests/s): arrivals are completions plus the growth of the
   requests in the system, so the demand is the served request rate over the
   window, plus how fast the requests in flight (running + waiting) grew since
   the last decision (a burst shows there within one interval, where the
   windowed rate lags by up to a window), plus a backlog to drain within
   ``drain_s`` (requests in flight beyond what the ready replicas hold at
   capacity, from the profile's ``max_concurrency``; the waiting queue without
   one). Mean prompt and output lengths come from the token rates and are
   smoothed.
2. **Forecast**: Holt's linear trend on the demand, ``horizon_s`` ahead
   (default: the cold start plus one interval), so a replica asked for now is
   Ready when the demand arrives. Scale-up uses ``max(now, forecast)``.
3. **Scale up** to the smallest fleet whose capacity at the SLO, at
   ``target_utilization`` of it, holds the demand ahead, as soon as that
   exceeds the current replicas. A fleet's capacity per replica grows with its
   size (the router evens out bursts; the profile's pooled measurement).
4. **Scale down only after a consolidation check**: the largest of the
   demand now, the smoothed level, the forecast and the recent peak (the
   highest confirmed demand, decaying with the time constant ``peak_hold_s``)
   fits on fewer replicas at ``target_utilization x scale_down_margin`` of
   their capacity, and has fit continuously for ``scale_down_delay_s`` (two
   horizons by default). The peak keeps a fleet through the silences between
   bursts that come back (HPA's scale-down window does the same with its
   recommendations). Never while requests wait and the p95 TTFT is over the SLO.

5. **Latency feedback**, as Dynamo's planner corrects its profile with the
   latency it observes: the profile is measured on Poisson arrivals, and
   burstier traffic gets less from a replica at the SLO. While the p95 TTFT
   (with requests queueing for a part of it) or the p95 TPOT (with a batch
   running) is over the SLO on a settled fleet (none starting), the planned
   capacity is multiplied by ``feedback_down`` per decision, down to
   ``min_correction``; while both hold within the SLO it returns towards the
   profile with the time constant ``feedback_recovery_s``. A violation that
   more replicas cannot fix (one long prompt, no queue) does not count.

Without a capacity profile the planner has no valid answer (the guardrails
hold). Without a request rate yet (a fresh target), it holds, or adds one
replica when requests queue.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from controller import signals as sig
from controller.decision import Proposal
from controller.forecast import Holt, HoltState, Moments
from controller.policies.base import PolicyContext

#: Mean token lengths assumed before the first completed request.
DEFAULT_PROMPT_TOKENS = 1024.0
DEFAULT_OUTPUT_TOKENS = 256.0
#: Request rate below which the token mix is not re-estimated (too few requests in the window).
_MIX_MIN_RATE = 0.05


@dataclass(frozen=True)
class PlannerState:
    """:param demand: Holt state of the demand (req/s).
    :param prompt_tokens: smoothed mean prompt length.
    :param output_tokens: smoothed mean output length.
    :param fits_since_s: since when a smaller fleet has held the demand (``None``: it does not).
    :param last_in_flight: requests in flight (running + waiting) at the previous decision.
    :param last_time_s: time of the previous decision.
    :param last_demand: the demand at the previous decision (req/s; NaN before one).
    :param recent: mean and spread of the recent demand.
    :param correction: the capacity correction for the latency seen (1: the profile as measured).
    :param peak: the recent peak of the confirmed demand, decayed (req/s)."""

    demand: HoltState = HoltState()
    prompt_tokens: float = DEFAULT_PROMPT_TOKENS
    output_tokens: float = DEFAULT_OUTPUT_TOKENS
    fits_since_s: float | None = None
    last_in_flight: float = math.nan
    last_time_s: float = math.nan
    last_demand: float = math.nan
    recent: Moments = Moments()
    correction: float = 1.0
    peak: float = 0.0


@dataclass(frozen=True)
class Assessment:
    """What the planner sees in one snapshot (also the learned policy's planner features).

    :param demand_now: demand now, req/s (served rate plus queue drain).
    :param demand_ahead: the demand expected one horizon ahead (at least ``demand_now``).
    :param replica_rps: capacity at the SLO per replica of the current fleet for the current token mix, req/s.
    :param needed_now: replicas the current demand needs at full capacity (fractional).
    :param needed_ahead: replicas the demand ahead needs at full capacity (fractional).
    :param valid: a demand could be estimated (a request rate is known).
    """

    demand_now: float
    demand_ahead: float
    replica_rps: float
    needed_now: float
    needed_ahead: float
    valid: bool


@dataclass(frozen=True)
class PlannerPolicy:
    """Replicas from forecast demand over per-replica capacity at the SLO.

    :param target_utilization: fraction of a replica's capacity at the SLO to plan for (the headroom knob;
        above 1 plans past that capacity and accepts more SLO misses for less cost).
    :param scale_down_margin: a smaller fleet must hold the demand at ``target_utilization x`` this.
    :param scale_down_delay_s: how long the smaller fleet must have held it, seconds (``None``: two horizons,
        so that a replica is not shed between bursts that come back before a new one could start).
    :param horizon_s: forecast horizon, seconds (``None``: the context's cold start plus one interval).
    :param drain_s: the queue is counted as demand that must drain within this many seconds.
    :param alpha: Holt level smoothing.
    :param beta: Holt trend smoothing.
    :param mix_smoothing: smoothing factor of the mean token lengths.
    :param burst_z: the standing fleet holds the recent demand's mean plus this many standard deviations.
    :param burst_window_s: time constant of that recent demand (``None``: see :meth:`window`).
    :param trend_damping_s: time constant of the trend's damping over the horizon.
    :param feedback_down: capacity correction per decision while a settled fleet misses the SLO (1: no feedback).
    :param feedback_recovery_s: time constant of the correction's return to the profile while the SLO holds.
    :param min_correction: the lowest correction (a fleet of at most ``1 / min_correction`` times the profile's).
    :param peak_hold_s: time constant of the recent peak that a scale-down must fit (``None``: no peak).
    """

    target_utilization: float = 0.8
    scale_down_margin: float = 0.9
    scale_down_delay_s: float | None = None
    horizon_s: float | None = None
    drain_s: float = 60.0
    alpha: float = 0.5
    beta: float = 0.3
    mix_smoothing: float = 0.3
    burst_z: float = 1.0
    burst_window_s: float | None = None
    trend_damping_s: float = 60.0
    feedback_down: float = 0.85
    feedback_recovery_s: float = 1800.0
    min_correction: float = 0.4
    peak_hold_s: float | None = 600.0
    name: str = "planner"
    forecaster: Holt = field(init=False, repr=False)

    required_signals: ClassVar[tuple[str, ...]] = ("requests_running", "requests_waiting")
    #: The consolidation check is the planner's own scale-down window.
    stabilizes_scale_down: ClassVar[bool] = True
    #: Reads the target's capacity profile (``PolicyContext.capacity``).
    reads_capacity: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not 0 < self.target_utilization <= 4:
            raise ValueError(f"target_utilization must be in (0, 4], got {self.target_utilization}")
        if not 0 < self.scale_down_margin <= 1:
            raise ValueError(f"scale_down_margin must be in (0, 1], got {self.scale_down_margin}")
        if (self.scale_down_delay_s is not None and self.scale_down_delay_s < 0) or not self.drain_s > 0 or (
                self.horizon_s is not None and self.horizon_s < 0):
            raise ValueError("need scale_down_delay_s >= 0, drain_s > 0 and horizon_s >= 0")
        if not 0 < self.mix_smoothing <= 1:
            raise ValueError(f"mix_smoothing must be in (0, 1], got {self.mix_smoothing}")
        if self.peak_hold_s is not None and not self.peak_hold_s > 0:
            raise ValueError(f"peak_hold_s must be positive (or None), got {self.peak_hold_s}")
        if not (0 < self.feedback_down <= 1 and 0 < self.min_correction <= 1 and self.feedback_recovery_s > 0):
            raise ValueError("need feedback_down and min_correction in (0, 1] and feedback_recovery_s > 0")
        object.__setattr__(self, "forecaster", Holt(self.alpha, self.beta))

    def initial_state(self) -> PlannerState:
        return PlannerState()

    def horizon(self, ctx: PolicyContext) -> float:
        return ctx.cold_start_s + ctx.interval_s if self.horizon_s is None else self.horizon_s

    def window(self, ctx: PolicyContext) -> float:
        """Time constant of the recent-demand spread (default: the longer of 5 minutes and two horizons)."""
        return max(300.0, 2.0 * self.horizon(ctx)) if self.burst_window_s is None else self.burst_window_s

    def delay(self, ctx: PolicyContext) -> float:
        return 2.0 * self.horizon(ctx) if self.scale_down_delay_s is None else self.scale_down_delay_s

    def assess(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: PlannerState) -> tuple[Assessment, PlannerState]:
        """Demand, forecast and capacity for ``snapshot``; the next state. Needs ``ctx.capacity``."""
        if ctx.capacity is None:
            raise ValueError("the planner needs the target's capacity profile (spec.capacity; see `kis capacity`)")
        rate = snapshot.get("request_rate")
        waiting = snapshot.get("requests_waiting")
        waiting = float(waiting) if sig.is_usable(waiting) else 0.0
        prompt, output = state.prompt_tokens, state.output_tokens
        valid = sig.is_usable(rate)
        if valid and rate >= _MIX_MIN_RATE:  # type: ignore[operator]
            p, g = snapshot.get("prompt_token_rate"), snapshot.get("generation_token_rate")
            k = self.mix_smoothing
            if sig.is_usable(p) and p > 0:  # type: ignore[operator]
                prompt += k * (p / rate - prompt)  # type: ignore[operator]
            if sig.is_usable(g) and g > 0:  # type: ignore[operator]
                output += k * (max(1.0, g / rate) - output)  # type: ignore[operator]
        correction = self.corrected(snapshot, ctx, state)
        replica_rps = correction * ctx.capacity.rps(prompt, output, max(ctx.current_replicas, 1))
        running = snapshot.get("requests_running")
        in_flight = waiting + (float(running) if sig.is_usable(running) else 0.0)  # type: ignore[arg-type]
        # arrivals = completions + growth of the requests in the system: the growth shows a burst within one
        # interval, where the windowed completion rate lags
        dt = ctx.now_s - state.last_time_s
        growth = max(0.0, (in_flight - state.last_in_flight) / dt) if math.isfinite(state.last_in_flight) and dt > 0 else 0.0
        # a backlog beyond what the ready replicas hold at capacity must drain too
        ready = snapshot.get(sig.REPLICAS_READY)
        holds = ctx.capacity.concurrency(prompt, output) * (float(ready) if sig.is_usable(ready) else 0.0)  # type: ignore[arg-type]
        backlog = max(0.0, in_flight - holds) if math.isfinite(holds) else waiting
        demand_now = (float(rate) if valid else 0.0) + growth + backlog / self.drain_s  # type: ignore[arg-type]
        # the trend follows demand confirmed over two decisions (a one-interval spike is over before a replica
        # could start); the spread of all recent demand is what a standing fleet must hold for bursts that recur
        confirmed = min(demand_now, state.last_demand) if math.isfinite(state.last_demand) else demand_now
        holt = self.forecaster.update(state.demand, confirmed, ctx.now_s) if valid else state.demand
        recent = state.recent.update(demand_now, ctx.now_s, self.window(ctx)) if valid else state.recent
        trend = holt.forecast(self.horizon(ctx), self.trend_damping_s) if holt.ready else confirmed
        bursts = recent.mean + self.burst_z * recent.std if math.isfinite(recent.mean) else confirmed
        demand_ahead = max(trend, bursts, demand_now)  # a burst under way is served now, whatever the trend says
        assessment = Assessment(demand_now, demand_ahead, replica_rps, demand_now / replica_rps, demand_ahead / replica_rps, valid)
        peak = 0.0
        if self.peak_hold_s is not None:  # the recent peak, decaying: what a scale-down must still fit
            decay = math.exp(-max(dt, 0.0) / self.peak_hold_s) if math.isfinite(dt) else 0.0
            peak = max(confirmed if valid else 0.0, state.peak * decay)
        return assessment, PlannerState(holt, prompt, output, state.fits_since_s, in_flight, ctx.now_s,
                                        demand_now if valid else state.last_demand, recent, correction, peak)

    def corrected(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: PlannerState) -> float:
        """The capacity correction after this snapshot's latency (see the module's step 5)."""
        ttft, tpot, queue = (snapshot.get(k) for k in ("ttft_p95", "tpot_p95", "queue_time_p95"))
        if not (sig.is_usable(ttft) and sig.is_usable(tpot)):
            return state.correction  # no traffic in the window: nothing learned
        running, ready, starting = (snapshot.get(k) for k in ("requests_running", sig.REPLICAS_READY, sig.REPLICAS_STARTING))
        per_replica = float(running) / max(float(ready), 1.0) if sig.is_usable(running) and sig.is_usable(ready) else 0.0  # type: ignore[arg-type]
        queued = sig.is_usable(queue) and queue > 0.25 * ctx.slo.ttft_s  # type: ignore[operator]
        fixable = (ttft > ctx.slo.ttft_s and queued) or (tpot > ctx.slo.tpot_s and per_replica > 2)  # type: ignore[operator]
        settled = not (sig.is_usable(starting) and starting > 0)  # type: ignore[operator]
        if fixable and settled:
            return max(self.min_correction, state.correction * self.feedback_down)
        if ttft <= ctx.slo.ttft_s and tpot <= ctx.slo.tpot_s:  # type: ignore[operator]
            dt = ctx.now_s - state.last_time_s if math.isfinite(state.last_time_s) else ctx.interval_s
            return 1.0 - (1.0 - state.correction) * math.exp(-max(dt, 0.0) / self.feedback_recovery_s)
        return state.correction

    def decide(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: PlannerState) -> tuple[Proposal, PlannerState]:
        if ctx.capacity is None:
            return Proposal(None, ("no capacity profile: give spec.capacity (kis capacity)",)), state
        _, proposal, state = self.plan(snapshot, ctx, state)
        return proposal, state

    def plan(self, snapshot: Mapping[str, float], ctx: PolicyContext, state: PlannerState) -> tuple[Assessment, Proposal, PlannerState]:
        """The assessment, the proposal and the next state (``decide`` without dropping the assessment). Needs ``ctx.capacity``."""
        assessment, state = self.assess(snapshot, ctx, state)
        return self._plan(assessment, state, snapshot, ctx)

    def _plan(self, a: Assessment, state: PlannerState, snapshot: Mapping[str, float],
              ctx: PolicyContext) -> tuple[Assessment, Proposal, PlannerState]:
        current = ctx.current_replicas
        waiting = snapshot.get("requests_waiting", 0.0)
        running = snapshot.get("requests_running", 0.0)
        busy = (sig.is_usable(waiting) and waiting > 0) or (sig.is_usable(running) and running > 0)  # type: ignore[operator]
        if not a.valid:
            if sig.is_usable(waiting) and waiting > 0 and current < ctx.max_replicas:  # type: ignore[operator]
                return a, Proposal(current + 1, (f"no request rate yet, {waiting:g} waiting: +1",)), state
            return a, Proposal(None, ("no request rate yet",)), state
        u, mix, limit = self.target_utilization * state.correction, (state.prompt_tokens, state.output_tokens), max(ctx.max_replicas, 1)
        up = max(ctx.capacity.fleet(a.demand_ahead, *mix, u, limit), 1 if busy else 0)
        why = (f"demand {a.demand_now:.3g} req/s, {a.demand_ahead:.3g} in {self.horizon(ctx):g} s; replica {a.replica_rps:.3g} req/s "
               f"at the SLO ({state.prompt_tokens:.0f}/{state.output_tokens:.0f} tokens"
               f"{f', corrected x{state.correction:.2f} for the latency seen' if state.correction < 1 else ''}); at {u:.0%}: {up}")
        if up >= current:
            return a, Proposal(up, (why,)), _fits(state, None)
        # consolidation: would fewer replicas have held the demand, now and ahead?
        check = max(a.demand_now, a.demand_ahead, state.demand.level if state.demand.ready else 0.0, state.peak)
        fits = max(ctx.capacity.fleet(check, *mix, u * self.scale_down_margin, limit), 1 if busy else 0)
        busy_and_late = overloaded(snapshot, ctx)
        if fits >= current or busy_and_late:
            reason = "requests wait and TTFT is over the SLO: no scale-down" if busy_and_late else f"{current} still needed for {check:.3g} req/s"
            return a, Proposal(current, (why, reason)), _fits(state, None)
        since = ctx.now_s if state.fits_since_s is None else state.fits_since_s
        if ctx.now_s - since < self.delay(ctx):
            waited = f"{fits} would hold {check:.3g} req/s for {ctx.now_s - since:.0f} s of {self.delay(ctx):g} s"
            return a, Proposal(current, (why, waited)), _fits(state, since)
        return a, Proposal(fits, (why, f"consolidate: {fits} hold {check:.3g} req/s at {u * self.scale_down_margin:.0%}")), _fits(state, since)


def _fits(state: PlannerState, since: float | None) -> PlannerState:
    return dataclasses.replace(state, fits_since_s=since)


def overloaded(snapshot: Mapping[str, float], ctx: PolicyContext) -> bool:
    """Requests wait and the p95 TTFT is over the SLO: no policy built on the planner scales down then."""
    waiting, ttft = snapshot.get("requests_waiting"), snapshot.get("ttft_p95")
    return sig.is_usable(waiting) and waiting > 0 and sig.is_usable(ttft) and ttft > ctx.slo.ttft_s  # type: ignore[operator]
