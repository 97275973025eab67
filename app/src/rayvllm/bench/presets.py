"""Benchmark scenarios: the model, the engine args every server shares, the prompts and the loads.

- `gpu`: the performance issue's scenario. The Llama-3.1-8B shape (`configs/llama-3.1-8b.json`, the public
  config values) with random weights (`load_format=dummy`), bf16, max_model_len 4096; 512 tokens in and
  256 out with ignore_eos; 1000 prompts at concurrency 256, then 20 at concurrency 1.
- `gpu-shared`: the `gpu` scenario for interleaved rounds with every server on one GPU at once
  (`compare --rounds`): each engine gets the same fixed KV cache, 25 GiB (12,800 blocks of 16 tokens; the
  1000@256 load needs at most 256 x 768 tokens = 12,288 blocks of the 8B shape's 128 KiB per token), and
  checks for 30% of the GPU free at its start, so three 8B engines fit on one H200; 10 prompts at c=1
  instead of 20, so that three rounds of four endpoints fit in one developer's GPU time.
- `cpu`: the same comparison on CPU with the tiny random Llama; its ratio is a regression figure of the
  serving layer's overhead, not of model speed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rayvllm.bench.loadgen import CLIENT_START_S, Load
from rayvllm.local.offline_models import TINY_LLAMA_CPU_ENGINE_ARGS, TINY_LLAMA_CPU_ENV


@dataclass(frozen=True)
class Scenario:
    name: str
    model_name: str
    engine_args: dict[str, Any]
    input_len: int
    output_len: int
    loads: tuple[Load, ...]
    warmup: int
    token_id_range: tuple[int, int] | None  # None: any non-special id of the tokenizer
    env: dict[str, str] = field(default_factory=dict)
    num_gpus: int = 1  # per replica (rayvllm's config needs it explicit on CPU: 0)
    ray_num_cpus: int | None = None
    ray_dashboard: bool = True
    ready_timeout_s: float = 900
    hf_batch_sizes: tuple[int, ...] = (1, 16, 64)
    hf_dtype: str = "bfloat16"
    # (N, LEN): one of N random prefixes of LEN tokens before each prompt, in turn (prefix-cache workloads).
    shared_prefix: tuple[int, int] | None = None
    # Client processes per load: one Python client reads about 10k SSE events/s at most.
    client_processes: int = 1
    # Split client processes start together this long after they are spawned (their imports must fit).
    client_start_s: float = CLIENT_START_S
    # Rough wall time of each step (a server name, or "hf"), for --time-budget-s; not part of the
    # scenario that must match between phases.
    step_estimate_s: dict[str, float] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """What must match for results to be compared (JSON-ready)."""
        data = asdict(self)
        del data["step_estimate_s"]
        if data["shared_prefix"] is None:
            del data["shared_prefix"]  # so that bundles from before the option still match
        data["loads"] = [str(load) for load in self.loads]
        return dict(json.loads(json.dumps(data)))  # tuples become lists, as in the files it is compared with

    def prepare_model(self, directory: Path) -> Path:
        """Write the model directory: config, tokenizer and chat template (and weights on CPU)."""
        from rayvllm.local.offline_models import build_tiny_llama

        marker = directory / ".rayvllm-bench-preset"
        if marker.is_file() and marker.read_text() == self.name:
            return directory  # built by an earlier phase of this run
        shutil.rmtree(directory, ignore_errors=True)
        build_tiny_llama(directory)
        if self.name.startswith("gpu"):
            # The 8B shape with the tiny tokenizer: ids it lacks decode to nothing, which vLLM accepts.
            # Weights are random (load_format=dummy), so the tiny weights and generation config go.
            (directory / "model.safetensors").unlink()
            (directory / "generation_config.json").unlink(missing_ok=True)
            shape = resources.files("rayvllm.bench").joinpath("configs/llama-3.1-8b.json").read_text()
            (directory / "config.json").write_text(json.dumps(json.loads(shape), indent=2) + "\n")
        marker.write_text(self.name)
        return directory


GPU = Scenario(
    name="gpu",
    model_name="llama-3.1-8b-dummy",
    engine_args={
        "dtype": "bfloat16",
        "max_model_len": 4096,
        "load_format": "dummy",
        "gpu_memory_utilization": 0.9,
        "max_num_seqs": 256,
    },
    input_len=512,
    output_len=256,
    loads=(Load(1000, 256), Load(20, 1)),
    warmup=8,
    token_id_range=(100, 40000),
    client_processes=4,
    ready_timeout_s=900,
    # Seen on an H100: start 95 s warm (200 s with cold compile caches; Ray Serve LLM 141-171 s),
    # 1000@256 in 31 s (75 s for Ray Serve LLM), 20@1 in 35 s; transformers 1-2 min.
    step_estimate_s={"vllm": 300, "rayvllm": 240, "ray_serve_llm": 280, "hf": 150},
)

PRESETS = {
    "gpu": GPU,
    "gpu-shared": dataclasses.replace(
        GPU,
        name="gpu-shared",
        engine_args={
            **GPU.engine_args,
            # vLLM's start-up check asks for this share of the GPU free; the KV cache is fixed below.
            "gpu_memory_utilization": 0.3,
            "kv_cache_memory_bytes": 25 * 2**30,
        },
        loads=(Load(1000, 256), Load(10, 1)),
        client_start_s=5,  # 16 cores: four clients import in about 2 s
        # One endpoint's round: 1000@256 in 31-45 s, 10@1 in 18 s, warm-up and client start.
        step_estimate_s={**GPU.step_estimate_s, "round": 75},
    ),
    "cpu": Scenario(
        name="cpu",
        model_name="tiny-llama",
        engine_args=dict(TINY_LLAMA_CPU_ENGINE_ARGS),
        input_len=128,
        output_len=64,
        loads=(Load(128, 32), Load(16, 1)),
        warmup=4,
        token_id_range=None,
        env=dict(TINY_LLAMA_CPU_ENV),
        num_gpus=0,
        ray_num_cpus=8,  # each Serve deployment asks for a CPU; 2 real cores would leave one unscheduled
        ray_dashboard=False,
        ready_timeout_s=600,
        hf_dtype="float32",
    ),
}
