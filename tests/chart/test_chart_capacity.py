"""The capacity check, both sides: `rayvllm capacity` (app/src/rayvllm/capacity.py) and the chart's
render-time check (templates/_capacity.tpl) give the same numbers, pass the shipped overlays and fail what
cannot fit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from chart_support import CHART, OVERLAYS, value_flags
from rayvllm import capacity
from rayvllm.cli import main as rayvllm_main
from rayvllm.config import ModelSizing

# Shapes from the models' config.json (the fields the check reads).
LLAMA_3_1_8B = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
QWEN_2_5_3B = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_attention_heads": 16,
    "num_hidden_layers": 36,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}
LLAMA_8B_SIZING = {
    "parameters": 8.03e9,
    "weight_bytes_per_param": 2,
    "num_layers": 32,
    "num_kv_heads": 8,
    "head_dim": 128,
    "kv_cache_bytes_per_value": 2,
}


def chart_values() -> dict:
    return capacity.load_yaml((CHART / "values.yaml").read_text())


def test_parameters_and_shapes_come_from_config_json() -> None:
    sizing = capacity.sizing_from_hf_config(LLAMA_3_1_8B)
    assert sizing.parameters == 8_030_261_248  # Llama-3.1-8B's published count
    assert (sizing.num_layers, sizing.num_kv_heads, sizing.head_dim) == (32, 8, 128)
    assert (sizing.weight_bytes_per_param, sizing.kv_cache_bytes_per_value) == (2, 2)


def test_fp8_keeps_embeddings_in_bf16_and_halves_the_kv_cache() -> None:
    sizing = capacity.sizing_from_hf_config(LLAMA_3_1_8B, quantization="fp8", kv_cache_dtype="fp8")
    assert sizing.weight_bytes_per_param == pytest.approx(1.1309, abs=1e-4)
    assert sizing.kv_cache_bytes_per_value == 1


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[path.name for path in OVERLAYS])
def test_overlay_sizing_hints_match_what_config_json_gives(overlay: Path) -> None:
    """The hints in the shipped overlays are what `rayvllm capacity` prints for the model's config.json."""
    model = capacity.load_values(CHART, [overlay])["app"]["models"][0]
    engine = model["engine"]
    derived = capacity.sizing_from_hf_config(
        LLAMA_3_1_8B,
        quantization=engine.get("quantization"),
        kv_cache_dtype=engine.get("kv_cache_dtype", "auto"),
    )
    hints = ModelSizing.model_validate(model["sizing"])
    assert hints.parameters == pytest.approx(derived.parameters, rel=0.001)
    assert hints.weight_bytes_per_param == pytest.approx(derived.weight_bytes_per_param, rel=0.001)
    assert hints.model_dump(exclude={"parameters", "weight_bytes_per_param"}) == derived.model_dump(
        exclude={"parameters", "weight_bytes_per_param"}
    )


def test_default_sizing_hints_match_qwen_config_json() -> None:
    hints = ModelSizing.model_validate(chart_values()["app"]["models"][0]["sizing"])
    derived = capacity.sizing_from_hf_config(QWEN_2_5_3B)
    assert hints.parameters == pytest.approx(derived.parameters, rel=0.005)  # plus Qwen's q/k/v biases
    assert hints.model_dump(exclude={"parameters"}) == derived.model_dump(exclude={"parameters"})


def test_gpu_table_and_overhead_are_the_charts() -> None:
    values = chart_values()["capacity"]
    assert values["gpuMemoryMiB"] == capacity.GPU_MEMORY_MIB
    assert values["overheadMiB"] == capacity.DEFAULT_OVERHEAD_MIB


def test_estimate_shards_weights_and_kv_heads_over_tensor_parallel_gpus() -> None:
    sizing = ModelSizing.model_validate(LLAMA_8B_SIZING)
    one = capacity.estimate(sizing, max_model_len=8192, gpu_memory_mib=81920, tensor_parallel_size=1)
    two = capacity.estimate(sizing, max_model_len=8192, gpu_memory_mib=81920, tensor_parallel_size=2)
    assert two.weights == one.weights / 2 and two.kv_per_token == one.kv_per_token / 2
    assert one.kv_per_token == 2 * 32 * 8 * 128 * 2
    # Fewer KV heads than GPUs: each GPU still holds one.
    sixteen = capacity.estimate(sizing, max_model_len=8192, gpu_memory_mib=81920, tensor_parallel_size=16)
    assert sixteen.kv_per_token == 2 * 32 * 1 * 128 * 2


