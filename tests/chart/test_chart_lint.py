"""`helm lint --strict` and helm-unittest's suites (charts/rayvllm/tests, `--strict`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from chart_support import CHART, RENDER_CASES, value_flags


@pytest.mark.parametrize("files", RENDER_CASES.values(), ids=RENDER_CASES.keys())
def test_helm_lint_is_clean(run_tool, files: list[Path]) -> None:
    result = run_tool("helm", "lint", "--strict", CHART, *value_flags(files))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


SUITES = sorted((CHART / "tests").glob("*_test.yaml"))


@pytest.mark.parametrize("suite", SUITES, ids=[suite.name for suite in SUITES])
def test_helm_unittest_suite_passes_in_strict_mode(run_tool, suite: Path) -> None:
    result = run_tool("helm", "unittest", "--strict", "-f", f"tests/{suite.name}", CHART, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Test Suites: 1 passed, 1 total" in result.stdout


def test_every_template_has_its_helm_unittest_suite() -> None:
    """One suite per template (ingress-nginx's layout): `templates/a/b-c.yaml` -> `tests/a_b_c_test.yaml`."""
    templates = [
        path.relative_to(CHART / "templates")
        for path in (CHART / "templates").rglob("*")
        if path.suffix in {".yaml", ".txt"}
    ]
    expected = {
        str(path.with_suffix("")).replace("/", "_").replace("-", "_").lower() + "_test.yaml"
        for path in templates
    }
    assert expected <= {suite.name for suite in SUITES}
