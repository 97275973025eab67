"""What the replica's stat forwarder (rayvllm.serve.engine_metrics) pays per second of engine steps.

The forwarder pickles one second of engine steps' stats and sends them to its sink actor; vLLM's
RayPrometheusStatLogger in the replica made one ray.util.metrics call per generated token instead. This times
the first on a synthetic second: STEPS steps of SEQS sequences, one inter-token latency per sequence.

    .venv/bin/python bench/stats-forward-cost.py [STEPS] [SEQS]      # default 40 256, an H200's 1000@256
"""

import random
import sys
import time

import ray.cloudpickle as cloudpickle
from vllm.v1.metrics.stats import IterationStats, SchedulerStats

steps, seqs = (int(arg) for arg in (sys.argv[1:] or ["40", "256"]))
batch = []
for _ in range(steps):
    iteration = IterationStats()
    iteration.num_generation_tokens = seqs
    iteration.inter_token_latencies_iter = [random.random() * 0.03 for _ in range(seqs)]
    iteration.time_to_first_tokens_iter = [random.random() for _ in range(4)]
    batch.append((SchedulerStats(num_running_reqs=seqs), iteration, None, 0))
repeats = 200
began = time.perf_counter()
for _ in range(repeats):
    blob = cloudpickle.dumps(batch)
seconds = (time.perf_counter() - began) / repeats
ms = seconds * 1e3
print(f"one second's stats ({steps} steps x {seqs} sequences): pickled in {ms:.2f} ms, {len(blob)} bytes")
calls = steps * seqs
print(
    f"vLLM's Ray logger in the replica: {calls} ray.util.metrics calls, about {calls * 4e-3:.0f} ms at 4 us"
)
