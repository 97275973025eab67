"""Compare mode: bare vLLM, rayvllm and Ray Serve LLM, one after the other on one machine, same engine args.

With `--rounds N` (N > 1) the servers run side by side instead, all up at once, and their loads take turns
for N interleaved rounds: see rayvllm.bench.interleave.

Each server is started, readied with a real completion, benchmarked with the same prompts and loads, and
stopped by the PID it was started as, before the next starts. Then the transformers `generate` baseline
runs. Results accumulate in `--work-dir` (one JSON per server), so a comparison can run in phases, for
example two device calls of under ten minutes each; after every step the whole bundle is rewritten in
`--out`: `compare.json` (everything, raw), `compare.md` (tables and ratios), `latency.png`,
`throughput.png` and `server-logs.txt` (the tail of each server's log).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rayvllm.bench import report
from rayvllm.bench.endpoint import prefix_spec
from rayvllm.bench.loadgen import (
    CLIENT_START_S,
    DeadlineExceeded,
    Load,
    Target,
    make_prompts,
    prompts_needed,
    run_loads,
)
from rayvllm.bench.presets import PRESETS, Scenario
from rayvllm.bench.servers import (
    RAY_SERVE_LLM_FLAGS,
    RAYVLLM_FLAGS,
    SERVER_NAMES,
    VLLM_FLAGS,
    Server,
    ServerPlan,
    ServerVariant,
    plan,
    source_dir,
    stop_leftover,
)
from rayvllm.procs import NotServing

BASELINE = "vllm"
LOG_TAIL_LINES = 120


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="cpu", help="scenario (default %(default)s)"
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVER_NAMES),
        help="comma-separated servers, run in that order: a subset of %(default)s, and rayvllm variants "
        "named rayvllm+FLAG[+FLAG...] with flags "
        + "; ".join(f"`{flag}`: {what}" for flag, what in RAYVLLM_FLAGS.items())
        + "; bare vLLM variants vllm+FLAG with "
        + "; ".join(f"`{flag}`: {what}" for flag, what in VLLM_FLAGS.items())
        + "; and Ray Serve LLM variants ray_serve_llm+FLAG with "
        + "; ".join(f"`{flag}`: {what}" for flag, what in RAY_SERVE_LLM_FLAGS.items()),
    )
    parser.add_argument(
        "--hf", action=argparse.BooleanOptionalAction, default=True, help="run the transformers baseline"
    )
    parser.add_argument("--out", type=Path, default=Path("out/bench-compare"), help="bundle directory")
    parser.add_argument(
        "--work-dir", type=Path, default=Path("/tmp/rayvllm-bench"), help="model, logs and per-server results"
    )
    parser.add_argument("--fresh", action="store_true", help="forget results of earlier phases in --work-dir")
    parser.add_argument("--model-dir", help="serve this model directory instead of building the preset's")
    parser.add_argument("--port", type=int, default=8100, help="port of the server under test")
    parser.add_argument("--load", action="append", type=Load.parse, help="N@C; replaces the preset's loads")
    parser.add_argument(
        "--shared-prefix",
        type=prefix_spec,
        metavar="N:LEN",
        help="N random prefixes of LEN tokens, one before each prompt in turn (the preset's input length "
        "follows); engine max_model_len must hold LEN + input + output",
    )
    parser.add_argument("--warmup", type=int, help="warm-up requests per server (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--client-processes", type=int, help="client processes per load (default: the preset's; gpu: 4)"
    )
    parser.add_argument(
        "--py-spy-s",
        type=float,
        default=0,
        help="record py-spy profiles of the serving processes (API server or proxy and replicas, engine "
        "core) during the first load of each server, bare vLLM included (py-spy must be on PATH)",
    )
    parser.add_argument(
        "--py-spy-idle",
        action="store_true",
        help="with --py-spy-s: sample waiting threads too (py-spy --idle), so the summaries say where each "
        "thread waits, such as an engine core with no requests or waiting for the GPU",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="N > 1: interleaved mode. Every server is started once and they stay up together (use a preset "
        "that fits them on one GPU, such as gpu-shared); then N rounds, each running the loads on every "
        "server "
        "in --servers order. Reports median, min and max per server and per-round ratios vs bare vLLM",
    )
    parser.add_argument(
        "--share",
        action="append",
        metavar="ENDPOINT=SERVER",
        help="interleaved mode: benchmark the `direct` ENDPOINT (a name in --servers) on SERVER's replica "
        "port "
        "instead of starting a server of its own, e.g. rayvllm+direct=rayvllm+throughput+haproxy",
    )
    parser.add_argument(
        "--source",
        action="append",
        metavar="LABEL=DIR",
        help="the checkout that server rayvllm@LABEL runs: DIR holds its rayvllm package (a worktree's "
        "app/src), e.g. --servers vllm,rayvllm@before,rayvllm --source before=/tmp/old/app/src",
    )
    parser.add_argument(
        "--restart",
        action="append",
        metavar="SERVER",
        help="interleaved mode: start SERVER, stop it and start it again before the rounds; the second ready "
        "time is the start with warm compile caches",
    )
    parser.add_argument(
        "--time-budget-s",
        type=float,
        help="wall-clock budget of this call: steps that would not fit are skipped, a step that overruns "
        "is stopped (default: none)",
    )


def run(args: argparse.Namespace) -> int:
    # SIGTERM (a timeout, a cancelled job) takes the Ctrl-C path, so the server under test is stopped.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _compare(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _compare(args: argparse.Namespace) -> int:
    scenario = PRESETS[args.preset]
    if args.load:
        scenario = dataclasses.replace(scenario, loads=tuple(args.load))
    if args.warmup is not None:
        scenario = dataclasses.replace(scenario, warmup=args.warmup)
    if args.shared_prefix:
        scenario = dataclasses.replace(scenario, shared_prefix=args.shared_prefix)
        needed = args.shared_prefix[1] + scenario.input_len + scenario.output_len
        if needed > scenario.engine_args.get("max_model_len", needed):
            raise SystemExit(
                f"--shared-prefix {args.shared_prefix[0]}:{args.shared_prefix[1]}: a prompt needs {needed} "
                f"tokens, above the preset's max_model_len {scenario.engine_args['max_model_len']}"
            )
    if args.client_processes is not None:
        scenario = dataclasses.replace(scenario, client_processes=args.client_processes)
    servers = [s for s in args.servers.split(",") if s]
    args.sources = dict(text.partition("=")[::2] for text in args.source or [])
    for name in servers:
        try:
            variant = ServerVariant.parse(name)
            if variant.source:
                source_dir(variant.source, args.sources)
        except ValueError as exc:
            raise SystemExit(f"--servers: {exc}") from None

    work = args.work_dir.resolve()
    results_dir = work / "results"
    if args.fresh:
        for old in results_dir.glob("*.json"):
            old.unlink()
    deadline = None if args.time_budget_s is None else time.monotonic() + args.time_budget_s
    # A server that outlived a killed earlier call would hold the port and the GPU: stop it by its PID.
    for pidfile in (work / "pids").glob("*.json"):
        stop_leftover(pidfile)
    model_dir = Path(args.model_dir).resolve() if args.model_dir else scenario.prepare_model(work / "model")
    key = {"scenario": scenario.describe(), "model_dir": str(model_dir)}
    if args.rounds > 1:
        from rayvllm.bench import interleave

        failures = interleave.run(args, scenario, servers, str(model_dir), key, work, deadline)
        print(f"compare: wrote {args.out}/compare.json and compare.md", file=sys.stderr)
        return 1 if failures else 0

    failures = 0
    # The same prompts for every server, token ids so that every prompt is exactly input_len long; enough
    # for the largest scaled load (a two-replica variant runs twice the prompts).
    replicas = max((ServerVariant.parse(name).replicas for name in servers), default=1)
    prompts = make_prompts(
        prompts_needed(scaled_loads(list(scenario.loads), replicas), scenario.warmup) if servers else 0,
        scenario.input_len,
        as_text=False,
        tokenizer=str(model_dir),
        token_id_range=scenario.token_id_range,
        seed=args.seed,
        shared_prefix=scenario.shared_prefix,
    )
    for name in servers:
        estimate = scenario.step_estimate_s.get(ServerVariant.parse(name).base, 0)
        if not _time_for(name, estimate, deadline):
            failures += 1
            continue
        record = bench_server(
            name,
            scenario,
            str(model_dir),
            prompts,
            args.port,
            work,
            deadline,
            py_spy_s=args.py_spy_s,
            py_spy_idle=args.py_spy_idle,
            sources=args.sources,
        )
        failures += bool(record["error"]) + sum(run["failed"] for run in record["runs"])
        report.write_json(results_dir / f"{name}.json", {**key, **record})
        write_bundle(args.out, key, results_dir)
    if args.hf and _time_for("hf", scenario.step_estimate_s.get("hf", 0), deadline):
        record = hf_baseline(scenario, model_dir, work, deadline)
        failures += bool(record["error"])
        report.write_json(results_dir / "hf.json", {**key, **record})
    elif args.hf:
        failures += 1
    write_bundle(args.out, key, results_dir)
    print(f"compare: wrote {args.out}/compare.json and compare.md", file=sys.stderr)
    return 1 if failures else 0


def shared_prefix_note(shared_prefix: list[int] | None) -> str:
    if not shared_prefix:
        return ""
    count, length = shared_prefix
    return f"; each prompt after one of {count} shared prefixes of {length} tokens, in turn"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _time_for(step: str, estimate_s: float, deadline: float | None) -> bool:
    if deadline is None or deadline - time.monotonic() >= estimate_s:
        return True
    print(
        f"compare: skipping {step}: it takes about {estimate_s:.0f}s and "
        f"{max(0.0, deadline - time.monotonic()):.0f}s of the time budget are left; run it in another call",
        file=sys.stderr,
    )
    return False


def bench_server(
    name: str,
    scenario: Scenario,
    model_dir: str,
    prompts: list[Any],
    port: int,
    work: Path,
    deadline: float | None = None,
    py_spy_s: float = 0,
    py_spy_idle: bool = False,
    sources: dict[str, str] | None = None,
) -> dict[str, Any]:
    variant = ServerVariant.parse(name)
    spec = plan(
        name,
        sources=sources,
        model_name=scenario.model_name,
        model_dir=model_dir,
        engine_args=scenario.engine_args,
        port=port,
        env=scenario.env,
        config_path=work / f"{name}-config.yaml",
        num_gpus=scenario.num_gpus,
        ray_num_cpus=scenario.ray_num_cpus,
        ray_dashboard=scenario.ray_dashboard,
    )
    server = Server(
        spec, port=port, log_path=work / "logs" / f"{name}.log", pidfile=work / "pids" / f"{name}.json"
    )
    record: dict[str, Any] = {
        "server": name,
        "command": spec.command,
        "environment": report.environment(),
        "ready_s": None,
        "runs": [],
        "error": None,
    }
    print(f"compare: starting {name}: {' '.join(spec.command)}", file=sys.stderr, flush=True)
    try:
        server.start()
        timeout = scenario.ready_timeout_s
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
        record["ready_s"] = server.wait_ready(scenario.model_name, timeout)
        print(f"compare: {name} ready after {record['ready_s']}s", file=sys.stderr, flush=True)
        target = Target(server.base_url, scenario.model_name, output_len=scenario.output_len)
        loads = scaled_loads(list(scenario.loads), variant.replicas)
        run = functools.partial(
            run_loads, target, label=name, deadline=deadline, client_processes=scenario.client_processes
        )
        list(run([], prompts[: scenario.warmup], warmup=scenario.warmup))
        steps_before = scrape_engine_steps(spec)
        if py_spy_s:
            record["profiles"] = profile_later(server, work / "profiles" / name, py_spy_s, idle=py_spy_idle)
        cpu_sampler = ThreadCpuSampler(server, CLIENT_START_S if scenario.client_processes > 1 else 0)
        max_num_seqs = int(scenario.engine_args.get("max_num_seqs", 256))
        for summary in run(loads, prompts[scenario.warmup :]):
            # Other work on the machine skews a comparison: keep how busy it was right after the load.
            summary["machine_load_average_1m"] = round(os.getloadavg()[0], 2)
            if "thread_cpu" not in record:  # the first load is the one the samplers watched
                record["thread_cpu"] = cpu_sampler.result()
            # Every load's engine steps, each from the scrape after the one before (a profiled first load
            # and an unprofiled repeat of it then compare like with like).
            steps_after = scrape_engine_steps(spec)
            summary["engine_steps"] = engine_steps_between(
                steps_before, steps_after, summary["duration_s"], max_num_seqs
            )
            steps_before = steps_after
            record["runs"].append(summary)
    except (NotServing, DeadlineExceeded) as exc:
        record["error"] = str(exc)
        print(f"compare: {name} failed: {exc}", file=sys.stderr, flush=True)
    finally:
        server.stop()
    record["log_tail"] = server.log_tail(LOG_TAIL_LINES)
    return record


def scaled_loads(loads: list[Load], replicas: int) -> list[Load]:
    """With N replicas, the concurrent loads grow N-fold, so each replica sees what one replica saw."""
    if replicas == 1:
        return loads
    return [load if load.concurrency == 1 else Load(load.num_prompts * replicas, load.concurrency * replicas)
            for load in loads]  # fmt: skip


def scrape_engine_steps(spec: ServerPlan) -> dict[str, float] | str:
    """vLLM's tokens-per-step histogram now (once the server's metrics caught up), or why not."""
    from rayvllm.bench.profiling import scrape_iteration_tokens

    if spec.metrics_url is None:
        return "this server's engine metrics are not scraped"
    time.sleep(spec.metrics_lag_s)
    try:
        return scrape_iteration_tokens(spec.metrics_url, spec.metric_prefix)
    except Exception as exc:  # a measurement must never fail the benchmark it watches
        return f"scraping {spec.metrics_url} failed: {exc!r}"


def engine_steps_between(
    before: dict[str, float] | str, after: dict[str, float] | str, duration_s: float, max_num_seqs: int
) -> dict[str, Any]:
    """The engine steps between two scrape_engine_steps results, or the error of the one that failed."""
    from rayvllm.bench.profiling import engine_steps

    if isinstance(before, str):
        return {"error": before}
    if isinstance(after, str):
        return {"error": after}
    return engine_steps(before, after, duration_s, max_num_seqs)


class ThreadCpuSampler:
    """CPU per thread of the server's processes during its first load (rayvllm.bench.profiling), in a
    background thread: which thread is the ceiling, and what the engine process inherited."""

    DELAY_S = 5  # into the first load, once every stream is under way
    WINDOW_S = 15

    def __init__(self, server: Server, client_start_s: float = 0):
        import threading

        from rayvllm.bench.profiling import sample_thread_cpu

        assert server.process is not None
        self._stop = threading.Event()
        self._result: dict[str, Any] = {}
        pid = server.process.pid

        def sample() -> None:
            try:
                delay = client_start_s + self.DELAY_S
                self._result.update(sample_thread_cpu(pid, self._stop, delay, self.WINDOW_S))
            except Exception as exc:  # a measurement must never fail the benchmark it watches
                self._result["error"] = repr(exc)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def result(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=60)
        return self._result


def profile_later(
    server: Server, directory: Path, seconds: float, delay_s: float = 15, idle: bool = False
) -> list[str]:
    """Start py-spy on the server's Ray Serve proxy and replica processes after `delay_s` (past the
    warm-up, into the first load), in a background thread; returns the files it will write."""
    import threading

    from rayvllm.bench.profiling import record_serve_processes

    assert server.process is not None
    directory.mkdir(parents=True, exist_ok=True)
    pid = server.process.pid
    thread = threading.Thread(
        target=record_serve_processes, args=(pid, directory, seconds, delay_s, idle), daemon=True
    )
    thread.start()
    return [str(directory)]


def hf_baseline(
    scenario: Scenario, model_dir: Path, work: Path, deadline: float | None = None
) -> dict[str, Any]:
    """transformers `generate` in its own process, so its memory is returned when it ends."""
    out = work / "hf-result.json"
    out.unlink(missing_ok=True)
    low, high = scenario.token_id_range or (100, 40000)
    command = [
        sys.executable, "-m", "rayvllm.bench.hf_generate", "--model-dir", str(model_dir),
        "--input-len", str(scenario.input_len), "--output-len", str(scenario.output_len),
        "--batch-sizes", ",".join(map(str, scenario.hf_batch_sizes)), "--dtype", scenario.hf_dtype,
        "--token-id-range", f"{low}:{high}", "--json-out", str(out),
    ]  # fmt: skip
    print(f"compare: transformers generate: {' '.join(command)}", file=sys.stderr, flush=True)
    log = work / "logs" / "hf.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    timeout = None if deadline is None else max(1.0, deadline - time.monotonic())
    with log.open("wb") as sink:
        try:
            code = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout).returncode
            error = None if code == 0 and out.is_file() else f"exit code {code}"
        except subprocess.TimeoutExpired:
            error = "killed: the time budget ran out"
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
    if error:
        return {"command": command, "result": None, "error": error, "log_tail": tail}
    return {"command": command, "result": json.loads(out.read_text()), "error": None, "log_tail": tail}


# --- the bundle ----------------------------------------------------------------------------------------


def load_results(key: dict[str, Any], results_dir: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Per-server records (SERVER_NAMES, then rayvllm variants) and the HF record, of this same scenario."""
    servers, hf = {}, None
    names = [*SERVER_NAMES, "hf"]
    names += sorted(
        path.stem for base in SERVER_NAMES for sep in "+@" for path in results_dir.glob(f"{base}{sep}*.json")
    )
    for name in names:
        path = results_dir / f"{name}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        if data.get("scenario") != key["scenario"] or data.get("model_dir") != key["model_dir"]:
            print(f"compare: ignoring {path}: another scenario (use --fresh)", file=sys.stderr)
            continue
        if name == "hf":
            hf = data
        else:
            servers[name] = data
    return servers, hf


