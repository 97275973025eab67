"""Paths, render cases and tool lookup shared by the chart tests (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "rayvllm"
BIN = REPO / "bin"
RELEASE, NAMESPACE = "llm", "inference"
OVERLAYS = sorted((REPO / "values").glob("*.yaml"))
TEST_VALUES = Path(__file__).resolve().parent / "values"

# The renders every check runs on: the defaults, each shipped overlay, and every optional object switched on.
RENDER_CASES: dict[str, list[Path]] = {
    "defaults": [],
    **{f"values/{path.name}": [path] for path in OVERLAYS},
    "all-features": [TEST_VALUES / "all-features.yaml"],
    "api-keys": [TEST_VALUES / "api-keys.yaml"],
}


def tool_path(name: str) -> str:
    """A tool from the repo's bin/ first, then from PATH."""
    local = BIN / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is missing: run `make setup-tools` (tools/go-tools.sh bin)")
    return found


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if (BIN / "helm-plugins" / "unittest").is_dir():
        env["HELM_PLUGINS"] = str(BIN / "helm-plugins")
    return env


def value_flags(files: list[Path], sets: dict[str, str] | None = None) -> list[str]:
    flags = [arg for path in files for arg in ("-f", str(path))]
    for key, value in (sets or {}).items():
        flags += ["--set", f"{key}={value}"]
    return flags


def rayservice(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj["kind"] == "RayService"]
    return found
