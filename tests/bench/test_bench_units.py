"""Unit tests of the benchmark tool on synthetic timings: metric maths, ratios, reports. No server."""

from __future__ import annotations

import argparse
import json
import os

import pytest
import yaml
from rayvllm.bench import compare, report
from rayvllm.bench.loadgen import Load, Target, make_prompts, prompts_needed
from rayvllm.bench.metrics import RequestResult, distribution_ms, summarize
from rayvllm.bench.presets import PRESETS
from rayvllm.bench.profiling import summarize as summarize_profile
from rayvllm.bench.servers import HAPROXY_FIXED_PORTS, ServerVariant, plan
from rayvllm.serve.vllm_args import vllm_flags


def request(ttft: float, e2e: float, tokens: int, *, usage: bool = True) -> RequestResult:
    gaps = [(e2e - ttft) / (tokens - 1)] * (tokens - 1) if tokens > 1 else []
    return RequestResult(
        prompt_tokens=10,
        output_tokens=tokens,
        tokens_from_usage=usage,
        ttft=ttft,
        e2e=e2e,
        itl=gaps,
    )


def test_tpot_is_decode_time_over_tokens_after_the_first() -> None:
    assert request(0.1, 1.1, 11).tpot == pytest.approx(0.1)
    assert request(0.1, 0.1, 1).tpot is None  # one token: no decode interval


def test_distribution_reports_milliseconds_with_linear_percentiles() -> None:
    stats = distribution_ms([0.001 * i for i in range(1, 101)])  # 1..100 ms
    assert stats["mean"] == pytest.approx(50.5)
    assert stats["p50"] == pytest.approx(50.5)
    assert stats["p95"] == pytest.approx(95.05)
    assert stats["p99"] == pytest.approx(99.01)
    assert distribution_ms([]) == {"mean": None, "p50": None, "p95": None, "p99": None}


def test_summary_counts_failures_apart_and_throughput_over_wall_time() -> None:
    results = [
        request(0.1, 1.1, 11),
        request(0.3, 2.3, 21),
        RequestResult(error="HTTP 503: busy"),
    ]
    summary = summarize(results, 4.0, num_prompts=3, concurrency=2)
    assert (summary["completed"], summary["failed"], summary["errors"]) == (
        2,
        1,
        ["HTTP 503: busy"],
    )
    assert summary["total_output_tokens"] == 32
    assert summary["output_throughput"] == pytest.approx(8.0)
    assert summary["request_throughput"] == pytest.approx(0.5)
    assert summary["total_token_throughput"] == pytest.approx((20 + 32) / 4)
    assert summary["ttft_ms"]["mean"] == pytest.approx(200)
    assert summary["tpot_ms"]["p50"] == pytest.approx(100)
    assert summary["itl_ms"]["p50"] == pytest.approx(100)
    assert summary["e2e_ms"]["p99"] == pytest.approx(1100 + 0.99 * 1200)
    assert summary["output_tokens_counted_from"] == "usage"


def test_summary_says_where_token_counts_came_from() -> None:
    mixed = [request(0.1, 1.1, 11), request(0.1, 1.1, 11, usage=False)]
    assert summarize(mixed, 1, num_prompts=2, concurrency=1)["output_tokens_counted_from"] == "mixed"
    chunks = [request(0.1, 1.1, 11, usage=False)]
    assert summarize(chunks, 1, num_prompts=1, concurrency=1)["output_tokens_counted_from"] == "chunks"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_scenario_matches_itself_after_a_json_round_trip(name) -> None:
    # compare mode merges per-server files of earlier phases only when their scenario equals this one
    described = PRESETS[name].describe()
    assert json.loads(json.dumps(described)) == described
    assert "step_estimate_s" not in described


def test_compare_mode_takes_a_shared_prefix_workload_that_fits_the_engine() -> None:
    """`compare --shared-prefix N:LEN` (prefix-aware routing): part of the scenario, and in the header."""
    import dataclasses

    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    assert parser.parse_args(["--shared-prefix", "16:2000"]).shared_prefix == (16, 2000)
    shaped = dataclasses.replace(PRESETS["gpu-shared"], shared_prefix=(16, 2000)).describe()
    assert shaped["shared_prefix"] == [16, 2000]
    assert json.loads(json.dumps(shaped)) == shaped
    assert "shared_prefix" not in PRESETS["gpu-shared"].describe()  # older bundles still match
    assert (
        compare.shared_prefix_note([16, 2000])
        == "; each prompt after one of 16 shared prefixes of 2000 tokens, in turn"
    )
    with pytest.raises(SystemExit, match="above the preset's max_model_len 512"):
        compare._compare(parser.parse_args(["--preset", "cpu", "--shared-prefix", "2:500"]))


def test_load_parses_prompts_at_concurrency() -> None:
    assert Load.parse("1000@256") == Load(1000, 256)
    assert str(Load(20, 1)) == "20@1"
    for bad in ("1000", "a@b", "0@1", "5@0"):
        with pytest.raises(ValueError):
            Load.parse(bad)
    assert prompts_needed([Load(1000, 256), Load(20, 1)], warmup=8) == 1028


