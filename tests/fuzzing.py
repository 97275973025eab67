"""Schemathesis over a running stack's own OpenAPI schema, one operation at a time, for the fuzz tests.

Hypothesis drives each operation's strategy directly (schemathesis' pytest loader does not run under
pytest 9), with a bounded number of examples per operation.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

# Examples per operation: the whole schema takes about a minute on the 2-core machine.
EXAMPLES_PER_OPERATION = 10
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)


def operations(base_url: str, headers: dict[str, str]) -> list[Any]:
    """Every operation of the app's /openapi.json."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json", headers=headers, timeout=30)
    return [result.ok() for result in schema.get_all_operations()]


def fuzz_operation(
    operation: Any,
    base_url: str,
    headers: dict[str, str],
    statuses: Counter[str],
    examples: int = EXAMPLES_PER_OPERATION,
) -> list[str]:
    """Run `examples` examples of one operation, counting answers by status; return the 5xx answers seen."""
    server_errors: list[str] = []

    @settings(FUZZ_SETTINGS, max_examples=examples)
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=120)
        statuses[str(response.status_code)] += 1
        if response.status_code >= 500:
            server_errors.append(f"{case.method} {case.path}: {response.status_code} {response.text[:300]}")

    run()
    return server_errors
