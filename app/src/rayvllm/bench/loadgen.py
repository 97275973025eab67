"""The load generator: random prompts, streamed OpenAI requests at a fixed concurrency, one summary per load.

Prompts are exact token-id lists by default: vLLM's /v1/completions takes a list of ints as `prompt`, so
"512 tokens in" is exactly 512 for every server, with or without a local tokenizer. Text prompts (needed
for /v1/chat/completions) are decoded from random ids with the server's tokenizer and re-encoded until
they have the asked length; without a tokenizer they are random words, and the prompt length is what the
server reports.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from rayvllm.bench.metrics import RequestResult, summarize

# Client processes of a split load start together this long after they are spawned, once all have imported.
CLIENT_START_S = 10
DEFAULT_TOKEN_ID_RANGE = (100, 40000)  # inside every common vocabulary; the GPU baseline's choice
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
_WORDS = ("the", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with", "as", "by", "at", "it")


@dataclass(frozen=True)
class Load:
    """`num_prompts` requests sent with at most `concurrency` in flight."""

    num_prompts: int
    concurrency: int

    @classmethod
    def parse(cls, text: str) -> Load:
        """Parse `N@C`, for example `1000@256`."""
        try:
            num, conc = (int(part) for part in text.split("@"))
        except ValueError:
            raise ValueError(f"a load is N@C (prompts@concurrency), got {text!r}") from None
        if num < 1 or conc < 1:
            raise ValueError(f"prompts and concurrency must be positive, got {text!r}")
        return cls(num, conc)

    def __str__(self) -> str:
        return f"{self.num_prompts}@{self.concurrency}"


@dataclass(frozen=True)
class Target:
    """Where and what to send: an OpenAI-compatible endpoint and the request shape."""

    base_url: str
    model: str
    api: str = "completions"  # or "chat"
    output_len: int = 256
    ignore_eos: bool = True
    temperature: float | None = None
    api_key: str | None = None
    request_timeout_s: float = 1800.0

    @property
    def url(self) -> str:
        path = "/v1/chat/completions" if self.api == "chat" else "/v1/completions"
        return self.base_url.rstrip("/") + path

    def payload(self, prompt: list[int] | str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.output_len,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if self.ignore_eos:
            body["ignore_eos"] = True  # a vLLM extension; not sent when off, for other servers
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


# --- prompts -------------------------------------------------------------------------------------------


def find_server_tokenizer(base_url: str, model: str, api_key: str | None = None) -> str | None:
    """The tokenizer directory of a local server: vLLM lists the model's path as `root` in /v1/models."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        listing = httpx.get(base_url.rstrip("/") + "/v1/models", headers=headers, timeout=30).json()
    except (httpx.HTTPError, ValueError):
        return None
    for card in listing.get("data", []):
        root = card.get("root")
        if card.get("id") == model and root and any((Path(root) / f).is_file() for f in TOKENIZER_FILES):
            return str(root)
    return None


def make_prompts(
    count: int,
    input_len: int,
    *,
    as_text: bool,
    tokenizer: str | None,
    token_id_range: tuple[int, int] | None,
    seed: int,
    shared_prefix: tuple[int, int] | None = None,
) -> list[list[int]] | list[str]:
    """`count` random prompts of `input_len` tokens (see the module docstring).

    `shared_prefix` (N, LEN) puts one of N random prefixes of LEN tokens before each prompt, in turn: the
    workload of prefix caching and prefix-aware routing (N system prompts, each with its own questions).
    Text prefixes are decoded from LEN random ids and not re-encoded, so their length is about LEN.
    """
    rng = random.Random(seed)
    tok = None
    if tokenizer and (as_text or token_id_range is None):
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer)
    if token_id_range is not None:
        pool: range | list[int] = range(*token_id_range)
    elif tok is not None:
        special = set(tok.all_special_ids)
        pool = [i for i in range(len(tok)) if i not in special]
    else:
        pool = range(*DEFAULT_TOKEN_ID_RANGE)

    prompts = _random_prompts(count, input_len, as_text, tok, pool, rng)
    if shared_prefix is None:
        return prompts
    prefix_count, prefix_len = shared_prefix
    prefix_rng = random.Random(f"prefix-{seed}")  # apart from the prompts' own draws
    prefixes = [[prefix_rng.choice(pool) for _ in range(prefix_len)] for _ in range(prefix_count)]
    if not as_text:
        return [prefixes[i % prefix_count] + ids for i, ids in enumerate(cast(list[list[int]], prompts))]
    texts = [_as_text(ids, tok) for ids in prefixes]
    return [f"{texts[i % prefix_count]} {question}" for i, question in enumerate(prompts)]


