"""Every rendered object is valid for its schema: the Kubernetes API and the KubeRay, Prometheus Operator and
Gateway API CRDs, all built from their Go modules (tools/schemas.py), checked by `kubeconform -strict`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from chart_support import RENDER_CASES, rayservice

KINDS_ALWAYS = {"RayService", "ServiceAccount", "PodDisruptionBudget"}


def kubeconform(run_tool, manifest: str, schema_location: str) -> tuple[list[dict], dict, int]:
    result = run_tool(
        "kubeconform",
        "-strict",
        "-summary",
        "-verbose",
        "-output",
        "json",
        "-schema-location",
        schema_location,
        "-",
        check=False,
        stdin=manifest,
    )
    report = json.loads(result.stdout)
    return report["resources"], report["summary"], result.returncode


@pytest.mark.parametrize("files", RENDER_CASES.values(), ids=RENDER_CASES.keys())
def test_every_rendered_object_is_valid_for_its_schema(
    run_tool, render_text, schema_location, files: list[Path]
):
    manifest = render_text(files)
    resources, summary, returncode = kubeconform(run_tool, manifest, schema_location)
    problems = [r for r in resources if r["status"] != "statusValid"]
    assert returncode == 0 and not problems, problems
    kinds = {doc["kind"] for doc in yaml.safe_load_all(manifest) if doc}
    assert kinds >= KINDS_ALWAYS
    # Nothing skipped for want of a schema: every object was checked.
    assert summary["skipped"] == 0 and summary["valid"] == len(resources) > 0


def test_all_features_render_every_kind_of_the_chart(render) -> None:
    kinds = {obj["kind"] for obj in render(RENDER_CASES["all-features"])}
    assert {
        "RayService",
        "Ingress",
        "HTTPRoute",
        "PersistentVolumeClaim",
        "PodMonitor",
        "PrometheusRule",
    } <= kinds


def test_the_strict_schemas_reject_an_unknown_field(run_tool, render, schema_location) -> None:
    """A negative control: a field KubeRay's CRD lacks must fail, or the check above proves nothing."""
    service = rayservice(render([]))
    service["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParam"] = {"num-cpus": "0"}
    resources, summary, returncode = kubeconform(run_tool, yaml.safe_dump(service), schema_location)
    assert returncode != 0 and summary["invalid"] == 1
    assert "rayStartParam" in resources[0]["msg"]
