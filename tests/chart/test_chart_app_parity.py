"""The rules that both the chart (values.schema.json and templates/_validate.tpl) and the app
(`rayvllm.config.AppConfig`) enforce agree: over a table of values, `helm template` fails exactly when
AppConfig rejects the application args that the chart renders from the same values, and each side's message
names the value. Rules that need the chart's context (worker groups, the capacity check, accelerator_type)
have no app side; of those, the GPUs per replica are the app's own number (`ModelConfig.gpus_per_replica`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import pydantic
import pytest
import yaml
from chart_support import CHART, NAMESPACE, RELEASE, app_args, serve_config, value_flags
from rayvllm.capacity import load_values, merge_values
from rayvllm.config import AppConfig

DEFAULTS = load_values(CHART, [])
QWEN = DEFAULTS["app"]["models"][0]
NAME = QWEN["name"]
GROUP = DEFAULTS["workerGroups"][0]


class Case(NamedTuple):
    values: dict[str, Any]
    chart: str | None = None  # what the chart's failure says, None when it renders
    app: str | None = None  # what AppConfig's error says, None when it accepts the args


def models(*models: dict[str, Any]) -> dict[str, Any]:
    return {"app": {"models": list(models)}}


def qwen_engine(**engine: Any) -> dict[str, Any]:
    return merge_values(QWEN, {"engine": engine})


QWEN_B = {**QWEN, "name": "qwen-b"}
LORA = {"adapters": [{"name": "qwen-sql", "source": "org/qwen-sql-lora"}]}
BOUNDS = "autoscaling.min_replicas must not exceed autoscaling.max_replicas"


def bounds_error(low: int, high: int) -> str:
    """The chart's message for the first model's replica bounds."""
    return (
        f"app.models[0] ({NAME}): autoscaling.min_replicas {low} is greater than "
        f"autoscaling.max_replicas {high}"
    )


CASES = {
    "the defaults": Case({}),
    "min_replicas equal to max_replicas": Case(
        models({**QWEN, "autoscaling": {"min_replicas": 2, "max_replicas": 2}})
    ),
    "min_replicas 0 under the default max_replicas": Case(
        models({**QWEN, "autoscaling": {"min_replicas": 0}})
    ),
    "modelOverrides that raise both bounds": Case(
        {"modelOverrides": {"autoscaling": {"min_replicas": 3, "max_replicas": 3}}}
    ),
    "API keys, input limits and the failover gateway": Case(
        {
            "apiKeys": {"existingSecret": "llm-api-keys"},
            "app": {"limits": {"max_tokens_cap": 1024}, "failover": {"enabled": True}},
        }
    ),
    "no tool choice and no tool-call parser": Case(models({**QWEN, "openai": {}})),
    "two models that share a name": Case(
        models(QWEN, QWEN),
        chart=f"app.models[1] ({NAME}): the name is used twice",
        app="models[].name must be unique",
    ),
    "two models": Case(models(QWEN, QWEN_B)),
    "the retired engine_path": Case(
        {"app": {"engine_path": "ray_serve_llm"}},
        chart="at '/app': additional properties 'engine_path' not allowed",
        app="engine_path\n  Extra inputs are not permitted",
    ),
    "no model": Case(
        models(), chart="at '/app/models': minItems", app="models\n  List should have at least 1"
    ),
    "min_replicas above max_replicas": Case(
        models({**QWEN, "autoscaling": {"min_replicas": 3, "max_replicas": 2}}),
        chart=bounds_error(3, 2),
        app=BOUNDS,
    ),
    "min_replicas above the default max_replicas": Case(
        models({**QWEN, "autoscaling": {"min_replicas": 2}}),
        chart=bounds_error(2, 1),
        app=BOUNDS,
    ),
    "max_replicas 0": Case(
        models({**QWEN, "autoscaling": {"min_replicas": 0, "max_replicas": 0}}),
        chart="at '/app/models/0/autoscaling/max_replicas'",
        app="models.0.autoscaling.max_replicas",
    ),
    "modelOverrides that put min_replicas above max_replicas": Case(
        {"modelOverrides": {"autoscaling": {"min_replicas": 5}}},
        chart=bounds_error(5, 2),
        app=BOUNDS,
    ),
    "tool choice without a tool-call parser": Case(
        models({**QWEN, "openai": {"enable_auto_tool_choice": True}}),
        chart=f"app.models[0] ({NAME}): openai.enable_auto_tool_choice is true, but openai.tool_call_parser",
        app="openai.enable_auto_tool_choice needs openai.tool_call_parser",
    ),
    "no max_model_len": Case(
        models({**QWEN, "engine": {"model": QWEN["engine"]["model"]}}),
        chart=f"app.models[0] ({NAME}): engine.max_model_len is not set",
        app="models.0.engine.max_model_len\n  Field required",
    ),
    "max_model_len 0": Case(
        models(qwen_engine(max_model_len=0)),
        chart="at '/app/models/0/engine/max_model_len'",
        app="models.0.engine.max_model_len\n  Input should be greater than 0",
    ),
    "gpu_memory_utilization above 1": Case(
        models(qwen_engine(gpu_memory_utilization=1.5)),
        chart="at '/app/models/0/engine/gpu_memory_utilization'",
        app="models.0.engine.gpu_memory_utilization\n  Input should be less than or equal to 1",
    ),
    "an unknown engine key": Case(
        models(qwen_engine(max_model_length=8192)),
        chart="at '/app/models/0/engine': additional properties 'max_model_length' not allowed",
        app="models.0.engine.max_model_length\n  Extra inputs are not permitted",
    ),
    "an adapter named as its model": Case(
        models({**QWEN, "lora": {"adapters": [{"name": NAME, "source": "org/lora"}]}}),
        chart=f"app.models[0] ({NAME}): lora.adapters[0] ({NAME}): the name is used twice",
        app="models[].name must be unique",
    ),
    "an adapter named as another model": Case(
        models(
            {**QWEN, "lora": {"adapters": [{"name": "qwen-b", "source": "org/lora"}]}},
            QWEN_B,
        ),
        chart="app.models[1] (qwen-b): the name is used twice",
        app="models[].name must be unique",
    ),
    "a CPU adapter cache smaller than the batch": Case(
        models({**QWEN, "lora": {**LORA, "max_loras": 4, "max_cpu_loras": 2}}),
        chart=f"app.models[0] ({NAME}): lora.max_cpu_loras 2 is less than lora.max_loras 4",
        app="lora.max_cpu_loras must be at least lora.max_loras",
    ),
    "an adapter rank vLLM does not serve": Case(
        models({**QWEN, "lora": {**LORA, "max_lora_rank": 24}}),
        chart="at '/app/models/0/lora/max_lora_rank'",
        app="models.0.lora.max_lora_rank",
    ),
    "an adapter": Case(models({**QWEN, "lora": LORA})),
    "a model name that clients cannot send": Case(
        models({**QWEN, "name": "-qwen"}),
        chart="at '/app/models/0/name'",
        app="models.0.name\n  String should match pattern",
    ),
}


def helm_template(run_tool, tmp_path: Path, values: dict[str, Any]) -> Any:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return run_tool(
        "helm", "template", RELEASE, CHART, "--namespace", NAMESPACE, *value_flags([path]), check=False
    )


def app_error(values: dict[str, Any]) -> str | None:
    try:
        AppConfig.model_validate(app_args(merge_values(DEFAULTS, values)))
    except pydantic.ValidationError as error:
        return str(error)
    return None


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_chart_fails_exactly_when_the_app_config_does(run_tool, tmp_path: Path, case: Case) -> None:
    result = helm_template(run_tool, tmp_path, case.values)
    error = app_error(case.values)
    assert (result.returncode != 0, error is not None) == (case.chart is not None, case.app is not None)
    if case.chart is None:
        objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        # The app side of the table checks what the chart really renders.
        assert serve_config(objects)["applications"][0]["args"] == app_args(
            merge_values(DEFAULTS, case.values)
        )
        return
    assert case.chart in result.stderr, result.stderr
    assert case.app in error, error


def test_every_app_rule_that_the_chart_repeats_has_a_failing_case() -> None:
    """Each cross-field validator of AppConfig (values.schema.json cannot carry them) has a case."""
    messages = {case.app for case in CASES.values() if case.app}
    assert {
        "models[].name must be unique",
        BOUNDS,
        "openai.enable_auto_tool_choice needs openai.tool_call_parser",
        "lora.max_cpu_loras must be at least lora.max_loras",
    } <= messages


# GPUs per replica: (engine.tensor_parallel_size, num_gpus, the worker group's nvidia.com/gpu).
GPU_CASES = {
    "one GPU, one per replica": (1, None, 1),
    "tensor_parallel_size 2 on a one-GPU group": (2, None, 1),
    "tensor_parallel_size 2 on a two-GPU group": (2, None, 2),
    "num_gpus 2 on a one-GPU group": (1, 2, 1),
    "num_gpus 2 on a two-GPU group": (1, 2, 2),
}


@pytest.mark.parametrize("tp, num_gpus, group_gpus", GPU_CASES.values(), ids=GPU_CASES.keys())
def test_the_chart_counts_gpus_per_replica_as_the_app_does(
    run_tool, tmp_path: Path, tp: int, num_gpus: int | None, group_gpus: int
) -> None:
    model = merge_values(QWEN, {"engine": {"tensor_parallel_size": tp}})
    if num_gpus is not None:
        model["num_gpus"] = num_gpus
    group = merge_values(GROUP, {"resources": {"limits": {"nvidia.com/gpu": group_gpus}}})
    values = {**models(model), "workerGroups": [group]}
    (app_model,) = AppConfig.model_validate(app_args(merge_values(DEFAULTS, values))).models
    result = helm_template(run_tool, tmp_path, values)
    needs = app_model.gpus_per_replica
    assert (result.returncode != 0) == (needs > group_gpus), result.stderr
    if needs > group_gpus:
        setting = f"num_gpus {num_gpus}" if num_gpus is not None else f"engine.tensor_parallel_size {tp}"
        assert f"{setting} needs {needs} GPUs per replica, but workerGroups[0] (l4) has nvidia.com/gpu 1" in (
            result.stderr
        )
