"""The transformers `generate` baseline: output tokens/s at fixed batch sizes, random weights from a config.

This is what "10-24x over HF pipelines" is measured against: greedy `generate` of `output_len` tokens
after `input_len` random prompt tokens, every sequence forced to full length (min_new_tokens).
Runs as its own process in compare mode, so its GPU memory is gone before or after the servers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", required=True, help="directory with config.json (weights not needed)")
    parser.add_argument("--input-len", type=int, default=512)
    parser.add_argument("--output-len", type=int, default=256)
    parser.add_argument("--batch-sizes", default="1,16,64", help="comma-separated (default %(default)s)")
    parser.add_argument("--device", default=None, help="torch device; cuda when available, else cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--token-id-range", default="100:40000", help="LO:HI of random prompt ids")
    parser.add_argument("--json-out", type=Path, help="also write the result here")


def measure(
    model_dir: str,
    *,
    input_len: int,
    output_len: int,
    batch_sizes: list[int],
    device: str | None,
    dtype: str,
    token_id_range: tuple[int, int],
) -> dict[str, Any]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    config = AutoConfig.from_pretrained(model_dir)
    start = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.eval()
    init_s = time.perf_counter() - start
    generator = torch.Generator().manual_seed(0)
    low, high = token_id_range
    high = min(high, config.vocab_size)
    results = []
    for batch in batch_sizes:
        ids = torch.randint(low, high, (batch, input_len), generator=generator).to(device)
        mask = torch.ones_like(ids)
        common = {"attention_mask": mask, "do_sample": False, "pad_token_id": 0}
        with torch.inference_mode():
            model.generate(ids, max_new_tokens=4, min_new_tokens=4, **common)  # warm-up
            sync()
            began = time.perf_counter()
            out = model.generate(ids, max_new_tokens=output_len, min_new_tokens=output_len, **common)
            sync()
        seconds = time.perf_counter() - began
        generated = (out.shape[1] - input_len) * batch
        results.append(
            {"batch_size": batch, "seconds": round(seconds, 3), "output_tokens": generated,
             "output_throughput": round(generated / seconds, 2)}
        )  # fmt: skip
        print(
            f"hf generate batch {batch}: {generated / seconds:,.1f} output tok/s", file=sys.stderr, flush=True
        )
    return {
        "model_dir": model_dir,
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "dtype": dtype,
        "input_len": input_len,
        "output_len": output_len,
        "init_s": round(init_s, 1),
        "runs": results,
    }


def run(args: argparse.Namespace) -> int:
    low, high = (int(x) for x in args.token_id_range.split(":"))
    result = measure(
        args.model_dir,
        input_len=args.input_len,
        output_len=args.output_len,
        batch_sizes=[int(b) for b in args.batch_sizes.split(",")],
        device=args.device,
        dtype=args.dtype,
        token_id_range=(low, high),
    )
    text = json.dumps(result, indent=2)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rayvllm.bench.hf_generate", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
