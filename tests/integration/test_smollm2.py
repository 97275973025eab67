"""`make serve`'s default: the embedded SmolLM2-135M-Instruct, through the official openai client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from local_stack import Stack, start_stack, stop_stack
from rayvllm.local.offline_models import SMOLLM2_NAME

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def smollm2_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # No --config: exactly the command `make serve` runs.
    stack = start_stack(None, tmp_path_factory.mktemp("logs") / "smollm2.log", model=SMOLLM2_NAME)
    yield stack
    assert not stop_stack(stack), "processes left after stopping rayvllm serve"


def test_greedy_chat_knows_the_capital_of_france(smollm2_stack: Stack) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=smollm2_stack.openai_url, api_key="unused", max_retries=0, timeout=120)
    response = client.chat.completions.create(
        model=SMOLLM2_NAME,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=20,
    )
    assert "Paris" in response.choices[0].message.content
