"""Traffic during an event on real pods: a bounded load (half the clients streaming) that classifies every
answer, and a timeline of the load, the pods and Serve's replicas.

A test writes each event's timeline to out/pods-events/<event>.json; run this module to plot them into the
docs:

    PYTHONPATH=tests .venv/bin/python tests/pods/event_load.py out/pods-events --out docs/pods-events
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sse

EVENTS_OUT = Path(__file__).resolve().parents[2] / "out" / "pods-events"
OK = "ok"
# A request that waits longer than this counts as failed: the events keep a replica serving throughout.
REQUEST_TIMEOUT_S = 120.0
# Each client's pause between requests. Without it 8 clients keep the node's 2 cores busy, and a new worker's
# raylet misses Ray's fixed 30 s to register with the GCS ("The current node timed out during startup").
THINK_S = 3.0
MAX_TOKENS = 16
SAMPLE_S = 2.0  # the timeline's resolution


@dataclass
class Request:
    """One request as its client saw it: seconds since the recording began, and how it ended."""

    start: float
    end: float
    stream: bool
    outcome: str


def classify_stream(lines: list[str]) -> str:
    """A stream is whole when it ends with `[DONE]` and carries no error event."""
    events = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    if events[-1:] != ["[DONE]"]:
        return "stream cut without [DONE]"
    if any("error" in json.loads(event) for event in events[:-1]):
        return "stream ended with an error event"
    return OK


class EventLoad:
    """`clients` threads, every second one streaming; each sends a chat completion, then pauses `think_s`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        clients: int = 8,
        think_s: float = THINK_S,
    ) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.body = {
            "model": model,
            "messages": [{"role": "user", "content": "Count the requests that fail."}],
            "max_tokens": MAX_TOKENS,
            # Random weights may stop at once; every request does the same work.
            "ignore_eos": True,
        }
        self.clients = clients
        self.think_s = think_s
        self.requests: list[Request] = []
        self.in_flight = 0
        self._origin = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(index % 2 == 1,), daemon=True)
            for index in range(clients)
        ]

    def now(self) -> float:
        return round(time.monotonic() - self._origin, 2)

    def start(self) -> EventLoad:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop sending; return once every request in flight has its answer."""
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT_S + 30)
        if any(thread.is_alive() for thread in self._threads):
            raise TimeoutError("requests still in flight after the load stopped")

    def done(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def _client(self, stream: bool) -> None:
        # One kept-alive connection per client, as SDKs do: kube-proxy balances connections, not requests.
        with httpx.Client(base_url=self.base_url, headers=self.headers, timeout=REQUEST_TIMEOUT_S) as client:
            while not self._stop.is_set():
                start = self.now()
                with self._lock:
                    self.in_flight += 1
                outcome = self._one(client, stream)
                with self._lock:
                    self.in_flight -= 1
                    self.requests.append(Request(start, self.now(), stream, outcome))
                self._stop.wait(self.think_s)

    def _one(self, client: httpx.Client, stream: bool) -> str:
        try:
            if not stream:
                response = client.post("/v1/chat/completions", json=self.body)
                if response.status_code != 200:
                    return f"HTTP {response.status_code}"
                return OK if response.json().get("choices") else "no choices"
            with client.stream(
                "POST", "/v1/chat/completions", json={**self.body, "stream": True}
            ) as response:
                if response.status_code != 200:
                    return f"HTTP {response.status_code}"
                return classify_stream(list(sse.iter_lines(response.iter_text())))
        except httpx.TimeoutException:
            return "timeout"
        except httpx.HTTPError as error:
            return f"connection: {type(error).__name__}"


@dataclass
class Sample:
    """The load and the cluster at `t` seconds after the load began."""

    t: float
    in_flight: int
    ok: int
    failed: int
    worker_pods_ready: int
    """Worker pods Ready and not being deleted."""
    worker_pods: int
    replicas_running: int | None
    """RUNNING replicas of the model's deployment, from the Serve REST API; None while it does not answer."""
    replicas: int | None
    """The deployment's replicas in any state (starting and stopping ones included)."""
    rayclusters: int | None = None
    """The RayService's RayClusters: two while a NewCluster upgrade runs."""
    active_cluster: str | None = None
    """The RayCluster that the RayService's status names active: its Serve Service selects that one's pods."""


