"""Interleaved, repeated comparison (`rayvllm bench compare --rounds N`): the servers side by side, in turns.

A single pair of runs cannot show a 3% difference when bare vLLM moves 9% between two runs of its own. So:

- Every server is started once, in the order given, and they all stay up together on the one GPU (the
  `gpu-shared` preset sizes each engine's KV cache so that three 8B engines fit on an H200). Only the loads
  take turns: round 1 is bare, A, B, ..., then round 2 the same, for N rounds. Restarting every server per
  round would cost an engine start (60-90 s) per run, several times the load itself.
- An endpoint named in `--share ENDPOINT=SERVER` is benchmarked on another server's process: `rayvllm+direct`
  on the replica's own port of `rayvllm+throughput+haproxy`, say, which is the same replica HAProxy forwards
  to. That serves four paths from three engines.
- Every run of an endpoint gets prompts of its own (seeded by round and endpoint), so no run is served from
  a prefix cache that an earlier one filled, on a shared server neither.
- `--restart SERVER` starts a server, stops it and starts it again before the rounds: the second start is
  the one with warm compile caches (the cold-start figure).

The summary, per load:

- per server and metric, the median, min and max over its rounds;
- per server against bare vLLM, pair by pair: round r's run against round r's bare run, the nearest before it;
  the median of those ratios (TTFT: differences in ms) and their range;
- bare vLLM's run-to-run spread, (max - min) / median over its rounds (TTFT: max - min in ms). A server
  whose median ratio lies within 1 +/- that spread (TTFT: within +/- the spread in ms) is reported as "no
  difference measured".
"""

from __future__ import annotations

import datetime
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rayvllm.bench import report

BASELINE = "vllm"

# (key, label, how to read it off a load's summary, "ratio" or "delta" against bare vLLM, higher is better,
# the unit of a delta and of its spread)
Metric = tuple[str, str, Callable[[dict[str, Any]], float | None], str, bool, str]
METRICS: tuple[Metric, ...] = (
    ("output_throughput", "output tok/s", lambda run: run["output_throughput"], "ratio", True, "tok/s"),
    ("tpot_p50", "TPOT p50 ms", lambda run: run["tpot_ms"]["p50"], "ratio", False, "ms"),
    ("ttft_p50", "TTFT p50 ms", lambda run: run["ttft_ms"]["p50"], "delta", False, "ms"),
    ("itl_p50", "ITL p50 ms", lambda run: run["itl_ms"]["p50"], "ratio", False, "ms"),
    ("duration_s", "duration s", lambda run: run.get("duration_s"), "ratio", False, "s"),
    # NVML's busy time of the GPU during the run (the first load's only): the rest of its duration, the
    # GPU waited for the host.
    ("gpu_busy_s", "GPU busy s", lambda run: (run.get("gpu") or {}).get("busy_s"), "ratio", False, "s"),
    ("gpu_idle_s", "GPU idle s", lambda run: (run.get("gpu") or {}).get("idle_s"), "delta", False, "s"),
)
NO_DIFFERENCE = "no difference measured"


def parse_share(text: str) -> tuple[str, str]:
    """`ENDPOINT=SERVER`: benchmark ENDPOINT on SERVER's process (only `rayvllm+direct...` endpoints)."""
    endpoint, sep, host = text.partition("=")
    if not sep or not endpoint or not host:
        raise ValueError(f"--share takes ENDPOINT=SERVER, got {text!r}")
    if "direct" not in endpoint.split("+")[1:]:
        raise ValueError(f"--share {text!r}: only a `direct` endpoint can share another server's replica")
    return endpoint, host


def _stats(values: list[float]) -> dict[str, Any]:
    return {
        "values": values,
        "median": round(statistics.median(values), 4) if values else None,
        "min": round(min(values), 4) if values else None,
        "max": round(max(values), 4) if values else None,
    }


def _round_runs(record: dict[str, Any], load: str) -> dict[int, dict[str, Any]]:
    """Round number -> that round's summary of `load`, for the rounds that ran it without failures."""
    found = {}
    for entry in record.get("rounds", []):
        for run in entry["runs"]:
            if (
                f"{run['num_prompts']}@{run['concurrency']}" == load
                and run["completed"]
                and not run["failed"]
            ):
                found[entry["round"]] = run
    return found


