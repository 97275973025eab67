"""What the chart carries from elsewhere in the repo (dashboards/, the rayvllm package) is an exact copy."""

from __future__ import annotations

import subprocess

from chart_support import REPO


def test_chart_copies_match_their_sources() -> None:
    result = subprocess.run(
        ["bash", str(REPO / "tools" / "sync-chart-files.sh"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
