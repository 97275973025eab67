"""The failover gateway's pieces, with a fake ASGI app and a fake replica handle instead of Serve's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from ray.exceptions import ActorDiedError
from rayvllm.http.asgi import Message, Receive, Scope, Send, forward_asgi
from rayvllm.serve.gateway import LOST_REPLICA_EVENT, FailoverApp, ModelRoutes, Relay, is_replica_loss

START_JSON = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json")],
}
START_SSE = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/event-stream")],
}


async def fake_app(scope: Scope, receive: Receive, send: Send) -> None:
    request = await receive()
    await send(START_JSON)
    await send({"type": "http.response.body", "body": scope["path"].encode() + request["body"]})


def test_forward_asgi_runs_a_request_through_a_fake_app() -> None:
    async def collect() -> list[Message]:
        request = {"scope": {"method": "POST", "path": "/v1/x", "headers": []}, "body": b"+body"}
        return [message async for message in forward_asgi(fake_app, request)]

    messages = asyncio.run(collect())
    assert messages[0] == START_JSON
    assert messages[1]["body"] == b"/v1/x+body"


class FakeReplicas:
    """A fake Serve handle: each call replays the next scripted list (a message list, or an exception)."""

    def __init__(self, *scripts: list[Any]) -> None:
        self.scripts = list(scripts)
        self.calls = 0
        self.forward = self

    def remote(self, request: dict[str, Any]) -> AsyncIterator[Message]:
        script = self.scripts[self.calls]
        self.calls += 1

        async def replay() -> AsyncIterator[Message]:
            for item in script:
                if isinstance(item, BaseException):
                    raise item
                yield item

        return replay()


def run_gateway(
    replicas: FakeReplicas | ModelRoutes,
    body: bytes = b"{}",
    method: str = "POST",
    path: str = "/v1/completions",
) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    routes = replicas if isinstance(replicas, ModelRoutes) else ModelRoutes([(["m"], replicas)])
    gateway = FailoverApp(routes, max_attempts=3, max_body_bytes=None)
    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(gateway(scope, receive, send))
    return sent


def test_fake_replica_lost_mid_response_is_retried_and_the_client_sees_one_answer() -> None:
    body = {"type": "http.response.body", "body": b"{}"}
    replicas = FakeReplicas([START_JSON, ActorDiedError()], [START_JSON, body])
    assert run_gateway(replicas) == [START_JSON, body]
    assert replicas.calls == 2


def test_fake_stream_cut_by_a_lost_replica_ends_with_an_error_event_and_done() -> None:
    chunk = {"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True}
    sent = run_gateway(FakeReplicas([START_SSE, chunk, ActorDiedError()]))
    assert sent[:2] == [START_SSE, chunk]
    assert sent[2]["body"] == LOST_REPLICA_EVENT
    assert sent[2]["more_body"] is False
    assert LOST_REPLICA_EVENT.endswith(b"data: [DONE]\n\n")


def test_fake_replicas_all_lost_gives_503() -> None:
    sent = run_gateway(FakeReplicas([ActorDiedError()], [ActorDiedError()], [ActorDiedError()]))
    assert sent[0]["status"] == 503


def test_only_actor_deaths_count_as_replica_loss() -> None:
    assert is_replica_loss(ActorDiedError())
    assert not is_replica_loss(ValueError("bad request"))


def test_relay_holds_a_non_streamed_response_until_finished() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def go() -> None:
        relay = Relay(send)
        await relay.send(START_JSON)
        await relay.send({"type": "http.response.body", "body": b"{}"})
        assert sent == [] and not relay.started
        await relay.finish()

    asyncio.run(go())
    assert len(sent) == 2


def answer(text: bytes, status: int = 200) -> list[Any]:
    return [{**START_JSON, "status": status}, {"type": "http.response.body", "body": text}]


def test_the_request_goes_to_the_model_its_body_names_and_anything_else_to_the_first() -> None:
    a, b = FakeReplicas(*[answer(b"a")] * 4), FakeReplicas(answer(b"b"))
    routes = ModelRoutes([(["model-a", "adapter-of-a"], a), (["model-b"], b)])
    assert run_gateway(routes, b'{"model": "model-b"}')[1]["body"] == b"b"
    assert run_gateway(routes, b'{"model": "adapter-of-a"}')[1]["body"] == b"a"
    # Unknown, missing, not a string, not JSON: the first model's replica (its guard, then vLLM) answers.
    for body in (b'{"model": "nope"}', b"{}", b'{"model": 3}', b"[1]", b"\xff"):
        assert routes.pick(body) is a
    assert (a.calls, b.calls) == (1, 1)


def test_one_model_never_parses_the_body() -> None:
    only = FakeReplicas()
    assert ModelRoutes([(["m"], only)]).pick(b"not json at all") is only


def test_v1_models_lists_every_model_and_passes_a_refusal_on_as_it_is() -> None:
    def listing(name: str) -> list[Any]:
        return answer(json.dumps({"object": "list", "data": [{"id": name}]}).encode())

    routes = ModelRoutes([(["a"], FakeReplicas(listing("a"))), (["b"], FakeReplicas(listing("b")))])
    sent = run_gateway(routes, b"", method="GET", path="/v1/models")
    assert sent[0]["status"] == 200
    assert [m["id"] for m in json.loads(sent[1]["body"])["data"]] == ["a", "b"]

    refused = answer(b'{"error": {"code": 401}}', status=401)
    routes = ModelRoutes([(["a"], FakeReplicas(refused)), (["b"], FakeReplicas(listing("b")))])
    sent = run_gateway(routes, b"", method="GET", path="/v1/models")
    assert (sent[0]["status"], sent[1]["body"]) == (401, b'{"error": {"code": 401}}')
