"""`helm upgrade` against the real KubeRay operator, once per `upgradeStrategy.type` the chart's schema
offers: a change to an engine argument (serveConfigV2 only) keeps the RayCluster and its pods, whatever the
strategy; a change to a worker group makes KubeRay start a new RayCluster (NewCluster,
NewClusterWithIncrementalUpgrade) or leave the running one as it is (None). Ray itself never runs here, so the
RayService never becomes ready: what is checked is what KubeRay does to the Kubernetes objects."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    CHART,
    OVERLAYS,
    Helm,
    RayObjects,
    expected_pod_count,
    ray_objects,
    wait_for_running_pods,
    wait_until_empty,
)
from control_plane import Kube

STRATEGIES = json.loads((CHART / "values.schema.json").read_text())["properties"]["upgradeStrategy"][
    "properties"
]["type"]["enum"]
# NewClusterWithIncrementalUpgrade needs these (KubeRay validates them; the chart fails without the class).
INCREMENTAL_OPTIONS = {
    "gatewayClassName": "test-gateway",
    "stepSizePercent": 50,
    "intervalSeconds": 5,
    "maxSurgePercent": 100,
}
# How long KubeRay gets to do something it must not do, before the test says it did not.
SETTLE_S = 10.0
DELETION_DELAY_S = 2


def base_values(strategy: str) -> dict[str, Any]:
    """The first overlay, with one worker per group (two clusters fit the pools during an upgrade) and a short
    deletion delay, so that the old cluster's removal is seen."""
    values = yaml.safe_load(OVERLAYS[0].read_text())
    for group in values["workerGroups"]:
        group["minReplicas"] = 1
    values["upgradeStrategy"] = {"type": strategy}
    if strategy == "NewClusterWithIncrementalUpgrade":
        values["upgradeStrategy"]["clusterUpgradeOptions"] = INCREMENTAL_OPTIONS
    values["rayClusterDeletionDelaySeconds"] = DELETION_DELAY_S
    return values


def with_new_engine_arg(values: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(values)
    engine = changed["app"]["models"][0]["engine"]
    engine["max_num_seqs"] = int(engine["max_num_seqs"]) // 2
    return changed


def with_changed_worker_group(values: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(values)
    group = changed["workerGroups"][0]
    group["podLabels"] = {**group.get("podLabels", {}), "rayvllm.test/revision": "2"}
    return changed


def uids(objects: RayObjects) -> set[str]:
    return {obj["metadata"]["uid"] for obj in [*objects.rayclusters, *objects.pods]}


def worker_labels(cluster: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = cluster["spec"]["workerGroupSpecs"][0]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_upgrade(
    strategy: str, kube: Kube, helm: Helm, write_values: Callable[[str, dict[str, Any]], Path]
) -> None:
    namespace = f"upgrade-{strategy.lower()}"
    values = base_values(strategy)
    helm.install(namespace, [write_values(namespace, values)])
    pod_count = expected_pod_count(helm.values(namespace))
    before = wait_for_running_pods(kube, namespace, pod_count)

    # serveConfigV2 only: the same RayCluster and pods, the new argument in the RayService.
    serve_change = with_new_engine_arg(values)
    helm.install(namespace, [write_values(f"{namespace}-serve", serve_change)], command="upgrade")
    time.sleep(SETTLE_S)
    after_serve = ray_objects(kube, namespace)
    assert uids(after_serve) == uids(before), (
        "a serveConfigV2-only change replaced the RayCluster or its pods"
    )
    new_seqs = serve_change["app"]["models"][0]["engine"]["max_num_seqs"]
    assert f"max_num_seqs: {new_seqs}" in after_serve.rayservice["spec"]["serveConfigV2"]

    # A worker group's pod template: the cluster spec changes.
    helm.install(
        namespace,
        [write_values(f"{namespace}-workers", with_changed_worker_group(values))],
        command="upgrade",
    )
    (old_cluster,) = before.rayclusters
    if strategy == "None":
        time.sleep(SETTLE_S)
        after = ray_objects(kube, namespace)
        assert uids(after) == uids(before), "upgradeStrategy None replaced the RayCluster"
        assert "rayvllm.test/revision" not in worker_labels(after.rayclusters[0])
    else:
        after = wait_for_running_pods(
            kube,
            namespace,
            pod_count,
            lambda objects: objects.rayclusters[0]["metadata"]["uid"] != old_cluster["metadata"]["uid"],
        )
        (new_cluster,) = after.rayclusters
        assert worker_labels(new_cluster)["rayvllm.test/revision"] == "2"
        assert not uids(after) & uids(before), "pods of the old RayCluster are left"

    helm.run("uninstall", "llm", "-n", namespace)
    wait_until_empty(kube, namespace)
