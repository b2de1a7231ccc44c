"""deploy/prometheus: promtool checks the rules and runs their tests; they read real metrics."""

import re

import pytest
import yaml
from deploytools import ROOT, find_tool, output_of, run_tool
from promql import problems

PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules.yml"
RULE_TESTS = PROMETHEUS / "rules.test.yml"
SEVERITIES = {"page", "ticket"}


@pytest.fixture(scope="module")
def promtool():
    return find_tool("promtool", "apt-get install prometheus (Debian's package brings promtool)")


def rules():
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules(promtool):
    result = run_tool([promtool, "check", "rules", RULES])
    assert result.returncode == 0, output_of(result)
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_runs_the_rules_unit_tests(promtool):
    result = run_tool([promtool, "test", "rules", RULE_TESTS])
    assert result.returncode == 0, output_of(result)
    assert "SUCCESS" in result.stdout


def test_promtool_checks_the_compose_prometheus_config_with_the_rules(promtool):
    result = run_tool([promtool, "check", "config", PROMETHEUS / "prometheus.yml"])
    assert result.returncode == 0, output_of(result)
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_a_broken_expectation_fails_the_unit_tests(promtool, tmp_path):
    # The unit tests compare labels and annotations; a wrong one must not pass.
    (tmp_path / "rules.yml").write_text(RULES.read_text())
    broken = RULE_TESTS.read_text().replace("instance: a}", "instance: b}", 1)
    assert broken != RULE_TESTS.read_text()
    (tmp_path / "rules.test.yml").write_text(broken)
    result = run_tool([promtool, "test", "rules", tmp_path / "rules.test.yml"])
    assert result.returncode != 0, output_of(result)


def test_every_rule_reads_only_metrics_a_live_worker_exports(exported):
    found = {rule["alert"]: problems(rule["expr"], exported) for rule in rules()}
    assert {alert: issue for alert, issue in found.items() if issue} == {}


def test_every_rule_has_a_severity_a_summary_and_a_description():
    for rule in rules():
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
        assert re.fullmatch(r"Driftstream[A-Z][A-Za-z]+", rule["alert"])


def test_every_rule_fires_in_a_unit_test():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert {rule["alert"] for rule in rules()} - firing == set()


def test_the_rules_cover_what_operators_page_on():
    names = {rule["alert"] for rule in rules()}
    assert {
        "DriftstreamWorkerDown",
        "DriftstreamConsumerLagGrowing",
        "DriftstreamDeadLetterRateHigh",
        "DriftstreamOutboxBacklog",
        "DriftstreamRedisErrors",
        "DriftstreamDriftAlertsOpen",
    } <= names
