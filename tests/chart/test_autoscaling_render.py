"""One set of autoscaling settings, rendered both ways: per model into serveConfigV2 (and from there, through
`rayvllm.serve.deployment.deployment_options`, into Serve's autoscaling_config), per worker group into the
RayService's worker groups and autoscalerOptions. Profiles (values/profiles/*.yaml) layer on every
environment overlay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import CHART, NAMESPACE, OVERLAYS, RELEASE, REPO, rayservice
from rayvllm.capacity import load_values
from rayvllm.config import AppConfig
from rayvllm.serve.deployment import deployment_options

PROFILES = sorted((REPO / "values" / "profiles").glob("*.yaml"))
# Every environment overlay, each with every profile on top.
LAYERED = {
    f"{overlay.stem}+{profile.stem}": [overlay, profile] for overlay in OVERLAYS for profile in PROFILES
}
# Serve's autoscaling_config keys that AppConfig's `autoscaling` maps one-to-one.
SERVE_AUTOSCALING_KEYS = (
    "min_replicas",
    "max_replicas",
    "target_ongoing_requests",
    "upscale_delay_s",
    "downscale_delay_s",
)


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into `base`, maps key by key: what templates/_models.tpl does."""
    result = dict(base)
    for key, value in over.items():
        current = result.get(key)
        both_maps = isinstance(value, dict) and isinstance(current, dict)
        result[key] = merged(current, value) if both_maps else value  # type: ignore[arg-type]
    return result


def rendered_models(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    serve_config = yaml.safe_load(rayservice(objects)["spec"]["serveConfigV2"])
    return serve_config["applications"][0]["args"]["models"]


def test_there_is_a_latency_and_a_throughput_profile() -> None:
    assert [path.stem for path in PROFILES] == ["latency", "throughput"]


@pytest.mark.parametrize("files", LAYERED.values(), ids=LAYERED.keys())
def test_a_profile_on_an_overlay_keeps_the_overlay_model_and_sets_the_profile_settings(
    render, files: list[Path]
) -> None:
    values = load_values(CHART, files)
    overrides = values["modelOverrides"]
    assert overrides, f"{files[-1].name} sets no modelOverrides"
    expected = [merged(model, overrides) for model in values["app"]["models"]]
    assert rendered_models(render(files)) == expected


@pytest.mark.parametrize("files", LAYERED.values(), ids=LAYERED.keys())
def test_model_settings_reach_serve_autoscaling_config(render, files: list[Path]) -> None:
    for model in AppConfig.model_validate({"models": rendered_models(render(files))[:1]}).models:
        options = deployment_options(model)
        scaling = options["autoscaling_config"]
        for key in SERVE_AUTOSCALING_KEYS:
            assert scaling[key] == getattr(model.autoscaling, key), key
        assert options["max_ongoing_requests"] == model.max_ongoing_requests
        assert options["max_queued_requests"] == model.max_queued_requests


@pytest.mark.parametrize("files", LAYERED.values(), ids=LAYERED.keys())
def test_worker_group_bounds_and_idle_timeouts_reach_the_ray_cluster(render, files: list[Path]) -> None:
    values = load_values(CHART, files)
    cluster = rayservice(render(files))["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    options = cluster["autoscalerOptions"]
    assert options["idleTimeoutSeconds"] == values["autoscaler"]["idleTimeoutSeconds"]
    assert options["upscalingMode"] == values["autoscaler"]["upscalingMode"]
    for group, spec in zip(values["workerGroups"], cluster["workerGroupSpecs"], strict=True):
        assert (spec["minReplicas"], spec["maxReplicas"]) == (group["minReplicas"], group["maxReplicas"])
        assert spec.get("idleTimeoutSeconds") == group.get("idleTimeoutSeconds")


def test_a_zero_override_wins_over_the_model_value(render) -> None:
    (model,) = rendered_models(render([], {"modelOverrides.autoscaling.upscale_delay_s": "0"}))
    assert model["autoscaling"]["upscale_delay_s"] == 0
    assert model["autoscaling"]["target_ongoing_requests"] == 64  # values.yaml's, untouched


def test_a_group_idle_timeout_renders_on_its_worker_group(render, tmp_path: Path) -> None:
    # A list replaces the chart's whole: the default group, with its own idle timeout.
    (group,) = load_values(CHART, [])["workerGroups"]
    values = tmp_path / "idle.yaml"
    values.write_text(yaml.safe_dump({"workerGroups": [{**group, "idleTimeoutSeconds": 120}]}))
    cluster = rayservice(render([values]))["spec"]["rayClusterConfig"]
    assert cluster["workerGroupSpecs"][0]["idleTimeoutSeconds"] == 120


# A key that is no scaling setting fails the schema; an override that breaks a model's replica bounds fails
# the chart's validation, which sees the merged models.
BAD_OVERRIDES = {
    "modelOverrides.engine.model=other": "modelOverrides",
    "modelOverrides.autoscaling.min_replicas=5": (
        "app.models[0] (qwen2.5-3b-instruct): autoscaling.min_replicas 5 is greater than "
        "autoscaling.max_replicas 2"
    ),
}


@pytest.mark.parametrize(("setting", "message"), BAD_OVERRIDES.items(), ids=BAD_OVERRIDES.keys())
def test_a_bad_model_override_fails_the_render_naming_it(run_tool, setting: str, message: str) -> None:
    result = run_tool(
        "helm", "template", RELEASE, CHART, "--namespace", NAMESPACE, "--set", setting, check=False
    )
    assert result.returncode != 0
    assert message in result.stderr
