"""`rayvllm bench run`: benchmark one running OpenAI-compatible endpoint.

Writes `bench.json` (the settings, the machine and versions, one summary per load), `latency.png` and
`throughput.png` into `--out`, and prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rayvllm.bench import report
from rayvllm.bench.loadgen import (
    Load,
    Target,
    default_api_key,
    find_server_tokenizer,
    make_prompts,
    prompts_needed,
    run_loads,
)

DEFAULT_LOADS = ("1000@256", "20@1")


def _id_range(text: str) -> tuple[int, int]:
    low, high = (int(x) for x in text.split(":"))
    if not 0 <= low < high:
        raise argparse.ArgumentTypeError(f"LO:HI with 0 <= LO < HI, got {text!r}")
    return low, high


def prefix_spec(text: str) -> tuple[int, int]:
    try:
        count, length = (int(x) for x in text.split(":"))
    except ValueError:
        count = length = 0
    if count < 1 or length < 1:
        raise argparse.ArgumentTypeError(f"N:LEN with N >= 1 prefixes of LEN >= 1 tokens, got {text!r}")
    return count, length


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url", default="http://127.0.0.1:8000", help="server root (default %(default)s)"
    )
    parser.add_argument("--model", help="model name to send (default: the first one /v1/models lists)")
    parser.add_argument("--api", choices=["completions", "chat"], default="completions")
    parser.add_argument("--input-len", type=int, default=512, help="prompt tokens (default %(default)s)")
    parser.add_argument("--output-len", type=int, default=256, help="max_tokens (default %(default)s)")
    parser.add_argument(
        "--load",
        action="append",
        type=Load.parse,
        help=f"N@C: N prompts at concurrency C; repeat for several (default {' '.join(DEFAULT_LOADS)})",
    )
    parser.add_argument(
        "--warmup", type=int, default=8, help="unrecorded requests first (default %(default)s)"
    )
    parser.add_argument(
        "--no-ignore-eos", dest="ignore_eos", action="store_false", help="let EOS end outputs"
    )
    parser.add_argument("--temperature", type=float, help="sent only when given (server default otherwise)")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the server's, if it is local)")
    parser.add_argument("--token-id-range", type=_id_range, help="LO:HI of random prompt token ids")
    parser.add_argument(
        "--prompt-format",
        choices=["token_ids", "text"],
        help="token_ids (exact length; completions only) or text (default: token_ids, text for chat)",
    )
    parser.add_argument(
        "--shared-prefix",
        type=prefix_spec,
        metavar="N:LEN",
        help="N random prefixes of LEN tokens, one before each prompt in turn (--input-len tokens follow)",
    )
    parser.add_argument("--seed", type=int, default=0, help="prompt seed (default %(default)s)")
    parser.add_argument(
        "--api-key", default=default_api_key(), help="bearer token (default: $OPENAI_API_KEY)"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="per-request timeout, seconds")
    parser.add_argument("--label", default="endpoint", help="the series name in plots")
    parser.add_argument(
        "--client-processes",
        type=int,
        default=1,
        help="split each load over this many client processes, for servers faster than one Python client "
        "can read (each summary's client_cpu_share near 1.0 says so); default %(default)s",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("out/bench"), help="result directory (default %(default)s)"
    )


def _first_model(base_url: str, api_key: str | None) -> str:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    listing = httpx.get(base_url.rstrip("/") + "/v1/models", headers=headers, timeout=30)
    listing.raise_for_status()
    return str(listing.json()["data"][0]["id"])


def run(args: argparse.Namespace) -> int:
    loads = args.load or [Load.parse(text) for text in DEFAULT_LOADS]
    model = args.model or _first_model(args.base_url, args.api_key)
    prompt_format = args.prompt_format or ("text" if args.api == "chat" else "token_ids")
    if args.api == "chat" and prompt_format == "token_ids":
        raise SystemExit("the chat API takes text prompts: use --prompt-format text")
    tokenizer = args.tokenizer or find_server_tokenizer(args.base_url, model, args.api_key)
    prompts = make_prompts(
        prompts_needed(loads, args.warmup),
        args.input_len,
        as_text=prompt_format == "text",
        tokenizer=tokenizer,
        token_id_range=args.token_id_range,
        seed=args.seed,
        shared_prefix=args.shared_prefix,
    )
    target = Target(
        base_url=args.base_url,
        model=model,
        api=args.api,
        output_len=args.output_len,
        ignore_eos=args.ignore_eos,
        temperature=args.temperature,
        api_key=args.api_key,
        request_timeout_s=args.timeout,
    )
    runs = list(
        run_loads(
            target,
            loads,
            prompts,
            warmup=args.warmup,
            label=args.label,
            client_processes=args.client_processes,
        )
    )
    result = {
        "tool": "rayvllm bench run",
        "base_url": args.base_url,
        "model": model,
        "api": args.api,
        "prompt_format": prompt_format,
        "tokenizer": tokenizer,
        "input_len": args.input_len,
        "shared_prefix": list(args.shared_prefix) if args.shared_prefix else None,
        "output_len": args.output_len,
        "ignore_eos": args.ignore_eos,
        "warmup": args.warmup,
        "seed": args.seed,
        "environment": report.environment(),
        "runs": runs,
    }
    path = report.write_json(args.out / "bench.json", result)
    report.plot({args.label: runs}, args.out, args.label)
    print(report.runs_table(runs))
    print(f"wrote {path}, {args.out / 'latency.png'} and {args.out / 'throughput.png'}", file=sys.stderr)
    failed = sum(run["failed"] for run in runs)
    if failed:
        first_error = next(error for run in runs for error in run["errors"])
        print(f"{failed} requests failed; the first: {first_error}", file=sys.stderr)
    return 1 if failed else 0
