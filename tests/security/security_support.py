"""What the security suite's tests share: the stack's settings and how to reach and inspect it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from local_stack import Stack
from replica_loss import model_replicas

KEYS = {"team-a": "sk-test-team-a-0123456789", "team-b": "sk-test-team-b-9876543210"}
MAX_BODY_BYTES = 64 * 1024
MAX_TOKENS_CAP = 64
# Per replica: all 64 load clients fit on one replica (routing is not perfectly even), a 256-request
# burst over two replicas does not.
MAX_CONCURRENT = 64
KEY_RELOAD_S = 1.0


@dataclass
class GuardedStack:
    """The running stack and what a test needs to reach it."""

    stack: Stack
    keys_dir: Path

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    @property
    def model(self) -> str:
        return self.stack.model

    def headers(self, key_id: str = "team-a") -> dict[str, str]:
        return {"Authorization": f"Bearer {KEYS[key_id]}"}

    def client(self, key_id: str = "team-a", timeout: float = 120) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.headers(key_id), timeout=timeout)

    def replica_processes(self) -> list[psutil.Process]:
        """The model replicas' actor processes (found by Ray's process title), live."""
        return model_replicas(self.stack)

    def replica_rss_bytes(self) -> int:
        """RSS of the model replicas and everything they started (vLLM's engine-core processes)."""
        total = 0
        for replica in self.replica_processes():
            for process in [replica, *replica.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
        return total

    def counters(self, name: str) -> dict[str, float]:
        """`ray_rayvllm_<name>_total` by key_id, summed over replicas, from Ray's metrics port."""
        text = httpx.get(self.stack.metrics_urls[0], timeout=30).text
        totals: dict[str, float] = {}
        pattern = re.compile(rf"^ray_rayvllm_{name}_total\{{([^}}]*)\}} ([0-9.e+]+)$", re.M)
        for labels, value in pattern.findall(text):
            key_id = re.search(r'key_id="([^"]*)"', labels)
            if key_id:
                totals[key_id.group(1)] = totals.get(key_id.group(1), 0.0) + float(value)
        return totals
