"""`rayvllm capacity`: does a model fit its GPU? Weights plus KV cache for `max_model_len`, per GPU.

The arithmetic is the chart's render-time check (charts/rayvllm/templates/_capacity.tpl), so both give the
same numbers:

    weights      = parameters x weight_bytes_per_param / tensor_parallel_size
    kv_per_token = 2 x num_layers x ceil(num_kv_heads / tensor_parallel_size) x head_dim x kv_bytes
    kv_cache     = kv_per_token x max_model_len        (vLLM refuses to start without room for one sequence)
    fits         = weights + kv_cache + overhead <= gpu_memory_utilization x GPU memory

Sizes come from a model's `config.json` (a file or a model directory) or from a chart values file's `sizing`
hints (`--values`, which checks every model of an overlay the way `helm install` would).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rayvllm.config import ModelSizing

MIB = 1024 * 1024
# nvidia-smi's memory totals, keyed by Ray's accelerator type names. The chart's `capacity.gpuMemoryMiB` holds
# the same table (tests/chart/test_chart_capacity.py checks it).
GPU_MEMORY_MIB = {
    "T4": 15360,
    "A10G": 23028,
    "L4": 23034,
    "L40S": 46068,
    "A100-40G": 40960,
    "A100-80G": 81920,
    "H100": 81559,
    "H200": 143771,
}
# vLLM's memory besides weights and KV cache: activation peak, CUDA graphs, NCCL buffers
# (the chart's capacity.overheadMiB).
DEFAULT_OVERHEAD_MIB = 2048
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}


@dataclass(frozen=True)
class Estimate:
    """Memory one GPU of a replica needs, in bytes, against what vLLM may use of it."""

    weights: float
    kv_per_token: float
    kv_cache: float
    overhead: float
    budget: float
    max_model_len: int

    @property
    def need(self) -> float:
        return self.weights + self.kv_cache + self.overhead

    @property
    def fits(self) -> bool:
        return self.need <= self.budget

    @property
    def room(self) -> float:
        """Bytes left for the KV cache once weights and overhead are in."""
        return self.budget - self.weights - self.overhead

    @property
    def longest_fitting_len(self) -> int:
        return max(0, math.floor(self.room / self.kv_per_token))

    @property
    def sequences(self) -> float:
        """Full-length sequences the KV cache holds at once."""
        return max(0.0, self.room) / self.kv_cache


def estimate(
    sizing: ModelSizing,
    *,
    max_model_len: int,
    gpu_memory_mib: float,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    tensor_parallel_size: int = 1,
    overhead_mib: float = DEFAULT_OVERHEAD_MIB,
) -> Estimate:
    """Per-GPU memory of one replica; weights and KV heads are sharded over `tensor_parallel_size` GPUs."""
    tp = float(tensor_parallel_size)
    kv_heads = math.ceil(sizing.num_kv_heads / tp)
    kv_per_token = 2 * sizing.num_layers * kv_heads * sizing.head_dim * sizing.kv_cache_bytes_per_value
    return Estimate(
        weights=sizing.parameters * sizing.weight_bytes_per_param / tp,
        kv_per_token=kv_per_token,
        kv_cache=kv_per_token * max_model_len,
        overhead=overhead_mib * MIB,
        budget=gpu_memory_utilization * gpu_memory_mib * MIB,
        max_model_len=max_model_len,
    )


# Sharding the advice tries: powers of two divide the head counts that vLLM needs tensor_parallel_size to
# divide, and 8 GPUs is the most one node of the table's types carries (the chart keeps a replica within one
# worker pod).
TENSOR_PARALLEL_CANDIDATES = (2, 4, 8)


def advice(
    sizing: ModelSizing,
    *,
    max_model_len: int,
    gpu: str,
    gpu_table: dict[str, float],
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    tensor_parallel_size: int = 1,
    overhead_mib: float = DEFAULT_OVERHEAD_MIB,
) -> str:
    """What to change when a model does not fit one `gpu`: the chart's rayvllm.capacity.advice, word for word.

    While the weights fit, a shorter max_model_len helps; once they alone fill the GPU, only sharding
    (tensor_parallel_size, with as many GPUs per worker) or smaller weights do.
    """

    def on(gpu_mib: float, tp: int) -> Estimate:
        return estimate(
            sizing,
            max_model_len=max_model_len,
            gpu_memory_mib=gpu_mib,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tp,
            overhead_mib=overhead_mib,
        )

    est = on(gpu_table[gpu], tensor_parallel_size)
    sharded = {tp: on(gpu_table[gpu], tp) for tp in TENSOR_PARALLEL_CANDIDATES if tp > tensor_parallel_size}
    fit_tp = next((tp for tp, e in sharded.items() if e.fits), 0)
    short_tp = next((tp for tp, e in sharded.items() if e.longest_fitting_len > 0), 0)
    elsewhere = [name for name in sorted(gpu_table) if on(gpu_table[name], tensor_parallel_size).fits]
    if len(elsewhere) > 1:
        elsewhere = [", ".join(elsewhere[:-1]), elsewhere[-1]]
    nowhere = f"no engine.tensor_parallel_size up to 8 fits it on {gpu}"
    if elsewhere:
        nowhere += f" (it fits on {' or '.join(elsewhere)} as set)"

    def shard(tp: int) -> str:
        return f"engine.tensor_parallel_size {tp} and {tp} GPUs per worker (nvidia.com/gpu: {tp})"

    if est.longest_fitting_len > 0:
        options = [f"Lower engine.max_model_len to at most {est.longest_fitting_len}"]
        if sizing.kv_cache_bytes_per_value > 1:
            options.append("use engine.kv_cache_dtype fp8")
        if fit_tp:
            options.append("quantize the weights")
            return f"{', '.join(options)}, or shard it with {shard(fit_tp)}."
        return f"{', '.join(options)} or quantize the weights: {nowhere}."
    alone = (
        f"Its weights and overhead alone ({(est.weights + est.overhead) / MIB:.0f} MiB per GPU) leave no "
        "room for the KV cache, so a shorter engine.max_model_len cannot help: "
    )
    if fit_tp:
        return f"{alone}shard it with {shard(fit_tp)}, or quantize the weights."
    if short_tp:
        return (
            f"{alone}engine.tensor_parallel_size {short_tp} with {short_tp} GPUs per worker "
            f"(nvidia.com/gpu: {short_tp}) fits it with engine.max_model_len at most "
            f"{sharded[short_tp].longest_fitting_len}; or quantize the weights."
        )
    return f"{alone}{nowhere}; quantize the weights, or use a GPU type with more memory."


def assess(
    sizing: ModelSizing, *, gpu: str, gpu_table: dict[str, float], **shape: Any
) -> tuple[Estimate, str]:
    """The estimate on `gpu`, and the advice when it does not fit (empty when it does)."""
    est = estimate(sizing, gpu_memory_mib=gpu_table[gpu], **shape)
    return est, "" if est.fits else advice(sizing, gpu=gpu, gpu_table=gpu_table, **shape)


def sizing_from_hf_config(
    config: dict[str, Any],
    *,
    dtype: str = "auto",
    quantization: str | None = None,
    kv_cache_dtype: str = "auto",
    parameters: float | None = None,
) -> ModelSizing:
    """Size hints of a dense decoder (Llama, Qwen, Mistral, Gemma and the like) from its config.json.

    The parameter count is computed from the shapes unless given. Quantized weights: `fp8` stores the linear
    layers in 1 byte and keeps embeddings at the activation dtype; 4-bit methods (awq, gptq) use half a byte
    plus one 16-bit scale and zero per group of `group_size`.
    """
    text = config.get("text_config", config)
    hidden = int(text["hidden_size"])
    heads = int(text["num_attention_heads"])
    kv_heads = int(text.get("num_key_value_heads") or heads)
    head_dim = int(text.get("head_dim") or hidden // heads)
    layers = int(text["num_hidden_layers"])
    vocab = int(text["vocab_size"])
    intermediate = int(text["intermediate_size"])
    experts = int(text.get("num_local_experts") or text.get("num_experts") or 1)
    tied = bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))

    embedding = vocab * hidden * (1 if tied else 2)
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    mlp = 3 * hidden * intermediate * experts + (hidden * experts if experts > 1 else 0)
    linear = layers * (attention + mlp)
    norms = layers * 2 * hidden + hidden
    counted = embedding + linear + norms
    total = float(parameters) if parameters else float(counted)

    checkpoint_dtype = str(
        config.get("torch_dtype") or config.get("dtype") or text.get("torch_dtype") or "bfloat16"
    )
    activation_bytes = DTYPE_BYTES.get(checkpoint_dtype if dtype == "auto" else dtype, 2)
    method = quantization or (config.get("quantization_config") or {}).get("quant_method")
    linear_bytes: float = activation_bytes
    if method in {"fp8", "fbgemm_fp8", "compressed-tensors", "modelopt"}:
        linear_bytes = 1
    elif method in {"awq", "awq_marlin", "gptq", "gptq_marlin", "bitsandbytes"}:
        group_size = int((config.get("quantization_config") or {}).get("group_size") or 128)
        linear_bytes = 0.5 + 4 / group_size
    # Only linear layers are quantized; embeddings and norms keep the activation dtype.
    weight_bytes = linear * linear_bytes + (counted - linear) * activation_bytes
    kv_bytes = 1 if kv_cache_dtype.startswith("fp8") else activation_bytes
    return ModelSizing(
        parameters=total,
        weight_bytes_per_param=round(weight_bytes / counted, 4),
        num_layers=layers,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        kv_cache_bytes_per_value=kv_bytes,
    )


def merge_values(base: Any, overlay: Any) -> Any:
    """Helm's merge of values files: maps merge key by key, anything else (lists included) is replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = merge_values(base.get(key), value) if key in base else value
        return merged
    return overlay


