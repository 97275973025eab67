"""Schemathesis against the running app's own OpenAPI schema, with a valid key: no input gets a 5xx,
and the engine still answers afterwards.

Hypothesis drives each operation's strategy directly (schemathesis' pytest loader does not run under
pytest 9), with a bounded number of examples per operation.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from security_support import GuardedStack

pytestmark = [pytest.mark.security, pytest.mark.integration, pytest.mark.slow]

# Examples per operation: the whole schema takes about a minute on the 2-core machine.
EXAMPLES_PER_OPERATION = 10
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)


def fuzz_operation(operation: Any, guarded: GuardedStack, statuses: Counter[str]) -> list[str]:
    """Run one operation's examples; return the 5xx answers seen."""
    server_errors: list[str] = []

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        response = case.call(base_url=guarded.base_url, headers=guarded.headers(), timeout=120)
        statuses[str(response.status_code)] += 1
        if response.status_code >= 500:
            server_errors.append(f"{case.method} {case.path}: {response.status_code} {response.text[:300]}")

    run()
    return server_errors


def test_fuzzed_requests_never_get_a_5xx_and_the_engine_still_answers(
    guarded_stack: GuardedStack, figures: dict[str, Any]
) -> None:
    schema = schemathesis.openapi.from_url(
        guarded_stack.base_url + "/openapi.json", headers=guarded_stack.headers(), timeout=30
    )
    statuses: Counter[str] = Counter()
    server_errors: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        server_errors += fuzz_operation(operation, guarded_stack, statuses)
    figures["fuzz"] = {
        "operations": len(operations),
        "examples": sum(statuses.values()),
        "by_status": dict(sorted(statuses.items())),
        "server_errors": server_errors[:10],
    }
    print(f"\nfuzz: {figures['fuzz']}")
    assert sum(statuses.values()) >= len(operations)
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
