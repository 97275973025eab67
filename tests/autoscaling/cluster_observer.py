"""What the test reads from the running cluster: Ray's nodes, Serve's status and controller, and the real
Prometheus metrics that every node's metrics agent exports. Needs a driver connected to the cluster."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from fake_cluster import FakeAutoscalingCluster
from prometheus_client.parser import text_string_to_metric_families
from scaling_timeline import Sample, Timeline
from spike_load import LoadGenerator

QUEUED = "ray_serve_deployment_queued_queries"
TARGET_REPLICAS = "ray_serve_autoscaling_target_replicas"
REQUESTS = "ray_serve_deployment_request_counter_total"


@dataclass(frozen=True)
class NodeMetrics:
    """One scrape of every alive node: samples summed by metric name, and request counts per node."""

    totals: dict[str, float]
    requests_by_node: dict[str, float]


def scrape_nodes(deployment: str) -> NodeMetrics:
    """Scrape each alive node's metrics export; only the deployment's own series count."""
    import ray

    totals: dict[str, float] = defaultdict(float)
    requests_by_node: dict[str, float] = {}
    for node in ray.nodes():
        if not node["Alive"]:
            continue
        url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        try:
            text = httpx.get(url, timeout=5).text
        except httpx.HTTPError:
            continue  # a node being removed; the next sample sees the rest
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("deployment") != deployment:
                    continue
                totals[sample.name] += sample.value
                if sample.name == REQUESTS:
                    requests_by_node[node["NodeID"]] = requests_by_node.get(node["NodeID"], 0) + sample.value
    return NodeMetrics(dict(totals), requests_by_node)


class Recorder:
    """Samples the cluster and the load once a second into a Timeline, in a thread of its own."""

    def __init__(
        self,
        cluster: FakeAutoscalingCluster,
        app: str,
        deployment: str,
        load: LoadGenerator,
        timeline: Timeline,
    ) -> None:
        self.cluster, self.app, self.deployment, self.load = cluster, app, deployment, load
        self.timeline = timeline
        self.started = time.monotonic()
        self.latest: Sample | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def now(self) -> float:
        return time.monotonic() - self.started

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def sample(self) -> Sample:
        t = self.now()
        counts = self.load.snapshot()
        metrics = scrape_nodes(self.deployment)
        sample = Sample(
            t=round(t, 1),
            in_flight=counts.in_flight,
            ok=counts.ok,
            failed=counts.failed,
            queued=metrics.totals.get(QUEUED),
            ongoing=self._controller_ongoing(),
            target_replicas=metrics.totals.get(TARGET_REPLICAS),
            running_replicas=self._running_replicas(),
            worker_nodes=len(self.cluster.alive_worker_node_ids()),
            requests_by_node=metrics.requests_by_node,
        )
        self.cluster.remember_processes()
        self.timeline.samples.append(sample)
        self.latest = sample
        return sample

    def _running_replicas(self) -> int:
        from ray import serve

        application = serve.status().applications.get(self.app)
        if application is None or self.deployment not in application.deployments:
            return 0
        return int(application.deployments[self.deployment].replica_states.get("RUNNING", 0))

    def _controller_ongoing(self) -> float | None:
        """The number Serve's autoscaler decides on, from its controller (a test hook of Ray Serve)."""
        import ray
        from ray.serve._private.common import DeploymentID
        from ray.serve.context import _get_global_client

        controller = _get_global_client()._controller
        deployment_id = DeploymentID(name=self.deployment, app_name=self.app)
        with contextlib.suppress(Exception):  # best effort: the figure, not the assertions, uses it
            return float(
                ray.get(controller._get_total_num_requests_for_deployment_for_testing.remote(deployment_id))
            )
        return None


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 1.0) -> None:
    """Poll until `condition()` holds, or fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s:.0f}s: {what}")
        time.sleep(poll_s)
