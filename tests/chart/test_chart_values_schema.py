"""values.schema.json rejects what the chart cannot use, with the schema's own message."""

from __future__ import annotations

import json

import pytest
from chart_support import CHART

# The body of a valid worker group, for --set-json cases that add one key to it.
L4_GROUP = (
    '"name":"l4","acceleratorType":"L4","minReplicas":1,"maxReplicas":1,'
    '"resources":{"limits":{"nvidia.com/gpu":1}},'
    '"tolerations":[{"key":"nvidia.com/gpu","operator":"Exists"}]'
)

BAD_VALUES = {
    "an unknown top-level key": (
        ["--set", "replicaCount=2"],
        "additional properties 'replicaCount' not allowed",
    ),
    "an unknown key of a chart-owned object": (
        ["--set", "image.name=vllm"],
        "at '/image': additional properties 'name' not allowed",
    ),
    "a wrong type": (
        ["--set", "serve.service.port=http"],
        "at '/serve/service/port': got string, want integer",
    ),
    "a value outside its enum": (
        ["--set", "upgradeStrategy.type=BlueGreen"],
        "at '/upgradeStrategy/type': value must be one of",
    ),
    "an unknown vLLM engine argument": (
        ["--set-json", 'app={"models":[{"name":"m","engine":{"model":"x","max_model_length":4096}}]}'],
        "at '/app/models/0/engine': additional properties 'max_model_length' not allowed",
    ),
    "a wrong type in the app config": (
        ["--set-json", 'app={"models":[{"name":"m","engine":{"model":"x","max_model_len":"long"}}]}'],
        "at '/app/models/0/engine/max_model_len': got string, want integer",
    ),
    "a worker group without its GPU type": (
        ["--set-json", 'workerGroups=[{"name":"l4","minReplicas":0,"maxReplicas":1,"resources":{}}]'],
        "at '/workerGroups/0': missing property 'acceleratorType'",
    ),
    "a misspelt escape hatch of a worker group": (
        ["--set-json", f'workerGroups=[{{{L4_GROUP},"sidecarContainers":[]}}]'],
        "at '/workerGroups/0': additional properties 'sidecarContainers' not allowed",
    ),
    "a sidecar without a name": (
        ["--set-json", f'workerGroups=[{{{L4_GROUP},"sidecars":[{{"image":"shipper:3.1.0"}}]}}]'],
        "at '/workerGroups/0/sidecars/0': missing property 'name'",
    ),
    "a volume mount without its path": (
        ["--set-json", 'head.volumeMounts=[{"name":"weights"}]'],
        "at '/head/volumeMounts/0': missing property 'mountPath'",
    ),
    "the head's annotations under another name than the worker groups'": (
        ["--set", "head.annotations.team=ml"],
        "at '/head': additional properties 'annotations' not allowed",
    ),
    "a numeric string with a sign, where the number may not be negative": (
        ["--set", "modelOverrides.autoscaling.target_ongoing_requests=-0.5"],
        "at '/modelOverrides/autoscaling/target_ongoing_requests': 'anyOf' failed",
    ),
    "a string that is no number, where a number is meant": (
        ["--set", "capacity.overheadMiB=2GiB"],
        "at '/capacity/overheadMiB': 'anyOf' failed",
    ),
    "a Serve HTTP proxy outside its enum, under its new name": (
        ["--set", "serve.httpProxy=nginx"],
        "at '/serve/httpProxy': value must be one of",
    ),
    "an unknown externalTrafficPolicy": (
        ["--set", "serve.service.externalTrafficPolicy=local"],
        "at '/serve/service/externalTrafficPolicy': value must be one of",
    ),
    "a source range that is not a CIDR": (
        ["--set", "serve.service.loadBalancerSourceRanges[0]=10.0.0.1"],
        "at '/serve/service/loadBalancerSourceRanges/0': '10.0.0.1' does not match pattern",
    ),
    "an unknown HTTPRoute timeout": (
        ["--set", "httpRoute.timeouts.idle=60s"],
        "at '/httpRoute/timeouts': additional properties 'idle' not allowed",
    ),
    "an HTTPRoute timeout that is not a Gateway API duration": (
        ["--set", "httpRoute.timeouts.request=10 minutes"],
        "at '/httpRoute/timeouts/request': '10 minutes' does not match pattern",
    ),
    "an extra object that is neither a map nor a string": (
        ["--set", "extraObjects[0]=1"],
        "at '/extraObjects/0': got number, want object",
    ),
    "non-string dashboard annotations": (
        ["--set-json", 'dashboards.annotations={"replicas":1}'],
        "at '/dashboards/annotations/replicas': got number, want string",
    ),
}