def summarize(servers: dict[str, dict[str, Any]], loads: list[str]) -> dict[str, Any]:
    """Per load: each server's median/min/max, bare vLLM's spread, and each server against bare, pair by pair
    within a round (see the module docstring)."""
    result: dict[str, Any] = {
        "pairing": "each server's run in round r against bare vLLM's run in round r, which ran just "
        "before it",
        "spread": "bare vLLM's (max - min) / median over its rounds; TTFT: max - min in ms",
        "loads": {},
    }
    bare = servers.get(BASELINE)
    for load in loads:
        per_server: dict[str, Any] = {}
        runs = {name: _round_runs(record, load) for name, record in servers.items()}
        for name, by_round in runs.items():
            entry: dict[str, Any] = {"rounds": sorted(by_round)}
            for key, _, read, _, _, _ in METRICS:
                entry[key] = _stats([v for r in sorted(by_round) if (v := read(by_round[r])) is not None])
            per_server[name] = entry
        spread: dict[str, Any] = {}
        vs_bare: dict[str, Any] = {}
        if bare is not None:
            bare_runs = runs[BASELINE]
            for key, _, _, kind, _, _ in METRICS:
                stats = per_server[BASELINE][key]
                if len(stats["values"]) < 2:
                    spread[key] = None
                elif kind == "ratio":
                    spread[key] = round((stats["max"] - stats["min"]) / stats["median"], 4)
                else:
                    spread[key] = round(stats["max"] - stats["min"], 3)
            for name, by_round in runs.items():
                if name == BASELINE:
                    continue
                mine: dict[str, Any] = {}
                for key, _, read, kind, higher_better, unit in METRICS:
                    pairs = []
                    for r in sorted(set(by_round) & set(bare_runs)):
                        value, base = read(by_round[r]), read(bare_runs[r])
                        if value is None or base is None or (kind == "ratio" and not base):
                            continue
                        pairs.append(round(value / base if kind == "ratio" else value - base, 4))
                    stats = _stats(pairs)
                    stats["rounds"] = [r for r in sorted(set(by_round) & set(bare_runs))]
                    stats["verdict"] = verdict(stats["median"], spread[key], kind, higher_better, unit)
                    mine[key] = stats
                vs_bare[name] = mine
        result["loads"][load] = {"servers": per_server, "bare_spread": spread, "vs_bare": vs_bare}
    return result


def verdict(
    median: float | None, spread: float | None, kind: str, higher_better: bool, unit: str = "ms"
) -> str:
    """ "no difference measured" inside bare vLLM's spread; else which way, and by how much."""
    if median is None:
        return "n/a"
    if spread is None:
        return "bare vLLM's spread unknown (fewer than 2 bare runs)"
    if kind == "ratio":
        if abs(median - 1) <= spread:
            return NO_DIFFERENCE
        change = f"{(median - 1) * 100:+.1f}%"
    else:
        if abs(median) <= spread:
            return NO_DIFFERENCE
        change = f"{median:+.2f} {unit}"
    better = (median > (1 if kind == "ratio" else 0)) == higher_better
    return f"{change}: {'better' if better else 'worse'}, beyond bare's spread"


def ratio_table(summary: dict[str, Any]) -> dict[str, dict[str, dict[str, float | None]]]:
    """The median pair ratios in the shape of compare.ratios(), so compare.targets() reads them."""
    table: dict[str, dict[str, dict[str, float | None]]] = {}
    for load, entry in summary["loads"].items():
        for name, mine in entry["vs_bare"].items():
            table.setdefault(name, {})[load] = {
                "output_throughput": mine["output_throughput"]["median"],
                "tpot_p50": mine["tpot_p50"]["median"],
                "ttft_p50_delta_ms": mine["ttft_p50"]["median"],
                "itl_p50": mine["itl_p50"]["median"],
            }
    return table


# --- running the rounds --------------------------------------------------------------------------------


