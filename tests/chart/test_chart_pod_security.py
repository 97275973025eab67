"""Every Ray pod the chart makes KubeRay create meets the restricted Pod Security Standard, judged by the API
server's own checks (tests/pod_security.py: k8s.io/pod-security-admission, built from the Go module proxy into
tests/chart/pss).

These pods are the rendered templates, with the autoscaler sidecar that KubeRay v1.6.0 adds to the head
(ray-operator/controllers/ray/common/pod.go), built here from `autoscalerOptions.securityContext` and
`volumeMounts`. The pods the real operator creates, with that sidecar and the `wait-gcs-ready` init container
it adds to workers, are checked the same way in tests/cluster/test_overlays.py. The one allowed exception is
`modelCache.type: hostPath`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from chart_support import RENDER_CASES, rayservice
from pod_security import build_pss_check, findings

HOST_PATH_SETS = {"modelCache.type": "hostPath"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def pss_check() -> Path:
    return build_pss_check()


def kuberay_pods(service: dict[str, Any]) -> list[dict[str, Any]]:
    """The head, with the autoscaler sidecar KubeRay adds, and one pod per worker group."""
    cluster = service["spec"]["rayClusterConfig"]
    head = pod("head", cluster["headGroupSpec"]["template"])
    if cluster.get("enableInTreeAutoscaling"):
        options = cluster.get("autoscalerOptions", {})
        sidecar = {"name": "autoscaler", "image": head["spec"]["containers"][0]["image"]}
        for field in ("securityContext", "volumeMounts"):
            if field in options:
                sidecar[field] = copy.deepcopy(options[field])
        head["spec"]["containers"].append(sidecar)
    workers = [pod(group["groupName"], group["template"]) for group in cluster["workerGroupSpecs"]]
    return [head, *workers]


def pod(name: str, template: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**copy.deepcopy(template.get("metadata", {})), "name": name},
        "spec": copy.deepcopy(template["spec"]),
    }


@pytest.mark.parametrize("files", RENDER_CASES.values(), ids=RENDER_CASES.keys())
def test_every_ray_pod_meets_the_restricted_profile(render, pss_check: Path, files: list[Path]) -> None:
    pods = kuberay_pods(rayservice(render(files)))
    containers = [c for p in pods for c in p["spec"]["containers"] + p["spec"].get("initContainers", [])]
    assert {c["name"] for c in containers} >= {"ray-head", "ray-worker", "autoscaler"}
    assert findings(pss_check, pods) == []


def test_the_autoscaler_sidecar_is_checked_too(render, pss_check: Path) -> None:
    """A negative control: without the chart's autoscalerOptions.securityContext the sidecar fails."""
    service = rayservice(render([]))
    del service["spec"]["rayClusterConfig"]["autoscalerOptions"]["securityContext"]
    problems = findings(pss_check, kuberay_pods(service))
    expected = {"allowPrivilegeEscalation != false", "unrestricted capabilities"}
    assert {p["check"] for p in problems} == expected
    assert all('"autoscaler"' in p["detail"] for p in problems), problems


def test_a_host_path_model_cache_is_the_one_documented_exception(render, pss_check: Path) -> None:
    problems = findings(pss_check, kuberay_pods(rayservice(render([], HOST_PATH_SETS))))
    assert problems, "a hostPath volume must be reported"
    assert {p["check"] for p in problems} == {"restricted volume types"}
    assert all('"model-cache"' in p["detail"] for p in problems), problems
