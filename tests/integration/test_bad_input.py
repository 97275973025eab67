"""Bad input gets a 4xx with an OpenAI-style JSON error, never a 5xx, and the engine survives it."""

from __future__ import annotations

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def post(stack, path: str, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(stack.base_url + path, timeout=60, **kwargs)


def assert_openai_error(response: httpx.Response, *statuses: int) -> dict:
    assert response.status_code in statuses, response.text
    body = response.json()
    error = body.get("error", body)
    assert error["message"]
    assert error.get("type")
    return error


def test_unknown_model_is_404(tiny_stack) -> None:
    response = post(
        tiny_stack,
        "/v1/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
    )
    assert "nope" in assert_openai_error(response, 404)["message"]


def test_prompt_longer_than_max_model_len_is_400(tiny_stack) -> None:
    response = post(
        tiny_stack,
        "/v1/completions",
        json={"model": tiny_stack.model, "prompt": "hello " * 2000, "max_tokens": 4},
    )
    assert_openai_error(response, 400)


@pytest.mark.parametrize(
    "change",
    [{"max_tokens": -1}, {"temperature": "hot"}, {"n": 0}, {"messages": "not a list"}],
    ids=["negative-max-tokens", "temperature-hot", "n-zero", "messages-not-list"],
)
def test_invalid_fields_are_400_or_422(tiny_stack, change: dict) -> None:
    body = {"model": tiny_stack.model, "messages": [{"role": "user", "content": "x"}], **change}
    assert_openai_error(post(tiny_stack, "/v1/chat/completions", json=body), 400, 422)


def test_malformed_json_is_400(tiny_stack) -> None:
    response = post(
        tiny_stack,
        "/v1/chat/completions",
        content=b'{"model": "x", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert_openai_error(response, 400)


def test_engine_still_serves_after_bad_input(tiny_stack) -> None:
    for body in (
        {"model": tiny_stack.model, "prompt": "hi " * 3000},
        {"model": tiny_stack.model, "max_tokens": -5},
    ):
        assert post(tiny_stack, "/v1/completions", json=body).status_code < 500
    response = post(
        tiny_stack, "/v1/completions", json={"model": tiny_stack.model, "prompt": "Hello", "max_tokens": 2}
    )
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 2
