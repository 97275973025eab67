"""Fixtures of the real-pod suite: the control plane and a real node (node.py) inside the test's network
namespace, and the README's Install section run as written (namespace, hf-token Secret,
`helm install llm charts/rayvllm -n llm -f values/l4-spot.yaml`), changed only by the test overlay
(pod_support.pods_overlay) passed after it: the image, the tiny model on the CPU engine, node selection,
resources, test-only mounts, and the GCS in a Redis on the node (gcs_redis.py) with its password Secret."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from control_plane import start_control_plane, wait_for
from gcs_redis import redis_password_secret, start_redis
from node import NETWORK, RUN_DIR, NetworkNamespace, build_images, start_node, unmount_under, wait_gone
from pod_support import (
    CHART,
    ENVIRONMENT_VALUES,
    FIRST_KEY,
    NAMESPACE,
    RELEASE,
    SERVE_READY_TIMEOUT_S,
    PodCluster,
    Release,
    diagnostics,
    hf_token_secret,
    is_ready,
    pods,
    pods_overlay,
    rayservice_ready,
    secret,
    serve_service_ip,
)


@pytest.fixture(scope="package")
def pod_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodCluster]:
    images = build_images()
    netns = NetworkNamespace(f"rayvllm-pods-{os.getpid()}")
    workdir = tmp_path_factory.mktemp("pods")
    pod_namespaces_before = NetworkNamespace.pod_namespaces()
    problems: list[str] = []
    try:
        netns.create()  # inside the try: a half-made namespace is deleted too
        with netns.entered():
            start = time.monotonic()
            plane = start_control_plane(workdir, NETWORK)
            try:
                cluster = PodCluster(plane, start_node(plane, images), netns, images)
                cluster.timings["cluster_start_s"] = time.monotonic() - start
                yield cluster
            finally:
                containers = []
                if "cluster" in locals():
                    if cluster.node.tasks():  # only when a test failed before `helm uninstall`
                        cluster.remove_pods()
                    containers = [*cluster.node.task_processes(), *cluster.node.shims()]
                survivors = plane.stop()
                problems += [f"survived SIGKILL: {name}" for name in survivors]
                if name_servers := plane.dns_servers_asked() - {NETWORK.node_ip}:
                    problems.append(f"KubeRay asked other name servers: {name_servers}")
                leftover = wait_gone(containers)
                problems += [f"container process survived: {p.pid}" for p in leftover]
                unmount_under(workdir / "node", RUN_DIR)
    finally:
        for name in NetworkNamespace.pod_namespaces() - pod_namespaces_before:
            problems.append(f"pod network namespace left: {name}")
            subprocess.run(["ip", "netns", "delete", name], check=False)
        netns.delete()
    assert not problems, problems


@pytest.fixture(scope="package")
def release(
    pod_cluster: PodCluster, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Release:
    """`helm install` with the test overlay, timed to the pods' Ready, the RayService's Ready and the first
    served token."""
    import httpx

    cluster = pod_cluster
    kube = cluster.plane.kube
    # The pods run as uid 1000; pytest's temporary folders are the owner's only.
    for path in (tiny_model_dir, *tiny_model_dir.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    kube.create(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    )
    kube.create(f"/api/v1/namespaces/{NAMESPACE}/secrets", hf_token_secret())
    kube.create(f"/api/v1/namespaces/{NAMESPACE}/secrets", secret(dict([FIRST_KEY])))
    start_redis(cluster.plane)
    kube.create(f"/api/v1/namespaces/{NAMESPACE}/secrets", redis_password_secret(NAMESPACE))
    values_dir = tmp_path_factory.mktemp("pods-values")
    values = pods_overlay(cluster.images, tiny_model_dir)
    overlay = values_dir / "pods-values.yaml"
    overlay.write_text(yaml.safe_dump(values))
    timings: dict[str, float] = {}
    start = time.monotonic()
    cluster.helm(
        "install", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(ENVIRONMENT_VALUES), "-f", str(overlay)
    )

    def since() -> float:
        return round(time.monotonic() - start, 1)

    try:
        wait_for(
            "the head and worker pods Running and Ready",
            lambda: (lambda ps: len(ps) == 2 and all(is_ready(p) for p in ps))(pods(cluster)),
            SERVE_READY_TIMEOUT_S,
            2.0,
        )
        timings["pods_ready_s"] = since()
        wait_for("the RayService Ready", lambda: rayservice_ready(cluster), SERVE_READY_TIMEOUT_S, 2.0)
        timings["rayservice_ready_s"] = since()
        ip = wait_for("the Serve Service's address", lambda: serve_service_ip(cluster), 60)
        serve_url = f"http://{ip}:8000"

        def first_token() -> bool:
            response = httpx.post(
                f"{serve_url}/v1/completions",
                json={"model": "tiny-llama", "prompt": "Hello", "max_tokens": 1},
                headers={"Authorization": f"Bearer {FIRST_KEY[1]}"},
                timeout=60,
            )
            return response.status_code == 200

        wait_for("the first served token through the Serve Service", first_token, 300, 2.0)
        timings["first_token_s"] = since()
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{diagnostics(cluster)}") from error
    cluster.timings.update(timings)
    print(f"\nreal pods: {json.dumps({**cluster.timings, **timings})}")
    return Release(cluster, serve_url, timings, FIRST_KEY[1], values, values_dir)
