"""A bounded load generator: a fixed number of concurrent completion requests, until told to stop."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadCounts:
    """What the clients saw so far."""

    sent: int = 0
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        return self.sent - self.ok - self.failed


class LoadGenerator:
    """`concurrency` clients, each sending one completion after another, in a thread of its own."""

    def __init__(self, base_url: str, model: str, concurrency: int, max_tokens: int) -> None:
        self.base_url = base_url
        self.body = {
            "model": model,
            "prompt": "Autoscaling is proven when",
            "max_tokens": max_tokens,
            # Random weights may stop at once; every request does the same work.
            "ignore_eos": True,
        }
        self.concurrency = concurrency
        self.counts = LoadCounts()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 300) -> None:
        """Stop sending; return once every request in flight has its answer."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"requests still in flight {timeout_s:.0f}s after the load stopped")

    def snapshot(self) -> LoadCounts:
        with self._lock:
            return LoadCounts(self.counts.sent, self.counts.ok, self.counts.failed, list(self.counts.errors))

    async def _run(self) -> None:
        # No client timeout shorter than the test's: a queued request waits for a replica, it does not fail.
        async with httpx.AsyncClient(base_url=self.base_url, timeout=300) as client:
            await asyncio.gather(*(self._client(client) for _ in range(self.concurrency)))

    async def _client(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            with self._lock:
                self.counts.sent += 1
            error = await self._one_request(client)
            with self._lock:
                if error is None:
                    self.counts.ok += 1
                else:
                    self.counts.failed += 1
                    self.counts.errors.append(error)

    async def _one_request(self, client: httpx.AsyncClient) -> str | None:
        """None on a complete answer, else what went wrong."""
        try:
            response = await client.post("/v1/completions", json=self.body)
        except httpx.HTTPError as exc:
            return repr(exc)
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {response.text[:200]}"
        return None
