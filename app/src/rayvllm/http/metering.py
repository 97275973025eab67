"""Per-key usage metering: what the guard reports for each finished request, whatever records it.

In a replica the recorder is `rayvllm.serve.usage_meter.RayUsageMeter` (Ray counters); tests pass their own.
"""

from __future__ import annotations

from typing import Protocol

# key_id of requests served while auth is off.
ANONYMOUS = "anonymous"


class UsageRecorder(Protocol):
    """Where the ingress guard reports each finished request."""

    def record(
        self, key_id: str, status: int, prompt_tokens: int, completion_tokens: int, adapter: str | None = None
    ) -> None:
        """`adapter`: the LoRA adapter the request named, counted under its own model name; None for the
        replica's base model."""
