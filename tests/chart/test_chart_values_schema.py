"""values.schema.json rejects what the chart cannot use, with the schema's own message."""

from __future__ import annotations

import pytest
from chart_support import CHART

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
