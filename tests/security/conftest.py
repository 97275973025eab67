"""One real stack for the whole security suite: API keys on, input limits set, two replicas behind the
failover gateway. Starting a stack costs minutes on a 2-core machine, so the auth, limit, fuzz, load and
lost-replica tests share it (lost-replica runs last: it kills a replica).

The suite's figures (fuzz examples, load latencies, RSS, what clients saw when a replica died) are
printed and written to `security-figures.json` in the session's temporary directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_stack import start_stack, stop_stack, tiny_config
from rayvllm.http.auth import write_key_dir
from security_support import KEY_RELOAD_S, KEYS, MAX_BODY_BYTES, MAX_CONCURRENT, MAX_TOKENS_CAP, GuardedStack


@pytest.fixture(scope="session")
def guarded_stack(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardedStack]:
    keys_dir = write_key_dir(KEYS, tmp_path_factory.mktemp("api-keys"))
    config = tiny_config(tiny_model_dir, autoscaling={"min_replicas": 2, "max_replicas": 2})
    config["auth"] = {"api_keys_dir": str(keys_dir), "reload_interval_s": KEY_RELOAD_S}
    config["limits"] = {
        "max_request_body_bytes": MAX_BODY_BYTES,
        "max_tokens_cap": MAX_TOKENS_CAP,
        "max_concurrent_requests": MAX_CONCURRENT,
        "retry_after_s": 2,
    }
    config["failover"] = {"enabled": True}
    logs = tmp_path_factory.mktemp("logs")
    try:
        stack = start_stack(config, logs / "guarded-stack.log")
    except RuntimeError:
        # Ray gives its raylet a fixed 30 s to register; on a busy machine one more try usually does it.
        stack = start_stack(config, logs / "guarded-stack-retry.log")
    yield GuardedStack(stack, keys_dir)
    leftovers = stop_stack(stack)
    assert not leftovers, f"processes left after stopping rayvllm serve: {leftovers}"


@pytest.fixture(scope="session")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Figures the lead quotes: filled by the tests, printed and saved as JSON at the end."""
    collected: dict[str, Any] = {}
    yield collected
    path = tmp_path_factory.getbasetemp() / "security-figures.json"
    path.write_text(json.dumps(collected, indent=2))
    print(f"\nsecurity figures ({path}):\n{json.dumps(collected, indent=2)}")
