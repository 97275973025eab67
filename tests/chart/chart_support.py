"""Paths, render cases and tool lookup shared by the chart tests (fixtures are in conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from rayvllm.capacity import merge_values
from repo_tools import CHART, REPO  # noqa: F401 (CHART: the chart tests take both from here)

RELEASE, NAMESPACE = "llm", "inference"
OVERLAYS = sorted((REPO / "values").glob("*.yaml"))
TEST_VALUES = Path(__file__).resolve().parent / "values"

# The renders every check runs on: the defaults, each shipped overlay, and every optional object switched on.
RENDER_CASES: dict[str, list[Path]] = {
    "defaults": [],
    **{f"values/{path.name}": [path] for path in OVERLAYS},
    "all-features": [TEST_VALUES / "all-features.yaml"],
    "api-keys": [TEST_VALUES / "api-keys.yaml"],
    "lora": [TEST_VALUES / "lora.yaml"],
    "embedding": [TEST_VALUES / "embedding.yaml"],
}


def value_flags(files: list[Path], sets: dict[str, str] | None = None) -> list[str]:
    flags = [arg for path in files for arg in ("-f", str(path))]
    for key, value in (sets or {}).items():
        flags += ["--set", f"{key}={value}"]
    return flags


def rayservice(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj["kind"] == "RayService"]
    return found


def serve_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(rayservice(objects)["spec"]["serveConfigV2"])


def app_args(values: dict[str, Any]) -> dict[str, Any]:
    """The application args that the chart renders from these values (templates/_serve.tpl): `.Values.app`,
    each model with `modelOverrides` merged over it, and `auth.api_keys_dir` where the API keys' Secret is
    mounted."""
    args = {**values["app"]}
    args["models"] = [merge_values(model, values.get("modelOverrides") or {}) for model in args["models"]]
    if values["apiKeys"]["existingSecret"]:
        args["auth"] = {**(args.get("auth") or {}), "api_keys_dir": values["apiKeys"]["mountPath"]}
    return args