def test_token_id_prompts_have_the_exact_length_and_are_reproducible() -> None:
    prompts = make_prompts(5, 512, as_text=False, tokenizer=None, token_id_range=(100, 200), seed=1)
    assert all(len(p) == 512 and all(100 <= t < 200 for t in p) for p in prompts)
    assert prompts == make_prompts(5, 512, as_text=False, tokenizer=None, token_id_range=(100, 200), seed=1)
    assert len({tuple(p) for p in prompts}) == 5  # no shared prefixes for the prefix cache to reuse


def test_shared_prefix_prompts_take_one_of_n_prefixes_in_turn() -> None:
    from rayvllm.bench.endpoint import prefix_spec

    prompts = make_prompts(
        6, 10, as_text=False, tokenizer=None, token_id_range=(100, 200), seed=1, shared_prefix=(2, 50)
    )
    assert all(len(p) == 60 for p in prompts)
    assert {tuple(p[:50]) for p in prompts[0::2]} == {tuple(prompts[0][:50])}
    assert {tuple(p[:50]) for p in prompts[1::2]} == {tuple(prompts[1][:50])}
    assert prompts[0][:50] != prompts[1][:50]
    assert len({tuple(p[50:]) for p in prompts}) == 6  # every question its own
    texts = make_prompts(
        4, 5, as_text=True, tokenizer=None, token_id_range=None, seed=1, shared_prefix=(2, 20)
    )
    assert texts[0].split()[:20] == texts[2].split()[:20] and len(texts[0].split()) == 25
    assert prefix_spec("16:2000") == (16, 2000)
    for bad in ("16", "0:10", "2:0", "a:b"):
        with pytest.raises(argparse.ArgumentTypeError):
            prefix_spec(bad)


def test_request_body_asks_for_usage_and_sends_vllm_extensions_only_when_set() -> None:
    target = Target("http://h:1/", "m", output_len=7)
    body = target.payload([1, 2, 3])
    assert target.url == "http://h:1/v1/completions"
    assert body["prompt"] == [1, 2, 3] and body["max_tokens"] == 7 and body["ignore_eos"] is True
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "temperature" not in body
    chat = Target("http://h:1", "m", api="chat", ignore_eos=False)
    assert chat.url.endswith("/v1/chat/completions")
    assert chat.payload("hi")["messages"] == [{"role": "user", "content": "hi"}]
    assert "ignore_eos" not in chat.payload("hi")


def test_engine_args_become_the_same_flags_and_config_for_every_server(
    tmp_path,
) -> None:
    engine = {
        "dtype": "bfloat16",
        "max_model_len": 4096,
        "enforce_eager": True,
        "enable_prefix_caching": False,
    }
    assert vllm_flags(engine) == [
        "--dtype", "bfloat16", "--max-model-len", "4096", "--enforce-eager", "--no-enable-prefix-caching",
    ]  # fmt: skip
    common = {
        "model_name": "m",
        "model_dir": "/models/m",
        "engine_args": engine,
        "port": 8100,
        "env": {"A": "1"},
    }
    bare = plan("vllm", config_path=tmp_path / "x.yaml", **common)
    assert "/models/m --served-model-name m --host 127.0.0.1 --port 8100 --dtype bfloat16" in " ".join(
        bare.command
    )
    ours = plan("rayvllm", config_path=tmp_path / "r.yaml", num_gpus=0, **common)
    config = next(iter(ours.files.values()))
    assert "enable_prefix_caching: false" in config and "num_gpus: 0" in config
    assert ours.env["RAY_ADDRESS"] == "local"  # a fresh Ray cluster, never a running one
    assert ours.env["A"] == "1"
    # The chart's default path, with HAProxy's fixed ports moved out of the way of another cluster.
    assert ours.env["RAY_SERVE_ENABLE_HA_PROXY"] == ours.env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert set(HAPROXY_FIXED_PORTS) <= set(ours.env)
    theirs = plan(
        "ray_serve_llm",
        num_gpus=0,
        config_path=tmp_path / "s.yaml",
        ray_num_cpus=8,
        ray_dashboard=False,
        **common,
    )
    assert json.loads(theirs.command[theirs.command.index("--engine-kwargs") + 1]) == engine
    assert {"--cpu-only", "--no-dashboard"} <= set(theirs.command)
    with pytest.raises(ValueError, match="unknown server"):
        plan("tgi", config_path=tmp_path / "t.yaml", **common)


def test_ray_serve_llm_baseline_sets_only_what_a_user_must() -> None:
    from rayvllm.bench.rayllm_app import baseline_config_fields, parse_args

    argv = ["--model-id", "m", "--model-source", "/models/m", "--engine-kwargs", '{"max_model_len": 4096}']
    assert baseline_config_fields(parse_args(argv)) == {
        "model_loading_config": {"model_id": "m", "model_source": "/models/m"},
        "engine_kwargs": {"max_model_len": 4096},
        "deployment_config": {
            "autoscaling_config": {"min_replicas": 1, "max_replicas": 1},
            "max_ongoing_requests": 1024,
        },
    }
    on_cpu = baseline_config_fields(parse_args([*argv, "--cpu-only", "--env", "A=1=2"]))
    assert on_cpu["placement_group_config"] == {"bundles": [{"CPU": 1}]}
    assert on_cpu["runtime_env"] == {"env_vars": {"A": "1=2"}}


