"""The chart's serveConfigV2 and the app's config model cannot drift: the rendered application args load into
`rayvllm.config.AppConfig`, and the worker groups provide the Ray resources the app's replicas ask for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from chart_support import CHART, RENDER_CASES, app_args, rayservice, serve_config
from rayvllm.capacity import load_values
from rayvllm.config import AppConfig
from rayvllm.serve.builder import build_app
from rayvllm.serve.deployment import deployment_options


@pytest.mark.parametrize("files", RENDER_CASES.values(), ids=RENDER_CASES.keys())
def test_rendered_application_args_load_into_the_app_config(render, files: list[Path]) -> None:
    config = serve_config(render(files))
    (application,) = config["applications"]
    assert application["import_path"] == "rayvllm.serve.builder:build_app"
    assert application["route_prefix"] == "/"
    module, _, name = application["import_path"].partition(":")
    assert callable(build_app) and (module, name) == (build_app.__module__, build_app.__name__)
    app_config = AppConfig.model_validate(application["args"])
    # The args are `.Values.app` (values.yaml plus the overlays), nothing lost; the additions are the model
    # overrides and where the API keys' Secret is mounted.
    assert application["args"] == app_args(load_values(CHART, files))
    assert app_config.models


@pytest.mark.parametrize("files", RENDER_CASES.values(), ids=RENDER_CASES.keys())
def test_each_replica_asks_for_a_resource_that_its_worker_group_provides(render, files: list[Path]) -> None:
    objects = render(files)
    spec = rayservice(objects)["spec"]
    app_config = AppConfig.model_validate(serve_config(objects)["applications"][0]["args"])
    groups = spec["rayClusterConfig"]["workerGroupSpecs"]
    provided = {
        group["groupName"]: (
            json.loads(group["rayStartParams"]["resources"].strip("'")),
            int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]),
        )
        for group in groups
    }
    for model in app_config.models:
        options = deployment_options(model)
        wanted = set(options["ray_actor_options"]["resources"])
        matching = [name for name, (resources, _) in provided.items() if wanted <= set(resources)]
        assert matching, f"{model.name} asks for {wanted}; the groups provide {provided}"
        for name in matching:
            assert model.gpus_per_replica <= provided[name][1], (
                f"{model.name} needs more GPUs than {name} has"
            )


def test_head_runs_no_serve_replica(render) -> None:
    head = rayservice(render([]))["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"]["num-gpus"] == "0"


def test_values_app_keys_are_app_config_fields() -> None:
    """`.Values.app` uses the app's own names (snake_case, as vLLM and Ray Serve spell them)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["app"]) <= set(AppConfig.model_fields)
    AppConfig.model_validate(values["app"])


def test_the_local_runner_and_the_bench_serve_on_the_charts_default_path(render) -> None:
    """`rayvllm serve`, the benchmark's `rayvllm` server and the chart's defaults set the same Serve switches,
    so what docs/benchmarks.md measures as `rayvllm` is what `helm install` runs."""
    from rayvllm.bench.servers import ServerVariant
    from rayvllm.local.runner import serve_env

    spec = rayservice(render([]))["spec"]["rayClusterConfig"]
    containers = [spec["headGroupSpec"]["template"]["spec"]["containers"][0]]
    containers += [group["template"]["spec"]["containers"][0] for group in spec["workerGroupSpecs"]]
    # This machine's file limit holds the chart's connection limit (CI: 20,000); ports moved away from
    # another local cluster's are not switches.
    switches = {"RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_HAPROXY_MAXCONN", "RAY_SERVE_THROUGHPUT_OPTIMIZED"}
    switches |= {"RAY_worker_niceness", "RAY_SERVE_HAPROXY_RETRY_ON", "RAY_SERVE_HAPROXY_RETRIES"}
    local = {name: value for name, value in serve_env().items() if name in switches}
    for container in containers:
        rendered = {e["name"]: e["value"] for e in container["env"] if e["name"] in local}
        assert rendered == local, container["name"]
    bench = ServerVariant.parse("rayvllm").ray_env()
    assert {name: bench[name] for name in bench if name in local} == {
        name: value for name, value in local.items() if name in bench
    }
    assert set(local) - set(bench) == {"RAY_worker_niceness"}  # the local runner sets it for the bench
