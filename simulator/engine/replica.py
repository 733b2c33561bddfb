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

import heapq
import math
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from simulator.engine.metrics import MetricSink
from simulator.profiles.latency import IterationTimeModel


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
        self.last_finish_s = start_s
        self._next_finish_lb = math.inf
        self._active: dict[int, _Request] = {}
        self._waiting: deque[_Request] = deque()
        self._prefilling: list[_Request] = []
        self._decoding: list[tuple[int, int, _Request]] = []  # heap of (finish_step, seq, request)
        self._step = 0
        self._seq = 0
        self._decode_context = 0
        self._reserved = 0

    # ----------------------------------------------------------------- state
    @property
    def num_running(self) -> int:
        return len(self._prefilling) + len(self._decoding)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_outstanding(self) -> int:
        """Requests submitted and not finished (waiting or running)."""
        return self.num_running + self.num_waiting

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
        if not self.fits(prompt_tokens, output_tokens):
            return False
        limit = self.config.max_waiting
        if limit is not None and len(self._waiting) >= limit:
            return False
        if self.is_idle and self.clock < arrival_s:
            self.clock = arrival_s
        request = _Request(rid, arrival_s, prompt_tokens, output_tokens)
        self._waiting.append(request)
        self._active[rid] = request
        self.outstanding_tokens += prompt_tokens + output_tokens
        self._next_finish_lb = self.clock
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
        finished by ``t`` (a lower bound kept from the last run, valid because
        iteration time never falls when the batch grows). Call :meth:`advance`
        before :meth:`submit`.
        """
        if t >= self._next_finish_lb:
            self.advance(t)

    # ------------------------------------------------------------ simulation
    def advance(self, t: float) -> None:
        """Run iterations until the first iteration boundary at or after ``t``.

        An idle engine simply moves its clock to ``t``. Requests submitted
        afterwards join at :attr:`clock`, the next boundary.
        """
        while self.clock < t:
            self._admit()
            if self._prefilling:
                self._prefill_iteration()
            elif self._decoding:
                self._decode_run(t)
            else:
                self.clock = t
                break
        self._update_finish_bound()

    def _update_finish_bound(self) -> None:
        if self._prefilling or (self._waiting and not self._decoding):
            self._next_finish_lb = self.clock
        elif self._decoding:
            n = len(self._decoding)
            steps = self._decoding[0][0] - self._step
            self._next_finish_lb = self.clock + steps * self.model.iteration_ms(0, 0.0, n, self._decode_context) / 1000.0
        else:
            self._next_finish_lb = math.inf

    def drain(self) -> None:
        """Serve everything submitted, leaving the clock at the last event."""
        while not self.is_idle:
            self._admit()
            if self._prefilling:
                self._prefill_iteration()
            else:
                self._decode_run(math.inf)

    def _admit(self) -> None:
        cfg = self.config
        waiting = self._waiting
        while waiting and len(self._prefilling) + len(self._decoding) < cfg.max_num_seqs:
            request = waiting[0]
            need = request.prompt + request.output
            if self._reserved + need > cfg.kv_capacity_tokens:
                return
            waiting.popleft()
            self._reserved += need
            request.admitted = max(self.clock, request.arrival)
            self._prefilling.append(request)

    def _prefill_iteration(self) -> None:
        n_decode = len(self._decoding)
        budget = self.config.max_batched_tokens - n_decode
        tokens = 0
        context = 0.0
        done = 0
        seqs = 0
        for request in self._prefilling:
            seqs += 1
            chunk = min(request.prompt - request.prefilled, budget)
            context += chunk * request.prefilled + chunk * (chunk + 1) / 2
            request.prefilled += chunk
            tokens += chunk
            budget -= chunk
            if request.prefilled < request.prompt:
                break
            done += 1
            if budget <= 0:
                break
        dt = self.model.iteration_ms(tokens, context, n_decode, self._decode_context, seqs) / 1000.0
        end = self.clock + dt
        self.clock = end
        self.busy_s += dt
        sink = self.sink
        sink.prompt_tokens += tokens
        sink.busy_seconds += dt
        if n_decode:
            self._step += 1
            self._decode_context += n_decode
            sink.generation_tokens += n_decode
            self._finish_decoded(end)
        if done:
            finished_prefill = self._prefilling[:done]
            del self._prefilling[:done]
            for request in finished_prefill:
                self._start_decoding(request, end)

    def _start_decoding(self, request: _Request, now: float) -> None:
        request.first_token = now
        self.sink.generation_tokens += 1
        if request.output <= 1:
            self._finish(request, now)
            return
        request.finish_step = self._step + request.output - 1
        self._seq += 1
        heapq.heappush(self._decoding, (request.finish_step, self._seq, request))
        self._decode_context += request.prompt + 1

    def _decode_run(self, horizon: float) -> None:
        n = len(self._decoding)
        steps_to_finish = self._decoding[0][0] - self._step
        model = self.model
        first = model.iteration_ms(0, 0.0, n, self._decode_context) / 1000.0
        steps = steps_to_finish
        if horizon < math.inf:
            steps = min(steps, max(1, math.ceil((horizon - self.clock) / first)))
        dt = first if steps == 1 else model.iteration_ms(0, 0.0, n, self._decode_context + n * (steps - 1) / 2.0) / 1000.0
        duration = steps * dt
        self.clock += duration
        self.busy_s += duration
        self._step += steps
        self._decode_context += n * steps
        self.sink.generation_tokens += n * steps
        self.sink.busy_seconds += duration
        self._finish_decoded(self.clock)

    def _finish_decoded(self, now: float) -> None:
        heap = self._decoding
        while heap and heap[0][0] <= self._step:
            _, _, request = heapq.heappop(heap)
            self._decode_context -= request.prompt + request.output
            self._finish(request, now)

    def _finish(self, request: _Request, now: float) -> None:
        self._active.pop(request.rid, None)
        self._reserved -= request.prompt + request.output
        self.outstanding_tokens -= request.prompt + request.output
        done = FinishedRequest(
            request.rid, request.arrival, request.admitted, request.first_token, now, request.prompt, request.output
        )
        self.finished.append(done)
        self.last_finish_s = now
        self.sink.observe_request(done.ttft_s, done.tpot_s, done.e2e_s, done.queue_s, request.output)
