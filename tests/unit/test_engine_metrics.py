"""The replica's stat logger hands vLLM's stats to the sink actor in batches; a fake sink stands in for it."""

from __future__ import annotations

from typing import Any

import pytest
from rayvllm.serve import engine_metrics


class FakeSink:
    """A fake actor handle: `record.remote` and `call.remote` keep what they were sent."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.calls: list[tuple[Any, ...]] = []
        self.record = self._Method(self.batches.append)
        self.call = self._Method(lambda *args: self.calls.append(args))

    class _Method:
        def __init__(self, target: Any) -> None:
            self.remote = target


def test_stats_go_to_the_sink_in_batches_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm.v1.metrics.loggers import PrometheusStatLogger

    sink = FakeSink()
    now = [100.0]
    monkeypatch.setattr(engine_metrics.time, "monotonic", lambda: now[0])
    forwarder_class = engine_metrics.forwarding_stat_logger(start=lambda config, indexes: sink)
    # vLLM adds a prometheus_client logger of its own unless one of its loggers is a PrometheusStatLogger.
    assert issubclass(forwarder_class, PrometheusStatLogger)
    forwarder = forwarder_class(vllm_config=None, engine_indexes=[0])
    forwarder.log_engine_initialized()
    forwarder.record("scheduler-1", "iteration-1", engine_idx=0)
    now[0] += 0.5
    forwarder.record("scheduler-2", "iteration-2", None, 0)
    assert sink.batches == []  # nothing sent within the second
    now[0] += 0.6
    forwarder.record("scheduler-3", "iteration-3", None, 0)
    assert sink.batches == [
        [("scheduler-1", "iteration-1", None, 0), ("scheduler-2", "iteration-2", None, 0),
         ("scheduler-3", "iteration-3", None, 0)]
    ]  # fmt: skip
    forwarder.record("scheduler-4", "iteration-4", None, 0)
    forwarder.log()  # vLLM's periodic log call sends what is left
    assert sink.batches[-1] == [("scheduler-4", "iteration-4", None, 0)]
    forwarder.log()
    assert len(sink.batches) == 2  # no empty batch
    forwarder.record_sleep_state(1, 2)
    assert sink.calls == [("log_engine_initialized",), ("record_sleep_state", 1, 2)]


def test_inline_mode_gives_vllm_its_own_ray_logger_for_the_benchmarks_comparison(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rayvllm.bench.servers import ServerVariant
    from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

    monkeypatch.delenv(engine_metrics.MODE_ENV, raising=False)
    assert engine_metrics.stat_logger_class().__name__ == "RayMetricsForwarder"
    env = ServerVariant.parse("rayvllm+inlinestats").replica_env()
    assert env == {engine_metrics.MODE_ENV: "inline"}
    monkeypatch.setenv(engine_metrics.MODE_ENV, "inline")
    assert engine_metrics.stat_logger_class() is RayPrometheusStatLogger