def write_config(tmp_path: Path, config: dict) -> Path:
    model_dir = tmp_path / "Llama-3.1-8B-Instruct"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(config))
    return model_dir


def test_cli_says_fits_from_a_model_directory(tmp_path: Path, capsys) -> None:
    model_dir = write_config(tmp_path, LLAMA_3_1_8B)
    status = rayvllm_main(["capacity", str(model_dir), "--gpu", "A100-80G", "--max-model-len", "131072"])
    out = capsys.readouterr().out
    assert status == 0
    assert "Llama-3.1-8B-Instruct: fits on A100-80G (81920 MiB)" in out
    assert "parameters: 8.03026e+09" in out and "num_kv_heads: 8" in out


def test_cli_says_does_not_fit_and_how_long_a_context_would(tmp_path: Path, capsys) -> None:
    model_dir = write_config(tmp_path, LLAMA_3_1_8B)
    status = rayvllm_main(
        ["capacity", str(model_dir / "config.json"), "--gpu", "L4", "--max-model-len", "131072"]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert "DOES NOT FIT on L4" in out
    assert re.search(r"max_model_len that fits: \d+", out)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[path.name for path in OVERLAYS])
def test_cli_passes_the_shipped_overlays(overlay: Path, capsys) -> None:
    assert rayvllm_main(["capacity", "--chart", str(CHART), "--values", str(overlay)]) == 0
    assert "fits on" in capsys.readouterr().out


LLAMA_70B_SIZING = {
    "parameters": 70.6e9,
    "weight_bytes_per_param": 2,
    "num_layers": 80,
    "num_kv_heads": 8,
    "head_dim": 128,
    "kv_cache_bytes_per_value": 2,
}
LLAMA_70B_AWQ_SIZING = {**LLAMA_70B_SIZING, "weight_bytes_per_param": 0.56}
# One KV head (multi-query attention): sharding splits the weights but not the KV cache.
MQA_7B_SIZING = {
    "parameters": 7e9,
    "weight_bytes_per_param": 2,
    "num_layers": 32,
    "num_kv_heads": 1,
    "head_dim": 64,
    "kv_cache_bytes_per_value": 2,
}


def gpu_advice(sizing: dict, max_model_len: int, tp: int = 1, gpu: str = "L4") -> str:
    return capacity.advice(
        ModelSizing.model_validate(sizing),
        max_model_len=max_model_len,
        gpu=gpu,
        gpu_table=capacity.GPU_MEMORY_MIB,
        tensor_parallel_size=tp,
    )


def test_advice_names_a_shorter_context_while_the_weights_fit() -> None:
    assert gpu_advice(LLAMA_8B_SIZING, 131072) == (
        "Lower engine.max_model_len to at most 26932, use engine.kv_cache_dtype fp8, quantize the weights, "
        "or shard it with engine.tensor_parallel_size 2 and 2 GPUs per worker (nvidia.com/gpu: 2)."
    )


def test_advice_leaves_out_an_fp8_kv_cache_that_is_already_set() -> None:
    fp8 = {**LLAMA_8B_SIZING, "kv_cache_bytes_per_value": 1}
    assert "kv_cache_dtype" not in gpu_advice(fp8, 400_000)


def test_advice_shards_weights_that_alone_do_not_fit_instead_of_a_zero_context() -> None:
    """Issue 17: a 70B model on an L4 was told "Lower engine.max_model_len to at most 0"."""
    text = gpu_advice(LLAMA_70B_AWQ_SIZING, 8192)
    assert "at most 0" not in text
    assert text == (
        "Its weights and overhead alone (39752 MiB per GPU) leave no room for the KV cache, so a shorter "
        "engine.max_model_len cannot help: shard it with engine.tensor_parallel_size 4 and 4 GPUs per "
        "worker (nvidia.com/gpu: 4), or quantize the weights."
    )


