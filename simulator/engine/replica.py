"""A continuous-batching LLM serving replica, simulated event to event.

Each engine iteration runs a chunk of prefill (up to the token budget, prompts
first come first served) together with one decode step for every sequence
already decoding, like vLLM with chunked prefill. Iteration time comes from an
:class:`~simulator.profiles.latency.IterationTimeModel`.

Between events the batch does not change, so a run of ``k`` identical decode
steps is simulated as one macro step (its time evaluated at the run's mean
context). Events are: a request reaching the engine, a prefill finishing, a
sequence finishing, and the caller's horizon. Simulation cost therefore
depends on the number of requests, not on how short an iteration is.

KV cache: a request is admitted when the cache can hold its whole final
context (``prompt + output`` tokens) next to what is already reserved, and at
most ``max_num_seqs`` run at once; the others wait in FIFO order. Reserving
the final context (as TGI does with ``max_new_tokens``) means sequences are
never preempted. ``kv_cache_usage`` reports the tokens actually cached.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from heapq import heappop, heappush
from typing import NamedTuple

from simulator.engine.metrics import MetricSink
from simulator.profiles.latency import IterationTimeModel, decode_times


@dataclass(frozen=True)
class EngineConfig:
    """Capacity limits of one replica.

    :param kv_capacity_tokens: tokens the KV cache holds (GPU memory minus weights, see :mod:`simulator.engine.capacity`).
    :param max_num_seqs: most sequences in the running batch (vLLM ``max_num_seqs``).
    :param max_batched_tokens: token budget of one iteration, decode tokens included (vLLM ``max_num_batched_tokens``).
    :param max_waiting: most queued requests before new ones are refused; ``None`` means unbounded.
    """

    kv_capacity_tokens: int
    max_num_seqs: int = 256
    max_batched_tokens: int = 2048
    max_waiting: int | None = None

    def __post_init__(self) -> None:
        if self.kv_capacity_tokens < 1:
            raise ValueError(f"kv_capacity_tokens must be >= 1, got {self.kv_capacity_tokens}")
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_batched_tokens <= self.max_num_seqs:
            raise ValueError(
                f"max_batched_tokens ({self.max_batched_tokens}) must exceed max_num_seqs ({self.max_num_seqs}) "
                "so that prefill always gets part of the budget"
            )
        if self.max_waiting is not None and self.max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0 or None, got {self.max_waiting}")

    def __reduce__(self) -> tuple:  # copy and pickle through the constructor (also when compiled, see simulator.compiled)
        return EngineConfig, (self.kv_capacity_tokens, self.max_num_seqs, self.max_batched_tokens, self.max_waiting)


class FinishedRequest(NamedTuple):
    """Timeline of one served request (seconds, simulation time)."""

    rid: int
    arrival_s: float
    admitted_s: float
    first_token_s: float
    finish_s: float
    prompt_tokens: int
    output_tokens: int

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def tpot_s(self) -> float:
        """Mean inter-token latency after the first token (0 for one-token outputs)."""
        if self.output_tokens <= 1:
            return 0.0
        return (self.finish_s - self.first_token_s) / (self.output_tokens - 1)

    @property
    def e2e_s(self) -> float:
        return self.finish_s - self.arrival_s

    @property
    def queue_s(self) -> float:
        return self.admitted_s - self.arrival_s


class _Request:
    __slots__ = ("rid", "arrival", "prompt", "output", "prefilled", "admitted", "first_token", "finish_step")

    def __init__(self, rid: int, arrival: float, prompt: int, output: int) -> None:
        self.rid = rid
        self.arrival = arrival
        self.prompt = prompt
        self.output = output
        self.prefilled = 0
        self.admitted = math.nan
        self.first_token = math.nan
        self.finish_step = 0

    def __reduce__(self) -> tuple:
        return _restore_request, (self.rid, self.arrival, self.prompt, self.output, self.prefilled, self.admitted, self.first_token,
                                  self.finish_step)


def _restore_request(rid: int, arrival: float, prompt: int, output: int, prefilled: int, admitted: float, first_token: float,
                     finish_step: int) -> _Request:
    request = _Request(rid, arrival, prompt, output)
    request.prefilled, request.admitted, request.first_token, request.finish_step = prefilled, admitted, first_token, finish_step
    return request


_INF = math.inf
_new_finished = tuple.__new__  # FinishedRequest without its Python-level __new__ (same tuple)

class ReplicaEngine:
    """One serving replica. Call :meth:`advance` to time ``t`` before :meth:`submit` at ``t``.

    Finished requests accumulate in :attr:`finished` (the caller may clear it).
    """

    def __init__(
        self,
        model: IterationTimeModel,
        config: EngineConfig,
        *,
        sink: MetricSink | None = None,
        start_s: float = 0.0,
    ) -> None:
        self.model = model
        self.config = config
        self.sink = sink if sink is not None else MetricSink()
        self.clock = start_s
        self.busy_s = 0.0
        self.finished: list[FinishedRequest] = []
        self.outstanding_tokens = 0
        #: Requests submitted and not finished (waiting or running).
        self.num_outstanding = 0
        self.last_finish_s = start_s
        #: No request can finish before this time (see :meth:`sync`).
        self.finish_bound_s = math.inf
        self._active: dict[int, _Request] = {}
        self._waiting: deque[_Request] = deque()
        self._prefilling: list[_Request] = []
        self._decoding: list[tuple[int, int, _Request]] = []  # heap of (finish_step, seq, request)
        self._step = 0
        self._seq = 0
        self._decode_context = 0
        self._reserved = 0
        # Decode-only iteration time (ms) as a function of the context, by batch; the one for _decode_n.
        self._decode_for = decode_times(model)
        self._decode_n = 0
        self._decode_time = self._decode_for(0)

    def __reduce__(self) -> tuple:
        """Copy and pickle: the constructor's arguments and the state (the decode-time functions are rebuilt from the model)."""
        return _restore_engine, (self.model, self.config, self.sink, {name: getattr(self, name) for name in _ENGINE_STATE})

    # ----------------------------------------------------------------- state
    @property
    def num_running(self) -> int:
        return len(self._prefilling) + len(self._decoding)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def is_idle(self) -> bool:
        return not (self._waiting or self._prefilling or self._decoding)

    @property
    def kv_cached_tokens(self) -> int:
        return self._decode_context + sum(r.prefilled for r in self._prefilling)

    @property
    def kv_cache_usage(self) -> float:
        """Fraction of the KV cache holding tokens (vLLM ``kv_cache_usage_perc``, 0..1)."""
        return self.kv_cached_tokens / self.config.kv_capacity_tokens

    def fits(self, prompt_tokens: int, output_tokens: int) -> bool:
        """Whether a request of this size could ever be admitted."""
        return prompt_tokens + output_tokens <= self.config.kv_capacity_tokens

    # ---------------------------------------------------------------- inputs
    def submit(self, rid: int, arrival_s: float, prompt_tokens: int, output_tokens: int) -> bool:
        """Queue a request that reaches the engine at ``arrival_s``.

        Returns ``False`` (and keeps nothing) when the request can never fit the
        KV cache or the waiting queue is full.
        """
        if prompt_tokens < 1 or output_tokens < 1:
            raise ValueError(f"request {rid}: prompt and output tokens must be >= 1, got {prompt_tokens}, {output_tokens}")
        config = self.config
        if prompt_tokens + output_tokens > config.kv_capacity_tokens:
            return False
        limit = config.max_waiting
        if limit is not None and len(self._waiting) >= limit:
            return False
        if self.clock < arrival_s and not (self._waiting or self._prefilling or self._decoding):
            self.clock = arrival_s
        request = _Request(rid, arrival_s, prompt_tokens, output_tokens)
        self._waiting.append(request)
        self._active[rid] = request
        self.num_outstanding += 1
        self.outstanding_tokens += prompt_tokens + output_tokens
        self.finish_bound_s = self.clock
        return True

    def progress(self, rid: int) -> tuple[float | None, int]:
        """First-token time (``None`` before it) and tokens generated so far of an unfinished request."""
        request = self._active.get(rid)
        if request is None:
            raise KeyError(f"request {rid} is not in flight")
        if math.isnan(request.first_token):
            return None, 0
        return request.first_token, request.output - (request.finish_step - self._step)

    def sync(self, t: float) -> None:
        """Bring finished requests up to ``t`` into the state a router reads.

        Cheaper than :meth:`advance`: it does nothing while no request can have
        finished by ``t`` (:attr:`finish_bound_s`, a lower bound kept from the
        last run, valid because iteration time never falls when the batch
        grows). Call :meth:`advance` before :meth:`submit`.
        """
        if t >= self.finish_bound_s:
            self.advance(t)

    # ------------------------------------------------------------ simulation
    def advance(self, t: float) -> None:
        """Run iterations until the first iteration boundary at or after ``t``.

        An idle engine simply moves its clock to ``t``. Requests submitted
        afterwards join at :attr:`clock`, the next boundary.
        """
        if self.clock < t:
            self._run(t, False)
        decoding = self._decoding
        if self._prefilling or (self._waiting and not decoding):
            self.finish_bound_s = self.clock
        elif decoding:
            n = len(decoding)
            if n != self._decode_n:
                self._decode_n, self._decode_time = n, self._decode_for(n)
            self.finish_bound_s = self.clock + (decoding[0][0] - self._step) * self._decode_time(self._decode_context) / 1000.0
        else:
            self.finish_bound_s = _INF

    def drain(self) -> None:
        """Serve everything submitted, leaving the clock at the last event."""
        self._run(math.inf, True)

    def _run(self, horizon: float, drain: bool) -> None:
        """The iteration loop of :meth:`advance` (up to ``horizon``) and :meth:`drain` (until idle).

        Each pass admits what fits, then runs either one prefill iteration
        (with one decode step for every decoding sequence) or a macro step of
        identical decode iterations that ends at the next finish or at the
        first boundary at or after ``horizon``. The engine's counters live in
        locals for the length of the loop.
        """
        config = self.config
        max_seqs, kv_capacity, max_batched = config.max_num_seqs, config.kv_capacity_tokens, config.max_batched_tokens
        iteration_ms = self.model.iteration_ms
        sink = self.sink
        waiting, prefilling, decoding = self._waiting, self._prefilling, self._decoding
        finish = self._finish
        inf, ceil = _INF, math.ceil
        clock, step, context, busy = self.clock, self._step, self._decode_context, self.busy_s
        decode_for, decode_n, decode_ms = self._decode_for, self._decode_n, self._decode_time
        while clock < horizon:
            # Admission: FIFO while the batch has room and the KV cache can hold the final context.
            if waiting:
                running = len(prefilling) + len(decoding)
                while waiting and running < max_seqs:
                    request = waiting[0]
                    need = request.prompt + request.output
                    if self._reserved + need > kv_capacity:
                        break
                    waiting.popleft()
                    self._reserved += need
                    arrival = request.arrival
                    request.admitted = arrival if arrival > clock else clock  # max(clock, arrival)
                    prefilling.append(request)
                    running += 1
            if prefilling:
                # One iteration: prompt chunks first come first served, plus one decode step.
                n_decode = len(decoding)
                budget = max_batched - n_decode
                tokens = 0
                prefill_context = 0.0
                done = 0
                seqs = 0
                for request in prefilling:
                    seqs += 1
                    prefilled = request.prefilled
                    chunk = request.prompt - prefilled
                    if chunk > budget:
                        chunk = budget
                    prefill_context += chunk * prefilled + chunk * (chunk + 1) / 2
                    prefilled += chunk
                    request.prefilled = prefilled
                    tokens += chunk
                    budget -= chunk
                    if prefilled < request.prompt:
                        break
                    done += 1
                    if budget <= 0:
                        break
                dt = iteration_ms(tokens, prefill_context, n_decode, context, seqs) / 1000.0
                end = clock + dt
                clock = end
                busy += dt
                sink.prompt_tokens += tokens
                sink.busy_seconds += dt
                if n_decode:
                    step += 1
                    context += n_decode
                    sink.generation_tokens += n_decode
                    while decoding and decoding[0][0] <= step:
                        request = heappop(decoding)[2]
                        context -= request.prompt + request.output
                        finish(request, end)
                if done:
                    started = prefilling[:done]
                    del prefilling[:done]
                    for request in started:
                        request.first_token = end
                        sink.generation_tokens += 1
                        if request.output <= 1:
                            finish(request, end)
                            continue
                        request.finish_step = step + request.output - 1
                        self._seq += 1
                        heappush(decoding, (request.finish_step, self._seq, request))
                        context += request.prompt + 1
            elif decoding:
                # A macro step of identical decode iterations, timed at the run's mean context.
                n = len(decoding)
                if n != decode_n:
                    decode_n, decode_ms = n, decode_for(n)
                steps = decoding[0][0] - step
                first = decode_ms(context) / 1000.0
                if horizon < inf:
                    more = ceil((horizon - clock) / first)
                    if more < steps:
                        steps = more if more > 1 else 1
                dt = first if steps == 1 else decode_ms(context + n * (steps - 1) / 2.0) / 1000.0
                duration = steps * dt
                clock += duration
                busy += duration
                step += steps
                context += n * steps
                sink.generation_tokens += n * steps
                sink.busy_seconds += duration
                while decoding and decoding[0][0] <= step:
                    request = heappop(decoding)[2]
                    context -= request.prompt + request.output
                    finish(request, clock)
            else:
                if not drain:
                    clock = horizon
                break
        self.clock, self._step, self._decode_context, self.busy_s = clock, step, context, busy
        self._decode_n, self._decode_time = decode_n, decode_ms

    def _finish(self, request: _Request, now: float) -> None:
        self._active.pop(request.rid, None)
        tokens = request.prompt + request.output
        self._reserved -= tokens
        self.outstanding_tokens -= tokens
        self.num_outstanding -= 1
        done = _new_finished(FinishedRequest, (request.rid, request.arrival, request.admitted, request.first_token, now, request.prompt,
                                               request.output))
        self.finished.append(done)
        self.sink.add_finished(done)
        self.last_finish_s = now


#: What an engine holds beyond its constructor's arguments (:meth:`ReplicaEngine.__reduce__`).
_ENGINE_STATE = ("clock", "busy_s", "finished", "outstanding_tokens", "num_outstanding", "last_finish_s", "finish_bound_s", "_active",
                 "_waiting", "_prefilling", "_decoding", "_step", "_seq", "_decode_context", "_reserved", "_decode_n")


def _restore_engine(model: IterationTimeModel, config: EngineConfig, sink: MetricSink, state: dict) -> ReplicaEngine:
    engine = ReplicaEngine(model, config, sink=sink)
    for name, value in state.items():
        setattr(engine, name, value)
    engine._decode_time = engine._decode_for(engine._decode_n)
    return engine
