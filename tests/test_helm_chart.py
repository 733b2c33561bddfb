"""The Helm chart, checked with the real helm and the Kubernetes 1.29 schemas."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "kis-s"
HELM = REPO / ".tools" / "bin" / "helm"
K8S_VERSION = "1.29.0"
VARIANTS = {
    "default": [],
    "stub": ["--set", "stub.enabled=true"],
    "operator": ["--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true"],
    "namespaced": ["--set", "controller.watchNamespace=serving"],
    "single": ["--set", "controller.replicas=1", "--set", "controller.leaderElection=false", "--set", "dashboards.enabled=false"],
}
ALLOWED_RULES = {
    ("autoscaling.kis-s.dev", "inferenceautoscalers"): {"get", "list", "watch"},
    ("autoscaling.kis-s.dev", "inferenceautoscalers/status"): {"get", "patch", "update"},
    ("apps", "deployments"): {"get", "list"},
    ("apps", "deployments/scale"): {"get", "patch", "update"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("", "configmaps"): {"get"},
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
}


def helm() -> str:
    path = HELM if HELM.exists() else shutil.which("helm")
    if not path:
        pytest.skip("helm is not installed (bash scripts/setup --dev installs it)")
    return str(path)


def render(args: list[str]) -> list[dict]:
    out = subprocess.run([helm(), "template", "kis", str(CHART), "--namespace", "kis-system", *args], capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.mark.helm
@pytest.mark.parametrize("variant", VARIANTS)
def test_lint_strict(variant):
    result = subprocess.run([helm(), "lint", "--strict", str(CHART), *VARIANTS[variant]], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.helm
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_matches_the_kubernetes_schema(variant):
    crd_schemas = {}
    for crd_file in (CHART / "crds").glob("*.yaml"):
        crd = yaml.safe_load(crd_file.read_text())
        crd_schemas[crd["spec"]["names"]["kind"]] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for obj in render(VARIANTS[variant]):
        kind = obj["kind"]
        if obj["apiVersion"].startswith("monitoring.coreos.com"):
            assert obj["spec"], f"{kind} has an empty spec"  # Prometheus Operator CRDs are not installed here
            continue
        if kind in crd_schemas:
            import jsonschema

            jsonschema.Draft4Validator(crd_schemas[kind]["properties"]["spec"]).validate(obj["spec"])  # OpenAPI 3.0 = draft 4 semantics
            continue
        if obj["apiVersion"].startswith("autoscaling.kis-s.dev"):
            continue  # the CRD file is validated in the controller tests
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.helm
@pytest.mark.parametrize("variant", ["default", "namespaced"])
def test_rbac_grants_only_what_the_loop_uses(variant):
    roles = [o for o in render(VARIANTS[variant]) if o["kind"] in ("Role", "ClusterRole")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    allowed = ALLOWED_RULES.get((group, resource))
                    assert allowed is not None, f"{role['kind']} grants {group}/{resource}"
                    assert set(rule["verbs"]) <= allowed, f"{group}/{resource}: {rule['verbs']}"
    kinds = {r["kind"] for r in roles}
    assert ("ClusterRole" in kinds) == (variant == "default")


@pytest.mark.helm
def test_pods_are_locked_down_and_probed():
    for obj in render(VARIANTS["stub"]):
        if obj["kind"] != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] and not ctx["allowPrivilegeEscalation"] and ctx["capabilities"]["drop"] == ["ALL"]
            assert container["readinessProbe"] and container["livenessProbe"] and container["resources"]["limits"]
    controller = next(o for o in render([]) if o["kind"] == "Deployment")
    assert controller["spec"]["replicas"] == 2 and "--leader-elect" in controller["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.helm
def test_values_schema_rejects_bad_values():
    result = subprocess.run([helm(), "template", "kis", str(CHART), "--set", "controller.replicas=0"], capture_output=True, text=True)
    assert result.returncode != 0 and "replicas" in result.stderr
    result = subprocess.run([helm(), "template", "kis", str(CHART), "--set", "controller.prometheusUrl=prometheus:9090"], capture_output=True, text=True)
    assert result.returncode != 0 and "prometheusUrl" in result.stderr


@pytest.mark.helm
def test_dashboards_and_rules_come_from_their_single_home():
    objects = render(VARIANTS["operator"])
    dashboards = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert {name for d in dashboards for name in d["data"]} == {p.name for p in (CHART / "dashboards").glob("*.json")}
    for d in dashboards:
        for name, text in d["data"].items():
            assert json.loads(text) == json.loads((CHART / "dashboards" / name).read_text())
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "prometheus-rules.yml").read_text())


@pytest.mark.helm
def test_default_policy_config_map_carries_the_shipped_policy():
    import base64

    shipped = REPO / "controller" / "policies" / "default"
    cm = next(o for o in render([]) if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-default-policy"))
    assert base64.b64decode(cm["binaryData"]["policy.onnx"]) == (shipped / "policy.onnx").read_bytes()
    assert json.loads(cm["data"]["metadata.json"]) == json.loads((shipped / "metadata.json").read_text())
