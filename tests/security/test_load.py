"""A bounded load on the real stack: 64 concurrent clients for two minutes, zero failed requests, and the
replicas' memory does not grow."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import sse
from security_support import GuardedStack

pytestmark = [pytest.mark.security, pytest.mark.integration, pytest.mark.slow]

CLIENTS = 64
LOAD_S = float(os.environ.get("RAYVLLM_LOAD_S", 120))
MAX_RSS_GROWTH = 0.10


@dataclass
class Tally:
    """What the clients saw."""

    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_s)
        return {
            "clients": CLIENTS,
            "duration_s": LOAD_S,
            "requests": len(ordered) + len(self.failures),
            "failed": len(self.failures),
            "p50_s": round(statistics.median(ordered), 3) if ordered else None,
            "p99_s": round(ordered[int(0.99 * (len(ordered) - 1))], 3) if ordered else None,
            "first_failures": self.failures[:5],
        }


async def one_request(client: httpx.AsyncClient, model: str, stream: bool) -> str | None:
    """Send a completion (or a streamed chat); return None when it succeeded, else what went wrong."""
    if not stream:
        body = {"model": model, "prompt": "Write a line of verse", "max_tokens": 16}
        response = await client.post("/v1/completions", json=body)
        return None if response.status_code == 200 else f"{response.status_code} {response.text[:200]}"
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16, "stream": True}
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = [line async for line in sse.aiter_lines(response.aiter_text()) if line]
    if response.status_code != 200 or lines[-1:] != ["data: [DONE]"] or any('"error"' in x for x in lines):
        return f"stream {response.status_code}: {lines[-2:]}"
    return None


async def client_loop(guarded: GuardedStack, tally: Tally, stop_at: float, index: int) -> None:
    async with httpx.AsyncClient(base_url=guarded.base_url, headers=guarded.headers(), timeout=120) as client:
        sent = 0
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                problem = await one_request(client, guarded.model, stream=(index + sent) % 2 == 1)
            except httpx.HTTPError as exc:
                problem = repr(exc)
            sent += 1
            if problem is None:
                tally.latencies_s.append(time.monotonic() - started)
            else:
                tally.failures.append(problem)


async def run_load(guarded: GuardedStack) -> Tally:
    tally = Tally()
    stop_at = time.monotonic() + LOAD_S
    await asyncio.gather(*(client_loop(guarded, tally, stop_at, i) for i in range(CLIENTS)))
    return tally


def test_64_clients_for_two_minutes_fail_nothing_and_memory_stays_flat(
    guarded_stack: GuardedStack, figures: dict[str, Any]
) -> None:
    rss_before = guarded_stack.replica_rss_bytes()
    tally = asyncio.run(run_load(guarded_stack))
    time.sleep(5)  # let freed buffers settle
    rss_after = guarded_stack.replica_rss_bytes()
    summary = tally.summary()
    summary |= {
        "replica_rss_before_mib": round(rss_before / 2**20, 1),
        "replica_rss_after_mib": round(rss_after / 2**20, 1),
        "rss_growth": round(rss_after / rss_before - 1, 4),
    }
    figures["load"] = summary
    print(f"\nload: {summary}")
    assert rss_before > 0
    assert summary["failed"] == 0, summary["first_failures"]
    assert summary["requests"] > CLIENTS
    assert summary["rss_growth"] < MAX_RSS_GROWTH
