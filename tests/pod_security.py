"""Pods judged against a Pod Security Standard by the API server's own checks (k8s.io/pod-security-admission,
built from the Go module proxy into tests/chart/pss). The chart tests run it on rendered templates, the
real-cluster tests on the pods the KubeRay operator created."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from rayvllm.local.offline_models import cache_dir

PSS_SOURCE = Path(__file__).resolve().parent / "chart" / "pss"


def build_pss_check() -> Path:
    """The pss-check binary, built once per source and Go version into the cache outside the clone."""
    sources = sorted(PSS_SOURCE.glob("go.*")) + sorted(PSS_SOURCE.glob("*.go"))
    go_version = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True)
    key = hashlib.sha256(b"".join(path.read_bytes() for path in sources) + go_version.stdout.encode())
    binary = cache_dir() / "pss-check" / key.hexdigest()[:12] / "pss-check"
    if not binary.exists():
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
        built = subprocess.run(
            ["go", "build", "-o", str(binary), "."],
            cwd=PSS_SOURCE,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        if built.returncode != 0:
            pytest.fail(f"building tests/chart/pss failed:\n{built.stderr}")
    return binary


def findings(pss_check: Path, pods: list[dict[str, Any]], level: str = "restricted") -> list[dict[str, str]]:
    """One {pod, check, detail} per forbidden finding; empty when every pod is allowed at `level`."""
    result = subprocess.run(
        [str(pss_check), "-level", level],
        input=json.dumps(pods),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found: list[dict[str, str]] = json.loads(result.stdout)
    return found
