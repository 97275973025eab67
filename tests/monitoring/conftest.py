"""Fixtures of the monitoring tests: the chart's rendered rules, the dashboards and the metric allow-list."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from monitoring_support import (
    ALLOWLIST,
    HERE,
    PROMETHEUS_SERIES,
    REAL_POD_METRICS,
    RULES_VALUES,
    all_rules,
    load_dashboards,
    panel_queries,
    promql_metric_names,
    render_rule_groups,
    variable_queries,
)


@pytest.fixture(scope="session")
def rule_groups() -> list[dict]:
    return render_rule_groups(RULES_VALUES)


@pytest.fixture(scope="session")
def rules_file(rule_groups: list[dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered rules as a Prometheus rule file, next to a copy of the promtool unit tests."""
    directory = tmp_path_factory.mktemp("rules")
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False))
    shutil.copy(HERE / "rules_test.yaml", directory / "rules_test.yaml")
    return path


@pytest.fixture(scope="session")
def dashboards() -> dict[str, dict]:
    return load_dashboards()


@pytest.fixture(scope="session")
def allowlist() -> dict[str, dict]:
    """The names the local stack cannot export: never proven live (GPU, kube-state-metrics), or proven on the
    real pods instead."""
    entries = [
        *yaml.safe_load(ALLOWLIST.read_text()),
        *yaml.safe_load(REAL_POD_METRICS.read_text()),
    ]
    return {entry["name"]: entry for entry in entries}


@pytest.fixture(scope="session")
def used_metric_names(rule_groups: list[dict], dashboards: dict[str, dict]) -> dict[str, set[str]]:
    """Every scraped metric name the rules and dashboards read, with where each is used."""
    recorded = {rule["record"] for rule in all_rules(rule_groups) if "record" in rule}
    uses: dict[str, set[str]] = {}
    for rule in all_rules(rule_groups):
        where = f"rule {rule.get('record') or rule.get('alert')}"
        for name in promql_metric_names(rule["expr"]):
            uses.setdefault(name, set()).add(where)
    for query in panel_queries(dashboards):
        for name in promql_metric_names(query.expr):
            uses.setdefault(name, set()).add(f"{query.dashboard}: {query.panel}")
    for variable in variable_queries(dashboards):
        for name in promql_metric_names(variable.selector):
            uses.setdefault(name, set()).add(f"{variable.dashboard}: ${variable.variable}")
    return {
        name: where for name, where in uses.items() if name not in recorded and name not in PROMETHEUS_SERIES
    }
