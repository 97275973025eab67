"""The typed configuration of a rayvllm Serve application.

The chart renders `.Values.app` into serveConfigV2's `applications[].args` with `toYaml`, so every key
here is a values key too, with the same snake_case name (vLLM's and Ray Serve's own spelling).
`tests/chart/test_chart_app_contract.py` loads the rendered args into `AppConfig`, so the two cannot drift.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    """Base of every config object: unknown keys are errors, not silently ignored typos."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(StrictModel):
    """vLLM engine arguments; names and meanings are those of `vllm serve`."""

    model: str = Field(description="Hugging Face model id or local directory of the weights.")
    tokenizer: str | None = Field(None, description="Tokenizer id or directory; defaults to `model`.")
    runner: Literal["auto", "generate", "pooling"] = Field(
        "auto",
        description="`pooling` serves an embedding model on /v1/embeddings instead of generating text; "
        "`auto` follows the checkpoint's architecture.",
    )
    convert: Literal["auto", "none", "embed", "classify"] = Field(
        "auto",
        description="Adapt the checkpoint to the runner: `embed` with `runner: pooling` serves a generative "
        "model's hidden states as embeddings.",
    )
    max_model_len: int = Field(
        gt=0,
        description="Context length in tokens. Always explicit: with an auto-fitted length, "
        "over-long prompts can crash the engine instead of getting a 400.",
    )
    max_num_seqs: int = Field(
        256, gt=0, description="Sequences batched per engine step: higher for throughput, lower for latency."
    )
    max_num_batched_tokens: int | None = Field(
        None, gt=0, description="Token budget per engine step (chunked prefill); vLLM's default if unset."
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Fraction of GPU memory vLLM may use for weights, activations and KV cache.",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one replica shards the model over.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Weight and activation dtype."
    )
    quantization: str | None = Field(
        None, description="Quantization method (for example `fp8`, `awq_marlin`); None uses the checkpoint's."
    )
    kv_cache_dtype: str = Field(
        "auto", description="KV cache dtype, for example `fp8` to double its capacity."
    )
    enable_prefix_caching: bool | None = Field(None, description="Reuse KV blocks of shared prompt prefixes.")
    enable_chunked_prefill: bool | None = Field(None, description="Split long prefills across engine steps.")
    enforce_eager: bool = Field(
        False, description="Skip torch.compile and CUDA graphs: faster start, slower steady state."
    )
    load_format: str = Field("auto", description="Weight loader; `dummy` gives random weights (benchmarks).")
    seed: int | None = Field(None, description="Engine random seed.")
    trust_remote_code: bool = Field(False, description="Allow model code from the checkpoint repository.")
    max_logprobs: int = Field(
        20, ge=0, description="Largest `logprobs`/`top_logprobs` a request may ask for."
    )
    extra_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other `vllm serve` engine or frontend argument, by its Python name "
        "(for example `swap_space: 4`). Checked against vLLM's own parser when the replica starts.",
    )


class OpenAIConfig(StrictModel):
    """Options of vLLM's OpenAI-compatible frontend."""

    chat_template: str | None = Field(
        None, description="Jinja chat template (file path or inline); the tokenizer's own if unset."
    )
    enable_auto_tool_choice: bool = Field(False, description="Let the model decide when to call tools.")
    tool_call_parser: str | None = Field(
        None, description="vLLM tool-call parser for this model family (for example `llama3_json`, `hermes`)."
    )
    reasoning_parser: str | None = Field(None, description="vLLM reasoning parser, for reasoning models.")

    @model_validator(mode="after")
    def _tool_choice_needs_parser(self) -> OpenAIConfig:
        if self.enable_auto_tool_choice and not self.tool_call_parser:
            raise ValueError("openai.enable_auto_tool_choice needs openai.tool_call_parser")
        return self


