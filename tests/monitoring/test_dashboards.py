"""The Grafana dashboards: the chart's copy is in sync, they provision through Grafana's sidecar, and they
keep the checks of Grafana's dashboard-linter that apply (its Go module is not available from the proxy)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from monitoring_support import (
    CHART,
    all_rules,
    load_dashboards,
    panel_queries,
    promql_metric_names,
    promql_selectors,
    substitute_grafana_variables,
    tool_path,
    variable_queries,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# kube-prometheus-stack's Grafana reads schema 39; newer Grafanas migrate it up.
SCHEMA_VERSION = 39
# Grafana's custom count unit, `count:<unit>` (valueFormats.ts, simpleCountUnit): 1.2 K tokens/s.
TOKENS_PER_SECOND = "count:tokens/s"
GRAFANA_UNITS = {"short", "percentunit", "s", "ms", "reqps", "watt", "currencyUSD", TOKENS_PER_SECOND}
# Panels coloured at an alert's threshold, by title, and the key of monitoring.prometheusRule.thresholds whose
# chart default they use. A dashboard serves every release, whose thresholds may differ, so the JSON keeps
# the chart's defaults rather than one release's values; this test keeps them equal.
SLO_PANELS = {
    "TTFT p95 (worst model)": "timeToFirstTokenP95Seconds",
    "TTFT p95 by model": "timeToFirstTokenP95Seconds",
    "5xx ratio (worst application)": "http5xxRatio",
    "KV cache usage (max)": "kvCacheUsageRatio",
    "Queued requests (busiest deployment)": "serveQueuedRequests",
    "Mean GPU utilisation": "gpuIdleUtilizationRatio",
}
# Range windows must follow Grafana's step ($__rate_interval), or cover the dashboard's range.
RANGE_WINDOW = re.compile(r"\[([^\[\]]+)\]")
DASHBOARD_NAMES = sorted(load_dashboards())
OVERVIEW = "overview.json"
NAMESPACE_MATCHER = 'namespace=~"$namespace"'
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^()]*)\)")


@pytest.fixture(params=DASHBOARD_NAMES)
def dashboard(request: pytest.FixtureRequest, dashboards: dict[str, dict]) -> dict:
    return dashboards[request.param]


def panels(dashboard: dict) -> list[dict]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def test_dashboard_provisions_through_the_sidecar(dashboard: dict) -> None:
    text = str(dashboard)
    assert "__inputs" not in dashboard
    assert "DS_PROMETHEUS" not in text
    assert dashboard["id"] is None
    assert dashboard["schemaVersion"] == SCHEMA_VERSION
    assert dashboard["title"].startswith("rayvllm / ")
    assert "rayvllm" in dashboard["tags"]


def test_dashboards_have_distinct_uids(dashboards: dict[str, dict]) -> None:
    uids = [dashboard["uid"] for dashboard in dashboards.values()]
    assert len(set(uids)) == len(uids)
    assert all(re.fullmatch(r"rayvllm-[a-z-]+", uid) and len(uid) <= 40 for uid in uids)


def test_the_overview_links_every_detailed_dashboard(dashboards: dict[str, dict]) -> None:
    """The overview, what on-call opens first, links each detailed dashboard keeping the time range and the
    variables, and every one of its panels opens the dashboard that details it."""
    overview = dashboards[OVERVIEW]
    detailed = {f"/d/{dashboard['uid']}" for name, dashboard in dashboards.items() if name != OVERVIEW}
    links = [link for link in overview["links"] if link["type"] == "link"]
    assert {link["url"] for link in links} == detailed
    assert all(link["includeVars"] and link["keepTime"] for link in links)
    for panel in panels(overview):
        (link,) = panel["links"]
        path, _, query = link["url"].partition("?")
        assert path in detailed, panel["title"]
        assert query == "${__url_time_range}&${__all_variables}", panel["title"]


def test_first_variable_is_the_prometheus_datasource(dashboard: dict) -> None:
    variable = dashboard["templating"]["list"][0]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )


def test_query_variables_use_the_datasource_and_follow_time(dashboard: dict) -> None:
    for variable in dashboard["templating"]["list"][1:]:
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert variable["refresh"] == 2, f"{variable['name']} must refresh on time range change"
        assert variable["includeAll"] and variable["allValue"] == ".*"


def test_dashboard_selects_the_namespace_then_the_raycluster(dashboard: dict) -> None:
    """`cluster` is kube-prometheus-stack's Kubernetes cluster; the RayCluster (renamed on every NewCluster
    upgrade) is `raycluster`, chosen within the namespaces selected."""
    names = [variable["name"] for variable in dashboard["templating"]["list"]]
    assert names[1:3] == ["namespace", "raycluster"]
    assert "cluster" not in names
    (namespace,) = [query for query in variable_queries({"d": dashboard}) if query.variable == "namespace"]
    assert namespace.label == "namespace"


def test_every_query_filters_on_the_namespace(dashboard: dict) -> None:
    """Every selector of every panel and variable query matches `namespace=~"$namespace"`, and every grouping
    keeps `namespace`, so two releases' same-named pools, models or applications are never summed. A series
    without the label (a local stack) still matches the default, All (`.*`)."""
    exprs = [(query.panel, query.expr) for query in panel_queries({"d": dashboard})]
    exprs += [
        (f"${query.variable}", query.selector)
        for query in variable_queries({"d": dashboard})
        if query.variable != "namespace"
    ]
    for where, expr in exprs:
        for name, matchers in promql_selectors(expr):
            assert NAMESPACE_MATCHER in matchers, f"{where}: {name} is not filtered on $namespace"
        for grouping in GROUPING.findall(expr):
            assert "namespace" in re.split(r"\s*,\s*", grouping), f"{where}: by ({grouping}) drops namespace"


def test_raycluster_is_the_only_variable_for_ray_io_cluster(dashboards: dict[str, dict]) -> None:
    exprs = [query.expr for query in panel_queries(dashboards)]
    exprs += [variable.selector for variable in variable_queries(dashboards)]
    for expr in exprs:
        assert "$cluster" not in expr, expr
        for name, matchers in promql_selectors(expr):
            for matcher in re.findall(r"ray_io_cluster\s*[=!~]+\s*\"[^\"]*\"", matchers):
                assert matcher == 'ray_io_cluster=~"$raycluster"', f"{name}: {matcher}"


def test_variables_are_used(dashboard: dict) -> None:
    exprs = " ".join(query.expr for query in panel_queries({"d": dashboard}))
    exprs += " ".join(variable.selector for variable in variable_queries({"d": dashboard}))
    for variable in dashboard["templating"]["list"][1:]:
        assert f"${variable['name']}" in exprs, f"${variable['name']} is defined but no query uses it"


def test_panels_use_the_datasource_variable(dashboard: dict) -> None:
    for panel in panels(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]


def test_panels_have_title_description_and_unit(dashboard: dict) -> None:
    for panel in panels(dashboard):
        assert panel["title"] and panel["description"], panel["id"]
        assert panel["fieldConfig"]["defaults"]["unit"] in GRAFANA_UNITS, panel["title"]


def test_token_rates_are_in_tokens_per_second(dashboard: dict) -> None:
    for panel in panels(dashboard):
        in_tokens_per_second = panel["fieldConfig"]["defaults"]["unit"] == TOKENS_PER_SECOND
        assert in_tokens_per_second == ("tokens/s" in panel["title"].lower()), panel["title"]


def test_stat_panels_have_explicit_thresholds(dashboard: dict) -> None:
    """Grafana gives a panel without thresholds its own (red from 80), which colours 100 requests/s red."""
    for panel in panels(dashboard):
        if panel["type"] == "stat":
            thresholds = panel["fieldConfig"]["defaults"]["thresholds"]
            assert thresholds["mode"] == "absolute", panel["title"]
            assert thresholds["steps"][0]["value"] is None, panel["title"]


def test_slo_thresholds_are_the_chart_defaults(dashboards: dict[str, dict]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    defaults = values["monitoring"]["prometheusRule"]["thresholds"]
    seen = set()
    for dashboard in dashboards.values():
        for panel in panels(dashboard):
            key = SLO_PANELS.get(panel["title"])
            if key is None:
                continue
            seen.add(panel["title"])
            steps = [step["value"] for step in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]
            assert defaults[key] in steps, f"{panel['title']}: {steps} lacks {key} = {defaults[key]}"
            assert key in panel["description"], f"{panel['title']}: the description should name {key}"
    assert seen == set(SLO_PANELS)


def test_panels_fit_the_grid_without_overlap(dashboard: dict) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        covered = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & covered, f"{panel['title']} overlaps another panel"
        cells |= covered


def test_range_windows_follow_grafana(dashboard: dict) -> None:
    for query in panel_queries({"d": dashboard}):
        windows = RANGE_WINDOW.findall(query.expr)
        assert set(windows) <= {"$__rate_interval", "$__range"}, f"{query.panel}: {windows}"


def test_recorded_series_the_dashboards_read_are_recorded(
    dashboards: dict[str, dict], rule_groups: list[dict]
) -> None:
    records = {rule["record"] for rule in all_rules(rule_groups) if "record" in rule}
    read = set()
    for query in panel_queries(dashboards):
        read |= {name for name in promql_metric_names(query.expr) if ":" in name}
    for variable in variable_queries(dashboards):
        read |= {name for name in promql_metric_names(variable.selector) if ":" in name}
    assert read - records == set()


def test_queries_parse(dashboards: dict[str, dict], tmp_path: Path) -> None:
    """Every panel query, with Grafana's variables filled in, is valid PromQL to promtool."""
    rules = [
        {"record": f"dashboard:query_{index}:check", "expr": substitute_grafana_variables(query.expr)}
        for index, query in enumerate(panel_queries(dashboards))
    ]
    rules += [
        {
            "record": f"dashboard:variable_{index}:check",
            "expr": substitute_grafana_variables(variable.selector),
        }
        for index, variable in enumerate(variable_queries(dashboards))
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [tool_path("promtool"), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
