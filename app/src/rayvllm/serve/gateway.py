"""The optional failover gateway: requests survive a model replica that dies (spot preemption).

Ray Serve's router retries a request only while choosing a replica; once a replica has accepted it, the
replica's death fails the request (a 500, or a stream cut mid-way). The gateway is a small ingress
deployment in front of the model replicas. It hands each HTTP request to a replica through a Serve
handle as plain data (`forward_asgi` runs it through the replica's guarded vLLM app and streams the
ASGI messages back), and when the replica dies:

- a non-streamed request, or a stream that has sent nothing yet, is retried on another replica;
- a stream already under way ends with `data: {"error": ...}` and `data: [DONE]`, never a hang.

The cost is one more Serve hop per request and per streamed chunk, which is why it is opt-in
(`failover.enabled`).
"""

from __future__ import annotations

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


class FailoverGateway:
    """The ingress deployment of a failover app; `replicas` is a handle to the model deployment."""

    def __init__(self, replicas: Any, max_attempts: int = 3, max_body_bytes: int | None = None) -> None:
        self._app = FailoverApp(replicas.options(stream=True), max_attempts, max_body_bytes)

    def __serve_build_asgi_app__(self) -> FailoverApp:
        return self._app


class FailoverApp:
    """The gateway's ASGI app: forwards each request, retrying it while a retry is invisible."""

    def __init__(self, replicas: Any, max_attempts: int, max_body_bytes: int | None) -> None:
        self._replicas = replicas
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
        for attempt in range(1, self._max_attempts + 1):
            relay = Relay(send)
            try:
                async for message in self._replicas.forward.remote(request):
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
