"""The derived figures of docs/benchmarks.md's "Where the defaults' 16% goes" section, from this bundle's raw
files: run from the repo root as `PYTHONPATH=app/src python3 docs/bench/gpu-h200-2026-12-03-profile/breakdown.py`
(it prints breakdown.md's text).

- Per load: duration, engine steps, client-side TPOT mean, and what is left of the duration once every step is
  counted at the mean TPOT.
- The frontend's busiest thread (bare vLLM's API server, the Serve replica's event loop), by what its samples
  were doing: the first category whose pattern a sample's stack matches.
- The engine core's main thread (rayvllm.bench.profiling.engine_states).
"""

import json
import re
import sys
from pathlib import Path

from rayvllm.bench.compare import load_labels
from rayvllm.bench.profiling import SAMPLE_RATE_HZ, engine_states

HERE = Path(__file__).parent
WINDOW_S = 15
WAIT_LEAF = r"EpollSelector\.select|Condition\.wait|Poller\.poll|_wait_for_tstate_lock|Event\.wait"
# Idle event loops: uvloop's run (native) shows as its Python caller at the top of the stack.
IDLE_LOOP_LEAF = r"^(Runner\.run \(asyncio/runners\.py|Thread\.run \(threading\.py)"
FRONTEND = (
    ("Ray metrics (ray.util.metrics)", r"ray/util/metrics\.py"),
    ("vLLM stat loggers, own code", r"vllm/v1/metrics/|StatLoggerManager|IterationStats"),
    ("detokenize + output processing", r"vllm/v1/engine/(detokenizer|output_processor|logprobs)\.py"),
    ("engine-core client (ZMQ, decode)", r"vllm/v1/engine/(core_client|__init__)\.py|serial_utils"),
    ("request intake (parse, preprocess, add_request)",
     r"create_completion|_preprocess|input_processor|InputPreprocessor|AsyncLLM\.add_request|"
     r"RequestResponseCycle\.receive|on_body|on_message_complete|Request\.json|Request\.body"),
    ("SSE chunks (completion_stream_generator, pydantic)", r"completion_stream_generator|model_dump_json"),
    ("HTTP send (uvicorn, starlette, Serve's send wrappers)", r"uvicorn/|starlette/|httptools"),
    ("Ray Serve, other", r"ray/serve/|ray/_private|_raylet"),
    ("rayvllm", r"rayvllm/"),
)


def frontend_breakdown(path: Path) -> tuple[str, int, dict[str, int]]:
    threads: dict[str, dict[str, int]] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        leaf = frames[-1] if frames else ""
        if re.search(WAIT_LEAF, leaf) or re.search(IDLE_LOOP_LEAF, leaf):
            category = "waiting (event loop idle, locks)"
        else:
            joined = ";".join(frames)
            category = next((name for name, rx in FRONTEND if re.search(rx, joined)), "other")
        shares = threads.setdefault(thread, {})
        shares[category] = shares.get(category, 0) + int(count)
    thread, shares = max(threads.items(), key=lambda item: sum(item[1].values()))
    return thread, sum(shares.values()), shares


def main() -> None:
    out = sys.stdout
    possible = SAMPLE_RATE_HZ * WINDOW_S
    for run, directory in (("profiled (py-spy, active samples)", HERE), ("profiled (py-spy --idle)", HERE / "idle")):
        bundle = json.loads((directory / "compare.json").read_text())
        out.write(f"## {run}: {directory.relative_to(HERE.parent)}\n\n")
        out.write("| server | load | tok/s | duration s | steps | TPOT mean ms | steps x TPOT s | rest s |\n")
        out.write("|---|---|---|---|---|---|---|---|\n")
        for name, record in bundle["servers"].items():
            runs = record["runs"]
            labels = load_labels([f"{r['num_prompts']}@{r['concurrency']}" for r in runs])
            for label, r in zip(labels, runs, strict=True):
                steps = r["engine_steps"]["steps"]
                tpot = r["tpot_ms"]["mean"]
                out.write(
                    f"| {name} | {label} | {r['output_throughput']:,.0f} | {r['duration_s']:.2f} | {steps} "
                    f"| {tpot:.2f} | {steps * tpot / 1000:.2f} | {r['duration_s'] - steps * tpot / 1000:.2f} |\n"
                )
        out.write("\n")
        for server in sorted(p.name for p in (directory / "profiles").iterdir()):
            profiles = directory / "profiles" / server
            frontend = profiles / ("vllm-api-server.txt" if server == "vllm" else "serve-replica.txt")
            thread, total, shares = frontend_breakdown(frontend)
            out.write(f"### {server}: frontend thread `{thread}`, {total} samples ({total / possible:.1%} of the window)\n\n")
            for category, count in sorted(shares.items(), key=lambda item: -item[1]):
                out.write(f"- {count / possible:6.1%} of the window: {category}\n")
            states = engine_states((profiles / "engine-core.txt").read_text())
            main_samples = sum(states.values())
            out.write(f"\nengine core main thread, {main_samples} samples ({main_samples / possible:.1%} of the window):\n\n")
            for state, count in sorted(states.items(), key=lambda item: -item[1]):
                out.write(f"- {count / main_samples:6.1%} of its samples ({count / possible:.1%} of the window): {state}\n")
            out.write("\n")


if __name__ == "__main__":
    main()
