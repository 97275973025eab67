"""A replica killed under load (SIGKILL, as a reclaimed spot node would take it), and what clients saw:
completion clients and streaming clients on one connection pool, counted by outcome. Shared by the failover
gateway's test (tests/security) and the chart's default path (tests/integration)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import psutil
import sse
from local_stack import Stack

COMPLETION_CLIENTS = 12
STREAM_CLIENTS = 4
KILL_AFTER_S = 6
LOAD_S = 20
# A stream that sends nothing for this long counts as hung.
STREAM_IDLE_TIMEOUT_S = 60


def model_replicas(stack: Stack) -> list[psutil.Process]:
    """The model replicas' actor processes (found by Ray's process title), live."""
    runner = psutil.Process(stack.process.pid)
    return [p for p in runner.children(recursive=True) if _is_model_replica(p)]


def _is_model_replica(process: psutil.Process) -> bool:
    try:
        title = " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return "ServeReplica" in title and "VLLMServer" in title


async def completion_loop(client: httpx.AsyncClient, model: str, stop_at: float, seen: Counter[str]) -> None:
    body = {"model": model, "prompt": "Describe the sea", "max_tokens": 24, "ignore_eos": True}
    while time.monotonic() < stop_at:
        try:
            response = await client.post("/v1/completions", json=body)
            seen[f"completion {response.status_code}"] += 1
        except httpx.HTTPError as exc:
            seen[f"completion {type(exc).__name__}"] += 1


async def stream_loop(client: httpx.AsyncClient, model: str, stop_at: float, seen: Counter[str]) -> None:
    # Long streams, so the kill lands in the middle of some.
    body = {
        "model": model,
        "prompt": "Describe the sea",
        "max_tokens": 64,
        "ignore_eos": True,
        "stream": True,
    }
    while time.monotonic() < stop_at:
        seen[await one_stream(client, body)] += 1


async def one_stream(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    """How one stream ended: completed, error event then [DONE], cut (no [DONE]), or an HTTP error."""
    events: list[str] = []
    try:
        async with client.stream("POST", "/v1/completions", json=body) as response:
            if response.status_code != 200:
                return f"stream HTTP {response.status_code}"
            async for line in sse.aiter_lines(response.aiter_text()):
                if line.startswith("data: "):
                    events.append(line[6:])
    except httpx.ReadTimeout:
        return "stream hung"
    except httpx.HTTPError as exc:
        return f"stream {type(exc).__name__}"
    if events[-1:] != ["[DONE]"]:
        return "stream cut without [DONE]"
    errors = [e for e in events[:-1] if "error" in json.loads(e)]
    return "stream ended with error event" if errors else "stream completed"


async def load_and_kill(
    base_url: str, headers: dict[str, str], model: str, replicas: Callable[[], list[psutil.Process]]
) -> tuple[Counter[str], int]:
    """The load for LOAD_S seconds, the first of `replicas()` killed KILL_AFTER_S into it."""
    seen: Counter[str] = Counter()
    stop_at = time.monotonic() + LOAD_S
    timeout = httpx.Timeout(120, read=STREAM_IDLE_TIMEOUT_S)
    limits = httpx.Limits(max_connections=COMPLETION_CLIENTS + STREAM_CLIENTS)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=timeout, limits=limits
    ) as client:
        loops = [completion_loop(client, model, stop_at, seen) for _ in range(COMPLETION_CLIENTS)]
        loops += [stream_loop(client, model, stop_at, seen) for _ in range(STREAM_CLIENTS)]
        tasks = [asyncio.ensure_future(loop) for loop in loops]
        await asyncio.sleep(KILL_AFTER_S)
        victim = replicas()[0]
        victim.send_signal(signal.SIGKILL)
        await asyncio.gather(*tasks)
    return seen, victim.pid


def failed_completions(seen: Counter[str]) -> dict[str, int]:
    return {k: v for k, v in seen.items() if k.startswith("completion") and k != "completion 200"}
