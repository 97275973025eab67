"""Config -> `vllm serve` arguments, parsed by vLLM's own parser (no engine started)."""

from __future__ import annotations

import pytest
from rayvllm.config import ModelConfig
from rayvllm.serve.vllm_args import serve_argv, serve_namespace


def model(**engine: object) -> ModelConfig:
    return ModelConfig.model_validate(
        {"name": "org/m-1", "engine": {"model": "/models/m", "max_model_len": 2048, **engine}}
    )


def test_engine_fields_reach_vllm_namespace() -> None:
    args = serve_namespace(
        model(max_num_seqs=8, dtype="bfloat16", enforce_eager=True, enable_prefix_caching=False, seed=7)
    )
    assert args.model == "/models/m"
    assert args.served_model_name == ["org/m-1"]
    assert args.max_model_len == 2048
    assert args.max_num_seqs == 8
    assert args.dtype == "bfloat16"
    assert args.enforce_eager is True
    assert args.enable_prefix_caching is False
    assert args.seed == 7


def test_openai_frontend_options_reach_vllm_namespace() -> None:
    config = ModelConfig.model_validate(
        {
            "name": "m",
            "engine": {"model": "/m", "max_model_len": 64},
            "openai": {"enable_auto_tool_choice": True, "tool_call_parser": "hermes"},
        }
    )
    args = serve_namespace(config)
    assert args.enable_auto_tool_choice is True
    assert args.tool_call_parser == "hermes"


def test_extra_args_pass_through_and_unknown_ones_name_the_option() -> None:
    assert serve_namespace(model(extra_args={"max_num_batched_tokens": 1024})).max_num_batched_tokens == 1024
    with pytest.raises(ValueError, match="no-such-option"):
        serve_namespace(model(extra_args={"no_such_option": 1}))


def test_tensor_parallel_replica_uses_multiprocessing_executor() -> None:
    assert "--distributed-executor-backend" in serve_argv(model(tensor_parallel_size=2))
    assert "--distributed-executor-backend" not in serve_argv(model())


def test_lora_adapters_reach_vllm_namespace_with_their_parent_and_vllm_limits() -> None:
    adapters = [{"name": "m-sql", "source": "org/m-sql-lora"}, {"name": "m-chat", "source": "/cache/chat"}]
    config = ModelConfig.model_validate(
        {
            "name": "org/m-1",
            "engine": {"model": "/models/m", "max_model_len": 2048},
            "lora": {"adapters": adapters, "max_loras": 2, "max_lora_rank": 64},
        }
    )
    args = serve_namespace(config)
    assert args.enable_lora is True
    assert [(m.name, m.path, m.base_model_name) for m in args.lora_modules] == [
        ("m-sql", "org/m-sql-lora", "org/m-1"),
        ("m-chat", "/cache/chat", "org/m-1"),
    ]
    assert (args.max_loras, args.max_lora_rank, args.max_cpu_loras) == (2, 64, None)
    assert not serve_namespace(model()).enable_lora


def test_a_pooling_model_reaches_vllm_namespace_with_its_runner_and_conversion() -> None:
    args = serve_namespace(model(runner="pooling", convert="embed"))
    assert (args.runner, args.convert) == ("pooling", "embed")
    assert (serve_namespace(model()).runner, serve_namespace(model()).convert) == ("auto", "auto")
