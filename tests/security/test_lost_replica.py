"""A replica dies under load behind the failover gateway (tests/replica_loss.py): no non-streamed request
fails, and every stream either completes or ends with an error event and `[DONE]`, never a hang.

It runs last in the suite (file order): the killed replica is restarted by Serve only after the stack's
other tests are done with it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from replica_loss import failed_completions, load_and_kill
from security_support import GuardedStack

pytestmark = [pytest.mark.security, pytest.mark.integration, pytest.mark.slow]


def test_killing_a_replica_under_load_fails_no_request_and_hangs_no_stream(
    guarded_stack: GuardedStack, figures: dict[str, Any]
) -> None:
    assert len(guarded_stack.replica_processes()) == 2
    seen, victim = asyncio.run(
        load_and_kill(
            guarded_stack.base_url,
            guarded_stack.headers(),
            guarded_stack.model,
            guarded_stack.replica_processes,
        )
    )
    outcome = dict(sorted(seen.items()))
    figures["lost_replica"] = {"killed_pid": victim, "outcomes": outcome}
    print(f"\nlost replica (SIGKILL pid {victim}): {outcome}")
    assert seen["completion 200"] > 0
    assert failed_completions(seen) == {}, f"failed non-streamed requests: {outcome}"
    streams = {k for k in seen if k.startswith("stream")}
    assert streams <= {"stream completed", "stream ended with error event"}, outcome