def load_labels(loads: list[str]) -> list[str]:
    """Each load's label; a load given more than once is numbered from its second run on (1000@256,
    1000@256 #2), so that a repeat keeps its own row instead of replacing the first."""
    seen: collections.Counter[str] = collections.Counter()
    labels = []
    for load in loads:
        seen[load] += 1
        labels.append(load if seen[load] == 1 else f"{load} #{seen[load]}")
    return labels


def _by_load(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    labels = load_labels([f"{r['num_prompts']}@{r['concurrency']}" for r in runs])
    return dict(zip(labels, runs, strict=True))


def _ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base, 4) if value is not None and base else None


def ratios(servers: dict[str, Any]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Each server against bare vLLM, per load: throughput ratios, latency ratios and TTFT delta."""
    if BASELINE not in servers:
        return {}
    base_runs = _by_load(servers[BASELINE]["runs"])
    table: dict[str, dict[str, dict[str, float | None]]] = {}
    for name, record in servers.items():
        if name == BASELINE:
            continue
        for load, run in _by_load(record["runs"]).items():
            base = base_runs.get(load)
            if base is None:
                continue
            ttft, base_ttft = run["ttft_ms"]["p50"], base["ttft_ms"]["p50"]
            table.setdefault(name, {})[load] = {
                "output_throughput": _ratio(run["output_throughput"], base["output_throughput"]),
                "request_throughput": _ratio(run["request_throughput"], base["request_throughput"]),
                "ttft_p50": _ratio(ttft, base_ttft),
                "ttft_p50_delta_ms": round(ttft - base_ttft, 3) if None not in (ttft, base_ttft) else None,
                "tpot_p50": _ratio(run["tpot_ms"]["p50"], base["tpot_ms"]["p50"]),
                "itl_p50": _ratio(run["itl_ms"]["p50"], base["itl_ms"]["p50"]),
                "e2e_p50": _ratio(run["e2e_ms"]["p50"], base["e2e_ms"]["p50"]),
            }
    return table


def scaling(servers: dict[str, Any]) -> list[dict[str, Any]]:
    """Each `+x2` variant against the same variant with one replica: output tok/s at the highest load."""
    rows = []
    for name, record in servers.items():
        single = servers.get(name.replace("+x2", "")) if "+x2" in name else None
        if single is None or not record["runs"] or not single["runs"]:
            continue
        two = max(record["runs"], key=lambda run: run["concurrency"])
        one = max(single["runs"], key=lambda run: run["concurrency"])
        rows.append({
            "server": name, "baseline": name.replace("+x2", ""),
            "load": f"{two['num_prompts']}@{two['concurrency']}",
            "baseline_load": f"{one['num_prompts']}@{one['concurrency']}",
            "output_throughput": two["output_throughput"],
            "baseline_output_throughput": one["output_throughput"],
            "ratio": _ratio(two["output_throughput"], one["output_throughput"]),
        })  # fmt: skip
    return rows


def targets(ratio_table: dict[str, Any], loads: list[str]) -> list[dict[str, Any]]:
    """The performance issue's targets for each single-replica rayvllm server: throughput and TPOT at the
    highest load, TTFT at c=1."""
    high = max(loads, key=lambda load: int(load.split("@")[1]))
    low = min(loads, key=lambda load: int(load.split("@")[1]))
    rows = []
    for server, mine in ratio_table.items():
        variant = ServerVariant.parse(server)
        if variant.base != "rayvllm" or variant.replicas != 1:
            continue
        for metric, load, key, goal, ok in (
            ("output tok/s vs bare vLLM", high, "output_throughput", ">= 0.97x", lambda v: v >= 0.97),
            ("TPOT p50 vs bare vLLM", high, "tpot_p50", "<= 1.05x", lambda v: v <= 1.05),
            ("TTFT p50 minus bare vLLM", low, "ttft_p50_delta_ms", "<= +5 ms", lambda v: v <= 5),
        ):
            value = mine.get(load, {}).get(key)
            rows.append({"server": server, "metric": metric, "load": load, "target": goal, "value": value,
                         "met": None if value is None else bool(ok(value))})  # fmt: skip
    return rows


def write_bundle(out: Path, key: dict[str, Any], results_dir: Path) -> None:
    servers, hf = load_results(key, results_dir)
    loads = key["scenario"]["loads"]
    summary = None
    if any("rounds" in record for record in servers.values()):
        from rayvllm.bench import interleave

        summary = interleave.summarize(servers, loads)
        summary["rounds_run"] = max(len(record.get("rounds", [])) for record in servers.values())
        table = interleave.ratio_table(summary)
    else:
        table = ratios(servers)
    goals = targets(table, loads) if table else []
    bundle = {
        "tool": "rayvllm bench compare",
        **key,
        "environment": report.environment(),
        "servers": {name: {k: v for k, v in rec.items() if k not in key} for name, rec in servers.items()},
        "hf_generate": {k: v for k, v in hf.items() if k not in key} if hf else None,
        "ratios_vs_bare_vllm": table,
        "targets": goals,
        "scaling": scaling(servers),
    }
    if summary is not None:
        bundle["interleaved"] = summary
    logs = {name: rec.pop("log_tail", "") for name, rec in bundle["servers"].items()}
    if bundle["hf_generate"]:
        logs["hf"] = bundle["hf_generate"].pop("log_tail", "")
    report.write_json(out / "compare.json", bundle)
    (out / "compare.md").write_text(markdown(bundle))
    (out / "server-logs.txt").write_text(
        "".join(f"==== {name} (last {LOG_TAIL_LINES} lines)\n{text}\n\n" for name, text in logs.items())
    )
    if summary is not None:
        from rayvllm.bench import interleave

        interleave.plot(bundle, out)
        return
    series = {name: rec["runs"] for name, rec in bundle["servers"].items() if rec["runs"]}
    if series:
        report.plot(series, out, f"{key['scenario']['name']} preset")


def markdown(bundle: dict[str, Any]) -> str:
    scenario, env = bundle["scenario"], bundle["environment"]
    gpu = ", ".join(env["gpus"]) or f"none (CPU: {env['cpu']}, {env['cpu_count']} cores)"
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    lines = [
        f"# rayvllm bench compare: `{scenario['name']}` preset",
        "",
        f"- GPU: {gpu}",
        f"- versions: {versions}; Python {env['python']}",
        f"- engine args (all servers): `{json.dumps(scenario['engine_args'])}`",
        f"- prompts: {scenario['input_len']} tokens in (token ids), {scenario['output_len']} out, "
        f"ignore_eos; loads {', '.join(scenario['loads'])}; {scenario['warmup']} warm-up requests per server"
        + shared_prefix_note(scenario.get("shared_prefix")),
        f"- measured {env['time_utc']}, commit {env['git_commit'] or 'unknown'}",
        "",
    ]
    servers, table = bundle["servers"], bundle["ratios_vs_bare_vllm"]
    machines = {(r["environment"].get("hostname"), tuple(r["environment"]["gpus"])) for r in servers.values()}
    if len({machine for machine in machines if machine[0]}) > 1:
        lines += [
            "**Warning: these servers ran on different machines; their ratios are not comparable.**",
            "",
        ]
    interleaved = "interleaved" in bundle
    if interleaved:
        from rayvllm.bench import interleave

        lines += interleave.markdown(bundle)
    for load in [] if interleaved else load_labels(scenario["loads"]):
        lines += [
            f"## {load} (prompts@concurrency)",
            "",
            "| server | output tok/s | x vLLM | TTFT p50 ms | vs vLLM | TPOT p50 ms | x vLLM "
            "| ITL p50 ms | E2E p50 ms | failed |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, record in servers.items():
            runs = _by_load(record["runs"])
            run = runs.get(load)
            if run is None:
                # A scaled server (x2) ran its own, larger loads: they are in the two-replica table.
                ran = f"ran {', '.join(runs)} instead (see below)" if runs else "not run"
                lines.append(f"| {name} | {record['error'] or ran} |||||||||")
                continue
            ratio = table.get(name, {}).get(load, {})
            delta = ratio.get("ttft_p50_delta_ms")
            cells = [
                name,
                report.fmt(run["output_throughput"]),
                report.fmt(ratio.get("output_throughput"), 3),
                report.fmt(run["ttft_ms"]["p50"], 2),
                "" if delta is None else f"{delta:+.2f} ms",
                report.fmt(run["tpot_ms"]["p50"], 2),
                report.fmt(ratio.get("tpot_p50"), 3),
                report.fmt(run["itl_ms"]["p50"], 2),
                report.fmt(run["e2e_ms"]["p50"], 1),
                str(run["failed"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if bundle["targets"]:
        how = ": the median of the pair ratios" if interleaved else ""
        lines += [f"## Targets (rayvllm vs bare vLLM{how})", ""]
        lines += ["| server | metric | load | target | measured | met |", "|---|---|---|---|---|---|"]
        for row in bundle["targets"]:
            met = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
            value = report.fmt(row["value"], 3)
            lines.append(
                f"| {row['server']} | {row['metric']} | {row['load']} | {row['target']} | {value} | {met} |"
            )
        lines.append("")
    cpu_rows = [thread_cpu_row(name, record) for name, record in bundle["servers"].items()]
    if any(cpu_rows):
        lines += ["## CPU during the first load (share of one core, from /proc)", ""]
        header = "| server | HTTP frontend thread | engine core, busiest thread | engine core nice "
        lines += [
            header + "| engine core OMP_NUM_THREADS | busiest client process |",
            "|---|---|---|---|---|---|",
        ]
        lines += [row for row in cpu_rows if row]
        lines.append("")
    step_rows = [row for name, record in bundle["servers"].items() for row in engine_steps_rows(name, record)]
    if step_rows:
        lines += ["## Engine steps during each load (vLLM's iteration_tokens_total)", ""]
        lines += ["| server | load | steps | steps/s | mean step ms | tokens per step | steps with prefill |"]
        lines += ["|---|---|---|---|---|---|---|", *step_rows, ""]
    if bundle.get("scaling"):
        lines += ["## Two replicas vs one (same endpoint)", ""]
        lines += ["| server | load | output tok/s | one replica | load | output tok/s | ratio |"]
        lines.append("|---|---|---|---|---|---|---|")
        for row in bundle["scaling"]:
            lines.append(
                f"| {row['server']} | {row['load']} | {report.fmt(row['output_throughput'])} "
                f"| {row['baseline']} | {row['baseline_load']} "
                f"| {report.fmt(row['baseline_output_throughput'])} | {report.fmt(row['ratio'], 3)} |"
            )
        lines.append("")
    hf = bundle["hf_generate"]
    if hf and hf.get("result"):
        bare = servers.get(BASELINE, {}).get("runs") or [{}]
        best = max((r.get("output_throughput") or 0 for r in bare), default=0)
        lines += [
            "## transformers `generate` (same shape, random weights)",
            "",
            "| batch | output tok/s | bare vLLM best / this |",
            "|---|---|---|",
        ]
        for run in hf["result"]["runs"]:
            speedup = f"{best / run['output_throughput']:.1f}x" if best else "n/a"
            lines.append(f"| {run['batch_size']} | {report.fmt(run['output_throughput'])} | {speedup} |")
        lines.append("")
    elif hf:
        lines += [f"transformers `generate` failed: {hf['error']}", ""]
    lines += ["## Servers", "", "| server | ready after (s) | load average at start | command |"]
    lines.append("|---|---|---|---|")
    for name, record in servers.items():
        load = record["environment"].get("load_average_1m", "n/a")
        ready = record["ready_s"]
        if record.get("shares_server"):
            ready = f"(on {record['shares_server']})"
        elif len(record.get("ready_s_starts") or []) > 1:
            ready = " then ".join(str(s) for s in record["ready_s_starts"]) + " (restarted)"
        lines.append(f"| {name} | {ready} | {load} | `{' '.join(record['command'])}` |")
    lines.append("")
    lines.append(
        "Ready times are start to first served token, in run order: the first server also fills the "
        "compile caches that the later ones reuse."
        + (
            " A restarted server's second start is the one with warm caches. In interleaved mode the "
            "servers started one at a time, each with the earlier ones up and idle on the GPU."
            if interleaved
            else ""
        )
    )
    return "\n".join(lines) + "\n"


def thread_cpu_row(name: str, record: dict[str, Any]) -> str:
    """A markdown row of what ThreadCpuSampler saw: the threads a token passes through, and the engine's
    inherited settings; empty when nothing was sampled."""
    sampled = record.get("thread_cpu") or {}
    threads = sampled.get("busiest_threads") or []
    if not threads:
        return ""

    def busiest(process: str) -> str:
        shares = [t["cpu_share"] for t in threads if t["process"] == process]
        return report.fmt(max(shares), 2) if shares else "n/a"

    frontend = "vllm-api-server" if ServerVariant.parse(name).base == BASELINE else "serve-replica"
    engine: dict[str, Any] = next(
        (p for p in sampled.get("processes", []) if p["process"] == "engine-core"), {}
    )
    runs = record.get("runs") or [{}]
    client = runs[0].get("client_cpu_share")
    return (
        f"| {name} | {busiest(frontend)} | {busiest('engine-core')} | {engine.get('nice', 'n/a')} "
        f"| {engine['env'].get('OMP_NUM_THREADS', 'unset') if 'env' in engine else 'n/a'} "
        f"| {report.fmt(client, 2)} |"
    )


def engine_steps_rows(name: str, record: dict[str, Any]) -> list[str]:
    """One markdown row per load with engine steps; a bundle from before they were kept per load gives its
    first load's."""
    runs = record.get("runs") or []
    loads = load_labels([f"{run.get('num_prompts')}@{run.get('concurrency')}" for run in runs])
    per_run = [(load, run.get("engine_steps") or {}) for load, run in zip(loads, runs, strict=True)]
    if not any("steps" in steps for _, steps in per_run):
        per_run = [(loads[0] if loads else "first", record.get("engine_steps") or {})]
    return [
        f"| {name} | {load} | {steps['steps']} | {report.fmt(steps['steps_per_s'], 1)} | "
        f"{report.fmt(steps['mean_step_ms'], 2)} | {report.fmt(steps['tokens_per_step'], 1)} | "
        f"{report.fmt(steps['share_of_steps_with_prefill'], 3)} |"
        for load, steps in per_run
        if "steps" in steps
    ]
