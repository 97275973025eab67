"""Fixtures of the real-cluster tests: one control plane per session (see control_plane.py), Helm pointed at
it, and helpers to wait for what KubeRay makes of a release."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from control_plane import ControlPlane, Kube, start_control_plane, wait_for
from repo_tools import CHART, REPO, run_helm

# Overlays installed alone; values/profiles/ holds profiles layered on an overlay, never installed alone.
OVERLAYS = sorted((REPO / "values").glob("*.yaml"))
RELEASE = "llm"
POD_TIMEOUT_S = 120.0
# What a namespace holds before anything is installed into it (the controller-manager adds both).
BASELINE_OBJECTS = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}
NEVER_LEFT_OVER = {"Event"}


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = start_control_plane(tmp_path_factory.mktemp("control-plane"))
    yield plane
    survivors = plane.stop()
    assert not survivors, f"control-plane processes survived SIGKILL: {survivors}"
    assert plane.dns_servers_asked() <= {"127.0.0.1"}, "KubeRay's DNS lookups left loopback"


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Kube:
    return control_plane.kube


@dataclass(frozen=True)
class Helm:
    """bin/helm (Helm v4) against the test cluster."""

    kubeconfig: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_helm(*args, kubeconfig=self.kubeconfig, check=check)

    def install(
        self, namespace: str, values: list[Path], command: str = "install", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`helm install` (or `upgrade`) without waiting: Ray never becomes ready here (Helm v4's default
        wait strategy, hookOnly, waits for hooks only)."""
        flags = [arg for path in values for arg in ("-f", str(path))]
        return self.run(
            command, RELEASE, str(CHART), "-n", namespace, "--create-namespace", *flags, check=check
        )

    def values(self, namespace: str) -> dict[str, Any]:
        """The release's computed values: the chart's defaults with the overlays applied."""
        result: dict[str, Any] = json.loads(
            self.run("get", "values", RELEASE, "-n", namespace, "--all", "-o", "json").stdout
        )
        return result

    def manifest(self, namespace: str) -> list[dict[str, Any]]:
        """The objects Helm applied for the release."""
        text = self.run("get", "manifest", RELEASE, "-n", namespace).stdout
        return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="session")
def helm(control_plane: ControlPlane) -> Helm:
    return Helm(control_plane.kubeconfig)


def leftovers(kube: Kube, namespace: str) -> list[str]:
    """`Kind/name` of every object in `namespace` but the baseline a namespace starts with, and events."""
    return [
        f"{kind}/{name}"
        for kind, name in kube.objects_in(namespace)
        if (kind, name) not in BASELINE_OBJECTS and kind not in NEVER_LEFT_OVER
    ]


def wait_until_empty(kube: Kube, namespace: str, timeout_s: float = 120.0) -> None:
    wait_for(
        f"namespace {namespace} to hold nothing the chart created",
        lambda: not leftovers(kube, namespace),
        timeout_s,
        2.0,
    )


@dataclass(frozen=True)
class RayObjects:
    """What KubeRay made of one release: its RayService, RayClusters and their pods."""

    rayservice: dict[str, Any]
    rayclusters: list[dict[str, Any]]
    pods: list[dict[str, Any]]

    def pods_of(self, cluster: str) -> list[dict[str, Any]]:
        return [pod for pod in self.pods if pod["metadata"]["labels"].get("ray.io/cluster") == cluster]


def ray_objects(kube: Kube, namespace: str) -> RayObjects:
    (rayservice,) = kube.items(f"/apis/ray.io/v1/namespaces/{namespace}/rayservices")
    return RayObjects(
        rayservice,
        kube.items(f"/apis/ray.io/v1/namespaces/{namespace}/rayclusters"),
        kube.items(f"/api/v1/namespaces/{namespace}/pods"),
    )


def expected_pod_count(values: dict[str, Any]) -> int:
    return 1 + sum(int(group["minReplicas"]) for group in values["workerGroups"])


def wait_for_running_pods(
    kube: Kube, namespace: str, expected: int, condition: Callable[[RayObjects], bool] = lambda _: True
) -> RayObjects:
    """Wait until KubeRay's pods of one RayCluster are scheduled and Running (KWOK runs them)."""

    def ready() -> RayObjects | None:
        objects = ray_objects(kube, namespace)
        running = [pod for pod in objects.pods if pod["status"].get("phase") == "Running"]
        if (
            len(objects.rayclusters) == 1
            and len(running) == expected == len(objects.pods)
            and condition(objects)
        ):
            return objects
        return None

    return wait_for(f"{expected} Running Ray pods in {namespace}", ready, POD_TIMEOUT_S, 2.0)


@pytest.fixture(scope="session")
def write_values(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, dict[str, Any]], Path]:
    """Write a values file of the test's own (an overlay variant) and return its path."""
    directory = tmp_path_factory.mktemp("values")

    def write(name: str, values: dict[str, Any]) -> Path:
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    return write
