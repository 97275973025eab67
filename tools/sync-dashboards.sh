#!/usr/bin/env bash
# Copy the canonical dashboards (dashboards/*.json) into the chart (charts/rayvllm/files/dashboards/), which
# Helm can read. `--check` changes nothing and fails when the chart's copy has drifted.
# usage: tools/sync-dashboards.sh [--check]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=$root/dashboards
dst=$root/charts/rayvllm/files/dashboards
if [[ ${1:-} == --check ]]; then
  if ! diff -r "$src" "$dst" >/dev/null 2>&1; then
    diff -r "$src" "$dst" >&2 || true
    echo "sync-dashboards: charts/rayvllm/files/dashboards/ differs from dashboards/; run tools/sync-dashboards.sh" >&2
    exit 1
  fi
  exit 0
fi
mkdir -p "$dst"
rm -f "$dst"/*.json
cp "$src"/*.json "$dst"/
echo "sync-dashboards: copied $(ls "$src"/*.json | wc -l) dashboards into ${dst#"$root"/}"
