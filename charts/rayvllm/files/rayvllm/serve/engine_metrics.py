"""vLLM's engine metrics as Ray metrics (`ray_vllm_*` on every Ray pod's port 8080), recorded off the replica.

vLLM's `RayPrometheusStatLogger` makes one `ray.util.metrics` call per observation, one per generated token
among them, on the replica's event loop between two engine outputs. At 256 sequences that is about 1 ms of
the loop per engine step, and on an H200 it cost the chart's defaults 0.944x of bare vLLM's throughput where
the same replica without it served 0.999x (docs/benchmarks.md, 2026-12-03). So the replica only collects the
stats, and once a second hands them to an actor of its own on the same node, which records them with vLLM's
own logger: the same series, labels (the replica's ReplicaId included) and buckets.
"""

from __future__ import annotations

import os
import time
from typing import Any

FLUSH_INTERVAL_S = 1.0
# `inline`: record in the replica, as vLLM's Ray logger does by itself; for the benchmark's comparison
# (`rayvllm+inlinestats`), not a deployment setting.
MODE_ENV = "RAYVLLM_ENGINE_METRICS"


class EngineMetricsSink:
    """The actor that records one replica's engine stats with vLLM's RayPrometheusStatLogger."""

    def __init__(self, vllm_config: Any, engine_indexes: list[int], replica_id: str) -> None:
        from vllm.v1.metrics import ray_wrappers

        # The wrappers tag every series with the Serve replica they run in; this actor runs in none.
        ray_wrappers._get_replica_id = lambda: replica_id
        self._logger = ray_wrappers.RayPrometheusStatLogger(vllm_config, engine_indexes)

    def record(self, batch: list[tuple[Any, Any, Any, int]]) -> None:
        for scheduler_stats, iteration_stats, mm_cache_stats, engine_idx in batch:
            self._logger.record(scheduler_stats, iteration_stats, mm_cache_stats, engine_idx)

    def call(self, method: str, *args: Any) -> None:
        getattr(self._logger, method)(*args)


def start_sink(vllm_config: Any, engine_indexes: list[int]) -> Any:
    """The sink actor, on this replica's node (its metrics leave through the same pod), owned by the replica
    so that it stops with it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    from vllm.v1.metrics.ray_wrappers import _get_replica_id

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(num_cpus=0)(EngineMetricsSink).options(scheduling_strategy=here)
    return actor.remote(vllm_config, engine_indexes, _get_replica_id() or "")


def stat_logger_class() -> type:
    """The stat logger class the replica gives vLLM: the forwarder, or vLLM's own Ray logger with
    RAYVLLM_ENGINE_METRICS=inline."""
    if os.environ.get(MODE_ENV) == "inline":
        from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

        return RayPrometheusStatLogger
    return forwarding_stat_logger()


def forwarding_stat_logger(start: Any = start_sink) -> type:
    """The stat logger class the replica gives vLLM (built here, so importing this module imports no vLLM)."""
    from vllm.v1.metrics.loggers import PrometheusStatLogger

    class RayMetricsForwarder(PrometheusStatLogger):
        """Collects vLLM's stats and sends them to the sink actor once a second.

        A PrometheusStatLogger only so that vLLM adds no prometheus_client logger of its own; its __init__,
        which would create the metrics here, is not called.
        """

        def __init__(self, vllm_config: Any, engine_indexes: list[int] | None = None) -> None:
            self._sink = start(vllm_config, engine_indexes or [0])
            self._batch: list[tuple[Any, Any, Any, int]] = []
            self._flushed = time.monotonic()

        def record(
            self,
            scheduler_stats: Any,
            iteration_stats: Any,
            mm_cache_stats: Any = None,
            engine_idx: int = 0,
        ) -> None:
            self._batch.append((scheduler_stats, iteration_stats, mm_cache_stats, engine_idx))
            if time.monotonic() - self._flushed >= FLUSH_INTERVAL_S:
                self.flush()

        def flush(self) -> None:
            if self._batch:
                self._sink.record.remote(self._batch)
                self._batch = []
            self._flushed = time.monotonic()

        def log(self) -> None:
            # vLLM calls this every VLLM_LOG_STATS_INTERVAL: the last stats of a burst go out then.
            self.flush()

        def record_sleep_state(self, sleep: int = 0, level: int = 0) -> None:
            self.flush()
            self._sink.call.remote("record_sleep_state", sleep, level)

        def log_engine_initialized(self) -> None:
            self._sink.call.remote("log_engine_initialized")

    return RayMetricsForwarder