def load_yaml(text: str) -> Any:
    """YAML as Helm reads it: unlike PyYAML's YAML 1.1, `8.03e9` is a number, not a string."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
        list("-+.0123456789"),
    )
    return yaml.load(text, Loader=Loader)


def load_values(chart: Path, files: list[Path]) -> dict[str, Any]:
    """The chart's values.yaml with these values files merged over it, in order, as `helm -f` does."""
    values: dict[str, Any] = load_yaml((chart / "values.yaml").read_text()) or {}
    for path in files:
        values = merge_values(values, load_yaml(path.read_text()) or {})
    return values


def report(
    name: str, gpu: str, gpu_mib: float, utilization: float, tp: int, est: Estimate, advice_text: str = ""
) -> str:
    """The estimate as `rayvllm capacity` prints it, with the advice when the model does not fit."""

    def mib(value: float) -> str:
        return f"{value / MIB:9.0f} MiB"

    verdict = "fits" if est.fits else "DOES NOT FIT"
    lines = [
        f"{name}: {verdict} on {gpu} ({gpu_mib:.0f} MiB) x tensor_parallel_size {tp}, "
        f"gpu_memory_utilization {utilization}",
        f"  budget    {mib(est.budget)}",
        f"  weights   {mib(est.weights)}",
        f"  KV cache  {mib(est.kv_cache)}  ({est.max_model_len} tokens x {est.kv_per_token / 1024:.1f} KiB)",
        f"  overhead  {mib(est.overhead)}",
        f"  max_model_len that fits: {est.longest_fitting_len}; KV room for {est.sequences:.1f} sequences "
        f"of {est.max_model_len} tokens",
    ]
    if advice_text:
        lines.append(f"  {advice_text}")
    return "\n".join(lines)


