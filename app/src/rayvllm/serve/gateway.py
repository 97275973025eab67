"""The gateway: one endpoint for several models, and requests that survive a model replica that dies.

With more than one model, the gateway is the ingress in front of every model's deployment and picks the
deployment by the `model` field of the request's JSON body, as OpenAI clients expect. With one model it is
the optional failover gateway (`failover.enabled`); the JSON body is then never parsed.

Ray Serve's router retries a request only while choosing a replica; once a replica has accepted it, the
replica's death fails the request (a 500, or a stream cut mid-way). The gateway is a small ingress
deployment in front of the model replicas. It hands each HTTP request to a replica through a Serve
handle as plain data (`forward_asgi` runs it through the replica's guarded vLLM app and streams the
ASGI messages back), and when the replica dies:

- a non-streamed request, or a stream that has sent nothing yet, is retried on another replica;
- a stream already under way ends with `data: {"error": ...}` and `data: [DONE]`, never a hang.

The cost is one more Serve hop per request and per streamed chunk, which is why a single model goes
without it unless `failover.enabled` asks for it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from rayvllm.http.asgi import Message, Receive, RequestRejected, Scope, Send, error_body, read_body, reject

logger = logging.getLogger("rayvllm")

# The parts of an HTTP scope a replica needs to rebuild the request (all plain, picklable values).
FORWARDED_SCOPE_KEYS = ("method", "path", "raw_path", "query_string", "headers", "http_version", "scheme")
LOST_REPLICA_EVENT = (
    b"data: "
    + error_body(
        503, "The model replica serving this stream was lost; retry the request.", "ServiceUnavailableError"
    )
    + b"\n\ndata: [DONE]\n\n"
)


def is_replica_loss(error: BaseException) -> bool:
    """Whether `error` says the replica (its actor) died or became unreachable, rather than failed."""
    from ray.exceptions import RayActorError

    cause = getattr(error, "cause", None)
    return isinstance(error, RayActorError) or isinstance(cause, RayActorError)


class ModelRoutes:
    """Which model deployment serves a request. `models` pairs each deployment's handle with the names it
    serves (the model's, then its LoRA adapters'); the first model is the default."""

    def __init__(self, models: list[tuple[list[str], Any]]) -> None:
        self.handles = [handle for _, handle in models]
        self._by_name = {name: handle for names, handle in models for name in names}

    def pick(self, body: bytes) -> Any:
        """The deployment the body's `model` names. A body without one, or naming no model here, goes to the
        first model, whose guard checks the API key before vLLM answers its own 404 for an unknown model."""
        if len(self.handles) == 1:
            return self.handles[0]
        try:
            name = json.loads(body).get("model") if body else None
        except (ValueError, AttributeError):  # not JSON, or not an object: vLLM answers it
            name = None
        return self._by_name.get(name, self.handles[0]) if isinstance(name, str) else self.handles[0]


class FailoverGateway:
    """The gateway's ingress deployment; `models` pairs each model deployment's handle with its names."""

    def __init__(
        self, models: list[tuple[list[str], Any]], max_attempts: int = 3, max_body_bytes: int | None = None
    ) -> None:
        routes = ModelRoutes([(names, handle.options(stream=True)) for names, handle in models])
        self._app = FailoverApp(routes, max_attempts, max_body_bytes)

    def __serve_build_asgi_app__(self) -> FailoverApp:
        return self._app


class FailoverApp:
    """The gateway's ASGI app: forwards each request to its model, retrying it while a retry is invisible."""

    def __init__(self, routes: ModelRoutes, max_attempts: int, max_body_bytes: int | None) -> None:
        self._routes = routes
        self._max_attempts = max_attempts
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1011})  # not forwarded in failover mode
            return
        try:
            body = await read_body(scope, receive, self._max_body_bytes)
        except RequestRejected as rejected:
            await reject(scope, send, rejected)
            return
        request = {"scope": {k: scope[k] for k in FORWARDED_SCOPE_KEYS if k in scope}, "body": body}
        if len(self._routes.handles) > 1 and scope["method"] == "GET" and scope["path"] == MODELS_PATH:
            await self._list_every_model(request, send)
            return
        replicas = self._routes.pick(body)
        for attempt in range(1, self._max_attempts + 1):
            relay = Relay(send)
            try:
                async for message in replicas.forward.remote(request):
                    await relay.send(message)
                await relay.finish()
                return
            except Exception as error:
                if not is_replica_loss(error):
                    raise
                logger.warning("replica lost (attempt %d/%d): %s", attempt, self._max_attempts, error)
                if relay.started:
                    await relay.end_stream_with_error()
                    return
        lost = RequestRejected(
            503, "Every replica tried was lost; retry the request.", "ServiceUnavailableError"
        )
        await reject(scope, send, lost)

    async def _list_every_model(self, request: dict[str, Any], send: Send) -> None:
        """`/v1/models` of every model deployment in one list. Each replica's guard checks the key: the first
        answer that is not a 200 goes back as it is."""
        listed: list[Any] = []
        for handle in self._routes.handles:
            start, body = await _collect(handle.forward.remote(request))
            if start.get("status") != 200:
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            listed += json.loads(body).get("data", [])
        merged = json.dumps({"object": "list", "data": listed}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(merged)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": merged, "more_body": False})


MODELS_PATH = "/v1/models"


async def _collect(messages: Any) -> tuple[Message, bytes]:
    """A forwarded response as its start message and its whole body."""
    start: Message = {}
    body = b""
    async for message in messages:
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")
    return start, body


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop; acknowledge both, as the ASGI lifespan protocol asks."""
    while True:
        message = await receive()
        phase = message["type"].removeprefix("lifespan.")
        await send({"type": f"lifespan.{phase}.complete"})
        if phase == "shutdown":
            return


class Relay:
    """Sends a replica's response on: an event stream as it comes, anything else whole at the end.

    Holding a non-streamed response until it is complete keeps it retryable until its last byte.
    """

    def __init__(self, send: Send) -> None:
        self._send = send
        self._held: list[Message] = []
        self._streaming = False
        self.started = False  # bytes of this response reached the client

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._streaming = _is_event_stream(message)
        if not self._streaming:
            self._held.append(message)
            return
        for held in self._held:
            await self._send(held)
        self._held.clear()
        await self._send(message)
        self.started = True

    async def finish(self) -> None:
        for held in self._held:
            await self._send(held)

    async def end_stream_with_error(self) -> None:
        await self._send({"type": "http.response.body", "body": LOST_REPLICA_EVENT, "more_body": False})


def _is_event_stream(start: Message) -> bool:
    headers = {name.lower(): value for name, value in start.get("headers", ())}
    return headers.get(b"content-type", b"").startswith(b"text/event-stream")