def run_summary(concurrency: int, tok_s: float, ttft_ms: float, tpot_ms: float) -> dict:
    ms = {"mean": 1.0, "p50": 1.0, "p95": 1.0, "p99": 1.0}
    return {
        "num_prompts": 10, "concurrency": concurrency, "completed": 10, "failed": 0, "errors": [],
        "output_throughput": tok_s, "request_throughput": tok_s / 100,
        "ttft_ms": {**ms, "p50": ttft_ms}, "tpot_ms": {**ms, "p50": tpot_ms}, "itl_ms": ms, "e2e_ms": ms,
    }  # fmt: skip


def test_ratios_and_targets_against_bare_vllm() -> None:
    servers = {
        "vllm": {"runs": [run_summary(256, 8000, 100, 20), run_summary(1, 150, 25, 6)]},
        "rayvllm": {"runs": [run_summary(256, 7900, 110, 20.5), run_summary(1, 148, 31, 6)]},
        "ray_serve_llm": {"runs": [run_summary(256, 3400, 200, 70)]},
    }
    table = compare.ratios(servers)
    assert table["rayvllm"]["10@256"]["output_throughput"] == pytest.approx(0.9875)
    assert table["rayvllm"]["10@1"]["ttft_p50_delta_ms"] == pytest.approx(6)
    assert table["ray_serve_llm"]["10@256"]["tpot_p50"] == pytest.approx(3.5)
    assert "10@1" not in table["ray_serve_llm"]
    goals = {row["metric"]: row["met"] for row in compare.targets(table, ["10@256", "10@1"])}
    assert goals == {
        "output tok/s vs bare vLLM": True,
        "TPOT p50 vs bare vLLM": True,
        "TTFT p50 minus bare vLLM": False,
    }


