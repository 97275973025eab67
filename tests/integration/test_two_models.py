"""Two models behind one endpoint on the default path: the real stack serves two tiny Llamas of different
random weights, each on replicas of its own, behind the gateway that picks one by the request's `model`.
Through the official `openai` client, with API keys on so auth and metering can be checked per model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from local_stack import (
    Stack,
    assert_unknown_model_gets_404,
    greedy,
    openai_client,
    start_keyed_stack,
    stop_stack,
    tiny_config,
    wait_until_metered_by_model,
)
from rayvllm.local.offline_models import build_tiny_llama

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL_A, MODEL_B = "tiny-llama", "tiny-llama-b"
KEY_ID, KEY = "team-two", "sk-test-team-two-0123456789"
# A key of the metering test's own: the other tests' counts (exported a few seconds late) cannot reach it.
METER_KEY_ID, METER_KEY = "team-two-meter", "sk-test-team-two-meter-0123456789"


@pytest.fixture(scope="module")
def two_model_stack(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    other_dir = build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama-b", seed=1)
    # Two replicas and the gateway on a 2-core machine: half a Ray CPU each.
    first = tiny_config(tiny_model_dir, num_cpus=0.5)["models"][0]
    second = tiny_config(other_dir, name=MODEL_B, num_cpus=0.5)["models"][0]
    config = {"models": [first, second]}
    stack = start_keyed_stack(config, {KEY_ID: KEY, METER_KEY_ID: METER_KEY}, tmp_path_factory, "two-model")
    yield stack
    assert not stop_stack(stack), "processes left after stopping rayvllm serve"


@pytest.fixture(scope="module")
def client(two_model_stack: Stack):  # type: ignore[no-untyped-def]
    return openai_client(two_model_stack, KEY)


def test_models_lists_both_models(client) -> None:  # type: ignore[no-untyped-def]
    assert {m.id for m in client.models.list().data} == {MODEL_A, MODEL_B}


def test_each_request_reaches_the_model_it_names(client) -> None:  # type: ignore[no-untyped-def]
    a, b = greedy(client, MODEL_A), greedy(client, MODEL_B)
    assert a != b
    # Greedy: each model answers the same again, so the difference is the model's, not chance.
    assert (greedy(client, MODEL_A), greedy(client, MODEL_B)) == (a, b)
    stream = client.chat.completions.create(
        model=MODEL_B, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0, stream=True
    )
    chunks = list(stream)
    assert chunks and all(chunk.model == MODEL_B for chunk in chunks)


def test_an_unknown_model_gets_404_with_the_openai_error_body(client) -> None:  # type: ignore[no-untyped-def]
    assert_unknown_model_gets_404(client)


def test_every_model_and_the_model_list_need_a_key(two_model_stack: Stack) -> None:
    from openai import AuthenticationError

    stranger = openai_client(two_model_stack, "sk-wrong")
    for call in (
        lambda: greedy(stranger, MODEL_A),
        lambda: greedy(stranger, MODEL_B),
        lambda: greedy(stranger, "tiny-llama-unknown"),  # no model list for guessing names either
        lambda: stranger.models.list(),
    ):
        with pytest.raises(AuthenticationError):
            call()


def test_each_model_is_metered_under_its_own_name(two_model_stack: Stack) -> None:
    meter_client = openai_client(two_model_stack, METER_KEY)
    greedy(meter_client, MODEL_B)
    greedy(meter_client, MODEL_B)
    greedy(meter_client, MODEL_A)
    wait_until_metered_by_model(
        two_model_stack,
        METER_KEY_ID,
        {MODEL_B: 2.0, MODEL_A: 1.0},
        "each model's requests and tokens metered under its own name",
    )
