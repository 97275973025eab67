#!/usr/bin/env bash
# Copy what the chart carries from its canonical place into charts/rayvllm/files/, which Helm can read:
#   dashboards/*.json       -> files/dashboards/  (the dashboard ConfigMaps)
#   app/src/rayvllm/*.py    -> files/rayvllm/     (the app package ConfigMap, appPackage.source: chart; the
#                                                  benchmark subpackage stays out: no pod runs it)
# `--check` changes nothing and fails when a copy has drifted.
# usage: tools/sync-chart-files.sh [--check]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
files=$root/charts/rayvllm/files
pairs=("$root/dashboards:$files/dashboards:*.json" "$root/app/src/rayvllm:$files/rayvllm:*.py py.typed")

status=0
for pair in "${pairs[@]}"; do
  IFS=: read -r src dst patterns <<<"$pair"
  if [[ ${1:-} == --check ]]; then
    expected=$(mktemp -d)
    (cd "$src" && for p in $patterns; do cp $p "$expected"/; done)
    if ! diff -r "$expected" "$dst" >&2; then
      echo "sync-chart-files: ${dst#"$root"/} differs from ${src#"$root"/}; run tools/sync-chart-files.sh" >&2
      status=1
    fi
    rm -rf "$expected"
    continue
  fi
  rm -rf "$dst" && mkdir -p "$dst"
  (cd "$src" && for p in $patterns; do cp $p "$dst"/; done)
  echo "sync-chart-files: copied $(ls "$dst" | wc -l) files of ${src#"$root"/} into ${dst#"$root"/}"
done
exit $status
