"""`rayvllm bench`: benchmark OpenAI-compatible LLM servers (see docs/benchmarks.md).

- `rayvllm bench run`: one running endpoint; TTFT, TPOT, ITL, E2E, throughput and failures per load.
- `rayvllm bench compare`: bare vLLM, rayvllm and Ray Serve LLM one after the other on this machine.
- `rayvllm bench hf`: the transformers `generate` baseline.

Only argument parsing happens on import; each subcommand imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import importlib

# subcommand -> (module with add_arguments/run, help)
_SUBCOMMANDS = {
    "run": ("rayvllm.bench.endpoint", "benchmark one running OpenAI-compatible endpoint"),
    "compare": ("rayvllm.bench.compare", "vLLM vs rayvllm vs Ray Serve LLM, same engine args, one machine"),
    "hf": ("rayvllm.bench.hf_generate", "transformers generate baseline: output tok/s per batch size"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench_command", required=True, metavar="{run,compare,hf}")
    for name, (module_name, help_text) in _SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module_name).add_arguments(sub_parser)


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(_SUBCOMMANDS[args.bench_command][0])
    return int(module.run(args) or 0)
