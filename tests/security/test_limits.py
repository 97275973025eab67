"""Input limits on the real stack: 413 for a large body, 400 over the max_tokens cap, 429 with Retry-After
under a burst, and the engine still answers afterwards."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from security_support import MAX_BODY_BYTES, MAX_CONCURRENT, MAX_TOKENS_CAP, GuardedStack

pytestmark = [pytest.mark.security, pytest.mark.integration, pytest.mark.slow]

# Two replicas, each refusing above MAX_CONCURRENT: this many at once must overflow at least one.
BURST = 4 * MAX_CONCURRENT


def test_body_over_the_limit_is_413(guarded_stack: GuardedStack) -> None:
    body = {"model": guarded_stack.model, "prompt": "x" * MAX_BODY_BYTES, "max_tokens": 1}
    with guarded_stack.client() as client:
        response = client.post("/v1/completions", json=body)
    assert response.status_code == 413, response.text
    assert str(MAX_BODY_BYTES) in response.json()["error"]["message"]


def test_max_tokens_over_the_cap_is_400_naming_the_cap(guarded_stack: GuardedStack) -> None:
    messages = [{"role": "user", "content": "Hi"}]
    with guarded_stack.client() as client:
        for field in ("max_tokens", "max_completion_tokens"):
            body = {"model": guarded_stack.model, "messages": messages, field: MAX_TOKENS_CAP + 1}
            response = client.post("/v1/chat/completions", json=body)
            assert response.status_code == 400, response.text
            assert f"cap of {MAX_TOKENS_CAP}" in response.json()["error"]["message"]
        # Without max_tokens, the cap is the default (chat's; legacy completions default to 16).
        body = {"model": guarded_stack.model, "messages": messages, "ignore_eos": True}
        response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == MAX_TOKENS_CAP


async def burst(guarded: GuardedStack, size: int) -> list[httpx.Response]:
    body = {"model": guarded.model, "prompt": "Tell me a story", "max_tokens": 32, "ignore_eos": True}
    limits = httpx.Limits(max_connections=size)
    async with httpx.AsyncClient(
        base_url=guarded.base_url, headers=guarded.headers(), timeout=300, limits=limits
    ) as client:
        return list(await asyncio.gather(*(client.post("/v1/completions", json=body) for _ in range(size))))


def test_a_burst_over_the_concurrency_limit_gets_429_with_retry_after(guarded_stack: GuardedStack) -> None:
    responses = asyncio.run(burst(guarded_stack, BURST))
    statuses = [r.status_code for r in responses]
    refused = [r for r in responses if r.status_code == 429]
    assert set(statuses) <= {200, 429}, statuses
    assert refused, f"no 429 among {BURST} concurrent requests"
    assert all(r.headers["retry-after"] == "2" for r in refused)
    assert refused[0].json()["error"]["code"] == 429
    assert statuses.count(200) >= MAX_CONCURRENT
    with guarded_stack.client() as client:
        after = client.post(
            "/v1/completions", json={"model": guarded_stack.model, "prompt": "Hi", "max_tokens": 4}
        )
    assert after.status_code == 200, after.text
