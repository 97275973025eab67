"""The `rayvllm` command line: `serve` (local mode), `capacity`, `bench`.

Each subcommand lives in its own module and is imported only when it runs, so `rayvllm --help`
stays fast and needs neither Ray nor vLLM.
"""

from __future__ import annotations

import argparse
import importlib

# subcommand -> module exposing `add_arguments(parser)` and `run(args) -> int`
SUBCOMMANDS = {
    "serve": ("rayvllm.local", "run the app locally on Ray Serve (what `make serve` does)"),
    "capacity": ("rayvllm.capacity", "check that a model fits a GPU: weights plus KV cache"),
    "bench": ("rayvllm.bench", "benchmark an OpenAI-compatible endpoint"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rayvllm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        # Argument definitions are light; the heavy imports happen inside `run`.
        module = importlib.import_module(module_name)
        module.add_arguments(sub_parser)
        modules[name] = module
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args) or 0)
