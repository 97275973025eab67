#!/usr/bin/env bash
# The GPU comparison of docs/benchmarks.md on the offline GPU host: bare `vllm serve`, rayvllm and Ray Serve
# LLM's build_openai_app, one after the other on one GPU with the same engine args (Llama-3.1-8B shape,
# dummy weights, bf16, max_model_len 4096; 512 in / 256 out, ignore_eos; 1000@256 then 20@1), then
# transformers `generate` at batch 1, 16 and 64.
#
# Needs the pinned stack importable: run `source host-setup.sh /tmp/parts` (from the workspace's shared gpu recipe, not part of this repo) first in the same
# shell. The repo needs no install: app/src goes on PYTHONPATH here.
#
#   bash bench/gpu-compare.sh [STEP...]     STEP: vllm rayvllm ray_serve_llm hf (default: all four, in order),
#                                           or a rayvllm variant such as rayvllm+throughput+haproxy
#                                           (`python -m rayvllm.bench compare --help` lists the flags)
#   PY_SPY_S=15 bash bench/gpu-compare.sh ...   also profiles each server's processes with py-spy
#   PY_SPY_IDLE=1 PY_SPY_S=15 ...               samples waiting threads too (py-spy --idle)
#   LOADS="1000@256 1000@256" ...               other loads than the preset's (--load each); with PY_SPY_S,
#                                               the first is profiled and a repeat of it is not
#
# All four take about 15 minutes on an H100 with cold caches: more than one 10-minute device call. So
# results accumulate in $BENCH_STATE (default /tmp/rayvllm-bench), each call rewrites the whole bundle, and
# a step that would not fit in $BENCH_TIME_BUDGET_S (default 540 s) is skipped, to be run in the next call
# on the same warm machine (the engine-compile caches in ~/.cache carry over):
#   FRESH=1 bash bench/gpu-compare.sh vllm hf          # ~7.5 min: the cold compile is here
#   bash bench/gpu-compare.sh rayvllm ray_serve_llm    # ~8.5 min
# A server left running by a killed call is stopped, by its recorded PID, when the next call starts.
#
# Writes into $OUT (default out/gpu-compare), five files: compare.json (everything, raw: per-server runs,
# commands, ready times, GPU name and versions), compare.md (tables, ratios vs bare vLLM, targets),
# latency.png, throughput.png and server-logs.txt (the tail of each server's log).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/out/gpu-compare}
state=${BENCH_STATE:-/tmp/rayvllm-bench}
python=${PYTHON:-python3}
export PYTHONPATH="$root/app/src${PYTHONPATH:+:$PYTHONPATH}"
# HAProxy ingress, where enabled, needs maxconn under the host's FD limit of 20,000.
export RAY_SERVE_HAPROXY_MAXCONN=${RAY_SERVE_HAPROXY_MAXCONN:-4000}

steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=(vllm rayvllm ray_serve_llm hf)
servers=()
hf=--no-hf
for step in "${steps[@]}"; do
  case $step in
    vllm | rayvllm | ray_serve_llm | rayvllm+* | vllm+*) servers+=("$step") ;;
    hf) hf=--hf ;;
    *) echo "gpu-compare: unknown step '$step' (vllm, rayvllm, ray_serve_llm, hf)" >&2 && exit 2 ;;
  esac
done

if ! "$python" -c 'import vllm, ray.serve.llm, rayvllm.bench' 2>/dev/null; then
  echo "gpu-compare: vLLM, Ray or rayvllm is not importable; source host-setup.sh first" >&2
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

args=(--preset gpu --servers "$(IFS=,; echo "${servers[*]}")" "$hf" --out "$out" --work-dir "$state"
  --time-budget-s "${BENCH_TIME_BUDGET_S:-540}")
[[ -z ${FRESH:-} ]] || args+=(--fresh)
[[ -z ${PY_SPY_S:-} ]] || args+=(--py-spy-s "$PY_SPY_S")
[[ -z ${PY_SPY_IDLE:-} ]] || args+=(--py-spy-idle)
for load in ${LOADS-}; do args+=(--load "$load"); done
exec "$python" -m rayvllm.bench compare "${args[@]}"
