"""Generated chart files are current, and every value is documented and schema-typed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_support import CHART, OVERLAYS, REPO, TEST_VALUES
from repo_tools import tool_env


def test_generated_readme_and_schema_are_current() -> None:
    """charts/rayvllm/README.md (helm-docs, strict) and the `app` part of values.schema.json."""
    result = subprocess.run(
        [str(REPO / "tools" / "chart-docs.sh"), "--check"],
        capture_output=True,
        text=True,
        env=tool_env(),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_value_row_of_the_readme_has_a_description() -> None:
    rows = [line for line in (CHART / "README.md").read_text().splitlines() if line.startswith("| ")]
    values = [row.split(" | ") for row in rows[1:] if not row.startswith("|-")]
    assert len(values) > 50
    undocumented = [cells[0] for cells in values if not cells[-1].strip(" |")]
    assert not undocumented


def test_every_top_level_value_is_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    "path", [CHART / "values.yaml", *OVERLAYS], ids=["values.yaml", *[p.name for p in OVERLAYS]]
)
def test_values_files_name_the_schema_for_editors(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    target = (path.parent / first.split("$schema=", 1)[1]).resolve()
    assert target == (CHART / "values.schema.json").resolve()


def test_test_values_are_not_left_as_defaults() -> None:
    """Test renders use real settings, never `latest` tags (the anti-pattern of shipping test defaults)."""
    for path in [*OVERLAYS, *TEST_VALUES.glob("*.yaml"), CHART / "values.yaml"]:
        assert ":latest" not in path.read_text()
