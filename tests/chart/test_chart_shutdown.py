"""How the Ray pods stop, in every render: a preStop sleep, then Ray's drain, within the grace period; on spot
pools, one replica per node that stops taking requests as soon as its node drains (docs/spot.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import CHART, RENDER_CASES, rayservice
from rayvllm.capacity import load_values

SPOT_OVERLAYS = {name: files for name, files in RENDER_CASES.items() if name.endswith("-spot.yaml")}


def stop_times(template: dict[str, Any]) -> tuple[int, int, int]:
    """(grace, preStop sleep, drain) of a pod template's Ray container (the first; sidecars follow it)."""
    container = template["spec"]["containers"][0]
    env = {var["name"]: var.get("value") for var in container["env"]}
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", ["sleep", "0"])
    assert command[0] == "sleep"
    grace = template["spec"]["terminationGracePeriodSeconds"]
    return grace, int(command[1]), int(env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"])


@pytest.mark.parametrize("files", RENDER_CASES.values(), ids=RENDER_CASES.keys())
def test_prestop_and_drain_fit_the_grace_period_of_every_ray_pod(render, files: list[Path]) -> None:
    cluster = rayservice(render(files))["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    for template in templates:
        grace, pre_stop, drain = stop_times(template)
        assert pre_stop > 0 and drain > 0
        assert pre_stop + drain <= grace


@pytest.mark.parametrize("files", SPOT_OVERLAYS.values(), ids=SPOT_OVERLAYS.keys())
def test_spot_overlays_fit_gke_s_15_seconds_and_keep_one_replica_per_node(render, files: list[Path]) -> None:
    service = rayservice(render(files))
    (group,) = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    grace, pre_stop, drain = stop_times(group["template"])
    assert (grace, pre_stop, drain) == (15, 3, 10)
    args = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["args"]
    for model in args["models"]:
        assert model["max_replicas_per_node"] == 1
        assert model["autoscaling"]["min_replicas"] >= 2
        # At least the drain: Serve stops the replica as soon as its node drains (deadline - this <= now).
        assert model["graceful_shutdown_timeout_s"] >= drain
    assert load_values(CHART, files)["workerGroups"][0]["spot"] is True
