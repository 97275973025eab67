"""Helpers of the monitoring tests: rendering the chart's rules, reading the dashboards, and the metric names
PromQL expressions read."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from repo_tools import CHART, REPO, tool_path

HERE = REPO / "tests" / "monitoring"
DASHBOARDS = REPO / "dashboards"
RUNBOOKS = REPO / "docs" / "runbooks"
RULES_VALUES = HERE / "rules-values.yaml"
ALLOWLIST = HERE / "metrics_allowlist.yaml"
# Names only a KubeRay cluster exports: tests/pods scrapes them live, the local stack cannot.
REAL_POD_METRICS = HERE / "real_pod_metrics.yaml"
# The namespace the rules are rendered for; the live Prometheus test labels its targets with it.
NAMESPACE = "llm"
# Traffic for the live scrapes: long enough for several KV cache blocks, so repeating it hits vLLM's prefix
# cache (`ray_vllm_prefix_cache_hits_total` appears only after a hit).
PREFIX_CACHE_PROMPT = (
    "Ray Serve scales vLLM replicas across spot GPU pools while the head stays on demand. " * 6
)
# Names Prometheus makes itself for every target, never found in a scrape.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
# Grafana's variables, as the live test substitutes them: every selection is "All".
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$namespace": ".*",
    "$raycluster": ".*",
    "$model": ".*",
    "$pool": ".*",
    "$application": ".*",
}

_PROMQL_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "and",
        "or",
        "unless",
    }
    | {"inf", "nan", "Inf", "NaN", "start", "end"}
)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_SELECTOR = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)\s*\{([^{}]*)\}")
# A name with the placeholder `{#N}` that promql_selectors leaves for its N-th matcher block.
_HELD_SELECTOR = re.compile(r"(?<![\w.:$#])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()\s*(?:\{#(\d+)\})?")
_MATCHER_LABEL = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")


def promql_metric_names(expr: str) -> set[str]:
    """The metric and recording-rule names an expression reads: no functions, keywords, labels or numbers."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name not in _PROMQL_KEYWORDS}


def promql_selectors(expr: str) -> list[tuple[str, str]]:
    """Each metric or recording-rule selector of an expression, in order, with its matchers (`""` when it has
    none): `rate(a{x="1"}[5m]) / b` gives `[("a", 'x="1"'), ("b", "")]`."""
    matchers: list[str] = []

    def hold(match: re.Match[str]) -> str:
        matchers.append(match[1])
        return f"{{#{len(matchers) - 1}}}"

    text = re.sub(r"\{([^{}]*)\}", hold, expr)
    text = _STRING.sub('""', text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return [
        (name, matchers[int(held)] if held else "")
        for name, held in _HELD_SELECTOR.findall(text)
        if name not in _PROMQL_KEYWORDS
    ]


def promql_selector_labels(expr: str) -> dict[str, set[str]]:
    """Label names each metric is matched on in `metric{label=...}` selectors."""
    text = _STRING.sub('""', expr)
    labels: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(text):
        labels.setdefault(name, set()).update(_MATCHER_LABEL.findall(matchers))
    return labels


def substitute_grafana_variables(expr: str) -> str:
    for variable in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(variable, GRAFANA_VARIABLES[variable])
    return expr


def render_rule_groups(values: Path, namespace: str = NAMESPACE) -> list[dict]:
    """The `spec.groups` of the chart's PrometheusRule, rendered by helm template."""
    command = [
        tool_path("helm"),
        "template",
        "rayvllm",
        str(CHART),
        "--namespace",
        namespace,
    ]
    command += [
        "-f",
        str(values),
        "--show-only",
        "templates/monitoring/prometheusrule.yaml",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    (rule,) = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return rule["spec"]["groups"]


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str


def load_dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panel_queries(dashboards: dict[str, dict]) -> list[PanelQuery]:
    queries = []
    for name, dashboard in dashboards.items():
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                queries.append(PanelQuery(name, panel["title"], target["expr"]))
    return queries


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


@dataclass(frozen=True)
class VariableQuery:
    dashboard: str
    variable: str
    selector: str
    label: str


def variable_queries(dashboards: dict[str, dict]) -> list[VariableQuery]:
    """The `label_values(selector, label)` query of each query variable."""
    queries = []
    for name, dashboard in dashboards.items():
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                match = _LABEL_VALUES.match(variable["query"]["query"])
                assert match, f"{name}: variable {variable['name']} is not a label_values() query"
                queries.append(VariableQuery(name, variable["name"], match["selector"], match["label"]))
    return queries


def all_rules(groups: list[dict]) -> Iterator[dict]:
    for group in groups:
        yield from group["rules"]
