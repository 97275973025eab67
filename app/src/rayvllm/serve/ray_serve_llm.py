"""The `ray_serve_llm` engine path: Ray Serve LLM's `build_openai_app`, fed from the same AppConfig.

Kept as the baseline the `direct` path is benchmarked against, and for several models behind one router.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rayvllm.config import AppConfig, ModelConfig
from rayvllm.serve.deployment import deployment_options

if TYPE_CHECKING:
    from ray.serve import Application


def llm_config_fields(
    model_id: str,
    model_source: str,
    engine_kwargs: dict[str, Any],
    deployment_config: dict[str, Any],
    *,
    cpu_bundle: float | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`LLMConfig` fields for one model: the spelling shared by the app's path and the benchmark's baseline.

    `cpu_bundle` places the engine on that many CPUs and no GPU; `env` goes into the replica's runtime env.
    Fields left out keep Ray Serve LLM's defaults.
    """
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": model_id, "model_source": model_source},
        "engine_kwargs": engine_kwargs,
        "deployment_config": deployment_config,
    }
    if cpu_bundle is not None:
        # Bundles without GPUs make Ray Serve LLM pick its CPU backend.
        config["placement_group_config"] = {"bundles": [{"CPU": cpu_bundle}]}
    if env:
        config["runtime_env"] = {"env_vars": dict(env)}
    return config


def llm_config(model: ModelConfig) -> dict[str, Any]:
    """The `LLMConfig` fields (as a dict) equivalent to one ModelConfig."""
    engine_kwargs = model.engine.model_dump(exclude={"model", "extra_args"}, exclude_none=True)
    engine_kwargs |= model.openai.model_dump(exclude_none=True, exclude_defaults=True)
    engine_kwargs |= model.engine.extra_args
    options = deployment_options(model)
    config = llm_config_fields(
        model.name,
        model.engine.model,
        engine_kwargs,
        {
            key: options[key]
            for key in (
                "autoscaling_config",
                "max_ongoing_requests",
                "max_queued_requests",
                "health_check_period_s",
                "health_check_timeout_s",
                "graceful_shutdown_timeout_s",
            )
        },
        cpu_bundle=(model.num_cpus or 1) if model.gpus_per_replica == 0 else None,
        env=model.env,
    )
    config["log_engine_metrics"] = True
    if model.accelerator_type:
        config["accelerator_type"] = model.accelerator_type
    return config


def build_ray_serve_llm_app(config: AppConfig) -> Application:
    from ray.serve.llm import LLMConfig, build_openai_app

    return build_openai_app({"llm_configs": [LLMConfig(**llm_config(m)) for m in config.models]})
