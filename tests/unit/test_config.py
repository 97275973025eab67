"""AppConfig validation: what the chart's values and a local --config may and may not say."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from rayvllm.config import AppConfig, ModelConfig

MINIMAL = {"models": [{"name": "m", "engine": {"model": "/models/m", "max_model_len": 4096}}]}


def test_minimal_config_gets_documented_defaults() -> None:
    config = AppConfig.model_validate(MINIMAL)
    model = config.models[0]
    assert model.engine.max_num_seqs == 256
    assert model.max_ongoing_requests > model.engine.max_num_seqs
    assert model.gpus_per_replica == 1


def test_every_field_is_described() -> None:
    def undescribed(model: type) -> list[str]:
        missing = []
        for name, info in model.model_fields.items():
            if not info.description:
                missing.append(f"{model.__name__}.{name}")
            annotation = info.annotation
            for candidate in (*getattr(annotation, "__args__", ()), annotation):
                if isinstance(candidate, type) and issubclass(candidate, ModelConfig.__mro__[1]):
                    missing += undescribed(candidate)
        return missing

    assert undescribed(AppConfig) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"unknown": 1}, "Extra inputs are not permitted"),
        ({"engine": {"model": "m"}}, "max_model_len"),
        ({"engine": {"model": "m", "max_model_len": 0}}, "greater than 0"),
        ({"engine": {"model": "m", "max_model_len": 8, "gpu_memory_utilization": 1.5}}, "less than or equal"),
        ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "min_replicas must not exceed"),
        ({"openai": {"enable_auto_tool_choice": True}}, "needs openai.tool_call_parser"),
        ({"name": "bad name"}, "should match pattern"),
        ({"lora": {"adapters": []}}, "at least 1 item"),
        ({"lora": {"adapters": [{"name": "a", "source": "/a"}], "max_lora_rank": 24}}, "max_lora_rank"),
        (
            {"lora": {"adapters": [{"name": "a", "source": "/a"}], "max_loras": 4, "max_cpu_loras": 2}},
            "max_cpu_loras must be at least lora.max_loras",
        ),
    ],
)
def test_bad_model_config_is_rejected_with_a_clear_message(change: dict, message: str) -> None:
    model = {**MINIMAL["models"][0], **change}
    with pytest.raises(ValidationError, match=message):
        AppConfig.model_validate({"models": [model]})


def test_several_models_behind_one_endpoint() -> None:
    two = MINIMAL["models"] + [{**MINIMAL["models"][0], "name": "other"}]
    assert len(AppConfig.model_validate({"models": two}).models) == 2


def test_the_retired_engine_path_is_refused_by_name() -> None:
    """`engine_path` (Ray Serve LLM's router) is gone: every model is served on the one path."""
    with pytest.raises(ValidationError, match=r"engine_path\n  Extra inputs are not permitted"):
        AppConfig.model_validate({**MINIMAL, "engine_path": "direct"})


def test_model_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="unique"):
        AppConfig.model_validate({"models": MINIMAL["models"] * 2})


def test_adapter_names_differ_from_every_model_name() -> None:
    adapters = {"adapters": [{"name": "m", "source": "org/m-sql-lora"}]}
    with pytest.raises(ValidationError, match=r"differ from every lora\.adapters\[\]\.name"):
        AppConfig.model_validate({"models": [{**MINIMAL["models"][0], "lora": adapters}]})
    adapters = {"adapters": [{"name": "m-sql", "source": "org/m-sql-lora"}]}
    lora = {"models": [{**MINIMAL["models"][0], "lora": adapters}]}
    assert AppConfig.model_validate(lora).models[0].served_names == ["m", "m-sql"]


def test_cpu_replica_asks_for_no_gpu() -> None:
    model = ModelConfig.model_validate({**MINIMAL["models"][0], "num_gpus": 0})
    assert model.gpus_per_replica == 0


def test_numbers_written_as_strings_are_read_as_numbers_and_still_bounded() -> None:
    """`helm --set engine.gpu_memory_utilization=0.85` passes "0.85"; the chart's schema lets it through."""
    engine = {"model": "/models/m", "max_model_len": "4096", "gpu_memory_utilization": "0.85"}
    config = AppConfig.model_validate({"models": [{"name": "m", "engine": engine}]})
    assert config.models[0].engine.gpu_memory_utilization == 0.85
    assert config.models[0].engine.max_model_len == 4096
    with pytest.raises(ValidationError, match="gpu_memory_utilization"):
        AppConfig.model_validate(
            {"models": [{"name": "m", "engine": {**engine, "gpu_memory_utilization": "1.5"}}]}
        )
