"""The Helm chart, checked with the real helm and the Kubernetes 1.29, 1.30 and 1.31 schemas, alone and as a subchart."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "kis-s"
HELM = REPO / ".tools" / "bin" / "helm"
K8S_VERSIONS = ("1.29.0", "1.30.0", "1.31.0")
FULL = ["--set", "stub.enabled=true", "--set", "stub.podMonitor.enabled=true", "--set", "serviceMonitor.enabled=true",
        "--set", "prometheusRule.enabled=true", "--set", "imagePullSecrets[0].name=registry", "--set", "priorityClassName=system-cluster-critical",
        "--set", "podLabels.team=ml", "--set", "podAnnotations.owner=ml", "--set", "controller.extraEnv[0].name=HTTPS_PROXY",
        "--set", "controller.extraEnv[0].value=http://proxy:3128", "--set", "controller.extraArgs[0]=--dry-run",
        "--set", "image.digest=sha256:" + "a" * 64, "--set", "serviceAccount.annotations.role=kis"]
VARIANTS = {
    "default": [],
    "stub": ["--set", "stub.enabled=true"],
    "full": FULL,
    "namespaced": ["--set", "controller.watchNamespace=serving"],
    "single": ["--set", "controller.replicas=1", "--set", "controller.leaderElection=false", "--set", "dashboards.enabled=false"],
    "existing-account": ["--set", "serviceAccount.create=false", "--set", "serviceAccount.name=platform-kis"],
    "pipeline": ["--set", "pipeline.enabled=true"],
}
#: (group, resource) -> verbs: what controller/kube.py calls (tests/test_rbac.py records them against the emulator).
EXPECTED_RULES = {
    ("autoscaling.kis-s.dev", "inferenceautoscalers"): {"list", "watch"},
    ("autoscaling.kis-s.dev", "inferenceautoscalers/status"): {"patch"},
    ("autoscaling.kis-s.dev", "inferencepipelineautoscalers"): {"list", "watch"},
    ("autoscaling.kis-s.dev", "inferencepipelineautoscalers/status"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch"},
    ("apps", "deployments/scale"): {"get", "patch"},
    ("", "events"): {"create"},
    ("", "configmaps"): {"get"},
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
}


def helm() -> str:
    path = HELM if HELM.exists() else shutil.which("helm")
    if not path:
        pytest.skip("helm is not installed (bash scripts/setup --dev installs it)")
    return str(path)


def run_helm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, cwd=cwd)


def render(args: list[str], release: str = "kis", chart: Path = CHART) -> list[dict]:
    out = run_helm("template", release, str(chart), "--namespace", "kis-system", *args)
    assert out.returncode == 0, out.stderr
    assert "WARNING" not in out.stderr, out.stderr  # e.g. helm's warning about symlinked chart files
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def rules_by_resource(roles: list[dict]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def validate_objects(objects: list[dict], version: str) -> None:
    """Every object against the Kubernetes ``version`` schemas (strict), our CRD's schema, or (Operator CRDs) shape checks."""
    crd_schemas = {}
    for crd_file in (CHART / "crds").glob("*.yaml"):
        crd = yaml.safe_load(crd_file.read_text())
        crd_schemas[crd["spec"]["names"]["kind"]] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for obj in objects:
        kind = obj["kind"]
        if obj["apiVersion"] == "monitoring.coreos.com/v1":
            assert kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule") and obj["spec"], obj  # Operator CRDs are not installed here
            assert obj["metadata"]["name"] and obj["metadata"]["namespace"]
            continue
        if kind in crd_schemas:
            jsonschema.Draft4Validator(crd_schemas[kind]["properties"]["spec"]).validate(obj["spec"])  # OpenAPI 3.0 = draft 4 semantics
            continue
        kubernetes_validate.validate(obj, version, strict=True)


