"""The Serve application builder that serveConfigV2 names: `import_path: rayvllm.app:build_app`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rayvllm.config import AppConfig, ModelConfig

if TYPE_CHECKING:
    from ray.serve import Application


def build_app(args: AppConfig) -> Application:
    """Build the Serve application for `args` (a dict is validated into AppConfig first).

    Ray Serve validates serveConfigV2's `args` against the annotation before calling this.
    """
    config = args if isinstance(args, AppConfig) else AppConfig.model_validate(args)
    if config.engine_path == "ray_serve_llm":
        from rayvllm.ray_serve_llm import build_ray_serve_llm_app

        return build_ray_serve_llm_app(config)
    (model,) = config.models
    replica_args = (
        replica_model(model),
        config.auth.model_dump(mode="json"),
        config.limits.model_dump(mode="json"),
    )
    if config.failover.enabled:
        return _failover_app(config, _model_deployment(model, ingress=False).bind(*replica_args))
    return _model_deployment(model, ingress=True).bind(*replica_args)


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


def _model_deployment(model: ModelConfig, ingress: bool) -> Any:
    from ray import serve

    from rayvllm.server import VLLMServer

    server = serve.ingress()(VLLMServer) if ingress else VLLMServer
    return serve.deployment(server, **deployment_options(model))


def _failover_app(config: AppConfig, replicas: Any) -> Application:
    """The failover gateway as the ingress, in front of the model replicas (see rayvllm.failover)."""
    from ray import serve

    from rayvllm.failover import FailoverGateway

    failover = config.failover
    options: dict[str, Any] = {
        "name": "FailoverGateway",
        "num_replicas": failover.gateway_replicas,
        "ray_actor_options": {"num_cpus": failover.gateway_num_cpus},
        "max_ongoing_requests": config.models[0].max_ongoing_requests,
    }
    gateway: Any = serve.deployment(serve.ingress()(FailoverGateway), **options)
    return gateway.bind(replicas, failover.max_attempts, config.limits.max_request_body_bytes)
