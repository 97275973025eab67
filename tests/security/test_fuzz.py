"""Schemathesis against the running app's own OpenAPI schema, with a valid key: no input gets a 5xx,
and the engine still answers afterwards (tests/fuzzing.py runs the operations).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
from fuzzing import fuzz_operation, operations
from security_support import GuardedStack

pytestmark = [pytest.mark.security, pytest.mark.integration, pytest.mark.slow]


def test_fuzzed_requests_never_get_a_5xx_and_the_engine_still_answers(
    guarded_stack: GuardedStack, figures: dict[str, Any]
) -> None:
    statuses: Counter[str] = Counter()
    server_errors: list[str] = []
    every = operations(guarded_stack.base_url, guarded_stack.headers())
    for operation in every:
        server_errors += fuzz_operation(operation, guarded_stack.base_url, guarded_stack.headers(), statuses)
    figures["fuzz"] = {
        "operations": len(every),
        "examples": sum(statuses.values()),
        "by_status": dict(sorted(statuses.items())),
        "server_errors": server_errors[:10],
    }
    print(f"\nfuzz: {figures['fuzz']}")
    assert sum(statuses.values()) >= len(every)
    assert not server_errors
    body = {"model": guarded_stack.model, "prompt": "Hi", "max_tokens": 4}
    response = httpx.post(
        guarded_stack.base_url + "/v1/completions", json=body, headers=guarded_stack.headers(), timeout=60
    )
    assert response.status_code == 200, response.text


def test_a_responses_input_item_without_a_role_is_400_not_500(guarded_stack: GuardedStack) -> None:
    """Found by the fuzzer: vLLM 0.26 indexes `role` unchecked and answered 500."""
    body = {"model": guarded_stack.model, "input": [{"content": "Hi"}], "max_output_tokens": 4}
    response = httpx.post(
        guarded_stack.base_url + "/v1/responses", json=body, headers=guarded_stack.headers(), timeout=60
    )
    assert response.status_code == 400, response.text
    assert "role" in response.json()["error"]["message"]


@pytest.mark.parametrize("length_penalty", [-1e6, 1e6], ids=["score-divides-by-zero", "score-overflows"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_a_beam_search_length_penalty_out_of_float_range_is_400_not_500(
    guarded_stack: GuardedStack, path: str, length_penalty: float
) -> None:
    """Found by the fuzzer: vLLM 0.26 scores beams as `logprob / len ** length_penalty`, unchecked, and
    answered 500 when the power underflows to 0.0 (ZeroDivisionError). When it overflows, vLLM's own 400
    already names the OverflowError's message; both are pinned."""
    prompt = (
        {"messages": [{"role": "user", "content": "Hi"}]}
        if path == "/v1/chat/completions"
        else {"prompt": "Hi"}
    )
    body = {"model": guarded_stack.model, **prompt, "max_tokens": 2, "use_beam_search": True}
    response = httpx.post(
        guarded_stack.base_url + path,
        json={**body, "length_penalty": length_penalty},
        headers=guarded_stack.headers(),
        timeout=60,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"]
    response = httpx.post(
        guarded_stack.base_url + path, json=body, headers=guarded_stack.headers(), timeout=60
    )
    assert response.status_code == 200, response.text
