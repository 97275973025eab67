"""The ingress guard: API keys, input limits and per-key metering around vLLM's ASGI app.

A pure ASGI middleware (Starlette's BaseHTTPMiddleware would buffer streamed responses), so it costs
microseconds per request and streams pass through untouched. It runs inside each Serve replica, in front
of vLLM's own FastAPI app. It answers with vLLM's error shape, `{"error": {"message", "type", "param",
"code"}}`, in this one place, and gives that shape to the `{"detail": ...}` errors FastAPI itself answers
(see `Status`).

Which requests skip the key and which are hidden is decided on the path that vLLM's router matches, not
on the string the client sent (see `is_open` and `is_hidden`).
"""

from __future__ import annotations

import json
import logging
import posixpath
from http import HTTPStatus
from typing import Any

from rayvllm.config import LimitsConfig
from rayvllm.http.asgi import (
    ASGIApp,
    Message,
    Receive,
    RequestRejected,
    Scope,
    Send,
    error_body,
    read_body,
    reject,
)
from rayvllm.http.auth import KeyStore
from rayvllm.http.metering import ANONYMOUS, UsageRecorder

logger = logging.getLogger("rayvllm")

# Liveness and readiness probes need no key. In vLLM these are plain routes (`^/health$`, `^/ping$`).
OPEN_PATHS = frozenset({"/health", "/ping"})
# Metrics leave through Ray's metrics agent (port 8080), never through the public Serve port. vLLM mounts
# its Prometheus app with the pattern `^/metrics(?P<path>.*)$`: every path that begins so is metrics.
HIDDEN_PREFIX = "/metrics"
TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")
# Raised by vLLM's handlers on input they never range-check or type-check: a /v1/responses input item
# without a `role` (KeyError), a beam search whose `length_penalty` sends the score's divisor
# `len ** penalty` to 0.0 (ZeroDivisionError). They mean malformed input, not a server fault; vLLM 0.26
# answers 400 itself only for ValueError, TypeError and OverflowError.
MALFORMED_INPUT_ERRORS = (KeyError, TypeError, AttributeError, IndexError, ArithmeticError)


