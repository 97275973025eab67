"""The ingress guard and the key store, in front of a fake ASGI app standing in for vLLM's, and in front of a
FastAPI app routed like vLLM's behind real uvicorn."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from path_spellings import (
    METRICS_SPELLINGS,
    NOT_METRICS_SPELLINGS,
    ODD_OPEN_SPELLINGS,
    OPEN_SPELLINGS,
    raw_request,
)
from pydantic import BaseModel
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
        self.adapters: list[str | None] = []

    def record(
        self, key_id: str, status: int, prompt_tokens: int, completion_tokens: int, adapter: str | None = None
    ) -> None:
        self.records.append((key_id, status, prompt_tokens, completion_tokens))
        self.adapters.append(adapter)


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


def test_fake_app_requests_to_a_lora_adapter_are_metered_under_its_name(keys_dir: Path) -> None:
    meter = Meter()
    guard = IngressGuard(
        FakeVLLMApp(), LimitsConfig(), KeyStore(keys_dir), meter, adapters=frozenset({"tiny-sql"})
    )
    headers = {"Authorization": "Bearer sk-a"}
    for model in ("tiny-sql", "tiny", "not-tiny-sql"):
        body = {"model": model, "prompt": "Hi"}
        assert call(guard, "POST", "/v1/completions", json=body, headers=headers).status_code == 200
    # the body goes on whole; a body that is not JSON is vLLM's to answer
    response = call(guard, "POST", "/v1/completions", content=b"tiny-sql{", headers=headers)
    assert response.json()["body_bytes"] == len(b"tiny-sql{")
    assert call(guard, "GET", "/v1/models", headers=headers).status_code == 200
    assert meter.adapters == ["tiny-sql", None, None, None, None]


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

    @app.post("/v1/beam")
    async def beam(request: dict[str, Any]) -> dict[str, Any]:
        # vLLM 0.26's beam search score, cumulative_logprob / (seq_len**length_penalty), unchecked
        return {"score": -1.0 / (2 ** request["length_penalty"])}

    @app.post("/v1/broken")
    async def broken() -> None:
        raise RuntimeError("a real server fault")

    guard = IngressGuard(app, LimitsConfig())
    response = call(guard, "POST", "/v1/responses", json={"content": "x"})
    assert response.status_code == 400
    assert "KeyError" in response.json()["error"]["message"]
    for penalty, error in ((-1e6, "ZeroDivisionError"), (1e6, "OverflowError")):
        response = call(guard, "POST", "/v1/beam", json={"length_penalty": penalty})
        assert response.status_code == 400
        assert error in response.json()["error"]["message"]
    with pytest.raises(RuntimeError):
        call(guard, "POST", "/v1/broken", json={})


# --- Routes, not strings: the guard in front of a real FastAPI app shaped like vLLM's, behind real uvicorn.


class Completion(BaseModel):
    model: str
    prompt: Any = None
    max_tokens: int | None = None


def vllm_shaped_app(root_path: str = "") -> Any:
    """A FastAPI app with vLLM 0.26's routing where it matters (vllm/entrypoints/serve/instrumentator):
    the instrumentator's GET /metrics route, then a Prometheus ASGI app mounted at /metrics with the
    pattern vLLM sets on it (`^/metrics(?P<path>.*)$`), the probes as plain routes, a body-parsing route,
    and vLLM's handlers for FastAPI's HTTPException and RequestValidationError."""
    import prometheus_client
    from fastapi import FastAPI, HTTPException
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Mount

    registry = prometheus_client.CollectorRegistry()
    prometheus_client.Counter("vllm_request_success", "Requests.", registry=registry).inc()
    app = FastAPI(root_path=root_path)

    @app.get("/health")
    async def health() -> PlainTextResponse:
        return PlainTextResponse("")

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(prometheus_client.generate_latest(registry).decode())

    mount = Mount("/metrics", prometheus_client.make_asgi_app(registry=registry))
    mount.path_regex = re.compile("^/metrics(?P<path>.*)$")
    app.routes.append(mount)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": []}

    @app.post("/v1/completions")
    async def completions(request: Completion) -> dict[str, Any]:
        return {"model": request.model}

    @app.api_route("/ping", methods=["GET", "POST"])
    async def ping() -> PlainTextResponse:
        return PlainTextResponse("")

    @app.exception_handler(HTTPException)
    async def http_exception_handler(request: Any, exc: HTTPException) -> JSONResponse:
        error = {"message": str(exc.detail), "type": "vllm", "param": None, "code": exc.status_code}
        return JSONResponse({"error": error}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_exception_handler(request: Any, exc: RequestValidationError) -> JSONResponse:
        error = {"message": str(exc.errors()), "type": "vllm", "param": None, "code": 400}
        return JSONResponse({"error": error}, status_code=400)

    return app


class Served:
    """An ASGI app behind a real uvicorn server on a free port, in a thread."""

    def __init__(self, app: Any, http: str = "httptools") -> None:
        import socket
        import threading

        import uvicorn

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", http=http)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)

    def request(
        self, method: str, target: str, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        return raw_request(f"http://127.0.0.1:{self.port}", method, target, headers, body)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


@pytest.fixture(scope="module")
def vllm_shaped(tmp_path_factory: pytest.TempPathFactory) -> Any:
    keys = KeyStore(write_key_dir({"team-a": "sk-a"}, tmp_path_factory.mktemp("route-keys") / "keys"))
    servers = {
        "open": Served(IngressGuard(vllm_shaped_app(), LimitsConfig())),
        "keys": Served(IngressGuard(vllm_shaped_app(), LimitsConfig(), keys)),
        # uvicorn's other HTTP parser, which decodes the target the same way
        "keys-h11": Served(IngressGuard(vllm_shaped_app(), LimitsConfig(), keys), http="h11"),
        "root": Served(IngressGuard(vllm_shaped_app(root_path="/api"), LimitsConfig(), keys)),
        "no-body-read": Served(IngressGuard(vllm_shaped_app(), LimitsConfig(max_request_body_bytes=None))),
        "cap": Served(IngressGuard(vllm_shaped_app(), LimitsConfig(max_tokens_cap=64))),
    }
    yield servers
    for served in servers.values():
        served.stop()


def assert_openai_error(status: int, body: bytes, code: int) -> dict[str, Any]:
    assert status == code, (status, body)
    error = json.loads(body)
    assert list(error) == ["error"], body
    assert set(error["error"]) == {"message", "type", "param", "code"}, body
    assert error["error"]["code"] == code
    return dict(error["error"])


def test_vllm_shaped_app_serves_its_registry_unguarded_on_every_metrics_spelling_the_mount_matches() -> None:
    """The premise of the table below: without the guard these spellings reach vLLM's Prometheus app."""
    served = Served(vllm_shaped_app())
    try:
        for target in ("/metrics", "/metrics/", "/metrics/.", "/metrics%2F", "/metricsX", "/%6detrics/"):
            status, _, body = served.request("GET", target)
            assert status == 200 and b"vllm_request_success" in body, (target, status)
    finally:
        served.stop()


