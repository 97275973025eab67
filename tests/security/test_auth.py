"""API keys on the real stack: every route but health needs one, usage is metered per key id, and keys
come and go without a restart."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import sse
from path_spellings import METRICS_SPELLINGS, ODD_OPEN_SPELLINGS, OPEN_SPELLINGS, raw_request
from security_support import KEY_RELOAD_S, GuardedStack

pytestmark = [pytest.mark.security, pytest.mark.integration, pytest.mark.slow]

OPEN_ROUTES = {"/health", "/ping"}
HIDDEN_ROUTES = {"/metrics"}
# Metric labels are exported every few seconds; wait this long for counters to catch up.
METRICS_WAIT_S = 60


def public_routes(guarded: GuardedStack) -> list[tuple[str, str]]:
    """(method, path) of every operation in the app's own OpenAPI schema, path parameters filled."""
    schema = httpx.get(guarded.base_url + "/openapi.json", headers=guarded.headers(), timeout=30).json()
    return [
        (method.upper(), path.replace("{", "").replace("}", ""))
        for path, operations in schema["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "delete")
    ]


def test_without_a_key_every_route_but_health_is_401(guarded_stack: GuardedStack) -> None:
    routes = public_routes(guarded_stack)
    assert ("POST", "/v1/chat/completions") in routes
    for method, path in [*routes, ("GET", "/openapi.json"), ("GET", "/docs")]:
        for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"x-api-key": "sk-wrong"}):
            response = httpx.request(method, guarded_stack.base_url + path, headers=headers, timeout=30)
            if path in OPEN_ROUTES:
                assert response.status_code == 200, (method, path, response.text)
                continue
            if path in HIDDEN_ROUTES:
                assert response.status_code == 404, (method, path, response.text)
                continue
            assert response.status_code == 401, (method, path, response.status_code, response.text)
            assert response.json()["error"]["code"] == 401


def test_metrics_are_not_served_on_the_public_port(guarded_stack: GuardedStack) -> None:
    response = httpx.get(guarded_stack.base_url + "/metrics", headers=guarded_stack.headers(), timeout=30)
    assert response.status_code == 404
    assert "vllm:" not in response.text


def test_no_spelling_of_metrics_is_served_and_no_odd_spelling_of_a_probe_skips_the_key(
    guarded_stack: GuardedStack,
) -> None:
    """Sent as written through the real stack (HAProxy, then the failover gateway) to the replica's guard."""
    base = guarded_stack.base_url
    for target in METRICS_SPELLINGS:
        status, _, body = raw_request(base, "GET", target, guarded_stack.headers())
        assert b"vllm:" not in body and b"python_gc" not in body, (target, status)
        assert status == 404, (target, status, body[:300])
    for target in OPEN_SPELLINGS:
        assert raw_request(base, "GET", target)[0] == 200, target
    for target in ODD_OPEN_SPELLINGS:
        status, _, body = raw_request(base, "GET", target)
        assert status == 401, (target, status, body[:300])


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"model": "m", "prompt": "\xff\xfe", "max_tokens": 4}', id="not-utf-8"),
        pytest.param(b'{"max_tokens": 4, "prompt": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", id="deep"),
    ],
)
def test_a_body_that_cannot_be_parsed_gets_the_openai_error_shape(
    guarded_stack: GuardedStack, body: bytes
) -> None:
    headers = {**guarded_stack.headers(), "content-type": "application/json"}
    response = httpx.post(
        guarded_stack.base_url + "/v1/completions", content=body, headers=headers, timeout=60
    )
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.json()["error"]["code"] == 400


def test_with_a_key_every_route_answers_without_auth_or_server_errors(guarded_stack: GuardedStack) -> None:
    with guarded_stack.client() as client:
        for method, path in public_routes(guarded_stack):
            response = client.request(method, path, json={} if method != "GET" else None)
            assert response.status_code not in (401, 403), (method, path, response.text)
            assert response.status_code < 500, (method, path, response.status_code, response.text)
        models = client.get("/v1/models").json()
        assert [m["id"] for m in models["data"]] == [guarded_stack.model]
        chat = client.post(
            "/v1/chat/completions",
            json={
                "model": guarded_stack.model,
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 4,
            },
        )
        assert chat.status_code == 200, chat.text


