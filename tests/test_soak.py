"""The fault soak end to end (about two minutes): two controller processes, faults, zero wrong scalings and zero lost requests."""

from __future__ import annotations

import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor

import pytest

from simulator.twin.soak import SoakConfig, run_soak, write_soak_report

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs the prometheus binary")
def test_the_controller_scales_right_through_every_fault(tmp_path):
    config = SoakConfig()
    # a fresh interpreter, as `kis twin soak` has (the gateway and the load generator share its event loops)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = pool.submit(run_soak, config).result()
    report = write_soak_report(result, tmp_path).read_text()
    summary = result.summary()
    context = f"\n{report}"
    # every fault happened
    happened = " | ".join(what for _, what in result.faults)
    for fault in ("corrupt policy", "503", "409", "Prometheus killed", "Prometheus restarted", "Deployment deleted", "created again",
                  "killed (SIGKILL) right after its scale-down", "restarted", "good policy"):
        assert fault in happened, f"{fault!r} missing{context}"
    # the loop kept working through them: scaled out for the spike and back in, across a change of leader
    assert summary["scale_ups"] >= 1 and summary["scale_downs"] >= 2, context
    # the new leader acts: it writes the status (and a Scale if one is due: under load the last scale-down may
    # come before the change of leader, and then none is)
    assert summary["leader_changes"] >= 1 and len(result.writers) == 2, context
    assert summary["decisions"] >= 10, context
    # the corrupt ConfigMap made the learned policy fall back (the baseline went on scaling), the good one brought it back
    assert [status for _, status in result.policy_conditions][:3] == ["True", "False", "True"], context
    # the targets: nothing wrong, nothing lost, JSON logs only
    assert result.wrong_count == 0, context
    assert summary["requests"] > 200 and summary["lost_requests"] == 0, context
    assert result.non_json_log_lines == [], result.non_json_log_lines[:5]


def test_the_checks_catch_each_kind_of_wrong_scaling():
    """The soak's verdicts can fail: a writer without the Lease, a scale-down in the outage, a step from other replicas."""
    from simulator.twin.apiserver import Write
    from simulator.twin.soak import LEASE, NAMESPACE, check

    config = SoakConfig(max_step_up=2, max_step_down=1)
    lease = f"{NAMESPACE}/{LEASE}"
    t0 = 1_000.0
    writes = [
        Write(t0 + 5, "kis-controller/a", "scale", NAMESPACE, "llm", 1, 3, {lease: "a"}),  # fine
        Write(t0 + 6, "kis-controller/b", "status", NAMESPACE, "llm", None, None, {lease: "a"}),  # b writes while a leads
        Write(t0 + 20, "kis-controller/a", "scale", NAMESPACE, "llm", 3, 2, {lease: "a"}),  # inside the outage 18..25
        Write(t0 + 30, "kis-controller/a", "scale", NAMESPACE, "llm", 2, 5, {lease: "a"}),  # +3 > maxStepUp
        Write(t0 + 31, "kis-controller/a", "scale", NAMESPACE, "llm", 5, 4, {lease: "a"}),  # fine
    ]
    wrong = check(writes, config, [(18.0, 25.0)], t0)
    assert {k: len(v) for k, v in wrong.items()} == {"two_leaders_acting": 1, "scale_down_on_stale_data": 1, "patch_to_wrong_replicas": 1}
    assert wrong["two_leaders_acting"] == ["6.0 s: status write by b while a held the Lease"]
