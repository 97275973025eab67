"""A replica killed under load on the chart's default path: HAProxy in front of two replicas, no failover
gateway (tests/replica_loss.py). HAProxy replays the non-streamed requests of the dead replica on the other
one (serve.haproxy.retryLostRequests), so none fails. A stream that has sent its first bytes cannot be
replayed: it ends with the connection closed, without the error event and `[DONE]` that the gateway sends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from local_stack import Stack, start_stack, stop_stack, tiny_config
from replica_loss import failed_completions, load_and_kill, model_replicas

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def two_replicas(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = tiny_config(tiny_model_dir, autoscaling={"min_replicas": 2, "max_replicas": 2})
    logs = tmp_path_factory.mktemp("logs")
    try:
        stack = start_stack(config, logs / "two-replicas.log")
    except RuntimeError:
        # Ray gives its raylet a fixed 30 s to register; on a busy machine one more try usually does it.
        stack = start_stack(config, logs / "two-replicas-retry.log")
    yield stack
    assert not stop_stack(stack), "processes left after stopping rayvllm serve"


def _haproxy_defaults(stack: Stack) -> list[str]:
    """The `defaults` section of the config that this stack's HAProxy runs (its `-f` argument)."""
    (config,) = {
        p.cmdline()[p.cmdline().index("-f") + 1]
        for p in psutil.Process(stack.process.pid).children(recursive=True)
        if p.name() == "haproxy"
    }
    section: list[str] = []
    for line in Path(config).read_text().splitlines():
        if not line.startswith(" "):
            if section:
                return section
            section = [] if line.strip() != "defaults" else [line]
        elif section:
            section.append(line.strip())
    return section


def test_haproxy_runs_with_l7_retries_and_the_request_buffered(two_replicas: Stack) -> None:
    defaults = _haproxy_defaults(two_replicas)
    assert "retry-on conn-failure empty-response junk-response" in defaults, defaults
    assert "option http-buffer-request" in defaults, defaults
    assert "retries 3" in defaults and "option redispatch 1" in defaults, defaults


def test_killing_a_replica_fails_no_non_streamed_request(two_replicas: Stack) -> None:
    assert len(model_replicas(two_replicas)) == 2
    seen, victim = asyncio.run(
        load_and_kill(two_replicas.base_url, {}, two_replicas.model, lambda: model_replicas(two_replicas))
    )
    outcome = dict(sorted(seen.items()))
    print(f"\nlost replica on the default path (SIGKILL pid {victim}): {json.dumps(outcome)}")
    assert seen["completion 200"] > 0
    assert failed_completions(seen) == {}, outcome
    # Measured bound, not the target: a cut stream ends with the connection closed, never hangs.
    assert {k for k in seen if k.startswith("stream")} <= {"stream completed", "stream RemoteProtocolError"}
