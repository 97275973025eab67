"""An embedding model on the default path: the tiny random Llama served by vLLM's pooling runner
(`engine.runner: pooling`, `engine.convert: embed`) on /v1/embeddings, through the official `openai`
client; bad input gets a 400, never a 5xx, and the fuzzer covers the route."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fuzzing import fuzz_operation, operations
from local_stack import Stack, start_stack, stop_stack, tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "tiny-embed"


@pytest.fixture(scope="module")
def embedding_stack(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = tiny_config(tiny_model_dir, name=MODEL)
    config["models"][0]["engine"] |= {"runner": "pooling", "convert": "embed"}
    stack = start_stack(config, tmp_path_factory.mktemp("logs") / "embedding-stack.log")
    yield stack
    assert not stop_stack(stack), "processes left after stopping rayvllm serve"


@pytest.fixture(scope="module")
def hidden_size(tiny_model_dir: Path) -> int:
    return int(json.loads((tiny_model_dir / "config.json").read_text())["hidden_size"])


def test_embeddings_are_unit_vectors_of_the_models_hidden_size(
    embedding_stack: Stack, hidden_size: int
) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=embedding_stack.openai_url, api_key="unused", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == [MODEL]
    response = client.embeddings.create(model=MODEL, input=["The capital of France is Paris.", "Hello"])
    vectors = [item.embedding for item in response.data]
    assert [len(v) for v in vectors] == [hidden_size, hidden_size]
    assert all(
        math.isclose(math.hypot(*v), 1.0, rel_tol=1e-2) for v in vectors
    )  # the embed pooler normalises
    assert vectors[0] != vectors[1]
    assert response.usage.prompt_tokens > 0


BAD_BODIES = {
    "no input": {"model": MODEL},
    "input of the wrong type": {"model": MODEL, "input": {"text": "Hi"}},
    "an unknown encoding_format": {"model": MODEL, "input": "Hi", "encoding_format": "xml"},
    "dimensions the model cannot truncate to": {"model": MODEL, "input": "Hi", "dimensions": 8},
    "an input longer than max_model_len": {"model": MODEL, "input": "Paris " * 4000},
    "a token id outside the vocabulary": {"model": MODEL, "input": [[10**9]]},
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_input_to_embeddings_gets_400_with_the_openai_error_body(
    embedding_stack: Stack, body: dict[str, Any]
) -> None:
    url = embedding_stack.base_url + "/v1/embeddings"
    response = httpx.post(url, json=body, timeout=120)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"]
    good = httpx.post(url, json={"model": MODEL, "input": "Hi"}, timeout=120)
    assert good.status_code == 200, good.text


def test_fuzzed_embeddings_requests_never_get_a_5xx(embedding_stack: Stack) -> None:
    statuses: Counter[str] = Counter()
    server_errors: list[str] = []
    (embeddings,) = [op for op in operations(embedding_stack.base_url, {}) if op.path == "/v1/embeddings"]
    # More examples than the security suite's 10 per operation: this is the one new route.
    server_errors += fuzz_operation(embeddings, embedding_stack.base_url, {}, statuses, examples=40)
    print(f"\nembeddings fuzz: {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) >= 1
    assert not server_errors
