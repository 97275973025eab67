"""Every overlay in values/ (and an EKS/Karpenter variant of one), `helm install`ed into its own namespace of
a real control plane: the RayCluster and pods the KubeRay operator makes of it, the nodes the real scheduler
puts them on, what the pods carry, and that `helm uninstall` leaves nothing behind (the garbage collector's
work)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    OVERLAYS,
    Helm,
    RayObjects,
    expected_pod_count,
    leftovers,
    wait_for_running_pods,
    wait_until_empty,
)
from control_plane import Kube
from pod_security import build_pss_check, findings

# Every optional monitoring object on, so that they install against the real CRDs too.
MONITORING = {
    "monitoring": {
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "kuberayOperator": {"enabled": True},
    },
    "dashboards": {"enabled": True},
}
# The EKS/Karpenter labels and spot taint the overlays' comments name for the same pools.
KARPENTER_SPOT_TOLERATION = {
    "key": "karpenter.sh/capacity-type",
    "operator": "Equal",
    "value": "spot",
    "effect": "NoSchedule",
}
KARPENTER_GPU_NAMES = {"L4": "l4", "A100-80G": "a100"}
PROBES = ("readinessProbe", "livenessProbe", "startupProbe")
# The overlay also installed on the EKS/Karpenter pools (tools/cluster/nodes.yaml has L4 ones there).
EKS_BASE = next(path for path in OVERLAYS if "l4" in path.stem)
EKS_CASE = f"eks-{EKS_BASE.stem}"
CASES = [path.stem for path in OVERLAYS] + [EKS_CASE]


@dataclass(frozen=True)
class Installed:
    """One release, as Helm rendered it and as KubeRay turned it into pods."""

    namespace: str
    values: dict[str, Any]
    manifest: list[dict[str, Any]]
    objects: RayObjects

    @property
    def cluster_spec(self) -> dict[str, Any]:
        (rayservice,) = [obj for obj in self.manifest if obj["kind"] == "RayService"]
        spec: dict[str, Any] = rayservice["spec"]["rayClusterConfig"]
        return spec

    def groups(self) -> list[tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]]:
        """(group values, rendered pod template, pods) for the head and each worker group."""
        head = [pod for pod in self.objects.pods if pod["metadata"]["labels"]["ray.io/node-type"] == "head"]
        found = [(self.values["head"], self.cluster_spec["headGroupSpec"]["template"], head)]
        for group, spec in zip(
            self.values["workerGroups"], self.cluster_spec["workerGroupSpecs"], strict=True
        ):
            pods = [
                pod
                for pod in self.objects.pods
                if pod["metadata"]["labels"].get("ray.io/group") == group["name"]
            ]
            found.append((group, spec["template"], pods))
        return found


def karpenter_variant(overlay: Path) -> dict[str, Any]:
    """The overlay's worker groups moved to EKS with Karpenter, as its comments describe: the GKE spot label
    and toleration swapped for Karpenter's."""
    groups = copy.deepcopy(yaml.safe_load(overlay.read_text())["workerGroups"])
    for group in groups:
        group["nodeSelector"] = {
            "karpenter.sh/capacity-type": "spot",
            "karpenter.k8s.aws/instance-gpu-name": KARPENTER_GPU_NAMES[group["acceleratorType"]],
        }
        gke_spot = [t for t in group["tolerations"] if t.get("key") == "cloud.google.com/gke-spot"]
        group["tolerations"] = [t for t in group["tolerations"] if t not in gke_spot] + [
            KARPENTER_SPOT_TOLERATION
        ]
    return {"workerGroups": groups}


def install_cases(write_values: Callable[[str, dict[str, Any]], Path]) -> dict[str, list[Path]]:
    """Namespace -> values files: each overlay, and the EKS/Karpenter variant."""
    monitoring = write_values("monitoring", MONITORING)
    cases = {overlay.stem: [overlay, monitoring] for overlay in OVERLAYS}
    eks_variant = write_values(EKS_CASE, karpenter_variant(EKS_BASE))
    cases[EKS_CASE] = [EKS_BASE, eks_variant, monitoring]
    return cases


@pytest.fixture(scope="module")
def installed(
    kube: Kube, helm: Helm, write_values: Callable[[str, dict[str, Any]], Path]
) -> dict[str, Installed]:
    """Every case installed at once, then each waited for: KubeRay and the scheduler work in parallel."""
    cases = install_cases(write_values)
    for namespace, files in cases.items():
        helm.install(namespace, files)
    releases = {}
    for namespace in cases:
        values = helm.values(namespace)
        objects = wait_for_running_pods(kube, namespace, expected_pod_count(values))
        releases[namespace] = Installed(namespace, values, helm.manifest(namespace), objects)
    return releases


