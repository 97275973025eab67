"""The timeline of an autoscaling run: samples once a second, named events, and the figure made from them.

The e2e test writes `timeline.json`; run this module to turn one into the docs' figure and JSON:

    .venv/bin/python tests/autoscaling/scaling_timeline.py TIMELINE.json --out docs/autoscaling
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Sample:
    """The cluster and the load at `t` seconds after the recording began."""

    t: float
    in_flight: int
    ok: int
    failed: int
    queued: float | None
    """`ray_serve_deployment_queued_queries` summed over the cluster's metrics export (the proxy's queue)."""
    ongoing: float | None
    """The controller's autoscaling input: ongoing requests of the deployment, queued ones included."""
    target_replicas: float | None
    """`ray_serve_autoscaling_target_replicas` from the metrics export."""
    running_replicas: int
    worker_nodes: int
    requests_by_node: dict[str, float] = field(default_factory=dict)
    """`ray_serve_deployment_request_counter_total` per worker node id."""


@dataclass
class Timeline:
    """Samples, events (seconds since the recording began) and the settings of the run."""

    settings: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    events: dict[str, float] = field(default_factory=dict)

    def mark(self, event: str, t: float) -> None:
        """Record the first time `event` happened."""
        self.events.setdefault(event, round(t, 1))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Timeline:
        data = json.loads(path.read_text())
        return cls(
            settings=data["settings"],
            samples=[Sample(**sample) for sample in data["samples"]],
            events=data["events"],
        )

    def derive_events(self, first_node: str) -> None:
        """Mark when each step of the scale-up and scale-down was first seen; `first_node` served before."""
        spike, quiet = self.events["spike"], self.events.get("quiet", float("inf"))
        for s in self.samples:
            if s.t < spike:
                continue
            if s.t < quiet:
                if (s.queued or 0) > 0:
                    self.mark("queue_rose", s.t)
                if (s.target_replicas or 0) >= 2:
                    self.mark("target_2", s.t)
                if s.worker_nodes >= 2:
                    self.mark("second_node", s.t)
                if s.running_replicas >= 2:
                    self.mark("second_replica_running", s.t)
                if any(count > 0 for node, count in s.requests_by_node.items() if node != first_node):
                    self.mark("second_replica_serving", s.t)
            else:
                if s.running_replicas == 1:
                    self.mark("replicas_at_min", s.t)
                if s.worker_nodes == 1:
                    self.mark("nodes_at_min", s.t)

    def durations(self) -> dict[str, float | int]:
        """The headline figures: seconds from spike to second replica, from quiet to scale-down, failures."""
        events = self.events
        return {
            "spike_to_target_2_s": round(events["target_2"] - events["spike"], 1),
            "spike_to_second_node_s": round(events["second_node"] - events["spike"], 1),
            "spike_to_second_replica_running_s": round(events["second_replica_running"] - events["spike"], 1),
            "spike_to_second_replica_serving_s": round(events["second_replica_serving"] - events["spike"], 1),
            "quiet_to_one_replica_s": round(events["replicas_at_min"] - events["quiet"], 1),
            "quiet_to_one_node_s": round(events["nodes_at_min"] - events["quiet"], 1),
            "requests_ok": self.samples[-1].ok,
            "requests_failed": self.samples[-1].failed,
        }


def plot(timeline: Timeline, path: Path) -> None:
    """Load, queue depth, replicas and nodes over time, with the events as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in timeline.samples]
    fig, (load_ax, scale_ax) = plt.subplots(2, 1, sharex=True, figsize=(9, 6), constrained_layout=True)
    load_ax.plot(t, [s.in_flight for s in timeline.samples], label="client requests in flight")
    load_ax.plot(
        t, [_or_nan(s.ongoing) for s in timeline.samples], label="Serve ongoing requests (controller)"
    )
    load_ax.plot(t, [_or_nan(s.queued) for s in timeline.samples], label="Serve queued requests (metric)")
    load_ax.set_ylabel("requests")
    load_ax.legend(loc="upper right")
    scale_ax.step(
        t, [_or_nan(s.target_replicas) for s in timeline.samples], where="post", label="target replicas"
    )
    scale_ax.step(t, [s.running_replicas for s in timeline.samples], where="post", label="running replicas")
    scale_ax.step(
        t, [s.worker_nodes for s in timeline.samples], where="post", label="fake GPU nodes", ls="--"
    )
    scale_ax.set_ylabel("count")
    scale_ax.set_xlabel("seconds")
    scale_ax.set_yticks([0, 1, 2])
    scale_ax.legend(loc="upper right")
    for name in ("spike", "quiet"):
        if name in timeline.events:
            for ax in (load_ax, scale_ax):
                ax.axvline(timeline.events[name], color="grey", lw=0.8, ls=":")
            load_ax.annotate(name, (timeline.events[name], 0), textcoords="offset points", xytext=(3, 3))
    fig.suptitle(
        "Queue spike on the tiny model: Serve replicas and autoscaler nodes (fake multi-node provider)"
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("timeline", type=Path, help="timeline.json written by the autoscaling e2e test")
    parser.add_argument("--out", type=Path, default=Path("docs/autoscaling"), help="directory for PNG + JSON")
    args = parser.parse_args()
    timeline = Timeline.load(args.timeline)
    args.out.mkdir(parents=True, exist_ok=True)
    timeline.save(args.out / "timeline.json")
    plot(timeline, args.out / "timeline.png")
    for name, value in timeline.durations().items():
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
