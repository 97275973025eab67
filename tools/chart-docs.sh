#!/usr/bin/env bash
# Regenerate the chart's generated files, or check that they are current (--check, for the tests and CI):
#   charts/rayvllm/README.md       helm-docs, from README.md.gotmpl and the `# --` comments of values.yaml
#                                  (tests/chart/test_chart_docs.py fails on a row without a description);
#   charts/rayvllm/values.schema.json, its `app` part: tools/values_schema.py, from rayvllm.config.AppConfig.
# usage: tools/chart-docs.sh [--check]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$root/bin}
python=$root/.venv/bin/python
[[ -x $python ]] || python=python3
chart=$root/charts/rayvllm
flags=(--chart-search-root "$root/charts" --chart-to-generate "$chart" --sort-values-order file --log-level warning)

if [[ ${1:-} == --check ]]; then
  "$python" "$root/tools/values_schema.py" --check
  if ! diff -u "$chart/README.md" <("$bin/helm-docs" "${flags[@]}" --dry-run); then
    echo "chart-docs: charts/rayvllm/README.md is stale: run tools/chart-docs.sh (make docs)" >&2
    exit 1
  fi
else
  "$python" "$root/tools/values_schema.py"
  "$bin/helm-docs" "${flags[@]}"
fi
