#!/usr/bin/env bash
# Copy what the chart carries from its canonical place into charts/rayvllm/files/, which Helm can read:
#   dashboards/*.json       -> files/dashboards/  (the dashboard ConfigMaps)
#   app/src/rayvllm/        -> files/rayvllm/     (the app package ConfigMap, appPackage.source: chart: every
#                                                  module but the benchmark subpackage, which no pod runs)
# `--check` changes nothing and fails when a copy has drifted.
# usage: tools/sync-chart-files.sh [--check]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
files=$root/charts/rayvllm/files

# The files of each copy, as paths relative to its source folder.
dashboard_files() { (cd "$root/dashboards" && ls -- *.json); }
package_files() {
  (cd "$root/app/src/rayvllm" && find . \( -name '*.py' -o -name py.typed \) -not -path './bench/*' | sort)
}

copy() {  # copy SRC DST LISTER
  local src=$1 dst=$2 lister=$3
  rm -rf "$dst" && mkdir -p "$dst"
  (cd "$src" && "$lister" | while read -r path; do cp --parents "$path" "$dst"/; done)
}

status=0
for pair in "dashboards:dashboards:dashboard_files" "app/src/rayvllm:rayvllm:package_files"; do
  IFS=: read -r src dst lister <<<"$pair"
  src=$root/$src dst=$files/$dst
  if [[ ${1:-} == --check ]]; then
    expected=$(mktemp -d)
    copy "$src" "$expected" "$lister"
    if ! diff -r "$expected" "$dst" >&2; then
      echo "sync-chart-files: ${dst#"$root"/} differs from ${src#"$root"/}; run tools/sync-chart-files.sh" >&2
      status=1
    fi
    rm -rf "$expected"
    continue
  fi
  copy "$src" "$dst" "$lister"
  echo "sync-chart-files: copied $(find "$dst" -type f | wc -l) files of ${src#"$root"/} into ${dst#"$root"/}"
done
exit $status
