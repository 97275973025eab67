"""The ingress guard and the key store, in front of a fake ASGI app standing in for vLLM's."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from rayvllm.config import LimitsConfig
from rayvllm.http.asgi import Message, Receive, Scope, Send
from rayvllm.http.auth import KeyStore, parse_key_list, write_key_dir
from rayvllm.http.guard import IngressGuard


class FakeVLLMApp:
    """Echoes the body length, and leaves a usage in the request state as vLLM's handlers do."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.hold = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.hold:
            await self.release.wait()
        usage = type("Usage", (), {"prompt_tokens": 3, "completion_tokens": 5})()
        scope.setdefault("state", {})["request_metadata"] = type("Meta", (), {"final_usage_info": usage})()
        payload = json.dumps({"path": scope["path"], "body_bytes": len(body)}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": payload})


class Meter:
    def __init__(self) -> None:
        self.records: list[tuple[str, int, int, int]] = []

    def record(self, key_id: str, status: int, prompt_tokens: int, completion_tokens: int) -> None:
        self.records.append((key_id, status, prompt_tokens, completion_tokens))


def call(guard: IngressGuard, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=guard)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return write_key_dir({"team-a": "sk-a", "team-b": "sk-b"}, tmp_path / "keys")


def test_fake_app_needs_a_valid_key_except_on_health(keys_dir: Path) -> None:
    meter = Meter()
    guard = IngressGuard(FakeVLLMApp(), LimitsConfig(), KeyStore(keys_dir), meter)
    refused = call(guard, "GET", "/v1/models")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == 401
    assert call(guard, "GET", "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert call(guard, "GET", "/health").status_code == 200
    assert call(guard, "GET", "/v1/models", headers={"Authorization": "Bearer sk-b"}).status_code == 200
    assert call(guard, "GET", "/v1/models", headers={"x-api-key": "sk-a"}).status_code == 200
    assert meter.records == [("team-b", 200, 3, 5), ("team-a", 200, 3, 5)]


def test_fake_app_metrics_route_is_hidden_even_with_a_key(keys_dir: Path) -> None:
    guard = IngressGuard(FakeVLLMApp(), LimitsConfig(), KeyStore(keys_dir))
    assert call(guard, "GET", "/metrics", headers={"Authorization": "Bearer sk-a"}).status_code == 404
    assert call(guard, "GET", "/metrics").status_code == 404


def test_key_store_reloads_added_and_removed_keys(keys_dir: Path) -> None:
    now = [0.0]
    store = KeyStore(keys_dir, reload_interval_s=5, clock=lambda: now[0])
    (keys_dir / "team-c").write_text("sk-c\n")
    (keys_dir / "..data").mkdir()  # kubelet's bookkeeping is ignored
    os.remove(keys_dir / "team-a")
    assert store.authenticate("sk-c") is None  # not yet: checked at most every 5 s
    now[0] = 5.0
    assert store.authenticate("sk-c") == "team-c"
    assert store.authenticate("sk-a") is None
    assert store.key_ids == ["team-b", "team-c"]


def test_missing_key_dir_refuses_everyone(tmp_path: Path) -> None:
    assert KeyStore(tmp_path / "absent").authenticate("anything") is None


def test_fake_app_body_over_the_limit_gets_413() -> None:
    guard = IngressGuard(FakeVLLMApp(), LimitsConfig(max_request_body_bytes=100))
    response = call(guard, "POST", "/v1/completions", content=b"x" * 101)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "RequestEntityTooLarge"
    assert call(guard, "POST", "/v1/completions", content=b"x" * 100).json()["body_bytes"] == 100


def test_fake_app_max_tokens_over_the_cap_gets_400_naming_it() -> None:
    guard = IngressGuard(FakeVLLMApp(), LimitsConfig(max_tokens_cap=64))
    for field in ("max_tokens", "max_completion_tokens"):
        response = call(guard, "POST", "/v1/chat/completions", json={field: 65})
        assert response.status_code == 400
        assert "64" in response.json()["error"]["message"]
        assert "limits.max_tokens_cap" in response.json()["error"]["message"]
    assert call(guard, "POST", "/v1/chat/completions", json={"max_tokens": 64}).status_code == 200


def test_fake_app_concurrency_over_the_limit_gets_429_with_retry_after() -> None:
    app = FakeVLLMApp()
    app.hold = True
    guard = IngressGuard(app, LimitsConfig(max_concurrent_requests=2, retry_after_s=3))

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=guard)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            held = [asyncio.create_task(client.get("/v1/models")) for _ in range(2)]
            while guard.in_flight < 2:
                await asyncio.sleep(0.01)
            refused = await client.get("/v1/models")
            app.release.set()
            return [refused, *await asyncio.gather(*held)]

    refused, *served = asyncio.run(burst())
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "3"
    assert [r.status_code for r in served] == [200, 200]
    assert guard.in_flight == 0


def test_key_lists_parse_and_reject_keys_without_an_id() -> None:
    assert parse_key_list("a:sk-1, b:sk:2\n") == {"a": "sk-1", "b": "sk:2"}
    with pytest.raises(ValueError, match="ID:KEY"):
        parse_key_list("sk-without-id")


def test_fake_app_lifespan_and_other_messages_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {}

    async def send(message: Message) -> None:
        return None

    asyncio.run(IngressGuard(app, LimitsConfig())({"type": "lifespan"}, receive, send))
    assert seen == ["lifespan"]


def test_fake_fastapi_handler_raising_on_malformed_input_gets_400_not_500() -> None:
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/responses")
    async def responses(item: dict[str, Any]) -> dict[str, Any]:
        return {"role": item["role"]}  # vLLM 0.26 indexes `role` unchecked the same way

    @app.post("/v1/broken")
    async def broken() -> None:
        raise RuntimeError("a real server fault")

    guard = IngressGuard(app, LimitsConfig())
    response = call(guard, "POST", "/v1/responses", json={"content": "x"})
    assert response.status_code == 400
    assert "KeyError" in response.json()["error"]["message"]
    with pytest.raises(RuntimeError):
        call(guard, "POST", "/v1/broken", json={})