@pytest.fixture(params=CASES)
def release(request: pytest.FixtureRequest, installed: dict[str, Installed]) -> Installed:
    return installed[request.param]


def node(kube: Kube, pod: dict[str, Any]) -> dict[str, Any]:
    return kube.get(f"/api/v1/nodes/{pod['spec']['nodeName']}")


def quantities(mapping: dict[str, Any] | None) -> dict[str, str]:
    """Resource quantities as the API returns them: strings (values files may hold numbers)."""
    return {name: str(quantity) for name, quantity in (mapping or {}).items()}


def ray_container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] in ("ray-head", "ray-worker")]
    return container


def test_kuberay_creates_the_raycluster_and_its_pods(release: Installed) -> None:
    objects = release.objects
    (cluster,) = objects.rayclusters
    owners = [(ref["kind"], ref["name"]) for ref in cluster["metadata"]["ownerReferences"]]
    assert owners == [("RayService", objects.rayservice["metadata"]["name"])]
    for group, _, pods in release.groups():
        assert len(pods) == int(group.get("minReplicas", 1)), [pod["metadata"]["name"] for pod in pods]
        assert all(pod["metadata"]["labels"]["ray.io/cluster"] == cluster["metadata"]["name"] for pod in pods)


def test_scheduler_places_the_head_on_an_on_demand_cpu_node(kube: Kube, release: Installed) -> None:
    _, _, (head,) = release.groups()[0]
    labels = node(kube, head)["metadata"]["labels"]
    capacity = node(kube, head)["status"]["capacity"]
    assert labels["rayvllm.test/capacity"] == "on-demand", head["spec"]["nodeName"]
    assert "nvidia.com/gpu" not in capacity, head["spec"]["nodeName"]


def test_scheduler_places_each_worker_group_on_its_gpu_spot_pool(kube: Kube, release: Installed) -> None:
    for group, _, pods in release.groups()[1:]:
        nodes = [node(kube, pod) for pod in pods]
        names = [found["metadata"]["name"] for found in nodes]
        gpus = int(group["resources"]["limits"]["nvidia.com/gpu"])
        for found in nodes:
            labels = found["metadata"]["labels"]
            assert group["nodeSelector"].items() <= labels.items(), (group["name"], labels)
            assert labels["rayvllm.test/capacity"] == ("spot" if group["spot"] else "on-demand"), labels
            assert int(found["status"]["capacity"]["nvidia.com/gpu"]) >= gpus
        assert len(set(names)) == len(names), f"{group['name']} replicas share a node: {names}"


def test_no_worker_lands_on_a_decoy_pool(kube: Kube, release: Installed) -> None:
    """Decoys: the right GPU on-demand, the wrong GPU (A100 40GB, L4 / A100) on spot, the other cloud's."""
    for group, _, pods in release.groups()[1:]:
        allowed = {
            found["metadata"]["labels"]["rayvllm.test/pool"]
            for found in kube.items("/api/v1/nodes")
            if group["nodeSelector"].items() <= found["metadata"]["labels"].items()
        }
        used = {node(kube, pod)["metadata"]["labels"]["rayvllm.test/pool"] for pod in pods}
        assert len(allowed) == 1, f"{group['name']}'s nodeSelector matches several pools: {allowed}"
        assert used == allowed


def test_pods_carry_the_resources_security_and_termination_the_values_ask_for(release: Installed) -> None:
    values = release.values
    for group, _, pods in release.groups():
        grace = int(group.get("terminationGracePeriodSeconds") or 30)
        for pod in pods:
            container = ray_container(pod)
            resources, wanted = container["resources"], group["resources"]
            assert quantities(resources.get("limits")) == quantities(wanted.get("limits")), pod["metadata"][
                "name"
            ]
            # The API server copies limits of extended resources (the GPUs) into requests.
            assert quantities(wanted.get("requests")).items() <= quantities(resources.get("requests")).items()
            gpus = wanted.get("limits", {}).get("nvidia.com/gpu")
            assert quantities(resources.get("requests")).get("nvidia.com/gpu") == (
                str(gpus) if gpus else None
            )
            assert pod["spec"]["securityContext"] == values["pod"]["securityContext"]
            assert container["securityContext"] == values["pod"]["containerSecurityContext"]
            assert pod["spec"]["terminationGracePeriodSeconds"] == grace
            assert all(
                toleration in pod["spec"].get("tolerations", []) for toleration in group["tolerations"] or []
            )
            assert pod["spec"].get("nodeSelector", {}) == (group["nodeSelector"] or {})
            env = {item["name"]: item for item in container["env"]}
            # On deletion the preStop sleep runs, then SIGTERM starts Ray's drain: both within the grace.
            pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [0])
            drain = env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"]["value"]
            assert int(pre_stop[-1]) + int(drain) < grace, (pod["metadata"]["name"], pre_stop, drain, grace)
            if values["hfToken"]["secretName"]:
                assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {
                    "name": values["hfToken"]["secretName"],
                    "key": values["hfToken"]["secretKey"],
                }