def test_bundle_has_json_markdown_plots_and_logs(tmp_path) -> None:
    scenario = {
        "name": "cpu",
        "loads": ["10@256", "10@1"],
        "engine_args": {},
        "input_len": 1,
        "output_len": 1,
    }
    key = {"scenario": {**scenario, "warmup": 0}, "model_dir": "/m"}
    results = tmp_path / "results"
    for name, runs in (
        ("vllm", [run_summary(256, 8000, 100, 20)]),
        ("rayvllm", [run_summary(256, 7990, 101, 20)]),
        ("rayvllm+x2", [run_summary(512, 15000, 102, 21)]),
    ):
        record = {
            "server": name,
            "command": ["x"],
            "ready_s": 1.0,
            "runs": runs,
            "error": None,
            "log_tail": "ok",
            "environment": {"hostname": "h", "gpus": []},
        }
        report.write_json(results / f"{name}.json", {**key, **record})
    stale = {"scenario": {**scenario, "warmup": 8}, "model_dir": "/m", "runs": []}
    # an earlier run with other settings, which the bundle must leave out
    report.write_json(results / "ray_serve_llm.json", stale)
    out = tmp_path / "out"
    compare.write_bundle(out, key, results)
    bundle = json.loads((out / "compare.json").read_text())
    assert list(bundle["servers"]) == [
        "vllm",
        "rayvllm",
        "rayvllm+x2",
    ]  # the other scenario's file is ignored
    assert bundle["ratios_vs_bare_vllm"]["rayvllm"]["10@256"]["output_throughput"] == pytest.approx(
        0.99875, abs=1e-4
    )
    assert bundle["environment"]["versions"] and "nvidia_smi_query_gpu_name" in bundle["environment"]
    markdown = (out / "compare.md").read_text()
    assert "| rayvllm | 7,990.0 | 0.999 |" in markdown
    # x2 ran twice the concurrent load: the 10@256 table points to it instead of calling it "not run".
    assert "| rayvllm+x2 | ran 10@512 instead (see below) |" in markdown
    assert "==== rayvllm" in (out / "server-logs.txt").read_text()
    for png in ("latency.png", "throughput.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


# The server plan's arguments that the variant tests share.
PLAN_ARGS = {"model_name": "m", "model_dir": "/m", "engine_args": {"max_model_len": 64}, "port": 9}


def test_rayvllm_variants_set_ray_serve_env_and_replicas(tmp_path) -> None:
    common = PLAN_ARGS
    spec = plan(
        "rayvllm+throughput+haproxy+x2",
        env={},
        config_path=tmp_path / "c.yaml",
        **common,
    )
    assert spec.env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert spec.env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    config = yaml.safe_load(spec.files[str(tmp_path / "c.yaml")])
    assert config["models"][0]["autoscaling"] == {"min_replicas": 2, "max_replicas": 2}
    assert spec.endpoint_port is None
    direct = plan("rayvllm+direct", env={}, config_path=tmp_path / "d.yaml", **common)
    assert direct.endpoint_port == int(direct.env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"])
    diagnosis = plan(
        "rayvllm+direct+nostats+omp+nice15",
        env={},
        config_path=tmp_path / "e.yaml",
        **common,
    )
    assert diagnosis.env["RAY_worker_niceness"] == "15"
    model = yaml.safe_load(diagnosis.files[str(tmp_path / "e.yaml")])["models"][0]
    assert model["engine"]["extra_args"] == {"disable_log_stats": True}
    assert int(model["env"]["OMP_NUM_THREADS"]) >= 1
    niced = plan("vllm+nice15", env={}, config_path=tmp_path / "f.yaml", **common)
    assert niced.command[:3] == ["nice", "-n", "15"] and "--served-model-name" in niced.command
    best = plan("ray_serve_llm+throughput", env={}, config_path=tmp_path / "g.yaml", **common)
    for switch in (
        "RAY_SERVE_ENABLE_HA_PROXY",
        "RAY_SERVE_THROUGHPUT_OPTIMIZED",
        "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING",
    ):
        assert best.env[switch] == "1"
    assert (
        "RAY_SERVE_ENABLE_HA_PROXY"
        not in plan("ray_serve_llm", env={}, config_path=tmp_path / "h", **common).env
    )
    # Two HAProxy clusters on one machine (interleaved rounds) bind none of Serve's fixed ports twice.
    haproxied = (spec, best)
    ports = [int(s.env[name]) for s in haproxied for name in HAPROXY_FIXED_PORTS]
    ports += [int(s.env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"]) for s in haproxied]
    assert len(set(ports)) == len(ports) and not {8404, 9101, 8500, 9500, 30000} & set(ports)
    old_default = plan("rayvllm+proxy", env={}, config_path=tmp_path / "i.yaml", **common)
    assert not set(HAPROXY_FIXED_PORTS) & set(old_default.env)  # no HAProxy, none needed
    assert old_default.env["RAY_SERVE_ENABLE_HA_PROXY"] == "0"
    assert old_default.env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "0"
    for bad in ("rayvllm+fast", "vllm+haproxy", "ray_serve_llm+nice15", "rayvllm+proxy+haproxy", "tgi"):
        with pytest.raises(ValueError):
            ServerVariant.parse(bad)


def test_a_labelled_rayvllm_runs_the_checkout_its_source_names(tmp_path, monkeypatch) -> None:
    """`rayvllm@before` with `--source before=DIR`: two commits take turns in the same rounds."""
    old = tmp_path / "old" / "app" / "src"
    (old / "rayvllm").mkdir(parents=True)
    (old / "rayvllm" / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    before = plan(
        "rayvllm+nostats@before", env={}, config_path=tmp_path / "b.yaml", sources={"before": str(old)},
        **PLAN_ARGS,
    )  # fmt: skip
    assert before.env["PYTHONPATH"] == f"{old}{os.pathsep}/elsewhere"
    assert ServerVariant.parse("rayvllm+nostats@before") == ServerVariant("rayvllm", ("nostats",), "before")
    assert "PYTHONPATH" not in plan("rayvllm", env={}, config_path=tmp_path / "h.yaml", **PLAN_ARGS).env
    with pytest.raises(ValueError, match="--source after=DIR"):
        plan("rayvllm@after", env={}, config_path=tmp_path / "a.yaml", sources={}, **PLAN_ARGS)
    with pytest.raises(ValueError, match="no rayvllm package there"):
        plan("rayvllm@x", env={}, config_path=tmp_path / "x.yaml", sources={"x": str(tmp_path)}, **PLAN_ARGS)
    for bad in ("vllm@before", "rayvllm@"):
        with pytest.raises(ValueError, match="only rayvllm runs another checkout"):
            ServerVariant.parse(bad)


def test_failover_variant_puts_the_gateway_in_front_and_leaves_the_rest_at_the_defaults(tmp_path) -> None:
    from rayvllm.config import AppConfig, FailoverConfig

    common = {**PLAN_ARGS, "env": {}}
    gateway = plan("rayvllm+failover", config_path=tmp_path / "f.yaml", **common)
    config = AppConfig.model_validate(yaml.safe_load(gateway.files[str(tmp_path / "f.yaml")]))
    assert config.failover.enabled
    assert config.failover.model_dump() == {**FailoverConfig().model_dump(), "enabled": True}
    plain = plan("rayvllm", config_path=tmp_path / "p.yaml", **common)
    assert "failover" not in yaml.safe_load(plain.files[str(tmp_path / "p.yaml")])

    def switches(env: dict[str, str]) -> dict[str, str]:  # without the free ports each server gets
        return {k: v for k, v in env.items() if not k.endswith("_PORT") and k not in HAPROXY_FIXED_PORTS}

    assert switches(gateway.env) == switches(plain.env)  # the same Serve switches: only the ingress differs
    with pytest.raises(ValueError):
        ServerVariant.parse("vllm+failover")


def test_rayvllm_has_the_charts_haproxy_retries_and_noretry_takes_them_off(tmp_path) -> None:
    from rayvllm.local.runner import HAPROXY_RETRY_ENV

    common = {**PLAN_ARGS, "env": {}}
    default = plan("rayvllm", config_path=tmp_path / "d.yaml", **common)
    assert {name: default.env[name] for name in HAPROXY_RETRY_ENV} == HAPROXY_RETRY_ENV
    assert "option http-buffer-request" in default.env["RAY_SERVE_HAPROXY_RETRY_ON"]
    noretry = plan("rayvllm+noretry", config_path=tmp_path / "n.yaml", **common)
    assert not set(HAPROXY_RETRY_ENV) & set(noretry.env)
    assert noretry.env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    # The rest is the same server: only the retry policy differs.
    assert noretry.files[str(tmp_path / "n.yaml")] == default.files[str(tmp_path / "d.yaml")]
    # Older bundles' names still parse: `retry` is what the defaults do now.
    retried = plan("rayvllm+throughput+haproxy+retry", config_path=tmp_path / "r.yaml", **common)
    assert {name: retried.env[name] for name in HAPROXY_RETRY_ENV} == HAPROXY_RETRY_ENV
    for bad in ("rayvllm+proxy+retry", "rayvllm+proxy+noretry", "ray_serve_llm+throughput+retry"):
        with pytest.raises(ValueError, match="retry"):
            ServerVariant.parse(bad)


def test_two_replica_variant_gets_twice_the_concurrent_load_and_a_scaling_ratio() -> None:
    loads = compare.scaled_loads([Load(1000, 256), Load(20, 1)], replicas=2)
    assert [str(load) for load in loads] == ["2000@512", "20@1"]
    servers = {
        "rayvllm+haproxy": {"runs": [run_summary(256, 7000, 100, 20)]},
        "rayvllm+haproxy+x2": {"runs": [run_summary(512, 13650, 100, 20), run_summary(1, 150, 25, 6)]},
    }
    (row,) = compare.scaling(servers)
    assert row["baseline"] == "rayvllm+haproxy" and row["load"] == "10@512"
    assert row["ratio"] == pytest.approx(1.95)


def test_profile_summary_ranks_threads_and_functions() -> None:
    collapsed = "\n".join(
        [
            "thread (1): MainThread;main (a.py:1);step (a.py:9) 60",
            "thread (1): MainThread;main (a.py:1);send (b.py:3) 30",
            "thread (2): io;poll (c.py:2) 10",
        ]
    )
    text = summarize_profile(collapsed, seconds=1)
    assert "100 samples" in text
    assert "90.0%  thread (1): MainThread" in text
    assert "60.0%  step (a.py:9)" in text and "90.0%  main (a.py:1)" in text


def test_engine_core_main_thread_states_from_an_idle_profile() -> None:
    loop = "thread (7): MainThread;run_engine_core (core.py:1);EngineCoreProc.run_busy_loop (core.py:2)"
    step = f"{loop};EngineCoreProc._process_engine_step (core.py:4)"
    collapsed = "\n".join(
        [
            f"{loop};EngineCoreProc._process_input_queue (core.py:3);Queue.get (queue.py:1);"
            "Condition.wait (threading.py:355) 20",
            f"{step};EngineCore.step_with_batch_queue (core.py:5);AsyncOutputFuture.result (a.py:1);"
            "AsyncOutput.get_output (a.py:2);Event.synchronize (streams.py:254) 50",
            f"{step};Scheduler.schedule (scheduler.py:564) 10",
            f"{step};Worker.execute_model (w.py:1);GPUModelRunner.prepare_inputs (r.py:1) 15",
            f"{step} 5",
            "thread (8): Thread-3 (process_output_sockets);Poller.poll (poll.py:106) 100",
        ]
    )
    from rayvllm.bench.profiling import engine_states

    assert engine_states(collapsed) == {
        "no requests: blocked on its input queue": 20,
        "waiting for the GPU's output of a step": 50,
        "scheduler (schedule, update_from_output)": 10,
        "model runner (inputs, launches, sampling)": 15,
        "other": 5,
    }
    text = summarize_profile(collapsed, seconds=1, idle=True)
    assert "(every thread, waiting ones too (--idle))" in text
    assert "engine core main thread, 100 samples" in text and "20.0%  no requests" in text
    # without --idle the waits are missing, and the summary says so; an API server has no such section
    assert "are not sampled" in summarize_profile(collapsed, seconds=1)
    assert "engine core" not in summarize_profile("thread (1): MainThread;main (a.py:1) 5", seconds=1)


def test_a_repeated_load_keeps_its_own_label_and_row() -> None:
    from rayvllm.bench import compare

    assert compare.load_labels(["1000@256", "1000@256", "20@1", "1000@256"]) == [
        "1000@256", "1000@256 #2", "20@1", "1000@256 #3"
    ]  # fmt: skip
    runs = [{"num_prompts": 1000, "concurrency": 256, "n": n} for n in (1, 2)]
    by_load = compare._by_load(runs)
    assert {label: run["n"] for label, run in by_load.items()} == {"1000@256": 1, "1000@256 #2": 2}


def test_free_ports_avoid_the_kernels_and_rays_ranges_and_never_repeat() -> None:
    from rayvllm.procs import FREE_PORT_RANGE, free_port, free_port_range

    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(FREE_PORT_RANGE[0] <= port <= FREE_PORT_RANGE[1] for port in ports)
    start = free_port_range(50)
    block = range(start, start + 50)
    assert not set(block) & set(ports)
    assert all(free_port() not in block for _ in range(50))


def test_thread_cpu_sampler_finds_the_busy_thread_of_a_process_tree() -> None:
    import subprocess
    import sys
    import threading

    from rayvllm.bench.profiling import sample_thread_cpu

    spin = "import threading, time\ndef spin():\n    while True:\n        pass\n"
    spin += "threading.Thread(target=spin, daemon=True).start()\ntime.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", spin])
    try:
        sampled = sample_thread_cpu(child.pid, threading.Event(), delay_s=0.5, window_s=1.5)
    finally:
        child.kill()
    busiest = sampled["busiest_threads"][0]
    assert busiest["cpu_share"] > 0.3  # one spinning thread, on a machine that may be busy
    assert sampled["processes"][0]["pid"] == child.pid
    stopped = threading.Event()
    stopped.set()
    assert "error" in sample_thread_cpu(child.pid, stopped, delay_s=5, window_s=5)


def test_targets_for_every_single_replica_rayvllm_server_and_a_cpu_row() -> None:
    servers = {
        "vllm": {"runs": [run_summary(256, 8000, 100, 20), run_summary(1, 150, 25, 6)]},
        "rayvllm+direct": {"runs": [run_summary(256, 7000, 100, 23), run_summary(1, 150, 26, 6)]},
        "rayvllm+direct+x2": {"runs": [run_summary(256, 13000, 100, 23)]},
        "vllm+nice15": {"runs": [run_summary(256, 7000, 100, 23)]},
    }
    rows = compare.targets(compare.ratios(servers), ["10@256", "10@1"])
    assert {row["server"] for row in rows} == {"rayvllm+direct"}
    assert [row["met"] for row in rows] == [False, False, True]
    record = {
        "runs": [{"client_cpu_share": 0.09}],
        "thread_cpu": {
            "processes": [{"process": "engine-core", "nice": 15, "env": {"OMP_NUM_THREADS": "1"}}],
            "busiest_threads": [
                {
                    "process": "serve-replica",
                    "thread": "ray::IDLE (1)",
                    "cpu_share": 0.63,
                },
                {
                    "process": "engine-core",
                    "thread": "VLLM::EngineCor (2)",
                    "cpu_share": 0.35,
                },
            ],
        },
    }
    assert (
        compare.thread_cpu_row("rayvllm+direct", record) == "| rayvllm+direct | 0.63 | 0.35 | 15 | 1 | 0.09 |"
    )
    assert compare.thread_cpu_row("vllm", {"runs": []}) == ""


def test_engine_steps_from_two_scrapes_of_the_tokens_per_step_histogram() -> None:
    from rayvllm.bench.profiling import engine_steps

    before = {"128.0": 5, "256.0": 10, "+Inf": 10, "count": 10, "sum": 2000}
    # 100 more steps: 80 decode-only (<= 256 tokens), 20 that carried prefill
    after = {"128.0": 5, "256.0": 90, "+Inf": 110, "count": 110, "sum": 2000 + 80 * 256 + 20 * 2048}
    steps = engine_steps(before, after, duration_s=2.0, max_num_seqs=256)
    assert steps == {
        "steps": 100,
        "steps_per_s": 50.0,
        "mean_step_ms": 20.0,
        "tokens_per_step": 614.4,
        "share_of_steps_with_prefill": 0.2,
    }
    assert "error" in engine_steps(before, before, duration_s=2.0, max_num_seqs=256)


def test_engine_steps_rows_give_one_row_per_load_and_fall_back_to_the_first_loads() -> None:
    from rayvllm.bench import compare

    steps = {"steps": 100, "steps_per_s": 50.0, "mean_step_ms": 20.0, "tokens_per_step": 614.4,
             "share_of_steps_with_prefill": 0.2}  # fmt: skip
    runs = [
        {"num_prompts": 1000, "concurrency": 256, "engine_steps": steps},
        {"num_prompts": 20, "concurrency": 1, "engine_steps": {"error": "scraping failed"}},
    ]
    row = "| vllm | 1000@256 | 100 | 50.0 | 20.00 | 614.4 | 0.200 |"
    assert compare.engine_steps_rows("vllm", {"runs": runs}) == [row]
    # a bundle from before the steps were kept per load: the record's, under the first load
    older = {"runs": [{"num_prompts": 1000, "concurrency": 256}], "engine_steps": steps}
    assert compare.engine_steps_rows("vllm", older) == [row]
    assert compare.engine_steps_rows("vllm", {"runs": []}) == []
    before = {"count": 1, "sum": 1}
    assert compare.engine_steps_between("no metrics", before, 1.0, 256) == {"error": "no metrics"}
    assert compare.engine_steps_between(before, "failed", 1.0, 256) == {"error": "failed"}


def rounds_record(order: int, *rounds: tuple[float, float, float], shares: str | None = None) -> dict:
    """A server of interleaved mode: per round (tok/s at 10@256, TPOT p50 there, TTFT p50 at 10@1)."""
    return {
        "order": order,
        "shares_server": shares,
        "rounds": [
            {
                "round": i,
                "started_utc": "t",
                "runs": [run_summary(256, tok, 100, tpot), run_summary(1, 150, ttft, 6)],
            }
            for i, (tok, tpot, ttft) in enumerate(rounds, start=1)
        ],
        "runs": [],
    }


def test_interleaved_rounds_pair_each_run_with_the_bare_run_of_its_round() -> None:
    from rayvllm.bench import interleave

    servers = {
        # bare vLLM moves 10% between rounds: 8000 to 8800, median 8400
        "vllm": rounds_record(0, (8000, 20, 20), (8400, 21, 21), (8800, 22, 20)),
        # 2% below bare in every round: within bare's spread, so no difference
        "rayvllm+haproxy": rounds_record(1, (7840, 20.4, 20.5), (8232, 21.4, 21.5), (8624, 22.4, 20.5)),
        # 30% below in every round, and +8 ms TTFT: beyond the spread
        "rayvllm": rounds_record(2, (5600, 28, 28), (5880, 29, 29), (6160, 31, 28)),
    }
    summary = interleave.summarize(servers, ["10@256", "10@1"])
    high, low = summary["loads"]["10@256"], summary["loads"]["10@1"]
    bare = high["servers"]["vllm"]["output_throughput"]
    assert (bare["median"], bare["min"], bare["max"]) == (8400, 8000, 8800)
    assert high["bare_spread"]["output_throughput"] == pytest.approx(800 / 8400, abs=1e-4)
    assert low["bare_spread"]["ttft_p50"] == pytest.approx(1.0)

    haproxy = high["vs_bare"]["rayvllm+haproxy"]["output_throughput"]
    # Pair by pair within a round: 0.98 every time, though the raw values span 7840-8624.
    assert haproxy["values"] == [0.98, 0.98, 0.98]
    assert (haproxy["median"], haproxy["min"], haproxy["max"]) == (0.98, 0.98, 0.98)
    assert haproxy["verdict"] == interleave.NO_DIFFERENCE
    proxy = high["vs_bare"]["rayvllm"]
    assert proxy["output_throughput"]["median"] == pytest.approx(0.7)
    assert proxy["output_throughput"]["verdict"] == "-30.0%: worse, beyond bare's spread"
    assert proxy["tpot_p50"]["verdict"].endswith("worse, beyond bare's spread")
    ttft = low["vs_bare"]["rayvllm"]["ttft_p50"]
    assert (ttft["median"], ttft["min"], ttft["max"]) == (8, 8, 8)
    assert ttft["verdict"] == "+8.00 ms: worse, beyond bare's spread"
    assert low["vs_bare"]["rayvllm+haproxy"]["ttft_p50"]["verdict"] == interleave.NO_DIFFERENCE

    table = interleave.ratio_table(summary)
    goals = {(row["server"], row["metric"]): row["met"] for row in compare.targets(table, ["10@256", "10@1"])}
    assert goals[("rayvllm+haproxy", "output tok/s vs bare vLLM")] is True
    assert goals[("rayvllm", "output tok/s vs bare vLLM")] is False
    assert goals[("rayvllm", "TTFT p50 minus bare vLLM")] is False


def test_interleaved_pairs_skip_failed_runs_and_need_two_bare_runs_for_a_spread() -> None:
    from rayvllm.bench import interleave

    servers = {
        "vllm": rounds_record(0, (8000, 20, 20), (8400, 21, 21)),
        "rayvllm": rounds_record(1, (7000, 22, 22), (7200, 22, 22)),
    }
    servers["vllm"]["rounds"][1]["runs"][0]["failed"] = 3  # round 2's bare run does not count
    high = interleave.summarize(servers, ["10@256"])["loads"]["10@256"]
    assert high["servers"]["vllm"]["rounds"] == [1]
    assert high["vs_bare"]["rayvllm"]["output_throughput"]["values"] == [0.875]
    assert high["bare_spread"]["output_throughput"] is None
    assert high["vs_bare"]["rayvllm"]["output_throughput"]["verdict"].startswith("bare vLLM's spread unknown")
    assert interleave.verdict(None, 0.1, "ratio", True) == "n/a"
    assert interleave.verdict(1.05, 0.1, "ratio", False) == interleave.NO_DIFFERENCE
    assert interleave.verdict(1.15, 0.1, "ratio", True) == "+15.0%: better, beyond bare's spread"


def test_share_names_a_direct_endpoint_on_another_server() -> None:
    from rayvllm.bench import interleave

    assert interleave.parse_share("rayvllm+direct=rayvllm+throughput+haproxy") == (
        "rayvllm+direct",
        "rayvllm+throughput+haproxy",
    )
    for bad in ("rayvllm+direct", "rayvllm+haproxy=rayvllm", "=rayvllm"):
        with pytest.raises(ValueError):
            interleave.parse_share(bad)
    assert ServerVariant.parse("rayvllm+haproxy").has_direct_ingress
    assert ServerVariant.parse("rayvllm").has_direct_ingress
    assert ServerVariant.parse("rayvllm+proxy+throughput").has_direct_ingress
    assert not ServerVariant.parse("rayvllm+proxy").has_direct_ingress


def test_interleaved_bundle_reports_rounds_spread_and_cold_starts(tmp_path) -> None:
    scenario = {"name": "gpu-shared", "loads": ["10@256", "10@1"], "engine_args": {}, "input_len": 1,
                "output_len": 1, "warmup": 0}  # fmt: skip
    key = {"scenario": scenario, "model_dir": "/m"}
    results = tmp_path / "results"
    records = {
        "vllm": rounds_record(0, (8000, 20, 20), (8400, 21, 21), (8800, 22, 20)),
        "rayvllm+throughput+haproxy": rounds_record(
            1, (7840, 20.4, 20.5), (8232, 21.4, 21.5), (8624, 22, 20)
        ),
        "rayvllm+direct": rounds_record(
            2, (8000, 20, 20), (8400, 21, 21), (8800, 22, 20), shares="rayvllm+throughput+haproxy"
        ),
    }
    for name, record in records.items():
        record.update(server=name, command=["x"], error=None, log_tail="ok",
                      environment={"hostname": "h", "gpus": []})  # fmt: skip
        record["ready_s_starts"] = [190.0, 55.0] if name == "vllm" else [80.0]
        record["ready_s"] = record["ready_s_starts"][-1]
        report.write_json(results / f"{name}.json", {**key, **record})
    out = tmp_path / "out"
    compare.write_bundle(out, key, results)
    bundle = json.loads((out / "compare.json").read_text())
    assert bundle["interleaved"]["rounds_run"] == 3
    assert bundle["ratios_vs_bare_vllm"]["rayvllm+direct"]["10@256"]["output_throughput"] == 1.0
    markdown = (out / "compare.md").read_text()
    assert (
        "**3 interleaved rounds** (vllm, rayvllm+throughput+haproxy, rayvllm+direct in every round)"
        in markdown
    )
    assert "spread **9.5%**" in markdown
    assert "| vllm | 3 | 8,400 [8,000-8,800] |" in markdown
    assert "| rayvllm+direct | 1.000 [1.000-1.000] | no difference measured |" in markdown
    assert "| vllm | 190.0 then 55.0 (restarted) |" in markdown
    assert "| rayvllm+direct | (on rayvllm+throughput+haproxy) |" in markdown
    # every run, in the order it ran: round 1's three servers before round 2's
    rows = [line for line in markdown.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert [row.split(" | ")[1] for row in rows[:3]] == ["vllm", "vllm", "rayvllm+throughput+haproxy"]
    assert (out / "interleaved.png").read_bytes()[:4] == b"\x89PNG"


def test_gpu_busy_integrates_utilization_samples_over_the_load_window() -> None:
    from rayvllm.bench.profiling import GpuBusySampler, gpu_busy

    # Samples every 0.5 s from t=100 s: 100% busy, then 50%, then idle; each covers the half second before it.
    samples = {int((100 + 0.5 * i) * 1e6): util for i, util in enumerate([0, 100, 100, 50, 50, 0, 0])}
    whole = gpu_busy(samples, 100.0, 103.0)
    assert (whole["covered_s"], whole["busy_s"], whole["idle_s"]) == (3.0, 1.5, 1.5)
    assert whole["sample_period_ms"] == 500.0
    # A window that starts inside a sample's period counts only its part of it.
    part = gpu_busy(samples, 100.25, 101.0)
    assert (part["covered_s"], part["busy_s"]) == (0.75, 0.75)
    # Without NVML (this CPU machine), the sampler measures nothing and never raises.
    sampler = GpuBusySampler().start()
    assert sampler.result(0.0, 1.0) is None
    assert str(sampler.error).startswith("NVML unavailable")


def test_interleaved_summary_reports_gpu_idle_time_against_bare() -> None:
    from rayvllm.bench import interleave

    servers = {
        "vllm": rounds_record(0, (8000, 20, 20), (8400, 21, 21)),
        "rayvllm": rounds_record(1, (7000, 22, 22), (7200, 22, 22)),
    }
    for name, idle in (("vllm", 2.0), ("rayvllm", 5.5)):
        for entry in servers[name]["rounds"]:
            entry["runs"][0].update(duration_s=30.0 + idle, gpu={"busy_s": 30.0, "idle_s": idle})
    summary = interleave.summarize(servers, ["10@256", "10@1"])
    entry = summary["loads"]["10@256"]
    assert entry["servers"]["rayvllm"]["gpu_busy_s"]["median"] == 30.0
    assert entry["vs_bare"]["rayvllm"]["gpu_idle_s"]["median"] == 3.5
    assert entry["vs_bare"]["rayvllm"]["gpu_busy_s"]["median"] == 1.0
    # The GPU's idle time is a difference in seconds, not in TTFT's milliseconds.
    assert entry["vs_bare"]["rayvllm"]["gpu_idle_s"]["verdict"] == "+3.50 s: worse, beyond bare's spread"
    bundle = {"interleaved": {**summary, "rounds_run": 2}, "servers": servers}
    lines = interleave.markdown(bundle)
    row = "| rayvllm | 35.50 [35.50-35.50] | 30.00 [30.00-30.00] | 5.50 [5.50-5.50] | 3.50 [3.50-3.50] |"
    assert row in lines
    bare_lines = [line for line in lines if line.startswith("Bare vLLM over")]
    assert "GPU idle s 2.00 [2.00-2.00], spread **0.00 s**" in bare_lines[0]
    assert "GPU" not in bare_lines[1]  # 10@1 ran without the GPU's time: no n/a cells for it
