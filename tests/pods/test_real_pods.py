"""`helm install` of the chart on a real node: KubeRay starts the head and worker pods in containerd, reaches
the Ray dashboard, deploys the serveConfigV2 and marks the RayService Ready; the official `openai` client
is then served through the chart's Serve Service. Ordered; test_under_load.py and test_uninstall.py follow."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
import yaml
from control_plane import wait_for
from monitoring_support import (
    ALLOWLIST,
    PREFIX_CACHE_PROMPT,
    REAL_POD_METRICS,
    load_dashboards,
    panel_queries,
    promql_metric_names,
    tool_path,
)
from pod_support import FIRST_KEY, HF_TOKEN_SECRET, NAMESPACE, PodCluster, Release, pods, rayservice
from podmonitor_scrape import scrape_configs
from rayvllm.procs import free_port

MODEL = "tiny-llama"
APP_PACKAGE_MOUNT = "/opt/rayvllm/lib"
ROTATION_TIMEOUT_S = 120.0
SCRAPE_INTERVAL_S = 2
SERIES_TIMEOUT_S = 90.0


def _client(release: Release, key: str):  # type: ignore[no-untyped-def]
    from openai import OpenAI

    return OpenAI(base_url=f"{release.serve_url}/v1", api_key=key, max_retries=0, timeout=120)


def test_pods_and_rayservice_ready(release: Release) -> None:
    cluster = release.cluster
    node_types = sorted(pod["metadata"]["labels"]["ray.io/node-type"] for pod in pods(cluster))
    assert node_types == ["head", "worker"]
    for pod in pods(cluster):
        assert pod["spec"]["nodeName"] == "rayvllm-node"
        assert pod["status"]["phase"] == "Running"
        for container in pod["status"]["containerStatuses"]:
            assert container["ready"], container
            assert container["restartCount"] == 0, container
        # The image has no rayvllm (tools/pods/build-image.sh): what serves is the chart's own copy.
        ray = pod["spec"]["containers"][0]
        assert {"name": "PYTHONPATH", "value": APP_PACKAGE_MOUNT} in ray["env"]
        assert any(mount["mountPath"] == APP_PACKAGE_MOUNT for mount in ray["volumeMounts"])
        # values/l4-spot.yaml is under the overlay, as the README installs it: its hfToken reaches the pods.
        token = {"secretKeyRef": {"name": HF_TOKEN_SECRET, "key": "token"}}
        assert any(e["name"] == "HF_TOKEN" and e.get("valueFrom") == token for e in ray["env"]), ray["env"]
    status = rayservice(cluster)["status"]
    applications = status["activeServiceStatus"]["applicationStatuses"]
    assert {name: app["status"] for name, app in applications.items()} == {"llm": "RUNNING"}
    print(
        f"\nreal pods timings: {release.timings} (cluster start {cluster.timings['cluster_start_s']:.0f} s)"
    )


def test_models_chat_stream_and_completion(release: Release) -> None:
    client = _client(release, release.api_key)
    assert [model.id for model in client.models.list().data] == [MODEL]

    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=8, temperature=0
    )
    assert chat.choices[0].message.content is not None
    assert chat.usage is not None and chat.usage.completion_tokens > 0

    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=8, stream=True
        )
    )
    assert chunks and chunks[-1].choices[0].finish_reason in {"length", "stop"}

    completion = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=4)
    assert completion.choices[0].text is not None


def test_bad_requests_get_openai_errors(release: Release) -> None:
    import openai

    client = _client(release, release.api_key)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=-1
        )
    assert bad.value.body is not None
    # The engine is still serving.
    assert client.completions.create(model=MODEL, prompt="Hi", max_tokens=1).choices


def _status(release: Release, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body: dict[str, Any] = {"model": MODEL, "prompt": "Hi", "max_tokens": 1}
    return httpx.post(
        f"{release.serve_url}/v1/completions", json=body, headers=headers, timeout=60
    ).status_code


def _restarts(cluster: PodCluster) -> dict[str, tuple[str, int]]:
    return {
        pod["metadata"]["name"]: (
            pod["metadata"]["uid"],
            sum(c["restartCount"] for c in pod["status"]["containerStatuses"]),
        )
        for pod in pods(cluster)
    }


def test_api_keys_from_the_secret_rotate_without_a_restart(release: Release) -> None:
    assert _status(release, None) == 401
    assert _status(release, "sk-not-a-key") == 401
    assert _status(release, FIRST_KEY[1]) == 200

    before = _restarts(release.cluster)
    second_key = "sk-second-key-9876543210"
    start = time.monotonic()
    release.put_keys({"ci": second_key})
    wait_for(
        "the rotated key to be accepted and the old one refused",
        lambda: _status(release, second_key) == 200 and _status(release, FIRST_KEY[1]) == 401,
        ROTATION_TIMEOUT_S,
        2.0,
    )
    print(f"\nkey rotation took effect in {time.monotonic() - start:.1f} s")
    assert _restarts(release.cluster) == before
    release.api_key = second_key


def _dashboard_series() -> set[str]:
    """The `ray_vllm_*` and `ray_serve_*` names the dashboards query, less those allow-listed for CPU, and the
    names only a KubeRay cluster exports (the head's autoscaler, the operator)."""
    allowed = {entry["name"] for entry in yaml.safe_load(ALLOWLIST.read_text())}
    names = {name for query in panel_queries(load_dashboards()) for name in promql_metric_names(query.expr)}
    kuberay_only = {entry["name"] for entry in yaml.safe_load(REAL_POD_METRICS.read_text())}
    return {name for name in names if name.startswith(("ray_vllm_", "ray_serve_"))} - allowed | kuberay_only


def test_prometheus_scrapes_the_pods_the_podmonitors_select(release: Release) -> None:
    cluster = release.cluster
    kube = cluster.plane.kube
    monitors = kube.items(f"/apis/monitoring.coreos.com/v1/namespaces/{NAMESPACE}/podmonitors")
    assert sorted(m["metadata"]["name"] for m in monitors) == ["llm-rayvllm-head", "llm-rayvllm-worker"]
    directory = cluster.plane.workdir / "prometheus"
    directory.mkdir()
    config = directory / "prometheus.yml"
    jobs = scrape_configs(monitors, cluster.plane.kubeconfig, f"{SCRAPE_INTERVAL_S}s")
    # The operator runs beside the control plane here, not in a pod that a PodMonitor could select.
    operator = httpx.URL(cluster.plane.operator_metrics_url)
    jobs.append(
        {
            "job_name": "kuberay-operator",
            "static_configs": [{"targets": [f"{operator.host}:{operator.port}"]}],
        }
    )
    config.write_text(yaml.safe_dump({"scrape_configs": jobs}))
    port = free_port()
    cluster.plane.start(
        "prometheus",
        [
            tool_path("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
    )
    api = f"http://127.0.0.1:{port}/api/v1"
    wanted = _dashboard_series()
    stop = threading.Event()
    # vLLM sets its gauges only while the engine works, and Ray drops an idle gauge within seconds.
    traffic = threading.Thread(target=_traffic, args=(release, stop), daemon=True)
    traffic.start()
    try:

        def all_targets_up() -> list[dict[str, Any]] | None:
            cluster.plane.check_running()
            response = httpx.get(f"{api}/targets", timeout=10)
            if response.status_code == 503:  # Prometheus answers so until its storage is ready
                return None
            targets = response.json()["data"]["activeTargets"]
            up = [t for t in targets if t["health"] == "up"]
            # head: metrics, as-metrics, dash-metrics; worker: metrics; the operator.
            return targets if len(targets) == len(up) == 5 else None

        targets = wait_for("every PodMonitor target up", all_targets_up, 180, 2.0)

        def present() -> set[str]:
            names = set(httpx.get(f"{api}/label/__name__/values", timeout=10).json()["data"])
            return names

        start = time.monotonic()
        missing: set[str] = set(wanted)
        while missing and time.monotonic() - start < SERIES_TIMEOUT_S:
            names = present()
            missing = wanted - names
            time.sleep(SCRAPE_INTERVAL_S)
    finally:
        stop.set()
        traffic.join(timeout=120)
    targets = [t for t in targets if t["labels"]["job"] != "kuberay-operator"]
    endpoints = sorted((t["labels"]["job"], t["labels"]["endpoint"], t["labels"]["pod"]) for t in targets)
    print(f"\nPodMonitor targets: {endpoints}")
    seen_autoscaler = sorted(name for name in names if name.startswith("autoscaler_"))
    print(f"autoscaler series scraped from the head: {seen_autoscaler}")
    assert not missing, f"dashboard series not scraped from the pods: {sorted(missing)}"
    assert all(t["labels"]["namespace"] == NAMESPACE and t["labels"]["ray_io_cluster"] for t in targets)


def _traffic(release: Release, stop: threading.Event) -> None:
    client = _client(release, release.api_key)
    while not stop.is_set():
        client.completions.create(model=MODEL, prompt=PREFIX_CACHE_PROMPT, max_tokens=16)