def _random_prompts(
    count: int, input_len: int, as_text: bool, tok: Any, pool: range | list[int], rng: random.Random
) -> list[list[int]] | list[str]:
    def sample(n: int) -> list[int]:
        return [rng.choice(pool) for _ in range(n)]

    if not as_text:
        return [sample(input_len) for _ in range(count)]
    if tok is None:
        return [" ".join(rng.choice(_WORDS) for _ in range(input_len)) for _ in range(count)]
    texts = []
    for _ in range(count):
        ids = sample(input_len)
        for _attempt in range(8):  # decode/encode does not round-trip exactly; converge on the length
            text = str(tok.decode(ids, skip_special_tokens=True))
            encoded = tok.encode(text, add_special_tokens=False)
            if len(encoded) == input_len:
                break
            missing = input_len - len(encoded)
            ids = encoded[:input_len] if missing < 0 else encoded + sample(missing)
        texts.append(text)
    return texts


def _as_text(ids: list[int], tok: Any) -> str:
    if tok is None:
        return " ".join(_WORDS[i % len(_WORDS)] for i in ids)
    return str(tok.decode(ids, skip_special_tokens=True))


# --- the client ----------------------------------------------------------------------------------------


async def _stream_one(session: Any, target: Target, prompt: list[int] | str) -> RequestResult:
    import aiohttp

    result = RequestResult(prompt_tokens=len(prompt) if isinstance(prompt, list) else 0)
    chunks = 0
    start = last = time.perf_counter()
    try:
        async with session.post(target.url, json=target.payload(prompt), headers=target.headers()) as resp:
            if resp.status != 200:
                body = await resp.text()
                result.error = f"HTTP {resp.status}: {body[:300]}"
                return result
            async for raw in resp.content:
                now = time.perf_counter()
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    result.error = f"stream error: {json.dumps(chunk['error'])[:300]}"
                    break
                if chunk.get("choices"):
                    if chunks == 0:
                        result.ttft = now - start
                    else:
                        result.itl.append(now - last)
                    last = now
                    chunks += 1
                usage = chunk.get("usage")
                if usage and usage.get("completion_tokens") is not None:
                    result.output_tokens = int(usage["completion_tokens"])
                    result.prompt_tokens = int(usage.get("prompt_tokens") or result.prompt_tokens)
                    result.tokens_from_usage = True
    except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.e2e = time.perf_counter() - start
    if result.error is None and chunks == 0:
        result.error = "the stream ended without any generated chunk"
    if not result.tokens_from_usage:
        result.output_tokens = chunks
    return result


class DeadlineExceeded(RuntimeError):
    """The time budget ran out in the middle of a load."""


async def _run(
    target: Target,
    prompts: list[Any],
    concurrency: int,
    label: str,
    deadline: float | None,
    progress: bool = True,
) -> tuple[list[RequestResult], float, float, float]:
    """The requests' results, when the load started and ended (time.monotonic(), which every process of a
    Linux host shares, so the shares of a split load line up), and the CPU seconds this process spent in
    between (not its imports, which in a freshly spawned client can outlast a short load)."""
    import aiohttp
    from tqdm import tqdm

    time_left = None if deadline is None else deadline - time.monotonic()
    if time_left is not None and time_left <= 0:
        raise DeadlineExceeded(f"{label}: no time left")
    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=target.request_timeout_s)
    semaphore = asyncio.Semaphore(concurrency)
    # On a terminal the bar redraws often; in a log file, rarely, so logs stay short.
    bar = tqdm(
        total=len(prompts),
        desc=label,
        unit="req",
        mininterval=0.5 if sys.stderr.isatty() else 15,
        disable=not progress,
    )

    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:

        async def one(prompt: Any) -> RequestResult:
            async with semaphore:
                result = await _stream_one(session, target, prompt)
            bar.update(1)
            return result

        start, cpu = time.monotonic(), _cpu_s()
        try:
            results = await asyncio.wait_for(asyncio.gather(*(one(p) for p in prompts)), time_left)
        except TimeoutError:
            raise DeadlineExceeded(f"{label}: the time budget ran out during the load") from None
        finally:
            bar.close()
        end, cpu = time.monotonic(), _cpu_s() - cpu
    return list(results), start, end, cpu


