"""Fixtures of the chart tests: the repo's Go-built tools (bin/, `make setup-tools`) and chart renders."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import CHART, NAMESPACE, RELEASE, REPO, value_flags
from repo_tools import tool_env, tool_path

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def run_tool() -> Run:
    """run_tool("helm", "lint", ...): a CompletedProcess; a non-zero exit fails unless check=False."""
    env = tool_env()

    def run(name: str, *args: str | Path, check: bool = True, stdin: str | None = None) -> Any:
        result = subprocess.run(
            [tool_path(name), *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            input=stdin,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{name} {' '.join(map(str, args))} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    return run


@pytest.fixture(scope="session")
def render_text(run_tool: Run) -> Callable[..., str]:
    """The manifest `helm template` renders for these values files, cached per case."""
    cache: dict[tuple[str, ...], str] = {}

    def render(files: list[Path], sets: dict[str, str] | None = None) -> str:
        flags = value_flags(files, sets)
        if tuple(flags) not in cache:
            result = run_tool("helm", "template", RELEASE, CHART, "--namespace", NAMESPACE, *flags)
            cache[tuple(flags)] = result.stdout
        return cache[tuple(flags)]

    return render


@pytest.fixture(scope="session")
def render(render_text: Callable[..., str]) -> Callable[..., list[dict[str, Any]]]:
    """The rendered objects for these values files."""

    def objects(files: list[Path], sets: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return [doc for doc in yaml.safe_load_all(render_text(files, sets)) if doc]

    return objects


@pytest.fixture(scope="session")
def schema_location() -> str:
    """kubeconform's -schema-location for the Kubernetes and CRD schemas built from the Go module cache."""
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "schemas.py")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"tools/schemas.py failed:\n{result.stderr}")
    return result.stdout.strip()