# ------------------------------------------------------------------- chart
@pytest.mark.helm
@pytest.mark.parametrize("variant", VARIANTS)
def test_lint_strict(variant):
    result = run_helm("lint", "--strict", str(CHART), *VARIANTS[variant])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.helm
@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_matches_the_kubernetes_schema(variant, version):
    validate_objects(render(VARIANTS[variant]), version)


@pytest.mark.helm
def test_chart_files_are_plain_copies_of_their_sources():
    """The chart holds copies (helm warns about symlinks); scripts/sync_chart makes them, this fails when one drifts."""
    links = [p for p in CHART.rglob("*") if p.is_symlink()]
    assert not links, f"symlinks in the chart: {links}"
    pairs = [(REPO / "controller" / "crd", "*.yaml", CHART / "crds"), (REPO / "controller" / "policies" / "default", "*", CHART / "files" / "default-policy")]
    for source, pattern, copy in pairs:
        sources = {p.name for p in source.glob(pattern) if p.is_file()}
        copies = {p.name for p in copy.iterdir() if p.is_file()}
        assert sources == copies, f"{copy} holds {sorted(copies)}, {source} {sorted(sources)}: run bash scripts/sync_chart"
        for name in sources:
            assert (source / name).read_bytes() == (copy / name).read_bytes(), f"{copy / name} differs from {source / name}: run bash scripts/sync_chart"
    check = subprocess.run(["bash", str(REPO / "scripts" / "sync_chart"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


@pytest.mark.helm
@pytest.mark.parametrize("variant", ["default", "namespaced"])
def test_rbac_grants_exactly_what_the_controller_uses(variant):
    roles = [o for o in render(VARIANTS[variant]) if o["kind"] in ("Role", "ClusterRole")]
    assert rules_by_resource(roles) == EXPECTED_RULES
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
            assert {"/tmp", "/home/kis"} <= {m["mountPath"] for m in container["volumeMounts"]}  # writable under the read-only root
    controller = next(o for o in render([]) if o["kind"] == "Deployment")
    args = controller["spec"]["template"]["spec"]["containers"][0]["args"]
    assert controller["spec"]["replicas"] == 2 and "--leader-elect" in args and "--liveness-intervals=4" in args
    assert controller["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.helm
def test_values_schema_rejects_bad_values():
    for args, word in ((["--set", "controller.replicas=0"], "replicas"), (["--set", "controller.prometheusUrl=prometheus:9090"], "prometheusUrl"),
                       (["--set", "controller.gpuJoin=guess"], "gpuJoin"), (["--set", "controler.replicas=1"], "controler"),
                       (["--set", "image.digest=latest"], "digest")):
        result = run_helm("template", "kis", str(CHART), *args)
        assert result.returncode != 0 and word in result.stderr, (args, result.stderr)


@pytest.mark.helm
def test_two_replicas_without_leader_election_is_refused():
    result = run_helm("template", "kis", str(CHART), "--set", "controller.leaderElection=false")
    assert result.returncode != 0 and "controller.replicas=2 needs controller.leaderElection=true" in result.stderr
    single = render(["--set", "controller.replicas=1", "--set", "controller.leaderElection=false"])
    deployment = next(o for o in single if o["kind"] == "Deployment")
    assert "--no-leader-elect" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [o for o in single if o["kind"] == "PodDisruptionBudget"]  # one replica: a PDB would block every drain


@pytest.mark.helm
def test_service_account_names():
    own = render([])
    account = next(o for o in own if o["kind"] == "ServiceAccount")["metadata"]["name"]
    pod = next(o for o in own if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account == "kis-kis-s"
    existing = render(VARIANTS["existing-account"])
    assert not [o for o in existing if o["kind"] == "ServiceAccount"]
    assert next(o for o in existing if o["kind"] == "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "platform-kis"
    binding = next(o for o in existing if o["kind"] == "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "platform-kis", "namespace": "kis-system"}]
    result = run_helm("template", "kis", str(CHART), "--set", "serviceAccount.create=false")
    assert result.returncode != 0 and "serviceAccount.name: give the name of an existing ServiceAccount" in result.stderr


@pytest.mark.helm
def test_names_are_not_doubled_and_overrides_apply():
    names = {o["metadata"]["name"] for o in render(["--set", "stub.enabled=true"], release="kis-s")}
    assert names == {"kis-s", "kis-s-leader-election", "kis-s-default-policy", "kis-s-dashboard-controller", "kis-s-dashboard-inference", "kis-s-stub"}
    assert {o["metadata"]["name"] for o in render(["--set", "fullnameOverride=scaler"], release="prod") if o["kind"] == "Deployment"} == {"scaler"}
    assert {o["metadata"]["name"] for o in render([], release="prod") if o["kind"] == "Deployment"} == {"prod-kis-s"}


@pytest.mark.helm
def test_image_tag_defaults_to_app_version_and_digest_pins():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    image = next(o for o in render([]) if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"kis-s:{chart['appVersion']}"
    image = next(o for o in render(["--set", "image.tag=dev"]) if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "kis-s:dev"
    for obj in render(FULL):
        if obj["kind"] == "Deployment":
            assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "kis-s@sha256:" + "a" * 64


@pytest.mark.helm
def test_pod_conventions_are_applied_to_every_pod():
    objects = render(FULL)
    for obj in (o for o in objects if o["kind"] == "Deployment"):
        template = obj["spec"]["template"]
        assert template["spec"]["imagePullSecrets"] == [{"name": "registry"}]
        assert template["spec"]["priorityClassName"] == "system-cluster-critical"
        assert template["metadata"]["labels"]["team"] == "ml" and template["metadata"]["annotations"]["owner"] == "ml"
        selector = obj["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items()
    controller = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "controller")
    container = controller["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in container["env"] and "--dry-run" in container["args"]
    account = next(o for o in objects if o["kind"] == "ServiceAccount")
    assert account["metadata"]["annotations"] == {"role": "kis"}


@pytest.mark.helm
def test_two_controller_replicas_spread_and_have_a_disruption_budget():
    objects = render([])
    controller = next(o for o in objects if o["kind"] == "Deployment")
    pdb = next(o for o in objects if o["kind"] == "PodDisruptionBudget")
    selector = controller["spec"]["selector"]["matchLabels"]
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    (spread,) = controller["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["labelSelector"]["matchLabels"] == selector
    custom = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"x": "y"}}}]
    rendered = render(["--set-json", f"controller.topologySpreadConstraints={json.dumps(custom)}"])
    assert next(o for o in rendered if o["kind"] == "Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"] == custom


@pytest.mark.helm
def test_service_monitor_honors_the_controllers_labels():
    monitor = next(o for o in render(VARIANTS["full"]) if o["kind"] == "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True and endpoint["port"] == "http"
    service = next(o for o in render(VARIANTS["full"]) if o["kind"] == "Service" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "controller")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


@pytest.mark.helm
def test_stub_is_owned_by_its_autoscaler_and_scoped_to_the_release():
    objects = render(VARIANTS["full"])
    stub = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "stub")
    assert "replicas" not in stub["spec"]  # helm upgrade must not reset what the autoscaler set
    autoscaler = next(o for o in objects if o["kind"] == "InferenceAutoscaler")
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == stub["metadata"]["name"]
    pod_labels = stub["spec"]["template"]["metadata"]["labels"]
    monitor = next(o for o in objects if o["kind"] == "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    relabel = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert {"targetLabel": "deployment", "replacement": stub["metadata"]["name"]} in relabel  # the controller's default selector
    service = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == stub["metadata"]["name"])
    assert service["spec"]["selector"].items() <= pod_labels.items()
    fixed = render(["--set", "stub.enabled=true", "--set", "stub.autoscaler.enabled=false", "--set", "stub.replicas=3"])
    assert next(o for o in fixed if o["kind"] == "Deployment" and "stub" in o["metadata"]["name"])["spec"]["replicas"] == 3
    assert not [o for o in fixed if o["kind"] == "InferenceAutoscaler"]
    # two releases in one namespace: no object and no selector in common
    a, b = render(VARIANTS["stub"], release="a"), render(VARIANTS["stub"], release="b")
    names = lambda objs: {(o["kind"], o["metadata"]["name"]) for o in objs}  # noqa: E731
    assert not names(a) & names(b)
    selectors = lambda objs: [o["spec"]["selector"]["matchLabels"] for o in objs if o["kind"] == "Deployment"]  # noqa: E731
    for sa in selectors(a):
        assert all(sa != sb for sb in selectors(b))


@pytest.mark.helm
def test_dashboards_and_rules_come_from_their_single_home():
    objects = render(VARIANTS["full"])
    dashboards = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert {name for d in dashboards for name in d["data"]} == {p.name for p in (CHART / "dashboards").glob("*.json")}
    for d in dashboards:
        for name, text in d["data"].items():
            assert json.loads(text) == json.loads((CHART / "dashboards" / name).read_text())
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "prometheus-rules.yml").read_text())


@pytest.mark.helm
def test_default_policy_config_map_carries_the_shipped_policy():
    shipped = REPO / "controller" / "policies" / "default"
    cm = next(o for o in render([]) if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-default-policy"))
    assert base64.b64decode(cm["binaryData"]["policy.onnx"]) == (shipped / "policy.onnx").read_bytes()
    assert json.loads(cm["data"]["metadata.json"]) == json.loads((shipped / "metadata.json").read_text())


# ---------------------------------------------------------------- umbrella
@pytest.fixture(scope="module")
def umbrella(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway umbrella chart that depends on charts/kis-s by file:// path, its dependency built offline."""
    helm()
    root = tmp_path_factory.mktemp("umbrella") / "platform"
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "platform", "version": "1.0.0", "type": "application",
        "dependencies": [{"name": "kis-s", "version": "0.1.0", "repository": f"file://{CHART}", "condition": "kis-s.enabled"}]}))
    (root / "values.yaml").write_text("kis-s:\n  enabled: true\n")
    (root / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-platform\ndata:\n  region: {{ (.Values.global).region | default \"none\" | quote }}\n")
    result = run_helm("dependency", "update", "--skip-refresh", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (root / "charts" / "kis-s-0.1.0.tgz").exists()
    return root


UMBRELLA_VALUES = {
    "empty": [],
    "global": ["--set", "global.region=eu-west", "--set", "global.imageRegistry=registry.example", "--set-json", 'global.labels={"a": "b"}'],
    "subchart values": ["--set", "kis-s.stub.enabled=true", "--set", "kis-s.controller.interval=30", "--set", "global.region=eu-west"],
}


@pytest.mark.helm
@pytest.mark.parametrize("values", UMBRELLA_VALUES)
def test_renders_as_a_subchart_of_an_umbrella_chart(umbrella, values):
    objects = render(UMBRELLA_VALUES[values], release="platform", chart=umbrella)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ClusterRole", "ServiceAccount", "ConfigMap", "PodDisruptionBudget"} <= kinds
    controller = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "controller")
    assert controller["metadata"]["name"] == "platform-kis-s"
    if values == "subchart values":
        assert "--interval=30" in controller["spec"]["template"]["spec"]["containers"][0]["args"]
        assert any(o["kind"] == "InferenceAutoscaler" for o in objects)
    for version in K8S_VERSIONS:
        validate_objects(objects, version)
    lint = run_helm("lint", "--strict", str(umbrella), *UMBRELLA_VALUES[values])
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.helm
def test_umbrella_condition_turns_the_subchart_off(umbrella):
    objects = render(["--set", "kis-s.enabled=false"], release="platform", chart=umbrella)
    assert [o["kind"] for o in objects] == ["ConfigMap"]


# --------------------------------------------------------------- walkthrough
@pytest.mark.helm
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_walkthrough_load_job_targets_the_stub_service_of_the_release(version):
    """deploy/loadgen-job.yaml: valid, in-cluster, the image and Service `helm install kis-s ... --set stub.enabled=true` makes."""
    (job,) = list(yaml.safe_load_all((REPO / "deploy" / "loadgen-job.yaml").read_text()))
    kubernetes_validate.validate(job, version, strict=True)
    objects = render(["--set", "stub.enabled=true"], release="kis-s")
    service = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "stub")
    controller = next(o for o in objects if o["kind"] == "Deployment")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == controller["spec"]["template"]["spec"]["containers"][0]["image"]
    port = service["spec"]["ports"][0]["port"]
    assert f"--url=http://{service['metadata']['name']}:{port}" in container["args"] and "--no-keepalive" in container["args"]
    assert container["args"][:2] == ["loadgen", "run"] and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] and {"/tmp", "/home/kis"} <= mounts


def test_walkthrough_load_job_arguments_are_accepted_by_the_cli(tmp_path):
    from typer.testing import CliRunner

    from simulator.cli.main import app

    (job,) = list(yaml.safe_load_all((REPO / "deploy" / "loadgen-job.yaml").read_text()))
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    result = CliRunner().invoke(app, [*args, "--max-requests", "0", "--url", "http://127.0.0.1:9", "--out", str(tmp_path / "l.csv")])  # sends nothing
    assert result.exit_code == 0, result.output


@pytest.mark.helm
@pytest.mark.parametrize(("value", "flag"), [("servingPods", "serving-pods"), ("kubeStateMetrics", "kube-state-metrics"), ("labels", "labels")])
def test_gpu_join_value_becomes_the_controllers_flag(value, flag):
    from controller.cli import GpuJoin

    controller = next(o for o in render(["--set", f"controller.gpuJoin={value}"]) if o["kind"] == "Deployment")
    args = controller["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--gpu-join={flag}" in args and flag in {choice.value for choice in GpuJoin}


@pytest.mark.helm
def test_a_pipeline_of_stub_stages_renders_with_its_pipeline_autoscaler():
    objects = render(VARIANTS["pipeline"])
    stages = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "pipeline-stage"]
    (pipeline,) = [o for o in objects if o["kind"] == "InferencePipelineAutoscaler"]
    assert [s["metadata"]["name"] for s in stages] == [s["scaleTargetRef"]["name"] for s in pipeline["spec"]["stages"]]
    assert [s["name"] for s in pipeline["spec"]["stages"]] == ["rewrite", "answer"] and pipeline["spec"]["budget"] == {"maxGpus": 8}
    for dep in stages:
        assert "replicas" not in dep["spec"]  # the pipeline autoscaler owns them
        pod = dep["spec"]["template"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        assert pod["metadata"]["labels"]["app"] == dep["metadata"]["name"]  # the `deployment` label of the default selector
        service = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == dep["metadata"]["name"])
        assert service["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    args = [d["spec"]["template"]["spec"]["containers"][0]["args"] for d in stages]
    assert "--gpu=L4" in args[0] and "--model=llama-1b" in args[0] and "--gpu=H100" in args[1]
    selectors = [tuple(sorted(d["spec"]["selector"]["matchLabels"].items())) for d in stages]
    assert len(set(selectors)) == len(selectors)  # no stage selects another's pods
    from controller.pipeline_spec import parse_pipeline

    assert parse_pipeline(pipeline).budget.max_gpus == 8  # what the controller will read
    unbounded = render(["--set", "pipeline.enabled=true", "--set", "pipeline.maxGpus=null"])
    assert "budget" not in next(o for o in unbounded if o["kind"] == "InferencePipelineAutoscaler")["spec"]
    bad = run_helm("template", "kis", str(CHART), "--set", "pipeline.enabled=true", "--set", "pipeline.stages[0].name=Bad_Name")
    assert bad.returncode != 0 and "name" in bad.stderr
