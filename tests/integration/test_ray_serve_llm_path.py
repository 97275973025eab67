"""The swappable engine path: the same AppConfig served by Ray Serve LLM's build_openai_app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from local_stack import Stack, start_stack, stop_stack, tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_serve_llm_stack(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = {**tiny_config(tiny_model_dir), "engine_path": "ray_serve_llm"}
    stack = start_stack(config, tmp_path_factory.mktemp("logs") / "ray-serve-llm.log")
    yield stack
    assert not stop_stack(stack), "processes left after stopping rayvllm serve"


def test_ray_serve_llm_path_serves_the_same_api(ray_serve_llm_stack: Stack) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=ray_serve_llm_stack.openai_url, api_key="unused", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == [ray_serve_llm_stack.model]
    stream = client.chat.completions.create(
        model=ray_serve_llm_stack.model,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        stream=True,
    )
    assert any(chunk.choices and chunk.choices[0].delta.content for chunk in stream)
