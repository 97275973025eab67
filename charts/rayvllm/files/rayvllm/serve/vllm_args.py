"""Map a ModelConfig onto `vllm serve`'s own argument parser.

Going through vLLM's parser, rather than building EngineArgs by hand, gives the replica exactly the
defaults and validation of `vllm serve`, and checks `engine.extra_args` against the real option list.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from typing import Any

from rayvllm.config import LoRAConfig, ModelConfig

# EngineConfig fields that are not `vllm serve` options of the same name.
_NOT_VLLM_OPTIONS = {"extra_args"}


def serve_argv(model: ModelConfig) -> list[str]:
    """The `vllm serve` command line equivalent to `model`, without the program name."""
    options: dict[str, Any] = model.engine.model_dump(exclude=_NOT_VLLM_OPTIONS, exclude_none=True)
    options |= model.openai.model_dump(exclude_none=True)
    options |= model.engine.extra_args
    options["served_model_name"] = [model.name]
    if model.lora:
        options |= lora_options(model.name, model.lora)
    if model.engine.tensor_parallel_size > 1:
        # The replica actor owns all of its GPUs; vLLM would otherwise pick its Ray executor and
        # ask Ray for placement groups the replica already holds.
        options.setdefault("distributed_executor_backend", "mp")
    return vllm_flags(options)


def lora_options(base_model_name: str, lora: LoRAConfig) -> dict[str, Any]:
    """`vllm serve`'s LoRA options: the adapters in its JSON form, which names the parent `/v1/models`
    shows."""
    modules = [
        json.dumps({"name": a.name, "path": a.source, "base_model_name": base_model_name})
        for a in lora.adapters
    ]
    limits = lora.model_dump(include={"max_loras", "max_lora_rank", "max_cpu_loras"}, exclude_none=True)
    return {"enable_lora": True, "lora_modules": modules, **limits}


def vllm_flags(options: dict[str, Any]) -> list[str]:
    """Options as `vllm serve` flags: `max_model_len=4096` -> `--max-model-len 4096`; True is the flag alone,
    False its `--no-` form, a list its values one by one, a dict JSON; None is left out."""
    argv: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append(f"--no-{name.replace('_', '-')}")
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, str(value)]
    return argv


def serve_namespace(model: ModelConfig) -> argparse.Namespace:
    """Parse `serve_argv(model)` with vLLM's parser; raise ValueError naming the bad option."""
    from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser(prog=f"rayvllm model {model.name!r}"))
    argv = _drop_false_store_true(parser, serve_argv(model))
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit as exit_:
        raise ValueError(
            f"invalid vLLM arguments for model {model.name!r}: {stderr.getvalue().strip()}"
        ) from exit_
    validate_parsed_serve_args(args)
    return args


def _drop_false_store_true(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--no-x` exists only for BooleanOptionalAction options; for store_true ones False is the default."""
    known = {opt for action in parser._actions for opt in action.option_strings}
    return [
        token
        for token in argv
        if not (token.startswith("--no-") and token not in known and "--" + token[5:] in known)
    ]
