"""Every Ray pod the chart makes KubeRay create meets the restricted Pod Security Standard, judged by the API
server's own checks (k8s.io/pod-security-admission, built from the Go module proxy into tests/chart/pss).

KubeRay builds the pods from the rendered templates and adds containers of its own; the pods below add them as
KubeRay v1.6.0 does (ray-operator/controllers/ray/common/pod.go): the autoscaler sidecar on the head, with
`autoscalerOptions.securityContext` and `volumeMounts`, and the `wait-gcs-ready` init container on workers,
with a copy of the Ray container's securityContext. The one allowed exception is `modelCache.type: hostPath`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from chart_support import RENDER_CASES, rayservice
from rayvllm.local.offline_models import cache_dir

PSS_SOURCE = Path(__file__).resolve().parent / "pss"
HOST_PATH_SETS = {"modelCache.type": "hostPath"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def pss_check() -> Path:
    """The pss-check binary, built once per source and Go version into the cache outside the clone."""
    sources = sorted(PSS_SOURCE.glob("go.*")) + sorted(PSS_SOURCE.glob("*.go"))
    go_version = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True)
    key = hashlib.sha256(b"".join(path.read_bytes() for path in sources) + go_version.stdout.encode())
    binary = cache_dir() / "pss-check" / key.hexdigest()[:12] / "pss-check"
    if not binary.exists():
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
        built = subprocess.run(
            ["go", "build", "-o", str(binary), "."],
            cwd=PSS_SOURCE,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        if built.returncode != 0:
            pytest.fail(f"building tests/chart/pss failed:\n{built.stderr}")
    return binary


def kuberay_pods(service: dict[str, Any]) -> list[dict[str, Any]]:
    """The head and one pod per worker group, with the containers KubeRay adds to the rendered templates."""
    cluster = service["spec"]["rayClusterConfig"]
    head = pod("head", cluster["headGroupSpec"]["template"])
    if cluster.get("enableInTreeAutoscaling"):
        options = cluster.get("autoscalerOptions", {})
        sidecar = {"name": "autoscaler", "image": head["spec"]["containers"][0]["image"]}
        for field in ("securityContext", "volumeMounts"):
            if field in options:
                sidecar[field] = copy.deepcopy(options[field])
        head["spec"]["containers"].append(sidecar)
    workers = []
    for group in cluster["workerGroupSpecs"]:
        worker = pod(group["groupName"], group["template"])
        ray_container = worker["spec"]["containers"][0]
        wait_gcs = {"name": "wait-gcs-ready", "image": ray_container["image"]}
        if "securityContext" in ray_container:
            wait_gcs["securityContext"] = copy.deepcopy(ray_container["securityContext"])
        worker["spec"].setdefault("initContainers", []).append(wait_gcs)
        workers.append(worker)
    return [head, *workers]


def pod(name: str, template: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**copy.deepcopy(template.get("metadata", {})), "name": name},
        "spec": copy.deepcopy(template["spec"]),
    }


def findings(pss_check: Path, pods: list[dict[str, Any]]) -> list[dict[str, str]]:
    result = subprocess.run(
        [str(pss_check), "-level", "restricted"],
        input=json.dumps(pods),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("files", RENDER_CASES.values(), ids=RENDER_CASES.keys())
def test_every_ray_pod_meets_the_restricted_profile(render, pss_check: Path, files: list[Path]) -> None:
    pods = kuberay_pods(rayservice(render(files)))
    containers = [c for p in pods for c in p["spec"]["containers"] + p["spec"].get("initContainers", [])]
    assert {c["name"] for c in containers} >= {"ray-head", "ray-worker", "wait-gcs-ready"}
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
