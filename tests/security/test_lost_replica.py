"""A replica dies under load (SIGKILL, as a reclaimed spot node would take it): no non-streamed request
fails, and every stream either completes or ends with an error event and `[DONE]`, never a hang.

It runs last in the suite (file order): the killed replica is restarted by Serve only after the stack's
other tests are done with it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from security_support import GuardedStack

pytestmark = [pytest.mark.security, pytest.mark.integration, pytest.mark.slow]

COMPLETION_CLIENTS = 12
STREAM_CLIENTS = 4
KILL_AFTER_S = 6
LOAD_S = 20
# A stream that sends nothing for this long counts as hung.
STREAM_IDLE_TIMEOUT_S = 60


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
            async for line in response.aiter_lines():
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


async def load_and_kill(guarded: GuardedStack) -> tuple[Counter[str], int]:
    seen: Counter[str] = Counter()
    stop_at = time.monotonic() + LOAD_S
    timeout = httpx.Timeout(120, read=STREAM_IDLE_TIMEOUT_S)
    limits = httpx.Limits(max_connections=COMPLETION_CLIENTS + STREAM_CLIENTS)
    async with httpx.AsyncClient(
        base_url=guarded.base_url, headers=guarded.headers(), timeout=timeout, limits=limits
    ) as client:
        loops = [completion_loop(client, guarded.model, stop_at, seen) for _ in range(COMPLETION_CLIENTS)]
        loops += [stream_loop(client, guarded.model, stop_at, seen) for _ in range(STREAM_CLIENTS)]
        tasks = [asyncio.ensure_future(loop) for loop in loops]
        await asyncio.sleep(KILL_AFTER_S)
        victim = guarded.replica_processes()[0]
        victim.send_signal(signal.SIGKILL)
        await asyncio.gather(*tasks)
    return seen, victim.pid


def test_killing_a_replica_under_load_fails_no_request_and_hangs_no_stream(
    guarded_stack: GuardedStack, figures: dict[str, Any]
) -> None:
    assert len(guarded_stack.replica_processes()) == 2
    seen, victim = asyncio.run(load_and_kill(guarded_stack))
    outcome = dict(sorted(seen.items()))
    figures["lost_replica"] = {"killed_pid": victim, "outcomes": outcome}
    print(f"\nlost replica (SIGKILL pid {victim}): {outcome}")
    completions = {k: v for k, v in seen.items() if k.startswith("completion")}
    assert completions.get("completion 200", 0) > 0
    assert set(completions) == {"completion 200"}, f"failed non-streamed requests: {completions}"
    streams = {k for k in seen if k.startswith("stream")}
    assert streams <= {"stream completed", "stream ended with error event"}, outcome