@pytest.mark.parametrize("target", METRICS_SPELLINGS)
def test_every_spelling_of_metrics_is_404_with_a_key_without_one_and_without_keys(
    vllm_shaped: dict[str, Served], target: str
) -> None:
    with_key = {"Authorization": "Bearer sk-a"}
    for name, headers in (("open", {}), ("keys", {}), ("keys", with_key), ("keys-h11", with_key)):
        status, _, body = vllm_shaped[name].request("GET", target, headers)
        assert b"vllm_request_success" not in body, (name, target, headers)
        assert_openai_error(status, body, 404)
    status, _, body = vllm_shaped["keys"].request("POST", target, {"x-api-key": "sk-a"}, b"{}")
    assert b"vllm_request_success" not in body
    assert status == 404, (target, status)


@pytest.mark.parametrize("target", NOT_METRICS_SPELLINGS)
def test_a_path_the_app_does_not_route_to_metrics_needs_a_key_and_serves_no_metrics(
    vllm_shaped: dict[str, Served], target: str
) -> None:
    assert_openai_error(*vllm_shaped["keys"].request("GET", target)[::2], 401)
    status, _, body = vllm_shaped["keys"].request("GET", target, {"x-api-key": "sk-a"})
    assert b"vllm_request_success" not in body
    assert_openai_error(status, body, 404)


