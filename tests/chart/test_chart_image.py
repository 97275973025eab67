"""image/Dockerfile (it cannot be built on these machines: no container runtime) is linted and pinned to the
matrix, and the chart's default image is its base, Ray's ray-llm image."""

from __future__ import annotations

import re

import yaml
from chart_support import CHART, REPO

DOCKERFILE = REPO / "image" / "Dockerfile"


def pins(requirements: str) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_-]+)(?:\[[^\]]*\])?==([^\s#]+)", requirements, flags=re.MULTILINE)
    return {name.lower(): version for name, version in found}


def test_dockerfile_passes_hadolint(run_tool) -> None:
    run_tool("hadolint", DOCKERFILE)


def test_dockerfile_pins_the_gpu_matrix_and_runs_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    matrix = pins((REPO / "requirements" / "gpu.in").read_text())
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))
    assert args["RAY_VERSION"] == matrix["ray"]
    assert args["VLLM_VERSION"] == matrix["vllm"]
    assert args["BASE_IMAGE"].startswith(f"rayproject/ray-llm:{matrix['ray']}-")
    users = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"0", "root"}


def test_chart_default_image_is_the_dockerfiles_base_and_app_version_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    package = re.search(
        r'^version = "([^"]+)"', (REPO / "app" / "pyproject.toml").read_text(), flags=re.MULTILINE
    )
    assert package and chart["appVersion"] == package.group(1)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    default_image = f"{values['image']['repository']}:{values['image']['tag']}"
    # The chart mounts its package into Ray's published image, the one image/Dockerfile builds on.
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert base and default_image == base.group(1)
    assert values["appPackage"]["source"] == "chart"
    images = yaml.safe_load(chart["annotations"]["artifacthub.io/images"])
    assert images[0]["image"] == default_image
    assert values["rayVersion"] == pins((REPO / "requirements" / "gpu.in").read_text())["ray"]
