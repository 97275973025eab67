"""The Serve application builder that serveConfigV2 names: `import_path: rayvllm.serve.builder:build_app`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rayvllm.config import AppConfig, ModelConfig
from rayvllm.serve.deployment import deployment_options, replica_model

if TYPE_CHECKING:
    from ray.serve import Application


def build_app(args: AppConfig) -> Application:
    """Build the Serve application for `args` (a dict is validated into AppConfig first).

    Ray Serve validates serveConfigV2's `args` against the annotation before calling this.
    """
    config = args if isinstance(args, AppConfig) else AppConfig.model_validate(args)
    if config.engine_path == "ray_serve_llm":
        from rayvllm.serve.ray_serve_llm import build_ray_serve_llm_app

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


def _model_deployment(model: ModelConfig, ingress: bool) -> Any:
    from ray import serve

    from rayvllm.serve.replica import VLLMServer

    server = serve.ingress()(VLLMServer) if ingress else VLLMServer
    return serve.deployment(server, **deployment_options(model))


def _failover_app(config: AppConfig, replicas: Any) -> Application:
    """The failover gateway as the ingress, in front of the model replicas (see rayvllm.serve.gateway)."""
    from ray import serve

    from rayvllm.serve.gateway import FailoverGateway

    failover = config.failover
    options: dict[str, Any] = {
        "name": "FailoverGateway",
        "num_replicas": failover.gateway_replicas,
        "ray_actor_options": {"num_cpus": failover.gateway_num_cpus},
        "max_ongoing_requests": config.models[0].max_ongoing_requests,
    }
    gateway: Any = serve.deployment(serve.ingress()(FailoverGateway), **options)
    return gateway.bind(replicas, failover.max_attempts, config.limits.max_request_body_bytes)
