"""A queue spike adds a Serve replica and a fake L4 node; quiet time removes both. Real Ray, Serve and vLLM.

Ray's own autoscaler (v1, fake multi-node provider) launches worker "nodes" on this machine, each with a
logical GPU and `accelerator_type:L4`. The app asks one such GPU per replica, so a second replica needs a
second node, just as a second L4 replica needs a second pod on the spot pool under KubeRay.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster_observer import Recorder, wait_for
from fake_cluster import FakeAutoscalingCluster
from local_stack import tiny_config
from rayvllm.config import AppConfig
from rayvllm.procs import free_port
from rayvllm.serve.builder import build_app
from rayvllm.serve.deployment import deployment_name
from scaling_timeline import Timeline
from spike_load import LoadGenerator

pytestmark = [pytest.mark.autoscaling, pytest.mark.slow]

APP = "llm"
# One worker type, like a KubeRay worker group of L4 spot nodes: 0 to 2 nodes, removed after 6 s idle.
WORKER_RESOURCES = {"CPU": 1, "GPU": 1, "accelerator_type:L4": 1, "object_store_memory": 200 * 1024**2}
IDLE_TIMEOUT_MINUTES = 0.1
# Short delays so the whole cycle fits the test's budget; production values are in values/profiles/.
AUTOSCALING = {
    "min_replicas": 1,
    "max_replicas": 2,
    "target_ongoing_requests": 2,
    "upscale_delay_s": 2,
    "downscale_delay_s": 10,
}
MAX_ONGOING_REQUESTS = 4
CONCURRENCY = 12
MAX_TOKENS = 32
# Generous: a second vLLM engine starts in about a minute on a quiet 2-core machine, in 3-5 on a busy one.
SCALE_UP_TIMEOUT_S = 600
SCALE_DOWN_TIMEOUT_S = 240


@pytest.fixture
def cluster() -> Iterator[FakeAutoscalingCluster]:
    """The fake autoscaling cluster, with a driver connected; every process it started is gone after."""
    import ray

    # A short path of our own: Ray's socket paths must stay under 108 bytes, and no other cluster uses it.
    cluster = FakeAutoscalingCluster(
        Path(tempfile.mkdtemp(prefix="rvas-", dir="/tmp")),
        WORKER_RESOURCES,
        max_workers=2,
        idle_timeout_minutes=IDLE_TIMEOUT_MINUTES,
    )
    try:
        cluster.start()
        ray.init(address=cluster.gcs_address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        leftovers = cluster.stop()
    assert not leftovers, f"processes of the fake cluster left after stopping it: {leftovers}"
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)  # its logs stay when something was left


def app_config(model_dir: Path) -> AppConfig:
    """The tiny model, one logical L4 GPU per replica, 1 to 2 replicas."""
    config = tiny_config(
        model_dir,
        # vLLM's CPU auto-binding pins every engine's worker to core 0: two replicas on one machine would
        # share a core, and the second engine would start while the first one keeps that core busy.
        env={"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"},
        num_gpus=1,
        accelerator_type="L4",
        num_cpus=1,
        autoscaling=AUTOSCALING,
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
    )
    return AppConfig.model_validate(config)


def deploy(config: AppConfig) -> str:
    """Deploy the app behind one proxy, on the head; return its base URL once it answers a completion.

    HeadOnly: the clients reach the head's proxy, and a worker node carries nothing but its replica.
    """
    from ray import serve

    port = free_port()
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(config), name=APP, route_prefix="/")
    base_url = f"http://127.0.0.1:{port}"
    body: dict[str, Any] = {"model": config.models[0].name, "prompt": "Hi", "max_tokens": 1}

    def answers() -> bool:
        try:
            return httpx.post(f"{base_url}/v1/completions", json=body, timeout=60).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(answers, 300, "the app to answer a completion")
    return base_url


def test_queue_spike_scales_replicas_and_nodes_up_then_down(
    cluster: FakeAutoscalingCluster, tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = app_config(tiny_model_dir)
    model = config.models[0]
    deployment = deployment_name(model)
    base_url = deploy(config)
    (first_node,) = cluster.alive_worker_node_ids()

    load = LoadGenerator(base_url, model.name, CONCURRENCY, MAX_TOKENS)
    timeline = Timeline(
        settings={
            "autoscaling": AUTOSCALING,
            "max_ongoing_requests": MAX_ONGOING_REQUESTS,
            "worker_resources": WORKER_RESOURCES,
            "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES,
            "concurrency": CONCURRENCY,
            "max_tokens": MAX_TOKENS,
        }
    )
    recorder = Recorder(cluster, APP, deployment, load, timeline)
    recorder.start()
    try:
        load.start()
        timeline.mark("spike", recorder.now())

        def second_node_serves() -> bool:
            latest = recorder.latest
            return latest is not None and any(
                count > 0 for node, count in latest.requests_by_node.items() if node != first_node
            )

        wait_for(second_node_serves, SCALE_UP_TIMEOUT_S, "a replica on a second node to serve requests")
        load.stop()
        timeline.mark("quiet", recorder.now())

        def back_to_minimum() -> bool:
            latest = recorder.latest
            return latest is not None and latest.running_replicas == 1 and latest.worker_nodes == 1

        wait_for(
            back_to_minimum, SCALE_DOWN_TIMEOUT_S, "one replica and one node again after the load stopped"
        )
    finally:
        recorder.stop()
        timeline.derive_events(first_node)
        timeline.save(tmp_path / "timeline.json")
        print(f"timeline: {tmp_path / 'timeline.json'}")

    counts = load.snapshot()
    assert counts.failed == 0, counts.errors[:5]
    assert counts.ok > 0
    for event in (
        "queue_rose",
        "target_2",
        "second_node",
        "second_replica_running",
        "second_replica_serving",
    ):
        assert event in timeline.events, f"never seen under load: {event}; events {timeline.events}"
    assert timeline.events["replicas_at_min"] >= timeline.events["quiet"]
    assert timeline.events["nodes_at_min"] >= timeline.events["quiet"]
    print(timeline.durations())