def run(
    args: Any,
    scenario: Any,
    names: list[str],
    model_dir: str,
    key: dict[str, Any],
    work: Path,
    deadline: float | None,
) -> int:
    """Start the servers, run `args.rounds` interleaved rounds of the scenario's loads, stop the servers."""
    from rayvllm.bench import compare
    from rayvllm.bench.loadgen import DeadlineExceeded, Target, make_prompts, prompts_needed, run_loads
    from rayvllm.bench.profiling import GpuBusySampler
    from rayvllm.bench.servers import Server, ServerVariant, plan
    from rayvllm.procs import NotServing

    try:
        shares = dict(parse_share(text) for text in args.share or [])
    except ValueError as exc:
        raise SystemExit(f"--share: {exc}") from None
    hosts = [name for name in names if name not in shares]
    for endpoint, host in shares.items():
        if endpoint not in names or host not in hosts:
            raise SystemExit(f"--share {endpoint}={host}: both must be in --servers, the server not shared")
        if not ServerVariant.parse(host).has_direct_ingress:
            raise SystemExit(f"--share {endpoint}={host}: {host} gives its replica no port of its own")
    if any(ServerVariant.parse(name).replicas != 1 for name in names):
        raise SystemExit("--rounds: two-replica variants need a GPU each; run them without --rounds")
    restarts = set(args.restart or [])
    results_dir = work / "results"
    loads = list(scenario.loads)
    failures = 0

    servers: dict[str, Server] = {}
    records: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(hosts):
        spec = plan(
            name,
            sources=args.sources,
            model_name=scenario.model_name,
            model_dir=model_dir,
            engine_args=scenario.engine_args,
            port=args.port + index,
            env=scenario.env,
            config_path=work / f"{name}-config.yaml",
            num_gpus=scenario.num_gpus,
            ray_num_cpus=scenario.ray_num_cpus,
            ray_dashboard=scenario.ray_dashboard,
        )
        servers[name] = Server(
            spec, port=args.port + index, log_path=work / "logs" / f"{name}.log",
            pidfile=work / "pids" / f"{name}.json",
        )  # fmt: skip
    for name in names:
        host = shares.get(name, name)
        records[name] = {
            "server": name,
            "shares_server": host if host != name else None,
            "order": names.index(name),  # its turn in every round
            "command": servers[host].spec.command,
            "environment": report.environment(),
            "ready_s": None,
            "ready_s_starts": [],
            "rounds": [],
            "runs": [],
            "error": None,
        }

    def save(name: str) -> None:
        host = shares.get(name, name)
        records[name]["log_tail"] = servers[host].log_tail(compare.LOG_TAIL_LINES)
        report.write_json(results_dir / f"{name}.json", {**key, **records[name]})

    try:
        # Start one at a time, so each engine's start (and its ready time) has the machine to itself.
        for name, server in servers.items():
            for attempt in range(2 if name in restarts else 1):
                if attempt:
                    server.stop()
                print(
                    f"compare: starting {name}: {' '.join(server.spec.command)}", file=sys.stderr, flush=True
                )
                try:
                    server.start()
                    timeout = scenario.ready_timeout_s
                    if deadline is not None:
                        timeout = min(timeout, deadline - time.monotonic())
                    ready = server.wait_ready(scenario.model_name, timeout)
                except NotServing as exc:
                    records[name]["error"] = str(exc)
                    print(f"compare: {name} failed: {exc}", file=sys.stderr, flush=True)
                    server.stop()
                    break
                records[name]["ready_s_starts"].append(ready)
                records[name]["ready_s"] = ready
                print(f"compare: {name} ready after {ready}s", file=sys.stderr, flush=True)
            save(name)
        for endpoint, host in shares.items():
            records[endpoint]["error"] = records[host]["error"]
            records[endpoint]["ready_s"] = records[host]["ready_s"]
            save(endpoint)
        compare.write_bundle(args.out, key, results_dir)

        estimate = scenario.step_estimate_s.get("round", 0)
        for round_number in range(1, args.rounds + 1):
            for index, name in enumerate(names):
                host = shares.get(name, name)
                if records[host]["error"] and not servers[host].running():
                    continue
                if deadline is not None and deadline - time.monotonic() < estimate:
                    print(f"compare: the time budget ends the rounds before round {round_number}, {name}",
                          file=sys.stderr)  # fmt: skip
                    failures += 1
                    raise DeadlineExceeded("no time for another run")
                spec = servers[host].spec
                port = spec.direct_port if host != name else (spec.endpoint_port or servers[host].port)
                target = Target(
                    f"http://127.0.0.1:{port}", scenario.model_name, output_len=scenario.output_len
                )
                prompts = make_prompts(
                    prompts_needed(loads, scenario.warmup),
                    scenario.input_len,
                    as_text=False,
                    tokenizer=model_dir,
                    token_id_range=scenario.token_id_range,
                    seed=args.seed + 1000 * round_number + index,
                    shared_prefix=scenario.shared_prefix,
                )
                started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
                runs: list[dict[str, Any]] = []
                gpu = GpuBusySampler().start()  # watches the first load, the one at the highest concurrency
                try:
                    for summary in run_loads(
                        target, loads, prompts, warmup=scenario.warmup, label=f"{name} round {round_number}",
                        deadline=deadline, client_processes=scenario.client_processes,
                        client_start_s=scenario.client_start_s,
                    ):  # fmt: skip
                        import os

                        if not runs:
                            ended = time.time()
                            summary["gpu"] = gpu.result(ended - summary["duration_s"], ended)
                        summary["machine_load_average_1m"] = round(os.getloadavg()[0], 2)
                        runs.append(summary)
                        failures += summary["failed"]
                finally:
                    gpu.stop()
                    records[name]["rounds"].append(
                        {"round": round_number, "started_utc": started, "runs": runs}
                    )
                    save(name)
                    compare.write_bundle(args.out, key, results_dir)
    except DeadlineExceeded as exc:
        print(f"compare: stopped: {exc}", file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.stop()
        for name in names:
            save(name)
        compare.write_bundle(args.out, key, results_dir)
    failures += sum(bool(record["error"]) for record in records.values())
    return failures


# --- the bundle ----------------------------------------------------------------------------------------


def _range(stats: dict[str, Any], digits: int) -> str:
    if stats["median"] is None:
        return "n/a"
    low, high = report.fmt(stats["min"], digits), report.fmt(stats["max"], digits)
    return f"{report.fmt(stats['median'], digits)} [{low}-{high}]"


def markdown(bundle: dict[str, Any]) -> list[str]:
    """The interleaved sections of compare.md."""
    summary = bundle["interleaved"]
    servers = bundle["servers"]
    order = sorted(servers, key=lambda name: servers[name].get("order", 0))
    lines = [
        f"Mode: **{summary['rounds_run']} interleaved rounds** ({', '.join(order)} in every round), with "
        "every "
        "server up at once on one GPU and only the loads taking turns. Each run gets prompts of its own. "
        + "".join(
            f"`{name}` is benchmarked on `{record['shares_server']}`'s process (its replica's own port). "
            for name, record in servers.items()
            if record.get("shares_server")
        ),
        "",
        f"Pairs: {summary['pairing']}. Spread: {summary['spread']}; a server within 1 +/- that spread of "
        "bare "
        f'vLLM (TTFT: within +/- the spread in ms) is reported as "{NO_DIFFERENCE}".',
        "",
    ]
    lines += [
        f"**{name} failed:** {servers[name]['error'][:500]}" for name in order if servers[name].get("error")
    ]
    for load, entry in summary["loads"].items():
        spread = entry["bare_spread"]
        bare = entry["servers"].get(BASELINE)
        lines += [f"## {load} (prompts@concurrency)", ""]
        if bare:
            cells = []
            for key, label, _, kind, _, unit in METRICS:
                if not bare[key]["values"]:
                    continue  # not measured for this load (the GPU's time: the first load's only, GPUs only)
                value = spread.get(key)
                shown = (
                    "n/a"
                    if value is None
                    else (f"{value * 100:.1f}%" if kind == "ratio" else f"{value:.2f} {unit}")
                )
                cells.append(f"{label} {_range(bare[key], 2)}, spread **{shown}**")
            lines += [
                f"Bare vLLM over {len(bare['rounds'])} rounds, median [min-max]: " + "; ".join(cells) + ".",
                "",
            ]
        lines += [
            "| server | rounds | output tok/s | TPOT p50 ms | TTFT p50 ms | ITL p50 ms |",
            "|---|---|---|---|---|---|",
        ]
        for name in order:
            mine = entry["servers"][name]
            lines.append(
                f"| {name} | {len(mine['rounds'])} | {_range(mine['output_throughput'], 0)} "
                f"| {_range(mine['tpot_p50'], 2)} | {_range(mine['ttft_p50'], 2)} "
                f"| {_range(mine['itl_p50'], 2)} |"
            )
        lines.append("")
        if any(entry["servers"][name]["gpu_busy_s"]["values"] for name in order):
            lines += [
                "GPU time during each run (NVML utilization samples over the load's window): busy is the "
                "time a kernel ran, idle the rest, when the GPU waited for the host.",
                "",
                "| server | duration s | GPU busy s | GPU idle s | GPU idle minus bare, s |",
                "|---|---|---|---|---|",
            ]
            for name in order:
                mine = entry["servers"][name]
                idle_delta = entry["vs_bare"].get(name, {}).get("gpu_idle_s")
                lines.append(
                    f"| {name} | {_range(mine['duration_s'], 2)} | {_range(mine['gpu_busy_s'], 2)} "
                    f"| {_range(mine['gpu_idle_s'], 2)} | {_range(idle_delta, 2) if idle_delta else ''} |"
                )
            lines.append("")
        if entry["vs_bare"]:
            lines += [
                "| server vs bare vLLM, pair by pair | output tok/s x bare | | TPOT p50 x bare | "
                "| TTFT p50 minus bare (ms) | |",
                "|---|---|---|---|---|---|---|",
            ]
            for name in [name for name in order if name in entry["vs_bare"]]:
                mine, cells = entry["vs_bare"][name], [name]
                for key, digits in (("output_throughput", 3), ("tpot_p50", 3), ("ttft_p50", 2)):
                    cells += [_range(mine[key], digits), mine[key]["verdict"]]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["## Every run, in the order they ran", ""]
    lines += ["| round | server | load | output tok/s | TPOT p50 ms | TTFT p50 ms | failed | started (UTC) |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    rows = []
    for name, record in servers.items():
        for index, entry in enumerate(record.get("rounds", [])):
            for run in entry["runs"]:
                rows.append(((entry["round"], order.index(name), index), (
                    f"| {entry['round']} | {name} | {run['num_prompts']}@{run['concurrency']} "
                    f"| {report.fmt(run['output_throughput'])} | {report.fmt(run['tpot_ms']['p50'], 2)} "
                    f"| {report.fmt(run['ttft_ms']['p50'], 2)} | {run['failed']} | {entry['started_utc']} |"
                )))  # fmt: skip
    lines += [row for _, row in sorted(rows)]
    lines.append("")
    return lines


def plot(bundle: dict[str, Any], out_dir: Path) -> Path | None:
    """`interleaved.png`: every run's output tok/s and TPOT p50 at the highest load and TTFT p50 at the
    lowest, one column per server, a dot per round and a bar at the median."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loads = bundle["scenario"]["loads"]
    high = max(loads, key=lambda load: int(load.split("@")[1]))
    low = min(loads, key=lambda load: int(load.split("@")[1]))
    panels = [
        (high, "output_throughput", f"output tok/s at {high}"),
        (high, "tpot_p50", f"TPOT p50 ms at {high}"),
        (low, "ttft_p50", f"TTFT p50 ms at {low}"),
    ]
    summary = bundle["interleaved"]["loads"]
    names = list(bundle["servers"])
    if not any(
        summary.get(load, {}).get("servers", {}).get(n, {}).get("rounds") for n in names for load in loads
    ):
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, (load, key, title) in zip(axes, panels, strict=True):
        for index, name in enumerate(names):
            stats = summary.get(load, {}).get("servers", {}).get(name, {}).get(key)
            if not stats or not stats["values"]:
                continue
            ax.plot([index] * len(stats["values"]), stats["values"], "o", color=f"C{index}", alpha=0.7)
            ax.hlines(stats["median"], index - 0.3, index + 0.3, color=f"C{index}", linewidth=2)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
    rounds = bundle["interleaved"]["rounds_run"]
    title = f"{bundle['scenario']['name']} preset: {rounds} interleaved rounds (dot: a round, bar: median)"
    return report.save(fig, title, out_dir / "interleaved.png")
