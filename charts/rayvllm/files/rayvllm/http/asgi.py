"""The ASGI plumbing that the guard, the replica and the failover gateway share; no Ray, no vLLM.

The ASGI types, reading a request's body under a size limit, vLLM's error body, answering with it, and running
one forwarded request through an ASGI app in this process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestRejected(Exception):
    """A request the guard answers itself, with an OpenAI-style error."""

    def __init__(
        self, status: int, message: str, error_type: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type
        self.headers = headers or {}


async def read_body(scope: Scope, receive: Receive, max_bytes: int | None) -> bytes:
    too_large = RequestRejected(
        413, f"Request body larger than the limit of {max_bytes} bytes.", "RequestEntityTooLarge"
    )
    declared = _header(scope, b"content-length")
    if max_bytes is not None and declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def error_body(status: int, message: str, error_type: str) -> bytes:
    """vLLM's ErrorResponse as JSON bytes."""
    error = {"message": message, "type": error_type, "param": None, "code": status}
    return json.dumps({"error": error}).encode()


async def reject(scope: Scope, send: Send, rejected: RequestRejected) -> None:
    if scope["type"] == "websocket":
        # 1008: policy violation; the handshake never completes.
        await send({"type": "websocket.close", "code": 1008, "reason": rejected.message[:120]})
        return
    body = error_body(rejected.status, rejected.message, rejected.error_type)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in rejected.headers.items()]
    await send({"type": "http.response.start", "status": rejected.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def forward_asgi(app: ASGIApp, request: dict[str, Any]) -> AsyncIterator[Message]:
    """Run one forwarded request through `app` in this process, yielding the ASGI messages it sends."""
    scope: Scope = {"type": "http", "asgi": {"version": "3.0"}, "state": {}, **request["scope"]}
    messages: asyncio.Queue[Message | None] = asyncio.Queue()
    gone = asyncio.Event()
    body_sent = False

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": request["body"], "more_body": False}
        await gone.wait()  # vLLM listens for the client's disconnect to abort the request
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await messages.put(message)

    task: asyncio.Future[None] = asyncio.ensure_future(app(scope, receive, send))
    task.add_done_callback(lambda _: messages.put_nowait(None))
    try:
        while (message := await messages.get()) is not None:
            yield message
        await task  # re-raise what the app raised
    finally:
        gone.set()  # the gateway went away (its client did), or we are done
        if not task.done():
            task.cancel()
