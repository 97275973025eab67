"""The Serve deployment options of one model, shared by both engine paths' builders."""

from __future__ import annotations

from typing import Any

from rayvllm.config import ModelConfig

# ModelConfig fields that only become Serve deployment options. Serve updates those options in place, but any
# change to a replica's init args restarts every replica: on real pods, raising `max_replicas` restarted the
# only replica, and requests waited two minutes for it.
DEPLOYMENT_OPTION_FIELDS = frozenset(
    {
        "autoscaling",
        "max_ongoing_requests",
        "max_queued_requests",
        "health_check_period_s",
        "health_check_timeout_s",
        "graceful_shutdown_timeout_s",
    }
)


def replica_model(model: ModelConfig) -> dict[str, Any]:
    """The model as the replica's init arg: without the fields that are only deployment options."""
    return model.model_dump(mode="json", exclude=set(DEPLOYMENT_OPTION_FIELDS))


def deployment_name(model: ModelConfig) -> str:
    """Serve deployment name of a model's replicas, as Ray Serve LLM spells model ids."""
    return "VLLMServer:" + model.name.replace("/", "--").replace(".", "_")


def deployment_options(model: ModelConfig) -> dict[str, Any]:
    """Serve deployment options of one model; each replica is one vLLM engine."""
    actor_options: dict[str, Any] = {"num_cpus": model.num_cpus, "num_gpus": model.gpus_per_replica}
    if model.accelerator_type:
        # A sliver of the worker group's `accelerator_type:<type>` resource pins replicas to that pool,
        # and lets the autoscaler know which pool to grow.
        actor_options["resources"] = {f"accelerator_type:{model.accelerator_type}": 0.001}
    if model.env:
        actor_options["runtime_env"] = {"env_vars": dict(model.env)}
    scaling = model.autoscaling
    autoscaling_config: dict[str, Any] = {
        "min_replicas": scaling.min_replicas,
        "max_replicas": scaling.max_replicas,
        "target_ongoing_requests": scaling.target_ongoing_requests,
        "upscale_delay_s": scaling.upscale_delay_s,
        "downscale_delay_s": scaling.downscale_delay_s,
    }
    if scaling.initial_replicas is not None:
        autoscaling_config["initial_replicas"] = scaling.initial_replicas
    # Serve's own default (unlimited) unless set: it refuses None.
    spread = (
        {} if model.max_replicas_per_node is None else {"max_replicas_per_node": model.max_replicas_per_node}
    )
    return {
        **spread,
        "name": deployment_name(model),
        "ray_actor_options": actor_options,
        "autoscaling_config": autoscaling_config,
        "max_ongoing_requests": model.max_ongoing_requests,
        "max_queued_requests": model.max_queued_requests,
        "health_check_period_s": model.health_check_period_s,
        "health_check_timeout_s": model.health_check_timeout_s,
        "graceful_shutdown_timeout_s": model.graceful_shutdown_timeout_s,
    }
