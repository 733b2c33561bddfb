"""The KubeRay example: its pod templates are valid Kubernetes, and it agrees with its image and with the driver."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

RAY_DIR = Path(__file__).resolve().parents[1] / "deploy" / "ray"
CLUSTER = yaml.safe_load((RAY_DIR / "raycluster.yaml").read_text())
GROUPS = [CLUSTER["spec"]["headGroupSpec"], *CLUSTER["spec"]["workerGroupSpecs"]]


@pytest.mark.parametrize("group", GROUPS, ids=["head", *(g["groupName"] for g in CLUSTER["spec"]["workerGroupSpecs"])])
def test_pod_templates_are_valid_pods(group):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kis-sim-pod"}, "spec": group["template"]["spec"]}
    kubernetes_validate.validate(pod, "1.29", strict=True)


def test_cluster_matches_its_image_and_the_driver():
    assert CLUSTER["apiVersion"] == "ray.io/v1" and CLUSTER["kind"] == "RayCluster"
    dockerfile = (RAY_DIR / "Dockerfile").read_text()
    image_ray = re.search(r"^ARG RAY_VERSION=(\S+)$", dockerfile, re.M).group(1)
    assert CLUSTER["spec"]["rayVersion"] == image_ray  # Ray Client needs one Ray version on both sides
    tag = re.search(r"-t (\S+) \.", dockerfile).group(1)
    head = CLUSTER["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # simulations run on the workers only
    head_container = head["template"]["spec"]["containers"][0]
    assert {"containerPort": 10001, "name": "client"} in head_container["ports"]  # --ray ray://HOST:10001
    for group in GROUPS:
        for container in group["template"]["spec"]["containers"]:
            assert container["image"] == tag
    for group in CLUSTER["spec"]["workerGroupSpecs"]:
        resources = group["template"]["spec"]["containers"][0]["resources"]
        assert resources["requests"] == resources["limits"]  # Ray's CPU count is the pod's
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
