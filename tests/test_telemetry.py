"""The controller's own metrics (ControllerMetrics) and its structured logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from controller.decision import DecisionRecord, GuardStep
from controller.logs import bound_context, configure_logging
from controller.telemetry import ERROR_KINDS, METRIC_NAMES, ControllerMetrics, reason_code


def _record(current: int, final: int, reason: str) -> DecisionRecord:
    return DecisionRecord(
        time_s=10.0, policy="hpa", current_replicas=current, proposal=final + 1, final=final, reason=reason,
        steps=(GuardStep("max_step", final + 1, final, "ScaleUpLimit"),),
    )


def test_exposition_declares_exactly_the_controller_metrics() -> None:
    text = ControllerMetrics().exposition()[0].decode()
    declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert {n for n in declared if not n.endswith("_created")} == set(METRIC_NAMES)
    assert len(METRIC_NAMES) == 19


def test_decision_sets_gauges_and_counts_by_reason_code() -> None:
    m = ControllerMetrics()
    m.observe_decision("default", "llama", _record(2, 4, "ScaleUpLimit: wanted 5, allowed 4"))
    m.observe_decision("default", "llama", _record(4, 4, "ScaleUpLimit: wanted 6, allowed 4"))
    m.observe_decision("default", "llama", _record(4, 3, "DesiredWithinRange"))
    get = m.registry.get_sample_value
    labels = {"namespace": "default", "autoscaler": "llama"}
    assert get("kis_controller_decisions_total", {**labels, "reason": "ScaleUpLimit"}) == 2
    assert get("kis_controller_decisions_total", {**labels, "reason": "DesiredWithinRange"}) == 1
    assert get("kis_controller_desired_replicas", labels) == 3
    assert get("kis_controller_current_replicas", labels) == 4


def test_a_learned_policy_falling_back_to_its_planner_is_counted_by_reason() -> None:
    import dataclasses

    m = ControllerMetrics()
    m.observe_decision("default", "llama", dataclasses.replace(_record(4, 6, "ScaleUp"), fallback="out_of_range"))
    m.observe_decision("default", "llama", _record(6, 6, "NoChange"))
    get = m.registry.get_sample_value
    labels = {"namespace": "default", "autoscaler": "llama"}
    assert get("kis_controller_policy_fallbacks_total", {**labels, "reason": "out_of_range"}) == 1
    assert get("kis_controller_policy_fallbacks_total", {**labels, "reason": "actor_error"}) is None


def test_instances_do_not_share_state() -> None:
    a, b = ControllerMetrics(), ControllerMetrics()
    a.set_leader(True)
    a.observe_error("prometheus")
    assert a.registry.get_sample_value("kis_controller_is_leader") == 1
    assert b.registry.get_sample_value("kis_controller_is_leader") == 0
    assert b.registry.get_sample_value("kis_controller_errors_total", {"kind": "prometheus"}) == 0


def test_errors_are_counted_by_known_kind_only() -> None:
    m = ControllerMetrics()
    for kind in ERROR_KINDS:  # every kind is exported from the start
        assert m.registry.get_sample_value("kis_controller_errors_total", {"kind": kind}) == 0
    m.observe_error("conflict")
    m.observe_error("conflict")
    assert m.registry.get_sample_value("kis_controller_errors_total", {"kind": "conflict"}) == 2
    with pytest.raises(ValueError, match="unknown error kind 'oops'"):
        m.observe_error("oops")


def test_scale_events_count_direction() -> None:
    m = ControllerMetrics()
    m.observe_scale_event("ns", "a", 2, 5)
    m.observe_scale_event("ns", "a", 5, 3)
    m.observe_scale_event("ns", "a", 3, 3)
    m.observe_scale_event("ns", "a", 3, 4)
    get = m.registry.get_sample_value
    assert get("kis_controller_scale_events_total", {"namespace": "ns", "autoscaler": "a", "direction": "up"}) == 2
    assert get("kis_controller_scale_events_total", {"namespace": "ns", "autoscaler": "a", "direction": "down"}) == 1


def test_forget_removes_only_that_autoscalers_series() -> None:
    m = ControllerMetrics()
    for name in ("gone", "kept"):
        m.observe_decision("ns", name, _record(1, 2, "ScaleUp"))
        m.observe_shadow("ns", name, "learned", 3)
        m.set_stale("ns", name, True)
        m.observe_scale_event("ns", name, 1, 2)
    m.forget("ns", "gone")
    text = m.exposition()[0].decode()
    assert 'autoscaler="gone"' not in text
    kept = [line for line in text.splitlines() if 'autoscaler="kept"' in line and "_created" not in line]
    assert len(kept) == 6  # decisions, desired, current, shadow, stale, scale events
    m.forget("ns", "never-seen")  # no error


def test_shadow_without_answer_drops_the_series() -> None:
    m = ControllerMetrics()
    labels = {"namespace": "ns", "autoscaler": "a", "policy": "learned"}
    m.observe_shadow("ns", "a", "learned", 5)
    assert m.registry.get_sample_value("kis_controller_shadow_replicas", labels) == 5
    m.observe_shadow("ns", "a", "learned", None)
    assert m.registry.get_sample_value("kis_controller_shadow_replicas", labels) is None


def test_histograms_and_process_gauges() -> None:
    m = ControllerMetrics()
    with m.time_policy("learned"):
        pass
    m.observe_policy_latency("learned", 0.002)
    with m.time_loop():
        pass
    m.observe_loop(0.3)
    m.set_autoscalers(4)
    m.set_stale("ns", "a", False)
    get = m.registry.get_sample_value
    assert get("kis_controller_policy_latency_seconds_count", {"policy": "learned"}) == 2
    assert get("kis_controller_policy_latency_seconds_bucket", {"policy": "learned", "le": "0.0025"}) == 2
    assert get("kis_controller_loop_duration_seconds_count") == 2
    assert get("kis_controller_loop_duration_seconds_bucket", {"le": "0.25"}) == 1
    assert get("kis_controller_autoscalers") == 4
    assert get("kis_controller_metrics_stale", {"namespace": "ns", "autoscaler": "a"}) == 0
    families = {f.name for f in text_string_to_metric_families(m.exposition()[0].decode())}
    assert "kis_controller_policy_latency_seconds" in families


@pytest.mark.parametrize(
    ("reason", "code"),
    [("ScaleUpLimit: 3 -> 5", "ScaleUpLimit"), ("hold stale metrics", "hold"), ("  ", "unknown"), ("42 ok", "unknown")],
)
def test_reason_code(reason: str, code: str) -> None:
    assert reason_code(reason) == code


# -- logs ---------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


def test_json_logs_carry_timestamp_level_event_and_bound_context(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    log = structlog.get_logger("controller.loop")
    with bound_context(namespace="default", autoscaler="llama"):
        log.info("scaled", before=2, after=3)
    log.debug("hidden")
    logging.getLogger("uvicorn.error").warning("port %d busy", 8080)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["event"] == "scaled" and first["level"] == "info"
    assert (first["namespace"], first["autoscaler"], first["before"], first["after"]) == ("default", "llama", 2, 3)
    assert first["logger"] == "controller.loop" and first["timestamp"].endswith("Z")
    assert second == {**second, "event": "port 8080 busy", "level": "warning", "logger": "uvicorn.error"}
    assert "namespace" not in second  # context ends with the block


def test_json_logs_render_exceptions(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        structlog.get_logger("x").exception("failed")
    # only this test's line: threads an earlier test left behind (a soak's controller) may log into the same root
    (line,) = [x for x in map(json.loads, stream.getvalue().splitlines()) if x.get("event") == "failed"]
    assert line["level"] == "error" and "RuntimeError: kaput" in line["exception"]


def test_console_logs_and_reconfiguration(restore_logging: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", "info", stream=first)
    configure_logging("console", "warning", stream=second)
    structlog.get_logger("x").warning("disk nearly full", free_mib=12)
    structlog.get_logger("x").info("not shown")
    assert first.getvalue() == ""  # the earlier handler was replaced, not duplicated
    text = second.getvalue()
    assert "disk nearly full" in text and "free_mib=12" in text and "not shown" not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_bad_logging_settings_are_rejected(restore_logging: None) -> None:
    with pytest.raises(ValueError, match="log format"):
        configure_logging("xml", "info")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log level"):
        configure_logging("json", "loud")


def test_last_progress_is_read_at_scrape_time() -> None:
    m = ControllerMetrics()
    progress = [1_800_000_000.0]
    m.bind_progress(lambda: progress[0], 15.0)
    assert m.registry.get_sample_value("kis_controller_last_progress_seconds") == 1_800_000_000.0
    progress[0] += 30
    assert m.registry.get_sample_value("kis_controller_last_progress_seconds") == 1_800_000_030.0
    assert m.registry.get_sample_value("kis_controller_interval_seconds") == 15.0
