#!/usr/bin/env bash
# The interleaved GPU comparison of docs/benchmarks.md (`compare --rounds`): every server up at once on one
# GPU, the loads taking turns, round after round. The `gpu-shared` preset gives each engine the same 25 GiB
# KV cache (enough for 256 sequences of 768 tokens of the Llama-3.1-8B shape), so three 8B engines fit on
# one H200; 1000@256 and 10@1, 512 tokens in and 256 out, ignore_eos.
#
# Default servers, in each round's order: bare `vllm serve`; rayvllm with the chart's defaults (HAProxy and
# Serve's throughput profile); and Ray Serve LLM in the high-throughput configuration of Ray's docs. Bare vLLM
# is started twice before the rounds: the second start has warm compile caches, which is the cold-start
# figure to compare with rayvllm's (started after it, warm too). `rayvllm+proxy` is the old default path;
# `SHARE=rayvllm+direct=rayvllm` adds the replica's own port of the rayvllm server without another engine.
#
# Needs the pinned stack importable (`source host-setup.sh /tmp/parts`, from the workspace's shared gpu
# recipe, not part of this repo). The repo needs no install: app/src goes on PYTHONPATH here.
#
#   bash bench/gpu-interleaved.sh                    # about 20 minutes on an H200 with cold caches
#   ROUNDS=4 SERVERS=vllm,rayvllm SHARE= bash bench/gpu-interleaved.sh
#   LOADS="1500@256 10@1" ...                        # other loads than the preset's (--load each)
#
# Stays within $BENCH_TIME_BUDGET_S (default 1200 s): a round that would not fit is not started, and the
# bundle (compare.json, compare.md, interleaved.png, server-logs.txt) in $OUT is rewritten after every run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/out/gpu-interleaved}
state=${BENCH_STATE:-/tmp/rayvllm-bench-interleaved}
python=${PYTHON:-python3}
servers=${SERVERS:-vllm,rayvllm,ray_serve_llm+throughput}
share=${SHARE-}
export PYTHONPATH="$root/app/src${PYTHONPATH:+:$PYTHONPATH}"

if ! "$python" -c 'import vllm, ray.serve.llm, rayvllm.bench' 2>/dev/null; then
  echo "gpu-interleaved: vLLM, Ray or rayvllm is not importable; source host-setup.sh first" >&2
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

args=(--preset gpu-shared --rounds "${ROUNDS:-3}" --servers "$servers" --no-hf --out "$out" --work-dir "$state"
  --fresh --time-budget-s "${BENCH_TIME_BUDGET_S:-1200}")
[[ -z $share ]] || args+=(--share "$share")
for load in ${LOADS-}; do args+=(--load "$load"); done
[[ -z ${RESTART-vllm} ]] || args+=(--restart "${RESTART-vllm}")
exec "$python" -m rayvllm.bench compare "${args[@]}"
