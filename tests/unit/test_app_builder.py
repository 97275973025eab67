"""build_app and Serve deployment options, checked without starting Ray."""

from __future__ import annotations

from rayvllm.config import AppConfig, ModelConfig
from rayvllm.serve.builder import build_app
from rayvllm.serve.deployment import DEPLOYMENT_OPTION_FIELDS, deployment_name, deployment_options

MODEL = {
    "name": "meta-llama/Llama-3.1-8B-Instruct",
    "engine": {"model": "meta-llama/Llama-3.1-8B-Instruct", "max_model_len": 8192, "tensor_parallel_size": 2},
    "accelerator_type": "L4",
    "autoscaling": {"min_replicas": 2, "max_replicas": 4, "target_ongoing_requests": 32},
    "max_ongoing_requests": 128,
    "env": {"HF_HOME": "/cache/hf"},
}


def test_replicas_are_pinned_to_their_gpu_pool_and_sized_by_tensor_parallelism() -> None:
    options = deployment_options(ModelConfig.model_validate(MODEL))
    actor = options["ray_actor_options"]
    assert actor["num_gpus"] == 2
    assert actor["resources"] == {"accelerator_type:L4": 0.001}
    assert actor["runtime_env"] == {"env_vars": {"HF_HOME": "/cache/hf"}}
    assert options["autoscaling_config"]["min_replicas"] == 2
    assert options["autoscaling_config"]["target_ongoing_requests"] == 32
    assert options["max_ongoing_requests"] == 128


def test_deployment_name_is_a_valid_serve_name() -> None:
    assert (
        deployment_name(ModelConfig.model_validate(MODEL)) == "VLLMServer:meta-llama--Llama-3_1-8B-Instruct"
    )


def test_build_app_accepts_the_raw_serve_config_args() -> None:
    app = build_app({"models": [MODEL]})  # type: ignore[arg-type]
    deployment = app._bound_deployment
    assert deployment.name == deployment_name(ModelConfig.model_validate(MODEL))
    assert deployment.ray_actor_options["num_gpus"] == 2
    # The replica receives the model as plain data that validates back into the same config.
    assert AppConfig.model_validate({"models": [deployment.init_args[0]]}).models[0].name == MODEL["name"]


def test_two_models_get_a_deployment_each_behind_the_gateway_and_one_model_goes_without_it() -> None:
    other = {**MODEL, "name": "qwen", "accelerator_type": "A100", "autoscaling": {"max_replicas": 2}}
    gateway = build_app({"models": [MODEL, other]})._bound_deployment  # type: ignore[arg-type]
    assert gateway.name == "FailoverGateway"
    (routes, _, _) = gateway.init_args
    assert [names for names, _ in routes] == [[MODEL["name"]], ["qwen"]]
    models = [app._bound_deployment for _, app in routes]
    names = [deployment_name(ModelConfig.model_validate(m)) for m in (MODEL, other)]
    assert [m.name for m in models] == names
    assert [m.ray_actor_options["resources"] for m in models] == [
        {"accelerator_type:L4": 0.001},
        {"accelerator_type:A100": 0.001},
    ]
    # A gateway replica takes what every model's replicas can, at their most.
    assert gateway._deployment_config.max_ongoing_requests == 128 * 4 + 128 * 2
    single = build_app({"models": [MODEL]})._bound_deployment  # type: ignore[arg-type]
    assert single.name == deployment_name(ModelConfig.model_validate(MODEL))


def test_scaling_changes_leave_the_replicas_init_args_alone() -> None:
    """Serve applies a change of deployment options in place, but restarts every replica when its init
    args change: autoscaling and the other deployment options must not be among them."""
    changed = {
        **MODEL,
        "autoscaling": {"min_replicas": 1, "max_replicas": 8, "target_ongoing_requests": 16},
        "max_ongoing_requests": 64,
        "graceful_shutdown_timeout_s": 90,
    }
    before, after = (build_app({"models": [m]})._bound_deployment for m in (MODEL, changed))  # type: ignore[arg-type]
    assert before.init_args == after.init_args
    assert before._deployment_config.autoscaling_config != after._deployment_config.autoscaling_config
    assert not set(before.init_args[0]) & DEPLOYMENT_OPTION_FIELDS


def test_engine_stats_off_means_no_stat_logger() -> None:
    from rayvllm.serve.replica import stat_loggers

    ray_logger = object()
    assert stat_loggers(False, ray_logger) == [ray_logger]
    # vLLM re-enables stats for any logger it is given, so `disable_log_stats` would not hold.
    assert stat_loggers(True, ray_logger) is None
