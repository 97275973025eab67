"""`helm install --dry-run=client` for the defaults and each overlay: what a user runs first."""

from __future__ import annotations

from pathlib import Path

import pytest
from chart_support import CHART, NAMESPACE, RELEASE, RENDER_CASES, value_flags


@pytest.mark.parametrize("files", RENDER_CASES.values(), ids=RENDER_CASES.keys())
def test_helm_install_dry_run_succeeds(run_tool, files: list[Path]) -> None:
    result = run_tool(
        "helm", "install", RELEASE, CHART, "--namespace", NAMESPACE, "--dry-run=client", *value_flags(files)
    )
    assert "STATUS: pending-install" in result.stdout
    assert f"port-forward svc/{RELEASE}-rayvllm-serve-svc" in result.stdout