@dataclass
class EventTimeline:
    """One event: its settings, a sample a second, the moments that matter and every request's outcome."""

    event: str
    settings: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def mark(self, name: str, t: float) -> None:
        self.marks.setdefault(name, round(t, 1))

    def summary(self) -> dict[str, Any]:
        """Per kind (non-streamed, streamed): sent, failed and why, p50/p99 latency; time to full service."""
        result: dict[str, Any] = {"event": self.event}
        for stream, kind in ((False, "non_streamed"), (True, "streamed")):
            requests = [r for r in self.requests if r.stream == stream]
            latencies = sorted(r.end - r.start for r in requests if r.outcome == OK)
            result[kind] = {
                "sent": len(requests),
                "failed": sum(r.outcome != OK for r in requests),
                "failures": dict(Counter(r.outcome for r in requests if r.outcome != OK)),
                "p50_s": round(statistics.median(latencies), 2) if latencies else None,
                "p99_s": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2)
                if latencies
                else None,
            }
        if "event" in self.marks and "full_service" in self.marks:
            result["event_to_full_service_s"] = round(self.marks["full_service"] - self.marks["event"], 1)
        result["marks"] = self.marks
        return result

    def save(self, directory: Path = EVENTS_OUT) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.event}.json"
        path.write_text(json.dumps({**asdict(self), "summary": self.summary()}, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> EventTimeline:
        data = json.loads(path.read_text())
        return cls(
            event=data["event"],
            settings=data["settings"],
            samples=[Sample(**s) for s in data["samples"]],
            marks=data["marks"],
            requests=[Request(**r) for r in data["requests"]],
        )


class Recorder:
    """Samples the load and the cluster every SAMPLE_S in a thread, until stopped."""

    def __init__(
        self, timeline: EventTimeline, load: EventLoad | None, observe: Callable[[], dict[str, int | None]]
    ) -> None:
        self.timeline = timeline
        self.load = load
        self.observe = observe
        self._origin = load._origin if load else time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> float:
        return round(time.monotonic() - self._origin, 2)

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def latest(self) -> Sample | None:
        return self.timeline.samples[-1] if self.timeline.samples else None

    def stop(self) -> EventTimeline:
        self._stop.set()
        self._thread.join(30)
        if self.load:
            self.timeline.requests = self.load.done()
        return self.timeline

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                cluster = self.observe()
            except (httpx.HTTPError, KeyError, ValueError):
                cluster = {
                    "worker_pods_ready": -1,
                    "worker_pods": -1,
                    "replicas_running": None,
                    "replicas": None,
                }
            requests = self.load.done() if self.load else []
            failed = sum(r.outcome != OK for r in requests)
            self.timeline.samples.append(
                Sample(
                    t=self.now(),
                    in_flight=self.load.in_flight if self.load else 0,
                    ok=len(requests) - failed,
                    failed=failed,
                    **cluster,  # type: ignore[arg-type]
                )
            )
            self._stop.wait(max(0.0, SAMPLE_S - (time.monotonic() - started)))


def plot(timeline: EventTimeline, path: Path) -> None:
    """Load and failures over time above, worker pods and replicas below, the marks as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = timeline.samples
    t = [s.t for s in samples]
    fig, (load_ax, scale_ax) = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5), constrained_layout=True)
    load_ax.plot(t, [s.in_flight for s in samples], label="requests in flight")
    failures = [(r.end, r.stream) for r in timeline.requests if r.outcome != OK]
    for stream, marker, label in (
        (False, "x", "failed, non-streamed"),
        (True, "o", "failed, streamed"),
    ):
        times = [end for end, is_stream in failures if is_stream == stream]
        if times:
            load_ax.scatter(times, [0.5] * len(times), marker=marker, color="red", label=label)
    load_ax.set_ylabel("requests")
    load_ax.legend(loc="upper right")
    scale_ax.step(
        t,
        [s.worker_pods_ready for s in samples],
        where="post",
        label="worker pods Ready",
    )
    scale_ax.step(t, [s.worker_pods for s in samples], where="post", label="worker pods", ls="--")
    scale_ax.step(
        t,
        [float("nan") if s.replicas_running is None else s.replicas_running for s in samples],
        where="post",
        label="Serve replicas RUNNING",
    )
    scale_ax.set_ylabel("count")
    scale_ax.set_xlabel("seconds")
    scale_ax.set_ylim(-0.2, max([2, *(s.worker_pods for s in samples)]) + 0.8)
    scale_ax.yaxis.get_major_locator().set_params(integer=True)
    scale_ax.legend(loc="lower right", fontsize=8)
    for name, mark in timeline.marks.items():
        for ax in (load_ax, scale_ax):
            ax.axvline(mark, color="grey", lw=0.8, ls=":")
        # Along the top of the lower axes, in axes coordinates, so that no step hides a label.
        top = scale_ax.get_xaxis_transform()
        scale_ax.text(mark, 0.98, name, transform=top, fontsize=7, rotation=90, va="top", ha="right")
    fig.suptitle(f"Real pods, tiny model on the CPU engine: {timeline.event.replace('_', ' ')}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", type=Path, help="the folder of <event>.json files a run wrote")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs/pods-events"),
        help="folder for JSON + PNG",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in sorted(args.directory.glob("*.json")):
        timeline = EventTimeline.load(path)
        (args.out / path.name).write_text(path.read_text())
        plot(timeline, args.out / f"{timeline.event}.png")
        print(json.dumps(timeline.summary()))


if __name__ == "__main__":
    main()
