"""deploy/grafana: the dashboard loads, and every query reads what a live worker exports."""

import json

import pytest
import yaml
from deploytools import ROOT
from promql import metric_names, problems

from driftstream.core import stats

GRAFANA = ROOT / "deploy" / "grafana"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def dashboard():
    return json.loads((GRAFANA / "driftstream.json").read_text())


def panels(dashboard):
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def queries(dashboard):
    """(panel title, expression) of every target, and of the template variables."""
    found = [
        (panel["title"], target["expr"])
        for panel in panels(dashboard)
        for target in panel["targets"]
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append((f"${variable['name']}", variable["query"]["query"]))
    return found


def test_every_query_reads_only_metrics_and_labels_a_live_worker_exports(dashboard, exported):
    found = {f"{title}: {expr}": problems(expr, exported) for title, expr in queries(dashboard)}
    assert {query: issue for query, issue in found.items() if issue} == {}
    assert all(metric_names(expr) for _, expr in queries(dashboard)), "a query reads no metric"


def test_the_panels_show_what_operators_watch(dashboard):
    read = {name for _, expr in queries(dashboard) for name in metric_names(expr)}
    assert {
        "driftstream_events_consumed_total",  # events/s
        "driftstream_consumer_lag_messages",
        "driftstream_invalid_events_total",  # by reason
        "driftstream_drift_statistic",
        "driftstream_alerts_published_total",  # by kind
        "driftstream_label_coverage_ratio",
        "driftstream_state_commit_seconds_bucket",
    } <= read
    exprs = [expr for _, expr in queries(dashboard)]
    assert any("invalid_events_total" in e and "by (reason" in e for e in exprs)
    assert any("alerts_published_total" in e and "by (kind)" in e for e in exprs)


def test_each_drift_statistic_panel_draws_the_default_threshold_and_critical_level(dashboard):
    drawn = {}
    for panel in panels(dashboard):
        target = panel["targets"][0]
        if "driftstream_drift_statistic" not in target["expr"]:
            continue
        assert len(panel["targets"]) == 1, panel["title"]
        name = target["expr"].split('statistic="')[1].split('"')[0]
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        drawn[name] = [step["value"] for step in steps[1:]]
        assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
    # chi2 is a p-value and off by default; every other statistic has its panel.
    assert set(drawn) == set(stats.STATISTICS) - {"chi2"}
    for name, values in drawn.items():
        info = stats.STATISTICS[name]
        assert values == [info.threshold, info.critical], name


def test_panels_use_the_datasource_variable_and_fit_the_grid(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"])
        assert panel["description"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_the_panels_do_not_overlap(dashboard):
    cells = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} covers {cells.get((x, y))}"
                cells[(x, y)] = panel["title"]


def test_grafana_provisioning_points_at_the_compose_prometheus_and_the_dashboard():
    provisioning = GRAFANA / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus"
    assert source["isDefault"] is True
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert source["url"] == "http://prometheus:9090"
    assert "9090:9090" in compose["services"]["prometheus"]["ports"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "driftstream.yml").read_text())[
        "providers"
    ]
    mounts = compose["services"]["grafana"]["volumes"]
    folder = provider["options"]["path"]
    assert f"./deploy/grafana/driftstream.json:{folder}/driftstream.json:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
