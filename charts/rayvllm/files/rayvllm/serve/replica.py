"""The `direct` engine path: vLLM's own OpenAI server running inside one Serve replica.

The replica holds the engine and serves vLLM's FastAPI app itself (Serve's late-bound ASGI ingress), so a
request crosses one hop, proxy to replica, and every protocol detail (routes, SSE, tool calls, structured
output, OpenAI-style errors) is vLLM's, exactly as `vllm serve` has it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from rayvllm.config import AuthConfig, LimitsConfig, ModelConfig
from rayvllm.http.asgi import Message, forward_asgi
from rayvllm.http.auth import KeyStore
from rayvllm.http.guard import IngressGuard
from rayvllm.serve.usage_meter import RayUsageMeter
from rayvllm.serve.vllm_args import serve_namespace

logger = logging.getLogger("rayvllm")


class Engine(Protocol):
    """What the replica needs from an engine: vLLM's EngineClient, narrowed."""

    async def check_health(self) -> None: ...

    def shutdown(self) -> None: ...


class EngineStarter(Protocol):
    """Builds the engine and the ASGI app that serves it; tests may pass a fake."""

    async def __call__(self, args: argparse.Namespace) -> tuple[Engine, Any]: ...


async def start_vllm(args: argparse.Namespace) -> tuple[Engine, Any]:
    """Start vLLM's AsyncLLM and build vLLM's OpenAI FastAPI app around it."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.openai.api_server import build_app, init_app_state
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.async_llm import AsyncLLM

    from rayvllm.serve.engine_metrics import stat_logger_class

    engine_args = AsyncEngineArgs.from_cli_args(args)
    vllm_config = engine_args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
    engine = AsyncLLM.from_vllm_config(
        vllm_config,
        usage_context=UsageContext.OPENAI_API_SERVER,
        stat_loggers=stat_loggers(engine_args.disable_log_stats, stat_logger_class()),
        enable_log_requests=engine_args.enable_log_requests,
        disable_log_stats=engine_args.disable_log_stats,
    )
    try:
        _check_tool_parser(args, engine.get_tokenizer())
        supported_tasks = await engine.get_supported_tasks()
        app = build_app(args, supported_tasks=supported_tasks, model_config=engine.model_config)
        await init_app_state(engine, app.state, args, supported_tasks=supported_tasks)
    except BaseException:
        engine.shutdown()
        raise
    return engine, app


def stat_loggers(disable_log_stats: bool, ray_logger: Any) -> list[Any] | None:
    """Engine metrics go out through Ray's metrics agent as ray_vllm_*, on every Ray pod's port 8080, recorded
    by an actor beside the replica (rayvllm.serve.engine_metrics).

    None when stats are off: vLLM turns stats back on for any stat logger it is given.
    """
    return None if disable_log_stats else [ray_logger]


def _check_tool_parser(args: argparse.Namespace, tokenizer: Any) -> None:
    """vLLM builds the tool parser per request: a parser that cannot load would turn every chat request
    into a 500. Build it once here, so the deploy fails instead, naming the option."""
    if not args.tool_call_parser:
        return
    from vllm.tool_parsers.abstract_tool_parser import ToolParserManager

    try:
        ToolParserManager.get_tool_parser(args.tool_call_parser)(tokenizer)
    except Exception as exc:
        raise ValueError(f"openai.tool_call_parser {args.tool_call_parser!r} cannot load: {exc}") from exc


def cap_default_max_tokens(args: argparse.Namespace, cap: int | None) -> None:
    """A request without `max_tokens` gets the cap as its default, so omitting it cannot exceed the cap."""
    if cap is None:
        return
    overrides = dict(args.override_generation_config or {})
    overrides["max_new_tokens"] = min(cap, overrides.get("max_new_tokens", cap))
    args.override_generation_config = overrides


class VLLMServer:
    """One replica of one model. Wrapped by `serve.ingress()` in `rayvllm.serve.builder.build_app`."""

    # Serve awaits an async constructor; mypy insists __init__ returns None.
    async def __init__(  # type: ignore[misc]
        self,
        model: dict[str, Any],
        auth: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
        start_engine: EngineStarter = start_vllm,
    ) -> None:
        self._model = ModelConfig.model_validate(model)
        self._auth = AuthConfig.model_validate(auth or {})
        self._limits = LimitsConfig.model_validate(limits or {})
        logger.info("starting vLLM for model %s", self._model.name)
        args = serve_namespace(self._model)
        cap_default_max_tokens(args, self._limits.max_tokens_cap)
        self._engine, self._asgi_app = await start_engine(args)
        adapters = frozenset(self._model.served_names[1:])
        self._guarded_app = IngressGuard(
            self._asgi_app, self._limits, self._key_store(), RayUsageMeter(self._model.name), adapters
        )

    def _key_store(self) -> KeyStore | None:
        if self._auth.api_keys_dir is None:
            return None
        return KeyStore(Path(self._auth.api_keys_dir), self._auth.reload_interval_s)

    def __serve_build_asgi_app__(self) -> Any:
        return self._guarded_app

    async def forward(self, request: dict[str, Any]) -> AsyncIterator[Message]:
        """The failover gateway's entry: one HTTP request as data, its ASGI messages streamed back."""
        async for message in forward_asgi(self._guarded_app, request):
            yield message

    async def check_health(self) -> None:
        # Serve replaces the replica when this raises, so a dead engine never keeps answering.
        await self._engine.check_health()

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.shutdown()