def test_advice_tries_only_more_gpus_than_the_model_has() -> None:
    assert "tensor_parallel_size 8 and 8 GPUs" in gpu_advice(LLAMA_70B_SIZING, 8192, tp=4)


def test_advice_gives_the_context_that_the_largest_sharding_holds() -> None:
    assert gpu_advice(LLAMA_70B_SIZING, 131072).endswith(
        "engine.tensor_parallel_size 8 with 8 GPUs per worker (nvidia.com/gpu: 8) fits it with "
        "engine.max_model_len at most 47366; or quantize the weights."
    )


def test_advice_says_when_no_sharding_fits_this_gpu_type() -> None:
    huge = {**LLAMA_70B_SIZING, "parameters": 405e9, "num_layers": 126}
    assert gpu_advice(huge, 8192).endswith(
        "no engine.tensor_parallel_size up to 8 fits it on L4; quantize the weights, or use a GPU type with "
        "more memory."
    )


def test_advice_names_the_gpu_types_where_the_model_fits_as_set() -> None:
    assert gpu_advice(MQA_7B_SIZING, 3_000_000) == (
        "Lower engine.max_model_len to at most 682388, use engine.kv_cache_dtype fp8 or quantize the "
        "weights: no engine.tensor_parallel_size up to 8 fits it on L4 (it fits on A100-80G, H100, H200 "
        "or L40S as set)."
    )


QWEN_3B_SIZING = chart_values()["app"]["models"][0]["sizing"]
# Both sides of the boundary: (sizing, max_model_len, GPUs per replica, GPU type of the worker group).
CASES = {
    "8B bf16 at 128k does not fit an L4": (LLAMA_8B_SIZING, 131072, 1, "L4"),
    "8B bf16 at 16k fits an L4": (LLAMA_8B_SIZING, 16384, 1, "L4"),
    "8B bf16 at 128k fits two L4s": (LLAMA_8B_SIZING, 131072, 2, "L4"),
    "8B fp8 with an fp8 KV cache at 128k fits an L4": (
        {**LLAMA_8B_SIZING, "weight_bytes_per_param": 1.1309, "kv_cache_bytes_per_value": 1},
        131072,
        1,
        "L4",
    ),
    "70B AWQ does not fit an L4": (LLAMA_70B_AWQ_SIZING, 8192, 1, "L4"),
    "70B AWQ fits four L4s": (LLAMA_70B_AWQ_SIZING, 8192, 4, "L4"),
    "70B bf16 at 128k does not fit even eight L4s": (LLAMA_70B_SIZING, 131072, 1, "L4"),
    "405B does not fit eight L4s": (
        {**LLAMA_70B_SIZING, "parameters": 405e9, "num_layers": 126},
        8192,
        1,
        "L4",
    ),
    "7B MQA at 3M tokens fits no number of L4s": (MQA_7B_SIZING, 3_000_000, 1, "L4"),
    "8B bf16 at 128k fits an A100-80G": (LLAMA_8B_SIZING, 131072, 1, "A100-80G"),
    "8B bf16 at 128k fits an A100-40G": (LLAMA_8B_SIZING, 131072, 1, "A100-40G"),
    "8B bf16 at 64k fits an L40S": (LLAMA_8B_SIZING, 65536, 1, "L40S"),
    "8B bf16 at 32k does not fit a T4": (LLAMA_8B_SIZING, 32768, 1, "T4"),
    "3B bf16 at 32k fits a T4": (QWEN_3B_SIZING, 32768, 1, "T4"),
    "3B bf16 at 32k fits an A10G": (QWEN_3B_SIZING, 32768, 1, "A10G"),
    "70B bf16 at 32k does not fit two H100s": (LLAMA_70B_SIZING, 32768, 2, "H100"),
    "70B bf16 at 32k fits four H100s": (LLAMA_70B_SIZING, 32768, 4, "H100"),
    "70B bf16 at 8k does not fit an H200": (LLAMA_70B_SIZING, 8192, 1, "H200"),
    "70B bf16 at 8k fits two H200s": (LLAMA_70B_SIZING, 8192, 2, "H200"),
}
DOES_NOT_FIT = re.compile(r"does not fit|fits no")  # how a case's name gives its verdict
# `rayvllm capacity`'s report (capacity.report), in MiB.
CLI_REPORT = re.compile(
    r": (fits|DOES NOT FIT) on .*\n  budget +(\d+) MiB\n  weights +(\d+) MiB\n  KV cache +(\d+) MiB.*\n"
    r"  overhead +(\d+) MiB\n  max_model_len that fits: (\d+); KV room for ([\d.]+) sequences"
)


