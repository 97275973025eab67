"""The `rayvllm` command line: `serve` (local mode), `capacity`, `bench`.

Each subcommand lives in its own module and is imported only when it runs, so `rayvllm --help`
stays fast and needs neither Ray nor vLLM.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module exposing `add_arguments(parser)` and `run(args) -> int`
SUBCOMMANDS = {
    "serve": ("rayvllm.local.runner", "run the app locally on Ray Serve (what `make serve` does)"),
    "capacity": ("rayvllm.capacity", "check that a model fits a GPU: weights plus KV cache"),
    "bench": ("rayvllm.bench", "benchmark an OpenAI-compatible endpoint"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="rayvllm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    parsers = {
        name: sub.add_parser(name, help=text, description=text) for name, (_, text) in SUBCOMMANDS.items()
    }
    # Only the chosen subcommand's module is imported, so one subcommand never depends on another's.
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command not in SUBCOMMANDS:
        parser.parse_args(argv)  # prints usage or help and exits
        return 2
    module = importlib.import_module(SUBCOMMANDS[command][0])
    module.add_arguments(parsers[command])
    args = parser.parse_args(argv)
    return int(module.run(args) or 0)
