"""Per-request timings and their summary: TTFT, TPOT, ITL, E2E, throughput, failures.

Definitions (those of `vllm bench serve`, so figures compare with vLLM's own tool):

- TTFT: request sent to the first streamed chunk that carries a choice.
- ITL: the gaps between successive chunks that carry a choice, pooled over all requests. A server that
  coalesces tokens into one chunk shows fewer, longer gaps here; TPOT is unaffected.
- TPOT: (E2E - TTFT) / (output tokens - 1), per request with more than one output token.
- E2E: request sent to the end of the stream.
- Output tokens: the server's `usage.completion_tokens` (asked for with `stream_options.include_usage`);
  the number of chunks when the server reports no usage.
- Throughput: completed requests and output tokens over the wall time of the whole load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (50, 95, 99)
MAX_ERRORS_KEPT = 5


@dataclass
class RequestResult:
    """What one streamed request measured. Times are seconds; `error` is None on success."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    tokens_from_usage: bool = False
    ttft: float = 0.0
    e2e: float = 0.0
    itl: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def tpot(self) -> float | None:
        if self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)


def distribution_ms(values_s: list[float]) -> dict[str, float | None]:
    """Mean and percentiles (linear interpolation) of timings in seconds, reported in milliseconds."""
    import numpy as np

    if not values_s:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
    array = np.asarray(values_s, dtype=float) * 1000.0
    stats = {"mean": float(array.mean())}
    stats.update({f"p{p}": float(np.percentile(array, p)) for p in PERCENTILES})
    return {k: round(v, 3) for k, v in stats.items()}


def summarize(
    results: list[RequestResult], duration_s: float, *, num_prompts: int, concurrency: int
) -> dict[str, Any]:
    """The summary of one load: `num_prompts` requests at `concurrency`, over `duration_s` of wall time."""
    done = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    errors: list[str] = []
    for r in failed:
        if r.error not in errors and len(errors) < MAX_ERRORS_KEPT:
            errors.append(str(r.error))
    output_tokens = sum(r.output_tokens for r in done)
    input_tokens = sum(r.prompt_tokens for r in done)
    from_usage = sum(r.tokens_from_usage for r in done)
    tpots = [t for t in (r.tpot for r in done) if t is not None]
    return {
        "num_prompts": num_prompts,
        "concurrency": concurrency,
        "completed": len(done),
        "failed": len(failed),
        "errors": errors,
        "duration_s": round(duration_s, 3),
        "request_throughput": round(len(done) / duration_s, 3) if duration_s > 0 else None,
        "output_throughput": round(output_tokens / duration_s, 2) if duration_s > 0 else None,
        "total_token_throughput": round((input_tokens + output_tokens) / duration_s, 2)
        if duration_s > 0
        else None,
        "total_input_tokens": input_tokens,
        "total_output_tokens": output_tokens,
        "output_tokens_counted_from": "usage"
        if from_usage == len(done)
        else "chunks"
        if from_usage == 0
        else "mixed",
        "ttft_ms": distribution_ms([r.ttft for r in done]),
        "tpot_ms": distribution_ms(tpots),
        "itl_ms": distribution_ms([gap for r in done for gap in r.itl]),
        "e2e_ms": distribution_ms([r.e2e for r in done]),
    }