def check_values(args: argparse.Namespace) -> int:
    """Check every model of the chart's values plus overlays, as the chart's capacity check does."""
    values = load_values(Path(args.chart), [Path(p) for p in args.values])
    table = {**GPU_MEMORY_MIB, **(values.get("capacity", {}).get("gpuMemoryMiB") or {})}
    overhead = float(values.get("capacity", {}).get("overheadMiB", DEFAULT_OVERHEAD_MIB))
    status = 0
    for model in values["app"]["models"]:
        engine = model["engine"]
        gpu = model.get("accelerator_type")
        if not model.get("sizing") or gpu not in table:
            print(f"{model['name']}: cannot check: needs `sizing` and an accelerator_type in {sorted(table)}")
            status = 1
            continue
        utilization = float(engine.get("gpu_memory_utilization", DEFAULT_GPU_MEMORY_UTILIZATION))
        tp = int(engine.get("tensor_parallel_size", 1))
        est, text = assess(
            ModelSizing.model_validate(model["sizing"]),
            gpu=gpu,
            gpu_table=table,
            max_model_len=int(engine["max_model_len"]),
            gpu_memory_utilization=utilization,
            tensor_parallel_size=tp,
            overhead_mib=overhead,
        )
        print(report(model["name"], gpu, table[gpu], utilization, tp, est, text))
        status = status or (0 if est.fits else 1)
    return status


