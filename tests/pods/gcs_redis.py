"""The GCS's external Redis for `gcsFaultTolerance`: Debian's redis-server (tools/pods/setup-node.sh installs
it) as a host process inside the test's network namespace, on the node's address, so the pods reach it as they
would a Redis outside the cluster. Its password is in a Secret, as the chart's values expect."""

from __future__ import annotations

import base64
import shutil
import socket
from pathlib import Path
from typing import Any

from control_plane import ControlPlane, wait_for
from node import NETWORK

REDIS_PORT = 6379
REDIS_ADDRESS = f"{NETWORK.node_ip}:{REDIS_PORT}"
REDIS_SECRET = "ray-redis"
REDIS_PASSWORD = "redis-test-password-0123456789"


def _config(directory: Path) -> str:
    # No snapshots: a restart of Redis itself is not one of the events.
    return "\n".join(
        [
            f"bind {NETWORK.node_ip}",
            f"port {REDIS_PORT}",
            f"requirepass {REDIS_PASSWORD}",
            'save ""',
            "appendonly no",
            f"dir {directory}",
            "",
        ]
    )


def _answers(password: str) -> bool:
    with socket.create_connection((NETWORK.node_ip, REDIS_PORT), timeout=5) as connection:
        connection.sendall(f"AUTH {password}\r\nPING\r\n".encode())
        reply = b""
        while reply.count(b"\r\n") < 2:  # one reply line per command
            chunk = connection.recv(200)
            if not chunk:
                break
            reply += chunk
    return reply.startswith(b"+OK\r\n+PONG\r\n")


def start_redis(plane: ControlPlane) -> str:
    """redis-server beside the control plane (stopped with it); return the address the chart is given."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing: run tools/pods/setup-node.sh (make setup-pods)")
    directory = plane.workdir / "redis"
    directory.mkdir()
    config = directory / "redis.conf"
    config.write_text(_config(directory))
    config.chmod(0o600)  # it holds the password
    plane.start("redis-server", [binary, str(config)])
    wait_for("redis-server to answer PING", lambda: _answers(REDIS_PASSWORD), 60, 0.5)
    return REDIS_ADDRESS


def redis_password_secret(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": REDIS_SECRET, "namespace": namespace},
        "data": {"password": base64.b64encode(REDIS_PASSWORD.encode()).decode()},
    }


def gcs_fault_tolerance_values() -> dict[str, Any]:
    return {
        "enabled": True,
        "redisAddress": REDIS_ADDRESS,
        "redisPassword": {"secretName": REDIS_SECRET, "secretKey": "password"},
    }
