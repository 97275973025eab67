"""`helm install` with invalid values fails before anything reaches the cluster: a value the schema rejects,
and a problem only the chart's validation sees (validate.yaml)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import OVERLAYS, Helm, leftovers
from control_plane import Kube, wait_for


def aks_spot_group_without_spot_toleration() -> dict[str, Any]:
    """AKS taints every spot node, so this one the chart refuses (other clouds' spot taints are optional)."""
    groups = yaml.safe_load(OVERLAYS[0].read_text())["workerGroups"]
    groups[0]["spot"] = True
    groups[0]["nodeSelector"] = {"kubernetes.azure.com/scalesetpriority": "spot"}
    groups[0]["tolerations"] = [t for t in groups[0]["tolerations"] if t.get("key") == "nvidia.com/gpu"]
    return {"workerGroups": groups}


# Case -> (values, what the error must name).
INVALID = {
    "schema": ({"upgradeStrategy": {"type": "Rolling"}}, "upgradeStrategy"),
    "validation": (aks_spot_group_without_spot_toleration(), "which AKS always taints"),
}


@pytest.mark.parametrize("case", INVALID)
def test_invalid_values_fail_before_anything_is_created(
    case: str, kube: Kube, helm: Helm, write_values: Callable[[str, dict[str, Any]], Path]
) -> None:
    namespace = f"invalid-{case}"
    kube.create(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    # The controller-manager fills a new namespace with its baseline; wait for it, so nothing is missed later.
    wait_for(
        f"the default ServiceAccount in {namespace}",
        lambda: kube.find(f"/api/v1/namespaces/{namespace}/serviceaccounts/default"),
        60,
    )
    values, message = INVALID[case]
    result = helm.install(namespace, [OVERLAYS[0], write_values(namespace, values)], check=False)
    assert result.returncode != 0, result.stdout
    assert message in result.stderr, result.stderr
    assert leftovers(kube, namespace) == []