def _asyncio_run(coro: Any) -> Any:
    try:
        import uvloop  # vLLM's dependency: a faster loop keeps the client off the critical path
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def prompts_needed(loads: list[Load], warmup: int) -> int:
    return warmup + sum(load.num_prompts for load in loads)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run_measured(start_at: float | None, *share: Any) -> tuple[list[RequestResult], float, float, float]:
    """One client process's share of a load (`_run`'s arguments), started at `start_at` when given."""
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.monotonic()))
    return _asyncio_run(_run(*share))


def _run_load(
    target: Target,
    prompts: list[Any],
    load: Load,
    label: str,
    deadline: float | None,
    client_processes: int,
    client_start_s: float = CLIENT_START_S,
) -> dict[str, Any]:
    """One load, from this process or split over `client_processes` processes, each with its share of the
    prompts and the concurrency, so one Python client's CPU never caps what a fast server can deliver."""
    shards = max(1, min(client_processes, load.concurrency))
    if shards == 1:
        runs = [_run_measured(None, target, prompts, load.concurrency, label, deadline)]
    else:
        import concurrent.futures
        import multiprocessing

        concurrencies = [load.concurrency // shards + (i < load.concurrency % shards) for i in range(shards)]
        start_at = time.monotonic() + client_start_s
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(shards, mp_context=context) as pool:
            futures = [
                pool.submit(
                    _run_measured, start_at, target, prompts[i::shards], concurrencies[i],
                    f"{label} ({shards} clients)", deadline, i == 0,
                )
                for i in range(shards)
            ]  # fmt: skip
            runs = [future.result() for future in futures]
    results = [result for run in runs for result in run[0]]
    start = min(run[1] for run in runs)
    duration = max(run[2] for run in runs) - start
    summary = summarize(results, duration, num_prompts=load.num_prompts, concurrency=load.concurrency)
    summary["client_processes"] = shards
    # Share of one core the busiest client process used: near 1.0, the client may be what limits the load.
    summary["client_cpu_share"] = round(max(run[3] / max(run[2] - run[1], 1e-9) for run in runs), 3)
    return summary


def run_loads(
    target: Target,
    loads: list[Load],
    prompts: list[Any],
    *,
    warmup: int = 0,
    label: str = "",
    deadline: float | None = None,
    client_processes: int = 1,
    client_start_s: float = CLIENT_START_S,
) -> Iterator[dict[str, Any]]:
    """Run each load in turn, yielding its summary as soon as it is done.

    Every request gets its own prompt (warm-up included), so no load hits the prefix cache that an
    earlier one filled. Past `deadline` (time.monotonic()), raises DeadlineExceeded.
    """
    if len(prompts) < prompts_needed(loads, warmup):
        raise ValueError(f"{len(prompts)} prompts for {prompts_needed(loads, warmup)} requests")
    if warmup:
        _asyncio_run(_run(target, prompts[:warmup], warmup, f"{label} warm-up".strip(), deadline))
    offset = warmup
    for load in loads:
        chosen = prompts[offset : offset + load.num_prompts]
        offset += load.num_prompts
        yield _run_load(
            target, chosen, load, f"{label} {load}".strip(), deadline, client_processes, client_start_s
        )


def default_api_key() -> str | None:
    return os.environ.get("OPENAI_API_KEY") or None
