"""The LLM selector against a local OpenAI-compatible server: a good answer, and fallbacks that are recorded."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from simulator.pipeline.controllers import PipelinePlanner
from simulator.pipeline.incontext import InContextController
from simulator.pipeline.llm_selector import LLMSelector, parse_answer
from simulator.pipeline.snapshot import PipelineSnapshot, StageSnapshot

MODE = {"answer": "good", "requests": 0}


def completion(content, refusal=None, finish="stop"):
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "tiny",
            "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": content, "refusal": refusal}}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 7, "total_tokens": 127}}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        MODE["requests"] += 1
        MODE["last"] = body
        mode = MODE["answer"]
        if mode == "slow":
            time.sleep(1.5)
        payload = {
            "good": completion('{"action": 1}'),
            "slow": completion('{"action": 1}'),
            "malformed": completion("I would add a replica to the reranker."),
            "out_of_range": completion('{"action": 99}'),
            "refusal": completion(None, refusal="I can't help with that."),
        }[mode]
        data = json.dumps(payload).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (the timeout case)
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def snapshot():
    stages = tuple(StageSnapshot(n, "batch", 2, 0, 0, 1, 8, 10, 1.0, 0, 8.0, 7.0, 4.0, 1.0, 0.5, 1.0) for n in ("a", "b"))
    return PipelineSnapshot(60.0, stages, 8.0, 9.0, 3.0, 100, 20, 1.0, 5.0)


def decide(url, mode, timeout_s=5.0):
    MODE["answer"] = mode
    selector = LLMSelector(base_url=url, model="tiny", timeout_s=timeout_s, retries=0)
    controller = InContextController(planner=PipelinePlanner(), selector=selector)
    decision, _ = controller.decide(snapshot(), controller.initial_state())
    return decision, selector


def test_a_good_answer_is_applied_and_its_tokens_counted(server):
    decision, selector = decide(server, "good")
    assert decision.record["fallback"] is None
    assert decision.record["action"] == [1, 0]  # candidate 1: one more replica on the detected bottleneck (a, the first of equals)
    planned, _ = PipelinePlanner().decide(snapshot(), PipelinePlanner().initial_state())
    assert decision.replicas == {"a": planned.replicas["a"] + 1, "b": planned.replicas["b"]}
    assert decision.record["residual"] == {"a": 1, "b": 0}
    assert (selector.prompt_tokens, selector.completion_tokens) == (120, 7)
    assert decision.record["prompt_tokens"] == 120
    messages = MODE["last"]["messages"]
    assert "candidates" in json.loads(messages[-1]["content"])


@pytest.mark.parametrize("mode, reason", [("malformed", "malformed"), ("out_of_range", "malformed"), ("refusal", "refusal"),
                                          ("slow", "timeout")])
def test_unusable_answers_fall_back_to_the_planner_and_are_recorded(server, mode, reason):
    planned, _ = PipelinePlanner().decide(snapshot(), PipelinePlanner().initial_state())
    decision, selector = decide(server, mode, timeout_s=0.5)
    assert decision.record["fallback"] == reason
    assert decision.replicas == planned.replicas
    assert selector.fallbacks == {reason: 1}
    assert "fallback to planner" in decision.reasons[0]


def test_an_unreachable_endpoint_falls_back():
    decision, _ = decide("http://127.0.0.1:9/v1", "good", timeout_s=0.5)
    assert decision.record["fallback"] in ("error", "timeout")


@pytest.mark.parametrize("text, ok", [('{"action": 2}', True), ('{"action": 2, "reason": "b is short"}', True),
                                      ('{"action": "2"}', False), ('{"action": true}', False), ("2", False),
                                      ('```json\n{"action": 2}\n```', False), ('{"act": 2}', False), ('{"action": 5}', False)])
def test_parsing_is_strict(text, ok):
    number, why = parse_answer(text, candidates=5)
    assert (number == 2) is ok and (why is None) is ok