class AutoscalingConfig(StrictModel):
    """Ray Serve replica autoscaling; each replica is one vLLM engine."""

    min_replicas: int = Field(1, ge=0, description="Replicas kept when idle.")
    max_replicas: int = Field(1, ge=1, description="Upper bound; each replica needs `num_gpus` GPUs.")
    initial_replicas: int | None = Field(
        None, ge=0, description="Replicas at deploy time; `min_replicas` if unset."
    )
    target_ongoing_requests: float = Field(
        64, gt=0, description="Ongoing requests per replica that Serve scales to hold."
    )
    upscale_delay_s: float = Field(
        30, ge=0, description="Seconds load must stay high before adding replicas."
    )
    downscale_delay_s: float = Field(
        600, ge=0, description="Seconds load must stay low before removing replicas."
    )

    @model_validator(mode="after")
    def _bounds_ordered(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling.min_replicas must not exceed autoscaling.max_replicas")
        return self


class ModelSizing(StrictModel):
    """Size hints of a model for the chart's capacity check and `rayvllm capacity`; the app ignores them.

    Memory per GPU = parameters x weight_bytes_per_param / tensor_parallel_size
    + 2 (K and V) x num_layers x ceil(num_kv_heads / tensor_parallel_size) x head_dim
    x kv_cache_bytes_per_value x max_model_len.
    """

    parameters: float = Field(
        gt=0, description="Total parameter count, embeddings included (for example 8.03e9 for Llama-3.1-8B)."
    )
    weight_bytes_per_param: float = Field(
        gt=0,
        description="Bytes per parameter in GPU memory: 2 for bf16/fp16, about 1.1 for fp8 (embeddings stay "
        "bf16), about 0.6 for 4-bit AWQ/GPTQ with scales.",
    )
    num_layers: int = Field(gt=0, description="Transformer layers (`num_hidden_layers` in config.json).")
    num_kv_heads: int = Field(
        gt=0, description="Key/value heads (`num_key_value_heads`, or `num_attention_heads` without GQA)."
    )
    head_dim: int = Field(
        gt=0, description="Dimension of one attention head (`head_dim`, or hidden / heads)."
    )
    kv_cache_bytes_per_value: float = Field(
        gt=0,
        description="Bytes per cached key or value: 2 for a bf16/fp16 cache, 1 for `kv_cache_dtype: fp8`.",
    )


# A model id as clients send it in `model`: a served model's name, or a LoRA adapter's.
MODEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"


class LoRAAdapter(StrictModel):
    """One LoRA adapter of a model, served on the model's own replicas."""

    name: str = Field(
        pattern=MODEL_ID_PATTERN,
        description="Model id that clients send as `model` to use the adapter; `/v1/models` lists it with "
        "the base model as its parent.",
    )
    source: str = Field(
        min_length=1,
        description="Hugging Face id of the adapter, or its directory (for example on the model cache "
        "volume), in PEFT's layout.",
    )


class LoRAConfig(StrictModel):
    """LoRA adapters of one model, and vLLM's limits on them (`vllm serve --enable-lora`)."""

    adapters: list[LoRAAdapter] = Field(min_length=1, description="Adapters loaded when a replica starts.")
    max_loras: int = Field(1, ge=1, description="Adapters one engine step batches together.")
    max_lora_rank: Literal[1, 8, 16, 32, 64, 128, 256, 320, 512] = Field(
        16, description="Largest adapter rank served; vLLM sizes its adapter slots by it."
    )
    max_cpu_loras: int | None = Field(
        None, ge=1, description="Adapters kept in CPU memory; `max_loras` if unset."
    )

    @model_validator(mode="after")
    def _cpu_cache_holds_the_batch(self) -> LoRAConfig:
        if self.max_cpu_loras is not None and self.max_cpu_loras < self.max_loras:
            raise ValueError("lora.max_cpu_loras must be at least lora.max_loras")
        return self


class ModelConfig(StrictModel):
    """One served model: its engine, its OpenAI frontend and its Serve deployment."""

    name: str = Field(
        pattern=MODEL_ID_PATTERN,
        description="Model id that clients send as `model`, and that `/v1/models` lists.",
    )
    engine: EngineConfig = Field(description="vLLM engine arguments.")
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig, description="OpenAI frontend options.")
    lora: LoRAConfig | None = Field(
        None,
        description="LoRA adapters served on this model's replicas; a request names one in `model`.",
    )
    autoscaling: AutoscalingConfig = Field(
        default_factory=AutoscalingConfig, description="Replica autoscaling."
    )
    max_ongoing_requests: int = Field(
        512,
        gt=0,
        description="Requests one replica accepts at once; keep it above engine.max_num_seqs so vLLM's "
        "batch stays full (Ray Serve's default of 5 would starve it).",
    )
    max_queued_requests: int = Field(
        -1, ge=-1, description="Requests waiting for a replica before Serve answers 503; -1 is unbounded."
    )
    accelerator_type: str | None = Field(
        None,
        description="GPU type the replica must run on (for example `L4`, `A100`), matched against the worker "
        "group's `accelerator_type:<type>` Ray resource so the autoscaler scales the right pool.",
    )
    num_gpus: int | None = Field(
        None, ge=0, description="GPUs per replica; `engine.tensor_parallel_size` if unset, 0 on CPU."
    )
    sizing: ModelSizing | None = Field(
        None,
        description="Size hints for the chart's render-time capacity check and `rayvllm capacity`; "
        "not used by the app.",
    )
    num_cpus: float = Field(1, ge=0, description="Ray CPUs reserved per replica.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment variables of the replica process (for example VLLM_*)."
    )
    health_check_period_s: float = Field(10, gt=0, description="Seconds between replica health checks.")
    health_check_timeout_s: float = Field(
        30, gt=0, description="Seconds before a health check counts as failed."
    )
    graceful_shutdown_timeout_s: float = Field(
        30, ge=0, description="Seconds a stopping replica gets to finish its requests."
    )
    max_replicas_per_node: int | None = Field(
        None,
        ge=1,
        description="Most replicas of this model on one Ray node (Serve's deployment option); 1 on spot "
        "pools, so losing a node loses one replica. Unlimited if unset.",
    )

    @property
    def gpus_per_replica(self) -> int:
        return self.engine.tensor_parallel_size if self.num_gpus is None else self.num_gpus

    @property
    def is_pooling(self) -> bool:
        """An embedding model: served on /v1/embeddings instead of generating text."""
        return self.engine.runner == "pooling"

    @property
    def served_names(self) -> list[str]:
        """Every model id this model's replicas answer: its name, then its adapters'."""
        adapters = self.lora.adapters if self.lora else []
        return [self.name, *(adapter.name for adapter in adapters)]