def completion_usage(client: httpx.Client, model: str, stream: bool) -> dict[str, int]:
    """Send one completion and return the usage the response reported."""
    body: dict[str, Any] = {"model": model, "prompt": "Count to ten:", "max_tokens": 8, "stream": stream}
    if not stream:
        response = client.post("/v1/completions", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json()["usage"])
    body["stream_options"] = {"include_usage": True}
    usage: dict[str, int] = {}
    with client.stream("POST", "/v1/completions", json=body) as response:
        assert response.status_code == 200
        for line in sse.iter_lines(response.iter_text()):
            if line.startswith("data: {") and '"usage":{' in line.replace(" ", ""):
                usage = httpx.Response(200, content=line[6:]).json()["usage"] or usage
    assert usage, "the stream reported no usage"
    return usage


def metered_since(
    guarded: GuardedStack, key_id: str, before: dict[str, dict[str, float]], expected: dict[str, int]
) -> dict[str, float]:
    """The key's token counters since `before`, once they reach `expected` or the export wait is over."""
    deadline = time.monotonic() + METRICS_WAIT_S
    while True:
        metered = {
            name: guarded.counters(name).get(key_id, 0.0) - before[name].get(key_id, 0.0) for name in expected
        }
        if metered == expected or time.monotonic() > deadline:
            return metered
        time.sleep(2)


def test_per_key_token_counters_match_the_reported_usage(guarded_stack: GuardedStack) -> None:
    before = {name: guarded_stack.counters(name) for name in ("prompt_tokens", "completion_tokens")}
    reported = {"prompt_tokens": 0, "completion_tokens": 0}
    with guarded_stack.client("team-b") as client:
        for stream in (False, True, False, True):
            usage = completion_usage(client, guarded_stack.model, stream)
            for name in reported:
                reported[name] += usage[name]
    assert metered_since(guarded_stack, "team-b", before, reported) == reported
    assert "sk-test" not in httpx.get(guarded_stack.stack.metrics_urls[0], timeout=30).text


def stream_without_usage(client: httpx.Client, path: str, body: dict[str, Any]) -> None:
    """Stream one response without `stream_options`; check that it ends with [DONE] and reports no usage."""
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        lines = [line for line in sse.iter_lines(response.iter_text()) if line.startswith("data: ")]
    assert lines and lines[-1] == "data: [DONE]", lines[-3:]
    events: list[dict[str, Any]] = [httpx.Response(200, content=line[6:]).json() for line in lines[:-1]]
    assert events and all(not event.get("usage") for event in events), "the stream reported usage"


def test_a_stream_without_include_usage_is_metered_all_the_same(guarded_stack: GuardedStack) -> None:
    """vLLM records a stream's usage for the app (request_metadata.final_usage_info) whether or not the client
    asks for it in the stream; the guard meters that. `ignore_eos` makes the completion exactly max_tokens
    long, and the same request unstreamed gives the prompt's token count."""
    completion_tokens = 8
    requests = [
        ("/v1/completions", {"prompt": "Count to ten:"}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Count to ten."}]}),
    ]
    before = {name: guarded_stack.counters(name) for name in ("prompt_tokens", "completion_tokens")}
    expected = {"prompt_tokens": 0, "completion_tokens": 0}
    with guarded_stack.client("team-a") as client:
        for path, request in requests:
            body = {
                "model": guarded_stack.model,
                "max_tokens": completion_tokens,
                "ignore_eos": True,
                **request,
            }
            unstreamed = client.post(path, json=body)
            assert unstreamed.status_code == 200, unstreamed.text
            usage = unstreamed.json()["usage"]
            assert usage["completion_tokens"] == completion_tokens, usage
            stream_without_usage(client, path, body)
            # The unstreamed answer and the stream: the same prompt, the same completion length.
            expected["prompt_tokens"] += 2 * usage["prompt_tokens"]
            expected["completion_tokens"] += 2 * completion_tokens
    assert metered_since(guarded_stack, "team-a", before, expected) == expected


def test_keys_added_and_removed_at_run_time_take_effect_without_restart(guarded_stack: GuardedStack) -> None:
    url = guarded_stack.base_url + "/v1/models"
    new_key = "sk-test-rotated-key-42"
    (guarded_stack.keys_dir / "team-new").write_text(new_key + "\n")
    time.sleep(KEY_RELOAD_S * 2.5)
    # Several requests, so both replicas (each with its own key store) are asked.
    statuses = {httpx.get(url, headers={"x-api-key": new_key}, timeout=30).status_code for _ in range(6)}
    assert statuses == {200}
    (guarded_stack.keys_dir / "team-new").unlink()
    time.sleep(KEY_RELOAD_S * 2.5)
    statuses = {httpx.get(url, headers={"x-api-key": new_key}, timeout=30).status_code for _ in range(6)}
    assert statuses == {401}
