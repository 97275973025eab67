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
    if len(config.models) == 1 and not config.failover.enabled:
        # The fast path: the model's replicas are the ingress, one hop from the proxy.
        (model,) = config.models
        return _model_deployment(model, ingress=True).bind(*_replica_args(config, model))
    models = [
        (model.served_names, _model_deployment(model, ingress=False).bind(*_replica_args(config, model)))
        for model in config.models
    ]
    return _gateway_app(config, models)


def _replica_args(config: AppConfig, model: ModelConfig) -> tuple[dict[str, Any], ...]:
    return (
        replica_model(model),
        config.auth.model_dump(mode="json"),
        config.limits.model_dump(mode="json"),
    )


def _model_deployment(model: ModelConfig, ingress: bool) -> Any:
    from ray import serve

    from rayvllm.serve.replica import VLLMServer

    server = serve.ingress()(VLLMServer) if ingress else VLLMServer
    return serve.deployment(server, **deployment_options(model))


def _gateway_app(config: AppConfig, models: list[tuple[list[str], Any]]) -> Application:
    """The gateway as the ingress, in front of every model's replicas (see rayvllm.serve.gateway)."""
    from ray import serve

    from rayvllm.serve.gateway import FailoverGateway

    failover = config.failover
    options: dict[str, Any] = {
        "name": "FailoverGateway",
        "num_replicas": failover.gateway_replicas,
        "ray_actor_options": {"num_cpus": failover.gateway_num_cpus},
        # Every model's replicas at once may be busy through one gateway replica.
        "max_ongoing_requests": sum(
            m.max_ongoing_requests * m.autoscaling.max_replicas for m in config.models
        ),
    }
    gateway: Any = serve.deployment(serve.ingress()(FailoverGateway), **options)
    return gateway.bind(models, failover.max_attempts, config.limits.max_request_body_bytes)