class IngressGuard:
    """Wraps an ASGI app with key checks, limits and metering; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        limits: LimitsConfig,
        keys: KeyStore | None = None,
        meter: UsageRecorder | None = None,
        adapters: frozenset[str] = frozenset(),
    ) -> None:
        self.app, self.limits, self.keys, self.meter = app, limits, keys, meter
        # LoRA adapter names: a request naming one is metered under its name, not the base model's.
        self.adapters = adapters
        self.in_flight = 0

    # Serve registers its back-pressure handlers and finds the docs through these.
    def add_exception_handler(self, *args: Any, **kwargs: Any) -> None:
        self.app.add_exception_handler(*args, **kwargs)  # type: ignore[attr-defined]

    @property
    def docs_url(self) -> str | None:
        return getattr(self.app, "docs_url", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        path = route_path(scope, getattr(self.app, "root_path", ""))
        if is_open(path):
            await self._serve_open(scope, receive, send)
            return
        try:
            if is_hidden(path):
                raise RequestRejected(404, "Not Found", "NotFoundError")
            key_id = self._authenticate(scope)
        except RequestRejected as rejected:
            await reject(scope, send, rejected)
            return
        await self._serve(scope, receive, send, key_id)

    async def _serve_open(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A probe: no key, no limit (a busy replica must still answer its kubelet), no metering."""
        status = Status(send)
        try:
            await self.app(scope, receive, status.send)
        except Exception:
            await status.flush()
            raise
        await status.flush()

    def _authenticate(self, scope: Scope) -> str:
        if self.keys is None:
            return ANONYMOUS
        presented = _presented_key(scope)
        key_id = self.keys.authenticate(presented) if presented else None
        if key_id is None:
            raise RequestRejected(
                401,
                "Missing or invalid API key: send `Authorization: Bearer <key>`.",
                "AuthenticationError",
                {"www-authenticate": "Bearer"},
            )
        return key_id

    async def _serve(self, scope: Scope, receive: Receive, send: Send, key_id: str) -> None:
        limit = self.limits.max_concurrent_requests
        if limit is not None and self.in_flight >= limit:
            retry_after = {"retry-after": str(self.limits.retry_after_s)}
            busy = RequestRejected(
                429, f"This replica is serving {limit} requests; retry later.", "RateLimitError", retry_after
            )
            await reject(scope, send, busy)
            return
        self.in_flight += 1
        status = Status(send)
        # A state dict of the request's own: vLLM leaves the response's usage in it (`request_metadata`).
        scope = {**scope, "state": dict(scope.get("state") or {})}
        adapter = None
        try:
            if scope["type"] == "http" and self._reads_body(scope):
                receive, adapter = await self._checked_body(scope, receive)
            await self.app(scope, receive, status.send)
            await status.flush()
        except RequestRejected as rejected:
            await reject(scope, send, rejected)
            status.code = rejected.status
        except MALFORMED_INPUT_ERRORS as error:
            if not status.holds_500:
                raise
            # Starlette sent its 500 and re-raised; the client gets a 400 naming the error instead.
            logger.warning("malformed request to %s: %r", scope["path"], error)
            message = f"Malformed request: {type(error).__name__}: {error}"
            await reject(scope, send, RequestRejected(400, message, "BadRequestError"))
            status.code = 400
        except Exception:
            await status.flush()
            status.code = status.code or 500
            raise
        finally:
            self.in_flight -= 1
            # No status at all: the client went away first (nginx's 499).
            self._record(key_id, status.code or 499, scope["state"], adapter)

    def _reads_body(self, scope: Scope) -> bool:
        limits = self.limits
        has_limit = limits.max_request_body_bytes is not None or limits.max_tokens_cap is not None
        return (has_limit or bool(self.adapters)) and scope["method"] not in ("GET", "HEAD", "OPTIONS")

    async def _checked_body(self, scope: Scope, receive: Receive) -> tuple[Receive, str | None]:
        """Read the whole body (vLLM would too), enforce the limits, and hand it on unchanged, with the
        adapter it names (None for the base model)."""
        body = await read_body(scope, receive, self.limits.max_request_body_bytes)
        request = None
        if self.limits.max_tokens_cap is not None:
            request = _check_max_tokens(body, self.limits.max_tokens_cap)
        adapter = _named_adapter(body, request, self.adapters) if self.adapters else None
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # later calls wait for the client's disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay, adapter

    def _record(self, key_id: str, status: int, state: dict[str, Any], adapter: str | None) -> None:
        if self.meter is None:
            return
        usage = getattr(state.get("request_metadata"), "final_usage_info", None)
        prompt = getattr(usage, "prompt_tokens", 0) or 0
        completion = getattr(usage, "completion_tokens", 0) or 0
        self.meter.record(key_id, status, prompt, completion, adapter)


class Status:
    """Passes messages on to `send`, noting the response status (0 until one is sent).

    A 500 is held back until the app returns: Starlette answers an unhandled exception with a 500 and then
    re-raises it, and the guard turns the ones that mean malformed input into a 400.

    A 4xx JSON answer is held until its body is whole, and one that is FastAPI's own `{"detail": ...}` is
    sent in vLLM's error shape instead. FastAPI raises Starlette's HTTPException for a body it cannot
    parse (not UTF-8, nested too deep: 400 "There was an error parsing the body"), an unknown route (404)
    and a wrong method (405); vLLM's handler is registered for FastAPI's subclass only, so these reach
    FastAPI's default handler. vLLM's own errors already have the shape and go out as they came. Nothing
    else is held: a 2xx response, a stream included, costs one comparison per message.
    """

    def __init__(self, send: Send) -> None:
        self._send = send
        self.code = 0
        self._held: list[Message] = []

    @property
    def holds_500(self) -> bool:
        return self.code == 500 and bool(self._held)

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.code = int(message["status"])
            if self.code == 500 or (400 <= self.code < 500 and _is_json(message)):
                self._held.append(message)
                return
        elif kind == "websocket.accept":
            self.code = 101
        if self._held and kind.startswith("http.response."):
            self._held.append(message)
            if self.code != 500 and kind == "http.response.body" and not message.get("more_body", False):
                await self._send_reshaped()
            return
        await self._send(message)

    async def _send_reshaped(self) -> None:
        start, *bodies = self._held
        self._held = []
        body = b"".join(part.get("body", b"") for part in bodies)
        reshaped = _openai_error(self.code, body)
        if reshaped is None:
            await self._send(start)
            await self._send({"type": "http.response.body", "body": body})
            return
        headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(reshaped)).encode()))
        await self._send({**start, "headers": headers})
        await self._send({"type": "http.response.body", "body": reshaped})

    async def flush(self) -> None:
        for message in self._held:
            await self._send(message)
        self._held.clear()