def test_pods_carry_the_env_probes_and_hooks_of_the_rendered_template(release: Installed) -> None:
    """KubeRay adds env and probes of its own; everything the chart rendered must come through unchanged: the
    env (drain timeout, caches, HF token...), the preStop hook, and probes if the chart sets any."""
    for _, template, pods in release.groups():
        (rendered,) = template["spec"]["containers"]
        for pod in pods:
            container = ray_container(pod)
            for item in rendered.get("env", []):
                assert item in container["env"], (pod["metadata"]["name"], item)
            assert container.get("lifecycle") == rendered.get("lifecycle"), pod["metadata"]["name"]
            for probe in PROBES:
                if probe in rendered:
                    assert container[probe] == rendered[probe], (pod["metadata"]["name"], probe)
            # The chart renders no probes, so KubeRay's own health checks must be there.
            assert "readinessProbe" in container and "livenessProbe" in container, pod["metadata"]["name"]


@pytest.fixture(scope="session")
def pss_check() -> Path:
    return build_pss_check()


def test_every_pod_kuberay_creates_meets_the_restricted_profile(release: Installed, pss_check: Path) -> None:
    """The pods as the real operator created them, judged by the API server's own Pod Security checks
    (tests/pod_security.py), with the containers KubeRay adds to the chart's templates: the autoscaler sidecar
    on the head and the `wait-gcs-ready` init container on each worker."""
    pods = release.objects.pods
    containers = {
        (pod["metadata"]["labels"]["ray.io/node-type"], container["name"])
        for pod in pods
        for container in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
    }
    expected = {
        ("head", "ray-head"),
        ("head", "autoscaler"),
        ("worker", "ray-worker"),
        ("worker", "wait-gcs-ready"),
    }
    assert expected <= containers, sorted(containers)
    assert findings(pss_check, pods) == []


def test_kuberay_starts_the_head_with_autoscaler_v2(release: Installed) -> None:
    """The chart's `autoscaler.version: v2` reaches Ray: KubeRay adds the autoscaler sidecar and sets v2's
    switch on the head's Ray container (and restartPolicy Never, as it does for v2 only)."""
    assert release.cluster_spec["autoscalerOptions"]["version"] == "v2"
    _, _, (head,) = release.groups()[0]
    assert "autoscaler" in [container["name"] for container in head["spec"]["containers"]]
    env = {item["name"]: item.get("value") for item in ray_container(head)["env"]}
    assert env.get("RAY_enable_autoscaler_v2") in ("1", "true"), env
    assert head["spec"]["restartPolicy"] == "Never"


def test_every_object_of_the_chart_is_created(kube: Kube, release: Installed) -> None:
    """Monitoring objects (against the real Prometheus Operator CRDs), dashboards, PDB, ServiceAccount..."""
    kinds = {obj["kind"] for obj in release.manifest}
    assert {
        "RayService",
        "PodMonitor",
        "PrometheusRule",
        "ServiceMonitor",
        "ConfigMap",
        "PodDisruptionBudget",
    } <= kinds
    created = set(kube.objects_in(release.namespace))
    for obj in release.manifest:
        assert (obj["kind"], obj["metadata"]["name"]) in created, obj["kind"]


def test_helm_uninstall_leaves_nothing_behind(
    kube: Kube, helm: Helm, installed: dict[str, Installed]
) -> None:
    """Runs last: the RayCluster, pods and Services KubeRay made belong to the RayService, so only the garbage
    collector removes them."""
    before = {namespace: leftovers(kube, namespace) for namespace in installed}
    for namespace in installed:
        assert any(name.startswith("RayCluster/") for name in before[namespace]), before[namespace]
        helm.run("uninstall", "llm", "-n", namespace)
    for namespace in installed:
        wait_until_empty(kube, namespace)
        assert leftovers(kube, namespace) == []