@pytest.mark.parametrize("target", METRICS_SPELLINGS)
def test_every_spelling_of_metrics_under_a_root_path_is_404(
    vllm_shaped: dict[str, Served], target: str
) -> None:
    """vLLM's `--root-path` makes FastAPI route /api/metrics as /metrics; the guard strips it the same way."""
    status, _, body = vllm_shaped["root"].request("GET", "/api" + target, {"x-api-key": "sk-a"})
    assert b"vllm_request_success" not in body, target
    assert status == 404, (target, status)


@pytest.mark.parametrize("target", OPEN_SPELLINGS)
def test_the_probes_need_no_key(vllm_shaped: dict[str, Served], target: str) -> None:
    assert vllm_shaped["keys"].request("GET", target)[0] == 200
    assert vllm_shaped["root"].request("GET", "/api" + target)[0] == 200


@pytest.mark.parametrize("target", ODD_OPEN_SPELLINGS)
def test_an_odd_spelling_of_a_probe_is_not_a_probe_and_needs_a_key(
    vllm_shaped: dict[str, Served], target: str
) -> None:
    for name, prefix in (("keys", ""), ("root", "/api")):
        for headers in ({}, {"Authorization": "Bearer sk-wrong"}):
            status, response_headers, body = vllm_shaped[name].request("GET", prefix + target, headers)
            assert_openai_error(status, body, 401)
            assert response_headers.get("www-authenticate") == "Bearer"
        status, _, body = vllm_shaped[name].request("GET", prefix + target, {"x-api-key": "sk-a"})
        assert status != 401, (name, target, body)


@pytest.mark.parametrize("server", ["open", "no-body-read", "cap"])
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"model": "m", "prompt": "\xff\xfe"}', id="not-utf-8"),
        pytest.param(
            b'{"model": "m", "max_tokens": 4, "prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="deep"
        ),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deep-array"),
    ],
)
def test_a_body_fastapi_cannot_parse_gets_the_openai_error_shape(
    vllm_shaped: dict[str, Served], server: str, body: bytes
) -> None:
    """FastAPI answers these with Starlette's HTTPException, `{"detail": ...}`, which vLLM's handler (for
    FastAPI's subclass) does not catch; the guard reshapes it, whether or not it read the body itself."""
    status, headers, response = vllm_shaped[server].request(
        "POST", "/v1/completions", {"content-type": "application/json"}, body
    )
    error = assert_openai_error(status, response, 400)
    assert error["message"] == "There was an error parsing the body"
    assert int(headers["content-length"]) == len(response)


def test_fastapis_own_404_and_405_get_the_openai_error_shape_and_vllms_own_errors_pass_as_they_are(
    vllm_shaped: dict[str, Served],
) -> None:
    served = vllm_shaped["open"]
    assert_openai_error(*served.request("GET", "/v1/nothing-here")[::2], 404)
    status, headers, body = served.request("GET", "/v1/completions")
    assert_openai_error(status, body, 405)
    assert headers["allow"] == "POST"
    assert_openai_error(*served.request("POST", "/health")[::2], 405)  # a probe's answers are reshaped too
    status, _, body = served.request("POST", "/v1/completions", {"content-type": "application/json"}, b"{}")
    assert assert_openai_error(status, body, 400)["type"] == "vllm"  # vLLM's handler's answer, as it was


def test_a_stream_passes_message_by_message_and_an_error_reshaped_keeps_its_headers() -> None:
    chunks = [b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"]

    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def detail(scope: Scope, receive: Receive, send: Send) -> None:
        body = b'{"detail":"Method Not Allowed"}'
        headers = [(b"content-type", b"application/json"), (b"content-length", b"31"), (b"allow", b"POST")]
        await send({"type": "http.response.start", "status": 405, "headers": headers})
        await send({"type": "http.response.body", "body": body[:10], "more_body": True})
        await send({"type": "http.response.body", "body": body[10:]})

    async def run(app: Any) -> list[Message]:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/v1/x", "headers": [], "query_string": b""}
        await IngressGuard(app, LimitsConfig())(scope, receive, send)
        return sent

    streamed = asyncio.run(run(streaming))
    assert [m.get("body") for m in streamed[1:]] == [*chunks, b""]
    start, body = asyncio.run(run(detail))
    error = json.loads(body["body"])["error"]
    assert error == {
        "message": "Method Not Allowed",
        "type": "Method Not Allowed",
        "param": None,
        "code": 405,
    }
    assert dict(start["headers"])[b"content-length"] == str(len(body["body"])).encode()
    assert dict(start["headers"])[b"allow"] == b"POST"
