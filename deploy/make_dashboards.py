"""Write the Grafana dashboards into charts/kis-s/dashboards/ (their single home).

    .venv/bin/python deploy/make_dashboards.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from controller.signals import gpu_by_pod  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "charts" / "kis-s" / "dashboards"
SEL = 'namespace=~"$namespace", deployment=~"$deployment"'

INFERENCE = [
    ("Replicas: desired, current, ready", "short", [
        ('max by (autoscaler) (kis_controller_desired_replicas{namespace=~"$namespace", autoscaler=~"$deployment"})', "desired {{autoscaler}}"),
        ('max by (autoscaler) (kis_controller_current_replicas{namespace=~"$namespace", autoscaler=~"$deployment"})', "current {{autoscaler}}"),
        (f"count by (deployment) (vllm:num_requests_running{{{SEL}}})", "ready {{deployment}}"),
    ]),
    ("Request rate", "reqps", [(f"sum by (deployment) (rate(vllm:request_success_total{{{SEL}}}[1m]))", "{{deployment}}")]),
    ("TTFT p95 against the SLO", "s", [
        (f"histogram_quantile(0.95, sum by (deployment, le) (rate(vllm:time_to_first_token_seconds_bucket{{{SEL}}}[1m])))", "p95 {{deployment}}"),
        ("vector($ttft_slo_ms / 1000)", "SLO"),
    ]),
    ("TPOT p95 against the SLO", "s", [
        (f"histogram_quantile(0.95, sum by (deployment, le) (rate(vllm:inter_token_latency_seconds_bucket{{{SEL}}}[1m])))", "p95 {{deployment}}"),
        ("vector($tpot_slo_ms / 1000)", "SLO"),
    ]),
    ("Queue: waiting and running requests", "short", [
        (f"sum by (deployment) (vllm:num_requests_waiting{{{SEL}}})", "waiting {{deployment}}"),
        (f"sum by (deployment) (vllm:num_requests_running{{{SEL}}})", "running {{deployment}}"),
    ]),
    ("KV-cache usage", "percentunit", [(f"avg by (deployment) (vllm:kv_cache_usage_perc{{{SEL}}})", "{{deployment}}")]),
    # dcgm-exporter labels GPUs by pod, not by Deployment: joined on the serving pods (controller/signals.py, gpu_utilization_signal)
    ("GPU utilisation", "percent", [(f"avg by (deployment) (group by (namespace, pod, deployment) (vllm:num_requests_running{{{SEL}}}) "
                                     f"* on (namespace, pod) group_left() {gpu_by_pod()})", "{{deployment}}")]),
    ("Cost per hour (ready replicas x GPU price)", "currencyUSD", [(f"count by (deployment) (vllm:num_requests_running{{{SEL}}}) * $gpu_hourly_price", "{{deployment}}")]),
    ("Decisions by reason", "short", [('sum by (reason) (increase(kis_controller_decisions_total{namespace=~"$namespace", autoscaler=~"$deployment"}[5m]))', "{{reason}}")]),
]
CONTROLLER = [
    ("Loop duration p95", "s", [("histogram_quantile(0.95, sum by (le) (rate(kis_controller_loop_duration_seconds_bucket[5m])))", "p95")]),
    ("Errors by kind", "short", [("sum by (kind) (increase(kis_controller_errors_total[5m]))", "{{kind}}")]),
    ("Leader", "short", [("max by (pod) (kis_controller_is_leader)", "{{pod}}")]),
    ("Policy latency p95", "s", [("histogram_quantile(0.95, sum by (policy, le) (rate(kis_controller_policy_latency_seconds_bucket[5m])))", "{{policy}}")]),
    ("Stale metrics", "short", [("max by (namespace, autoscaler) (kis_controller_metrics_stale)", "{{namespace}}/{{autoscaler}}")]),
    ("Autoscalers", "short", [("max(kis_controller_autoscalers)", "autoscalers")]),
]


def variable(name: str, query: str | None = None, value: str | None = None) -> dict:
    if query:
        return {"name": name, "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"}, "query": query,
                "refresh": 2, "includeAll": True, "multi": True, "current": {"text": "All", "value": "$__all"}}
    return {"name": name, "type": "constant", "query": value, "hide": 2}


def dashboard(uid: str, title: str, panels: list, variables: list) -> dict:
    out = []
    for i, (name, unit, targets) in enumerate(panels):
        out.append({
            "id": i + 1, "type": "timeseries", "title": name,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(65 + j), "expr": expr, "legendFormat": legend} for j, (expr, legend) in enumerate(targets)],
        })
    templating = [{"name": "datasource", "type": "datasource", "query": "prometheus"}] + variables
    return {"uid": uid, "title": title, "tags": ["kis-s"], "schemaVersion": 39, "version": 1, "refresh": "10s",
            "time": {"from": "now-1h", "to": "now"}, "templating": {"list": templating}, "panels": out}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    inference_vars = [
        variable("namespace", "label_values(vllm:num_requests_running, namespace)"),
        variable("deployment", 'label_values(vllm:num_requests_running{namespace=~"$namespace"}, deployment)'),
        variable("ttft_slo_ms", value="500"), variable("tpot_slo_ms", value="50"), variable("gpu_hourly_price", value="4.0"),
    ]
    (OUT / "kis-s-inference.json").write_text(json.dumps(dashboard("kis-s-inference", "KIS-S inference", INFERENCE, inference_vars), indent=1) + "\n")
    (OUT / "kis-s-controller.json").write_text(json.dumps(dashboard("kis-s-controller", "KIS-S controller", CONTROLLER, []), indent=1) + "\n")


if __name__ == "__main__":
    main()
