"""Process helpers of the local runner, the benchmark and the tests: free ports, the readiness probe, and
stopping a process with everything it started.

psutil and httpx are imported where they are used, so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import Any

# Ports handed out by free_port: above Ray's worker ports (10002-19999) and below both Serve's direct-ingress
# ports (30000-31000) and the kernel's ephemeral range (32768+). A port the kernel picked for us could be
# picked again for one of the many listeners Ray opens before our server binds it (seen in CI: "Failed to bind
# to address").
FREE_PORT_RANGE = (20000, 29999)
_handed_out: set[int] = set()


class NotServing(RuntimeError):
    """A server exited, or did not serve a completion in time."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether `port` can be bound on `host` (HAProxy binds its fixed ports on 0.0.0.0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A free port outside the ranges Ray and the kernel assign, never the same one twice in a process."""
    low, high = FREE_PORT_RANGE
    for _ in range(1000):
        port = random.randint(low, high)
        if port not in _handed_out and port_is_free(port, host):
            _handed_out.add(port)
            return port
    raise NotServing(f"no free port in {low}-{high}")


def free_port_range(size: int, start: int = 20000, stop: int = 65000, host: str = "127.0.0.1") -> int:
    """The first port of `size` consecutive free ports in [start, stop), in steps of `size`, none handed out
    before."""
    for first in range(start, stop - size + 1, size):
        block = range(first, first + size)
        if not _handed_out.intersection(block) and all(port_is_free(p, host) for p in block):
            _handed_out.update(block)
            return first
    raise NotServing(f"no {size} consecutive free ports in {start}-{stop}")


def wait_port_free(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_is_free(port):
        if time.monotonic() > deadline:
            raise NotServing(f"port {port} is still in use after {timeout_s:.0f}s")
        time.sleep(1)


def wait_until_serving(
    base_url: str,
    model: str,
    timeout_s: float,
    *,
    headers: dict[str, str] | None = None,
    since: float | None = None,
    exited: Callable[[], str | None] | None = None,
    pooling: bool = False,
) -> float:
    """Seconds from `since` (now by default) until a one-token completion succeeds at `base_url`, or for a
    `pooling` model (an embedding model) an embedding.

    `/v1/models` answers long before the engine can generate; only a completion proves it can. `exited`
    returns why the server's process is gone (or None while it runs), which ends the wait at once.
    """
    import httpx

    started = time.monotonic() if since is None else since
    body: dict[str, object]
    if pooling:
        route, body, answer = "/v1/embeddings", {"model": model, "input": "Hello"}, "data"
    else:
        route, body, answer = (
            "/v1/completions",
            {"model": model, "prompt": "Hello", "max_tokens": 1},
            "choices",
        )
    last_error = "no answer yet"
    while time.monotonic() < started + timeout_s:
        if exited is not None and (reason := exited()) is not None:
            raise NotServing(reason)
        try:
            response = httpx.post(f"{base_url}{route}", json=body, headers=headers, timeout=60)
            if response.status_code == 200 and response.json().get(answer):
                return round(time.monotonic() - started, 1)
            last_error = f"HTTP {response.status_code}: {response.text[:200]}"
        except (httpx.HTTPError, ValueError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(1)
    raise NotServing(f"no {route} answer within {timeout_s:.0f}s ({last_error})")


def stop_processes(
    processes: Iterable[Any],
    grace_s: float = 15,
    signals: Iterable[int | None] = (signal.SIGTERM, signal.SIGKILL),
) -> list[Any]:
    """Send each of `signals` in turn (None: only wait) to those of `processes` (psutil.Process) still alive,
    each time waiting up to `grace_s` for them to exit; return those alive at the end."""
    import psutil

    alive = list(processes)
    for sig in signals:
        alive = [process for process in alive if _alive(process)]
        if not alive:
            break
        if sig is not None:
            for process in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.send_signal(sig)
        _, alive = psutil.wait_procs(alive, timeout=grace_s)
    return [process for process in alive if _alive(process)]


def stop_family(
    pid: int,
    grace_s: float,
    *,
    first_signal: int = signal.SIGINT,
    family: Iterable[Any] | None = None,
    reap: Callable[[float], object] | None = None,
) -> list[Any]:
    """`first_signal` to `pid`, which gets `grace_s` to exit; then SIGTERM and SIGKILL to it and to every
    process descended from it (or to `family`, recorded earlier: a child whose parent died is no longer
    found). Returns the processes still alive. `reap` waits for our own child (Popen.wait), so that it is
    not left a zombie."""
    import psutil

    members = list(family or [])
    try:
        root = psutil.Process(pid)
        members = [root, *(members or root.children(recursive=True))]
        wait = reap or root.wait
        root.send_signal(first_signal)
        with contextlib.suppress(subprocess.TimeoutExpired, psutil.TimeoutExpired):
            wait(grace_s)
    except psutil.NoSuchProcess:
        wait = reap
    alive = stop_processes(members)
    if wait is not None:
        with contextlib.suppress(subprocess.TimeoutExpired, psutil.TimeoutExpired, psutil.NoSuchProcess):
            wait(10)
    return alive


def _alive(process: Any) -> bool:
    import psutil

    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