class AuthConfig(StrictModel):
    """API keys at the Serve ingress (the `direct` engine path). Off unless `api_keys_dir` is set."""

    api_keys_dir: str | None = Field(
        None,
        description="Directory where every regular file is one API key: the file name is the key id (the "
        "`key_id` label of the usage metrics), its stripped content the key. A Kubernetes Secret mounted "
        "as a volume has this shape. Changes are picked up without a restart. When set, every route but "
        "health needs `Authorization: Bearer <key>` (or `x-api-key`).",
    )
    reload_interval_s: float = Field(
        5, gt=0, description="Seconds between checks of `api_keys_dir` for added, changed or removed keys."
    )


class LimitsConfig(StrictModel):
    """Input limits each replica enforces before a request reaches vLLM (the `direct` engine path)."""

    max_request_body_bytes: int | None = Field(
        16 * 1024 * 1024, gt=0, description="Largest request body; larger ones get 413. Unlimited if unset."
    )
    max_tokens_cap: int | None = Field(
        None,
        gt=0,
        description="Largest `max_tokens` / `max_completion_tokens` a request may ask for; larger ones get "
        "400 naming the cap. Unlimited (up to the context length) if unset.",
    )
    max_concurrent_requests: int | None = Field(
        None,
        gt=0,
        description="Requests one replica serves at once; more get 429 with `Retry-After`, so clients back "
        "off instead of queueing. Unbounded if unset (Serve's `max_ongoing_requests` still queues).",
    )
    retry_after_s: int = Field(1, ge=0, description="`Retry-After` seconds sent with a 429.")


class FailoverConfig(StrictModel):
    """An optional gateway deployment that survives a lost replica (spot preemption); off by default.

    When on, the gateway is the app's ingress: it forwards each request to a model replica through a
    Serve handle and, when that replica dies, retries a non-streamed request on another one and ends a
    stream that cannot continue with an error event and `[DONE]`. It costs one more hop per request and
    per streamed chunk, so throughput-first deployments leave it off and rely on clients' retries.
    """

    enabled: bool = Field(False, description="Route requests through the failover gateway.")
    max_attempts: int = Field(
        3, ge=1, description="Replicas a non-streamed request (or a stream not yet started) is tried on."
    )
    gateway_replicas: int = Field(2, ge=1, description="Replicas of the gateway deployment.")
    gateway_num_cpus: float = Field(0.1, ge=0, description="Ray CPUs reserved per gateway replica.")


class AppConfig(StrictModel):
    """A rayvllm application: the `args` of its serveConfigV2 entry."""

    models: list[ModelConfig] = Field(
        min_length=1,
        description="Models served behind one endpoint, each on replicas of its own; a request's `model` "
        "picks one. With more than one, requests pass the gateway (rayvllm.serve.gateway), one more hop.",
    )
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API keys and per-key metering.")
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Input limits per replica.")
    failover: FailoverConfig = Field(
        default_factory=FailoverConfig, description="Retries across replicas when one is lost."
    )

    @model_validator(mode="after")
    def _models_supported(self) -> AppConfig:
        names = [name for m in self.models for name in m.served_names]
        if len(set(names)) != len(names):
            raise ValueError(
                f"models[].name must be unique, and differ from every lora.adapters[].name, got {names}"
            )
        return self
