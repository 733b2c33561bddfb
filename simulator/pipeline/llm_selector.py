"""The in-context controller's LLM selector: any OpenAI-compatible endpoint, through the official client.

The prompt lists the pipeline's state, the candidate actions (numbered) and
the retrieved experiences; the answer must be exactly one JSON object
``{"action": <candidate number>}`` (an optional ``"reason"`` string is kept).
Anything else is unusable and :meth:`LLMSelector.select` returns no action,
with the reason in the record (``refusal``, ``malformed``, ``timeout``,
``error``), so the controller applies the planner's proposal. Every call's
tokens are counted (``prompt_tokens``, ``completion_tokens``, running totals).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from simulator.pipeline.incontext import Selection, SelectionContext

SYSTEM_PROMPT = (
    "You control the replicas of a multi-stage inference pipeline. Each action changes the replicas of each stage "
    "by the given amounts. Choose the action that keeps the end-to-end P99 latency within the SLO at the lowest cost, "
    "learning from the past experiences (state, action, reward: higher is better). "
    'Answer with one JSON object and nothing else: {"action": <number of the candidate>}.'
)


def build_messages(context: SelectionContext) -> list[dict[str, str]]:
    """The chat messages for one decision."""
    snap = context.snapshot
    names = list(snap.names)
    stages = [{"stage": s.name, "replicas": s.desired, "ready": s.ready, "utilisation": round(s.utilisation, 3),
               "queue": s.queue, "latency_s": None if not math.isfinite(s.latency_s) else round(s.latency_s, 3)}
              for s in snap.stages]
    candidates = [{"number": i, "change": dict(zip(names, a)), "planner": a == context.planner_action}
                  for i, a in enumerate(context.candidates)]
    experiences = [{"state": [round(x, 3) for x in e.state], "change": dict(zip(names, e.action)), "reward": round(e.reward, 3),
                    "p99_over_slo": round(e.outcome.p99_ratio, 3), "cost_per_hour": round(e.outcome.cost_per_hour, 3)}
                   for e in context.experiences]
    user = {"now": {"stages": stages, "p99_s": None if not math.isfinite(snap.p99_s) else round(snap.p99_s, 3),
                    "slo_p99_s": snap.slo_p99_s, "arrival_rate": round(snap.arrival_rate, 3),
                    "state": [round(x, 3) for x in context.state]},
            "experiences": experiences, "candidates": candidates}
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": json.dumps(user)}]


def parse_answer(text: str | None, candidates: int) -> tuple[int | None, str | None]:
    """``(candidate number, None)`` for a usable answer, else ``(None, why)``; strict: one JSON object only."""
    if text is None or not text.strip():
        return None, "empty answer"
    try:
        answer = json.loads(text.strip())
    except json.JSONDecodeError:
        return None, "not a JSON object"
    if not isinstance(answer, dict) or set(answer) - {"action", "reason"} or "action" not in answer:
        return None, 'expected {"action": N}'
    number = answer["action"]
    if isinstance(number, bool) or not isinstance(number, int):
        return None, "action is not an integer"
    if not 0 <= number < candidates:
        return None, f"action {number} is not a candidate (0..{candidates - 1})"
    return number, None


@dataclass
class LLMSelector:
    """Chooses among the candidates with an LLM (module docstring); the client is made on first use.

    :param base_url: the endpoint's ``/v1`` URL.
    :param model: model name sent with the request.
    :param timeout_s: per-request timeout. :param retries: the client's retries after a failed request.
    """

    base_url: str
    model: str
    api_key: str = "none"
    timeout_s: float = 10.0
    retries: int = 1
    max_tokens: int = 64
    temperature: float = 0.0
    name: str = "llm"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)
    _client: Any = None

    def client(self) -> Any:
        if self._client is None:
            from openai import OpenAI

            self._client = OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout_s, max_retries=self.retries)
        return self._client

    def _fail(self, reason: str, detail: str, record: dict[str, Any]) -> Selection:
        self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1
        return Selection(None, {**record, "fallback": reason, "fallback_detail": detail[:200]})

    def select(self, context: SelectionContext) -> Selection:
        import openai

        self.calls += 1
        record: dict[str, Any] = {"llm_model": self.model}
        try:
            response = self.client().chat.completions.create(
                model=self.model, messages=build_messages(context), max_tokens=self.max_tokens, temperature=self.temperature)
        except openai.APITimeoutError as exc:
            return self._fail("timeout", str(exc), record)
        except openai.APIError as exc:
            return self._fail("error", f"{type(exc).__name__}: {exc}", record)
        usage = getattr(response, "usage", None)
        if usage is not None:
            self.prompt_tokens += usage.prompt_tokens or 0
            self.completion_tokens += usage.completion_tokens or 0
            record |= {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        record |= {"total_prompt_tokens": self.prompt_tokens, "total_completion_tokens": self.completion_tokens}
        if not response.choices:
            return self._fail("malformed", "no choices", record)
        choice = response.choices[0]
        refusal = getattr(choice.message, "refusal", None)
        if refusal or choice.finish_reason == "content_filter":
            return self._fail("refusal", str(refusal or choice.finish_reason), record)
        number, why = parse_answer(choice.message.content, len(context.candidates))
        if number is None:
            return self._fail("malformed", f"{why}: {choice.message.content!r}", record)
        return Selection(context.candidates[number], {**record, "llm_answer": number})