@pytest.mark.parametrize("flags, message", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_the_schema_rejects_bad_values_with_its_message(run_tool, flags: list[str], message: str) -> None:
    result = run_tool("helm", "template", "llm", CHART, *flags, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


def test_the_app_part_of_the_schema_is_generated_from_the_app_config(run_tool) -> None:
    import subprocess
    import sys

    from chart_support import REPO

    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "values_schema.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_schema_accepts_every_escape_hatch(run_tool) -> None:
    """The keys that let a user reach what the chart does not model, each in its place (issue 17)."""
    hatches = {
        "runtimeClassName": "nvidia",
        "env": [{"name": "NCCL_DEBUG", "value": "WARN"}],
        "volumes": [{"name": "weights", "emptyDir": {}}],
        "volumeMounts": [{"name": "weights", "mountPath": "/weights"}],
        "initContainers": [{"name": "fetch", "image": "fetch:1.2.0"}],
        "sidecars": [{"name": "shipper", "image": "shipper:3.1.0"}],
    }
    group = json.loads(f"{{{L4_GROUP}}}") | hatches
    head = hatches | {"podAnnotations": {"a": "b"}, "podLabels": {"c": "d"}}
    extra_objects = [{"apiVersion": "v1", "kind": "ConfigMap"}, "{apiVersion: v1, kind: Secret}"]
    flags = [
        *("--set-json", f"workerGroups={json.dumps([group])}"),
        *("--set-json", f"head={json.dumps(head)}"),
        *("--set", "serve.service.type=LoadBalancer,serve.service.externalTrafficPolicy=Local"),
        *("--set", "serve.service.loadBalancerSourceRanges[0]=10.0.0.0/8"),
        *("--set", "httpRoute.timeouts.request=600s,httpRoute.timeouts.backendRequest=1m30s"),
        *("--set-json", 'httpRoute.extraRules=[{"matches":[{"path":{"value":"/admin"}}]}]'),
        *("--set", "dashboards.annotations.team=ml"),
        *("--set-json", f"extraObjects={json.dumps(extra_objects)}"),
    ]
    run_tool("helm", "template", "llm", CHART, *flags)


def test_floats_from_helm_set_are_accepted_and_reach_the_app_as_numbers(run_tool) -> None:
    """`--set` types integers but leaves `0.85` a string: the schema takes it, the app reads a number."""
    import yaml
    from rayvllm.config import AppConfig

    flags = [
        *(
            "--set",
            "app.models[0].name=m,app.models[0].engine.model=x,app.models[0].engine.max_model_len=4096",
        ),
        *("--set", "app.models[0].engine.gpu_memory_utilization=0.85,app.models[0].accelerator_type=L4"),
        *("--set", "modelOverrides.autoscaling.target_ongoing_requests=0.5,capacity.enabled=false"),
        *(
            "--set",
            "monitoring.prometheusRule.enabled=true,monitoring.prometheusRule.thresholds.kvCacheUsageRatio=0.9",
        ),
    ]
    result = run_tool("helm", "template", "llm", CHART, *flags)
    (service,) = [doc for doc in yaml.safe_load_all(result.stdout) if doc and doc["kind"] == "RayService"]
    args = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["args"]
    model = AppConfig.model_validate(args).models[0]
    assert model.engine.gpu_memory_utilization == 0.85
    assert model.autoscaling.target_ongoing_requests == 0.5
    assert "> 0.9" in result.stdout  # the KV cache alert's threshold