def _is_json(start: Message) -> bool:
    return any(
        k.lower() == b"content-type" and v.startswith(b"application/json")
        for k, v in start.get("headers", ())
    )


def _openai_error(status: int, body: bytes) -> bytes | None:
    """vLLM's error body for FastAPI's `{"detail": ...}` (typed as vLLM's HTTPException handler does), or
    None when `body` is anything else."""
    if not body.startswith(b'{"detail":'):  # Starlette's JSONResponse, compact; vLLM's start `{"error":`
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or parsed.keys() != {"detail"}:
        return None
    detail = parsed["detail"]
    message = detail if isinstance(detail, str) else json.dumps(detail)
    try:
        error_type = HTTPStatus(status).phrase
    except ValueError:
        error_type = "BadRequestError"
    return error_body(status, message, error_type)


def route_path(scope: Scope, app_root_path: str = "") -> str:
    """The path the app's router matches, computed as Starlette does (`starlette._utils.get_route_path`).

    `scope["path"]` is already percent-decoded (uvicorn decodes it once, both in Serve's proxy and in a
    replica's own HTTP server; `raw_path` keeps the bytes sent) and Starlette routes on it, less the root
    path: the scope's, or FastAPI's `root_path` (vLLM's `--root-path`), which FastAPI writes into the scope
    after the guard has seen it. Starlette resolves no dot segments and merges no slashes.
    """
    path: str = scope["path"]
    root = app_root_path or scope.get("root_path", "")
    if root and path.startswith(root):
        if path == root:
            return ""
        if path[len(root)] == "/":
            return path[len(root) :]
    return path


def is_open(path: str) -> bool:
    """Whether `path` (a `route_path`) reaches a probe. vLLM's probes are plain routes, which Starlette
    matches only when the route path is exactly theirs; any other spelling (`/health/`, `/health/.`,
    `/health/../v1/models`, `//health`) is not routed to the probe, so it gets no exemption from the key."""
    return path in OPEN_PATHS


def is_hidden(path: str) -> bool:
    """Whether `path` (a `route_path`) is metrics, answered 404 with or without a key.

    Two tests, both a prefix: what vLLM's mount matches (`^/metrics(?P<path>.*)$`: `/metrics/`,
    `/metrics/.`, `/metrics/..`, `/metricsX`), and what a normalising router would make of the path (dot
    segments resolved, slashes merged, case folded: `/v1/../metrics`, `//metrics`, `/METRICS`). Starlette
    routes none of the second kind to metrics today; the test keeps it so should a later Starlette, or a
    middleware between the guard and vLLM's routes, normalise. Hiding more than is routed costs nothing:
    no other vLLM route begins with /metrics.
    """
    if path.startswith(HIDDEN_PREFIX):
        return True
    folded = path.lower()
    if "//" in folded or "/." in folded:
        folded = "/" + posixpath.normpath(folded).lstrip("/")
    return folded.startswith(HIDDEN_PREFIX)


def _presented_key(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
        elif name == b"x-api-key" and value.strip():
            return str(value.decode("latin-1").strip())
    return None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep: FastAPI answers it
        return None
    return request if isinstance(request, dict) else None


def _named_adapter(body: bytes, request: dict[str, Any] | None, adapters: frozenset[str]) -> str | None:
    """The adapter a JSON body names in `model`, if any."""
    if request is None:
        if not any(name.encode() in body for name in adapters):
            return None  # a request to the base model costs a substring search, not a JSON parse
        request = _json_object(body)
    model = request.get("model") if request else None
    return model if isinstance(model, str) and model in adapters else None


def _check_max_tokens(body: bytes, cap: int) -> dict[str, Any] | None:
    """400 when a JSON body asks for more than `cap` tokens; vLLM judges everything else. Returns the
    body's JSON object when it had to parse it."""
    if not any(field.encode() in body for field in TOKEN_FIELDS):
        return None  # the common case costs a substring search, not a JSON parse
    request = _json_object(body)
    if request is None:
        return None
    for field in TOKEN_FIELDS:
        value = request.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            raise RequestRejected(
                400,
                f"{field} is {value}, more than this server's cap of {cap} (limits.max_tokens_cap).",
                "BadRequestError",
            )
    return request
