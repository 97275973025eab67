"""LoRA adapters on the default path: the real stack serves a random adapter of the tiny Llama on the base
model's replica, through the official `openai` client, with API keys on so metering can be read per key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_stack import (
    Stack,
    assert_unknown_model_gets_404,
    greedy,
    openai_client,
    start_keyed_stack,
    stop_stack,
    tiny_config,
    wait_until_metered_by_model,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADAPTER = "tiny-llama-sql"
KEY_ID, KEY = "team-lora", "sk-test-team-lora-0123456789"
# A key of the metering test's own, so the other tests' requests (whose counters Ray's metrics agent exports
# a few seconds late) cannot reach its counts.
METER_KEY_ID, METER_KEY = "team-meter", "sk-test-team-meter-0123456789"
RANK = 8


def build_random_lora(base: Path, out: Path, rank: int = RANK, seed: int = 1) -> Path:
    """A PEFT-layout LoRA adapter of `base` (a Llama) with random A and B on q, v and o: unlike a freshly
    initialised one (B = 0), it changes the model's outputs."""
    import torch
    from safetensors.torch import save_file

    config = json.loads((base / "config.json").read_text())
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = hidden // heads
    shapes = {  # module: (fan in, fan out)
        "q_proj": (hidden, heads * head_dim),
        "v_proj": (hidden, config["num_key_value_heads"] * head_dim),
        "o_proj": (heads * head_dim, hidden),
    }
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(config["num_hidden_layers"]):
        for module, (fan_in, fan_out) in shapes.items():
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            a = torch.randn(rank, fan_in, generator=generator) / fan_in**0.5
            b = torch.randn(fan_out, rank, generator=generator) / rank**0.5
            tensors[f"{prefix}.lora_A.weight"] = a.to(torch.bfloat16).contiguous()
            tensors[f"{prefix}.lora_B.weight"] = b.to(torch.bfloat16).contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(base),
        "r": rank,
        "lora_alpha": 2 * rank,
        "lora_dropout": 0.0,
        "target_modules": sorted(shapes),
        "bias": "none",
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "use_rslora": False,
        "use_dora": False,
    }
    (out / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
    return out


@pytest.fixture(scope="module")
def lora_stack(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    adapter = build_random_lora(tiny_model_dir, tmp_path_factory.mktemp("adapters") / ADAPTER)
    lora = {"adapters": [{"name": ADAPTER, "source": str(adapter)}], "max_lora_rank": RANK}
    config = tiny_config(tiny_model_dir, lora=lora)
    stack = start_keyed_stack(config, {KEY_ID: KEY, METER_KEY_ID: METER_KEY}, tmp_path_factory, "lora")
    yield stack
    assert not stop_stack(stack), "processes left after stopping rayvllm serve"


@pytest.fixture(scope="module")
def client(lora_stack: Stack):  # type: ignore[no-untyped-def]
    return openai_client(lora_stack, KEY)


def test_models_lists_the_adapter_with_its_base_model_as_parent(lora_stack: Stack, client) -> None:  # type: ignore[no-untyped-def]
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {lora_stack.model, ADAPTER}
    assert models[ADAPTER].model_extra["parent"] == lora_stack.model


def test_the_adapter_answers_differently_from_its_base_model(lora_stack: Stack, client) -> None:  # type: ignore[no-untyped-def]
    base, adapted = greedy(client, lora_stack.model), greedy(client, ADAPTER)
    assert adapted != base
    assert greedy(client, ADAPTER) == adapted  # greedy: the difference is the adapter's, not chance
    chat = client.chat.completions.create(
        model=ADAPTER, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0
    )
    assert chat.model == ADAPTER


def test_an_unknown_adapter_gets_404_with_the_openai_error_body(client) -> None:  # type: ignore[no-untyped-def]
    assert_unknown_model_gets_404(client)


def test_requests_to_the_adapter_are_metered_under_its_name(lora_stack: Stack) -> None:
    client = openai_client(lora_stack, METER_KEY)
    greedy(client, ADAPTER)
    greedy(client, ADAPTER)
    greedy(client, lora_stack.model)
    wait_until_metered_by_model(
        lora_stack,
        METER_KEY_ID,
        {ADAPTER: 2.0, lora_stack.model: 1.0},
        "the adapter's requests and tokens metered under its name, apart from the base model's",
    )