def check_model(args: argparse.Namespace) -> int:
    """Check one model from its config.json, and print the `sizing` block for the chart's values."""
    path = Path(args.model)
    config_path = path / "config.json" if path.is_dir() else path
    config = json.loads(config_path.read_text())
    sizing = sizing_from_hf_config(
        config,
        dtype=args.dtype,
        quantization=args.quantization,
        kv_cache_dtype=args.kv_cache_dtype,
        parameters=args.parameters,
    )
    gpu_mib = args.gpu_memory_mib or GPU_MEMORY_MIB.get(args.gpu)
    if gpu_mib is None:
        raise SystemExit(
            f"capacity: unknown GPU {args.gpu!r}; pass --gpu-memory-mib (known: {sorted(GPU_MEMORY_MIB)})"
        )
    est, text = assess(
        sizing,
        gpu=args.gpu,
        gpu_table={**GPU_MEMORY_MIB, args.gpu: gpu_mib},
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        tensor_parallel_size=args.tensor_parallel_size,
        overhead_mib=args.overhead_mib,
    )
    name = path.name if path.is_dir() else path.parent.name or str(path)
    print(report(name, args.gpu, gpu_mib, args.gpu_memory_utilization, args.tensor_parallel_size, est, text))
    print("sizing hints for the chart's app.models[].sizing:")
    for key, value in sizing.model_dump().items():
        print(f"  {key}: {value:g}" if isinstance(value, float) else f"  {key}: {value}")
    return 0 if est.fits else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="a model directory or its config.json")
    parser.add_argument(
        "--values",
        action="append",
        default=[],
        metavar="FILE",
        help="check every model of the chart's values plus this overlay (repeatable), instead of MODEL",
    )
    parser.add_argument(
        "--chart", default="charts/rayvllm", help="the chart whose values.yaml --values extends"
    )
    parser.add_argument("--gpu", default="L4", help=f"GPU type, Ray's name ({', '.join(GPU_MEMORY_MIB)})")
    parser.add_argument("--gpu-memory-mib", type=float, help="memory of the GPU, for a type not in the table")
    parser.add_argument("--max-model-len", type=int, default=8192, help="context length to hold in KV cache")
    parser.add_argument(
        "--gpu-memory-utilization", type=float, default=DEFAULT_GPU_MEMORY_UTILIZATION, help="vLLM's fraction"
    )
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs one replica shards over")
    parser.add_argument("--dtype", default="auto", help="weight dtype; `auto` is the checkpoint's")
    parser.add_argument(
        "--quantization", help="quantization method (fp8, awq, gptq); the checkpoint's if unset"
    )
    parser.add_argument("--kv-cache-dtype", default="auto", help="`fp8` halves the KV cache")
    parser.add_argument(
        "--parameters", type=float, help="parameter count, instead of the one computed from shapes"
    )
    parser.add_argument(
        "--overhead-mib",
        type=float,
        default=DEFAULT_OVERHEAD_MIB,
        help="vLLM's memory besides weights and KV",
    )


def run(args: argparse.Namespace) -> int:
    if args.values:
        return check_values(args)
    if not args.model:
        raise SystemExit("capacity: give a model directory or config.json, or --values FILE")
    return check_model(args)
