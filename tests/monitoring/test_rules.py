"""The chart's recording rules and alerts, as rendered by Helm: promtool's check and unit tests, and the
contract every alert keeps (severity, summary, description, a runbook that exists)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from monitoring_support import (
    HERE,
    RULES_VALUES,
    RUNBOOKS,
    all_rules,
    promql_metric_names,
    promql_selector_labels,
    tool_path,
)

SEVERITIES = {"critical", "warning", "info"}
RUNBOOK_BASE = yaml.safe_load(RULES_VALUES.read_text())["monitoring"]["prometheusRule"]["runbookBaseUrl"]


def alerts(rule_groups: list[dict]) -> list[dict]:
    return [rule for rule in all_rules(rule_groups) if "alert" in rule]


def test_promtool_check_rules(rules_file: Path) -> None:
    result = subprocess.run(
        [tool_path("promtool"), "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests(rules_file: Path) -> None:
    result = subprocess.run(
        [tool_path("promtool"), "test", "rules", "rules_test.yaml"],
        cwd=rules_file.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_tests_see_every_alert_fire_and_not_fire(rule_groups: list[dict]) -> None:
    tests = yaml.safe_load((HERE / "rules_test.yaml").read_text())["tests"]
    firing, silent = set(), set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (firing if case["exp_alerts"] else silent).add(case["alertname"])
    names = {alert["alert"] for alert in alerts(rule_groups)}
    assert names - firing == set(), "alerts no unit test sees firing"
    assert names - silent == set(), "alerts no unit test sees silent"
    assert (firing | silent) - names == set(), "unit tests of alerts that do not exist"


def test_unit_tests_evaluate_every_recording_rule(rule_groups: list[dict]) -> None:
    tests = yaml.safe_load((HERE / "rules_test.yaml").read_text())["tests"]
    evaluated = set()
    for test in tests:
        for case in test.get("promql_expr_test", []):
            evaluated |= promql_metric_names(case["expr"])
    records = {rule["record"] for rule in all_rules(rule_groups) if "record" in rule}
    assert records - evaluated == set()


@pytest.mark.parametrize("field", ["summary", "description", "runbook_url"])
def test_every_alert_has_annotation(rule_groups: list[dict], field: str) -> None:
    missing = [alert["alert"] for alert in alerts(rule_groups) if not alert["annotations"].get(field)]
    assert missing == []


def test_every_alert_has_a_severity(rule_groups: list[dict]) -> None:
    wrong = {alert["alert"]: alert["labels"].get("severity") for alert in alerts(rule_groups)}
    assert {name: severity for name, severity in wrong.items() if severity not in SEVERITIES} == {}


def test_every_alert_links_its_runbook(rule_groups: list[dict]) -> None:
    for alert in alerts(rule_groups):
        name = alert["alert"]
        assert alert["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}/{name}.md"
        runbook = RUNBOOKS / f"{name}.md"
        assert runbook.is_file(), f"{name} has no runbook at {runbook}"
        assert runbook.read_text().startswith(f"# {name}\n"), f"{runbook} does not open with its alert's name"


def test_every_runbook_has_an_alert(rule_groups: list[dict]) -> None:
    names = {alert["alert"] for alert in alerts(rule_groups)}
    assert {path.stem for path in RUNBOOKS.glob("*.md")} - names == set()


def test_rules_read_only_the_release_namespace(rule_groups: list[dict]) -> None:
    """Scraped series are selected by namespace, so two releases in one Prometheus do not mix (DCGM's are
    joined to the release's pods instead, and priced pools carry the namespace themselves)."""
    joined = {
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_POWER_USAGE",
    }
    for rule in all_rules(rule_groups):
        names = promql_metric_names(rule["expr"])
        labels = promql_selector_labels(rule["expr"])
        for name in names - joined:
            if ":" in name:
                continue  # recorded by these rules, from namespaced series
            assert "namespace" in labels.get(name, set()), (
                f"{rule.get('record') or rule.get('alert')} reads {name} without a namespace"
            )
