"""Per-key usage as Ray counters, recorded by the guard in each replica (Ray metrics need a Ray worker).

They leave through Ray's metrics agent on every Ray pod's port 8080 as `ray_rayvllm_requests_total`,
`ray_rayvllm_prompt_tokens_total` and `ray_rayvllm_completion_tokens_total` (the same renaming as vLLM's
`ray_vllm_*`), labelled `key_id` and `model_name` (a LoRA adapter's name for requests to it), never with
the key itself.
"""

from __future__ import annotations


class RayUsageMeter:
    """Ray counters of one model's usage; build it inside the replica (Ray metrics need a worker)."""

    def __init__(self, model_name: str) -> None:
        from ray.util.metrics import Counter

        tags = {"model_name": model_name}
        self._requests = Counter(
            "rayvllm_requests",
            description="Requests answered, by API key id and HTTP status code.",
            tag_keys=("key_id", "model_name", "code"),
        ).set_default_tags(tags)
        self._prompt_tokens = Counter(
            "rayvllm_prompt_tokens",
            description="Prompt tokens of finished requests, by API key id (from the responses' usage).",
            tag_keys=("key_id", "model_name"),
        ).set_default_tags(tags)
        self._completion_tokens = Counter(
            "rayvllm_completion_tokens",
            description="Completion tokens of finished requests, by API key id (from the responses' usage).",
            tag_keys=("key_id", "model_name"),
        ).set_default_tags(tags)

    def record(
        self, key_id: str, status: int, prompt_tokens: int, completion_tokens: int, adapter: str | None = None
    ) -> None:
        tags = {"key_id": key_id} if adapter is None else {"key_id": key_id, "model_name": adapter}
        self._requests.inc(1, tags={**tags, "code": str(status)})
        if prompt_tokens:
            self._prompt_tokens.inc(prompt_tokens, tags=tags)
        if completion_tokens:
            self._completion_tokens.inc(completion_tokens, tags=tags)
