"""A local Ray cluster whose worker nodes come from Ray's own autoscaler (the fake multi-node provider).

The head runs `ray start --head --block` under its own temp dir and free ports, so it cannot collide with
other Ray clusters on the machine. The autoscaler (v1, the head's `monitor` process) starts each fake worker
node as a raylet on this machine, with the node type's logical resources (`GPU`, `accelerator_type:L4`).

`ray stop` takes no address or temp dir: it stops every Ray process of the user on the machine. So the
cluster is stopped by PID: the `ray start` process and every process under it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import yaml
from rayvllm.procs import free_port, stop_family

WORKER_TYPE = "l4-spot"
HEAD_TYPE = "ray.head.default"
# `ray start` alone imports for a minute on a busy 2-core machine.
START_TIMEOUT_S = 300
STOP_GRACE_S = 20
HEAD_OBJECT_STORE_BYTES = 200 * 1024**2


def node_ip() -> str:
    """The address Ray picks for this machine, which the fake provider also gives its nodes."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
        sock.connect(("10.255.255.255", 1))
        return str(sock.getsockname()[0])
    return "127.0.0.1"


def autoscaling_config(
    gcs_address: str,
    worker_resources: dict[str, float],
    max_workers: int,
    idle_timeout_minutes: float,
) -> dict[str, Any]:
    """A cluster YAML for the fake multi-node provider: one worker type, 0 to `max_workers` nodes."""
    return {
        "cluster_name": "rayvllm-autoscaling-test",
        "max_workers": max_workers,
        "idle_timeout_minutes": idle_timeout_minutes,
        "upscaling_speed": 1.0,
        "provider": {
            "type": "external",
            "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
            # Without it the provider's nodes join a GCS on the default port 6379, someone else's cluster.
            "gcs_address": gcs_address,
            # Every fake node shares this machine's IP. The autoscaler keys a node's idle time by IP and the
            # provider names nodes by id: without this flag no idle time ever matches, and no node is removed.
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "head_node_type": HEAD_TYPE,
        "available_node_types": {
            HEAD_TYPE: {"resources": {}, "node_config": {}, "max_workers": 0},
            WORKER_TYPE: {
                "resources": worker_resources,
                "node_config": {},
                "min_workers": 0,
                "max_workers": max_workers,
            },
        },
        "auth": {},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "rsync_exclude": [],
        "rsync_filter": [],
    }


class FakeAutoscalingCluster:
    """The head node and its autoscaler, started and stopped by this test process only."""

    def __init__(
        self,
        temp_dir: Path,
        worker_resources: dict[str, float],
        max_workers: int = 2,
        idle_timeout_minutes: float = 0.1,
        head_cpus: int = 2,
    ) -> None:
        self.temp_dir = temp_dir
        self.ip = node_ip()
        self.gcs_address = f"{self.ip}:{free_port()}"
        self.metrics_port = free_port()
        self.config = autoscaling_config(
            self.gcs_address, worker_resources, max_workers, idle_timeout_minutes
        )
        self.head_cpus = head_cpus
        self.log = temp_dir / "ray-start.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._seen: dict[int, psutil.Process] = {}

    def start(self, attempts: int = 3) -> None:
        """Start the head with the autoscaler; return once `ray start` reports the runtime up.

        Ray gives a new raylet 30 s (fixed) to register, after its dashboard agent has imported; on a busy
        2-core machine that import can take longer, so a failed start is stopped cleanly and tried again.
        """
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                return
            except (RuntimeError, TimeoutError):
                leftovers = self.stop()
                if attempt == attempts or leftovers:
                    raise

    def _start_once(self) -> None:
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.temp_dir / "autoscaling.yaml"
        config_path.write_text(yaml.safe_dump(self.config))
        log = self.log.open("wb")
        self.process = subprocess.Popen(
            self._start_command(config_path),
            env=self._start_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _raise_priority(self.process.pid)
        self._wait_until_started()

    def _start_command(self, config_path: Path) -> list[str]:
        port = self.gcs_address.rsplit(":", 1)[1]
        ray = str(Path(sys.executable).parent / "ray")
        return [
            ray,
            "start",
            "--head",
            "--block",
            "--disable-usage-stats",
            f"--autoscaling-config={config_path}",
            f"--temp-dir={self.temp_dir}",
            f"--node-ip-address={self.ip}",
            f"--port={port}",
            # The dashboard's modules time out starting on a busy 2-core machine; nothing here needs them.
            # Its process starts all the same, so it gets a free port too.
            "--include-dashboard=false",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={free_port()}",
            f"--metrics-export-port={self.metrics_port}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--num-cpus={self.head_cpus}",
            f"--object-store-memory={HEAD_OBJECT_STORE_BYTES}",
            "--num-gpus=0",
        ]

    def _start_env(self) -> dict[str, str]:
        return os.environ | {
            "RAY_FAKE_CLUSTER": "1",
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            # Fixed by default (44217, 44227): another cluster on this machine may hold them.
            "AUTOSCALER_METRIC_PORT": str(free_port()),
            "DASHBOARD_METRIC_PORT": str(free_port()),
            # Metrics reach the export every 2 s instead of 10, so the timeline sees each step.
            "RAY_metrics_report_interval_ms": "2000",
            # The raylet's own wait for its agents (default 30 s), for the same busy machine.
            "RAY_raylet_start_wait_time_s": "120",
        }

    def _wait_until_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.process.returncode}; see {self.log}")
            if "Ray runtime started" in self.log.read_text(errors="replace"):
                self.remember_processes()
                return
            time.sleep(1)
        raise TimeoutError(f"the Ray head did not come up within {START_TIMEOUT_S}s; see {self.log}")

    def remember_processes(self) -> None:
        """Record every process under the head, so a stop can find those whose parent died first."""
        if self.process is None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.process.pid)
            for process in [root, *root.children(recursive=True)]:
                self._seen.setdefault(process.pid, process)

    @staticmethod
    def alive_worker_node_ids() -> list[str]:
        """Ids of the alive fake worker nodes; needs a driver connected to this cluster."""
        import ray

        return sorted(
            node["NodeID"]
            for node in ray.nodes()
            if node["Alive"] and "node:__internal_head__" not in node["Resources"]
        )

    def stop(self) -> list[psutil.Process]:
        """Stop every process this cluster started; return those still alive (none, when all went well)."""
        self.remember_processes()
        if self.process is None:
            return []
        # Every process seen under the head: a fake node whose parent died first is no longer its child.
        family = [p for p in self._seen.values() if p.pid != self.process.pid]
        return stop_family(
            self.process.pid,
            STOP_GRACE_S,
            first_signal=signal.SIGTERM,
            family=family,
            reap=self.process.wait,
        )


def _raise_priority(pid: int) -> None:
    """Nice -5 for the head and, inherited, every process it starts (fake nodes, replicas, engines).

    A new raylet must register within 30 s (fixed in ray._private.node) after its dashboard agent has
    imported; with other heavy jobs on 2 cores the import alone took longer. Needs root; a no-op otherwise.
    """
    with contextlib.suppress(psutil.Error, PermissionError):
        psutil.Process(pid).nice(-5)