def test_the_cases_cover_every_gpu_type_and_both_verdicts() -> None:
    assert {gpu for *_, gpu in CASES.values()} == set(capacity.GPU_MEMORY_MIB)
    assert {bool(DOES_NOT_FIT.search(name)) for name in CASES} == {True, False}


@pytest.mark.parametrize("sizing, max_model_len, gpus, gpu", CASES.values(), ids=CASES.keys())
def test_chart_and_cli_agree(
    request, tmp_path: Path, run_tool, capsys, sizing: dict, max_model_len: int, gpus: int, gpu: str
) -> None:
    """The same verdict and numbers from `helm install`, `rayvllm capacity --values` and capacity.estimate,
    and when the model does not fit, the same advice word for word."""
    model = {
        "name": "m",
        "engine": {"model": "m", "max_model_len": max_model_len, "tensor_parallel_size": gpus},
        "accelerator_type": gpu,
        "sizing": sizing,
    }
    values = tmp_path / "values.yaml"
    group = {**chart_values()["workerGroups"][0], "acceleratorType": gpu}
    group["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    values.write_text(yaml.safe_dump({"app": {"models": [model]}, "workerGroups": [group]}))

    expected = capacity.estimate(
        ModelSizing.model_validate(sizing),
        max_model_len=max_model_len,
        gpu_memory_mib=capacity.GPU_MEMORY_MIB[gpu],
        gpu_memory_utilization=capacity.DEFAULT_GPU_MEMORY_UTILIZATION,
        tensor_parallel_size=gpus,
    )
    assert expected.fits == (not DOES_NOT_FIT.search(request.node.callspec.id)), "the name says otherwise"
    result = run_tool(
        "helm", "install", "llm", CHART, "--dry-run=client", *value_flags([values]), check=False
    )
    cli_status = rayvllm_main(["capacity", "--chart", str(CHART), "--values", str(values)])
    cli_out = capsys.readouterr().out
    cli = CLI_REPORT.search(cli_out)
    assert cli, cli_out
    assert (result.returncode == 0, cli.group(1) == "fits") == (expected.fits,) * 2, result.stderr
    assert cli_status == (0 if expected.fits else 1)
    if expected.fits:
        notes = re.search(
            r"per GPU: weights (\d+) MiB \+ KV cache (\d+) MiB \+ overhead (\d+) MiB of (\d+) MiB; "
            r"KV room for ([\d.]+) full-length sequences",
            result.stdout,
        )
        assert notes, result.stdout
        weights, kv_cache, overhead, budget = (int(x) for x in notes.groups()[:4])
        assert float(notes.group(5)) == pytest.approx(round(expected.sequences, 1)) == float(cli.group(7))
    else:
        failure = re.search(
            rf"does not fit one {gpu}: it needs (\d+) MiB per GPU \(weights (\d+) \+ KV cache (\d+) for "
            r"engine.max_model_len \d+ \+ overhead (\d+)\), but .* gives (\d+) MiB. ",
            result.stderr,
        )
        assert failure, result.stderr
        need, weights, kv_cache, overhead, budget = (int(x) for x in failure.groups())
        assert need == round(expected.need / capacity.MIB)
        advice = gpu_advice(sizing, max_model_len, gpus, gpu)
        assert f"MiB. {advice}\n" in result.stderr, result.stderr
        assert f"\n  {advice}\n" in cli_out
    assert int(cli.group(6)) == expected.longest_fitting_len
    mib = capacity.MIB
    assert (weights, kv_cache, overhead, budget) == (
        round(expected.weights / mib),
        round(expected.kv_cache / mib),
        round(expected.overhead / mib),
        round(expected.budget / mib),
    )
    assert tuple(int(cli.group(i)) for i in (3, 4, 5, 2)) == (weights, kv_cache, overhead, budget)
