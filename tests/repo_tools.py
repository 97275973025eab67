"""Where the repository's parts are, and its Go-built tools (bin/, `make setup-tools`): one home for every
test folder (a module name of its own: several conftest.py files exist)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "rayvllm"
BIN = REPO / "bin"


def tool_path(name: str) -> str:
    """A tool from the repo's bin/ first, then from PATH, or a clear failure."""
    local = BIN / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is missing: run `make setup-tools` (tools/go-tools.sh bin)")
    return found


def tool_env() -> dict[str, str]:
    """This process's environment with bin/ first on PATH and the helm-unittest plugin found."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if (BIN / "helm-plugins" / "unittest").is_dir():
        env["HELM_PLUGINS"] = str(BIN / "helm-plugins")
    return env


def run_helm(
    *args: str | Path,
    kubeconfig: Path | None = None,
    check: bool = True,
    stdin: str | None = None,
    timeout_s: float = 300,
) -> subprocess.CompletedProcess[str]:
    """bin/helm (Helm v4) from the repo root, against `kubeconfig`'s cluster when given; with `check`, a
    failure fails the test with Helm's output."""
    command = [tool_path("helm"), *(["--kubeconfig", str(kubeconfig)] if kubeconfig else []), *map(str, args)]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=tool_env(),
        cwd=REPO,
        input=stdin,
        timeout=timeout_s,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"helm {' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result
