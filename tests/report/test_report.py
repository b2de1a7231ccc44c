"""The backtest's HTML report: one self-contained page, escaped, with a chart per series."""

from __future__ import annotations

import copy
import math
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from driftstream.report import render_report
from driftstream.report.svg import MAX_POINTS, downsample

START = 1767225600.0  # 2026-01-01 00:00:00 UTC
WINDOW = 60.0  # one judged window a minute, for an hour
WINDOWS = 60
EVIL = "<img src=x onerror=alert(1)>"
FRAUD = "fraud-detector"
CHURN = 'churn&co "v2"'


def series(
    base: float,
    shift: float = 0.0,
    shift_from: int | None = None,
    gaps: tuple[int, ...] = (),
    threshold: float | None = 0.1,
    baseline: float | None = None,
) -> list[dict[str, Any]]:
    """One point per window: a wobbling value, shifted from a window on, with gaps."""
    points = []
    for index in range(WINDOWS):
        value: float | None = base + 0.01 * math.sin(index / 3)
        if shift_from is not None and index >= shift_from:
            value = (value or 0.0) + shift
        if index in gaps:
            value = None
        point: dict[str, Any] = {
            "start": START + index * WINDOW,
            "end": START + (index + 1) * WINDOW,
            "value": value,
            "threshold": threshold,
            "count": 1000,
        }
        if baseline is not None:
            point["baseline"] = baseline
        points.append(point)
    return points


def alert(
    kind: str,
    model_id: str,
    feature: str,
    detector: str,
    statistic: str,
    window: int,
    value: float | None,
    threshold: float | None,
    reference: str = "baseline",
    severity: str = "warning",
) -> dict[str, Any]:
    """An alert as published, fired at the end of window ``window``."""
    time = START + (window + 1) * WINDOW
    return {
        "schema_version": 1,
        "alert_id": f"{window:04d}{kind[:4]:0<4}".ljust(32, "0"),
        "kind": kind,
        "severity": severity,
        "model_id": model_id,
        "model_version": "2026-11-01",
        "segment": {},
        "feature": feature,
        "detector": detector,
        "statistic": statistic,
        "value": value,
        "threshold": threshold,
        "window": {
            "start": time - WINDOW if detector == "window" else time,
            "end": time,
            "count": 1000 if detector == "window" else 0,
        },
        "source": {"topic": "predictions", "partition": 0, "offset": 1000 * (window + 1)},
        "event_time": time,
        "details": {"reference": reference, "role": "predictions"},
    }


def score(detected: int, missed: int, median: float | None, p90: float | None, per_day: float):
    return {
        "incidents": detected + missed,
        "detected": detected,
        "missed": missed,
        "delay_seconds_median": median,
        "delay_seconds_p90": p90,
        "delay_events_median": None if median is None else int(median * 10),
        "delay_events_p90": None if p90 is None else int(p90 * 10),
        "false_alarms": int(per_day / 24),
        "false_alarms_per_day": per_day,
        "performance": None,
    }


def fraud_alerts() -> list[dict[str, Any]]:
    return [
        alert("drift", FRAUD, "amount", "adwin", "mean_shift", 20, 0.71, 1e-05),
        alert("drift", FRAUD, "amount", "page_hinkley", "mean_shift", 20, 0.74, 75.0),
        alert("drift", FRAUD, "amount", "window", "psi", 20, 0.41, 0.1, severity="critical"),
        alert("drift", FRAUD, "amount", "window", "js", 21, 0.22, 0.1),
        alert("resolved", FRAUD, "amount", "window", "psi", 44, 0.05, 0.1, severity="info"),
        alert("drift", FRAUD, "amount", "window", "psi", 30, 0.3, 0.1, "previous_window"),
        alert("drift", FRAUD, "country", "window", "linf", 22, 0.35, 0.3),
        alert("drift", FRAUD, EVIL, "window", "psi", 50, 0.2, 0.1),
        alert("performance", FRAUD, "__performance__", "window", "accuracy", 45, 0.81, 0.88),
        alert("performance", FRAUD, "__performance__", "adwin", "error_rate", 43, 0.19, 1e-05),
        alert("performance", FRAUD, "__performance__", "ddm", "error_rate", 44, 0.2, 3.0),
        alert("quality", FRAUD, "__routing__", "routing", "partition_split", 5, None, None),
        alert("anomaly", FRAUD, "amount", "window", "outlier_rate", 33, 0.02, 0.01),
    ]


def sample_report() -> dict[str, Any]:
    """Two models, drift and performance alerts of every kind, incidents and a 3-setting sweep."""
    fraud = {
        "columns": {
            "amount": {
                "psi|baseline": series(0.03, 0.4, 20, gaps=(10, 11)),
                "js|baseline": series(0.02, 0.2, 20),
                "ks|baseline": series(0.05, 0.3, 20, threshold=0.2),
                "psi|previous_window": series(0.02, 0.25, 30, gaps=(0,)),
            },
            "country": {
                "linf|baseline": series(0.1, 0.25, 22, threshold=0.3),
                "chi2|baseline": series(12.0, 40.0, 22, threshold=30.0),
            },
            EVIL: {"psi|baseline": series(0.02, 0.18, 50)},
            "__score__": {"wasserstein|baseline": series(0.01, 0.5, 20)},
        },
        "alerts": fraud_alerts(),
        "performance": {
            "accuracy": series(0.92, -0.1, 40, gaps=(3, 4, 5), threshold=0.88, baseline=0.93),
            "roc_auc": series(0.95, -0.08, 40, gaps=(3, 4, 5), threshold=0.9, baseline=0.96),
        },
        "incidents": [
            {
                "start": START + 20 * WINDOW,
                "end": START + 45 * WINDOW,
                "features": ["amount", "country"],
                "note": "amount & country shift",
            },
            {"start": START + 40 * WINDOW, "end": None, "features": None, "note": None},
        ],
    }
    churn = {
        "columns": {"tenure": {"ks|baseline": series(0.04, threshold=0.1)}},
        "alerts": [],
        "performance": {},
        "incidents": [],
    }
    settings = [
        {
            "name": "models.fraud.detectors.page_hinkley.threshold=50",
            "values": {"models.fraud.detectors.page_hinkley.threshold": 50},
            "alerts": 13,
            "by_kind": {"drift": 7, "resolved": 1, "performance": 3, "quality": 1, "anomaly": 1},
            "score": score(2, 0, 41.0, 80.0, 2.0),
            "pareto": True,
        },
        {
            "name": "models.fraud.detectors.page_hinkley.threshold=75",
            "values": {"models.fraud.detectors.page_hinkley.threshold": 75},
            "alerts": 11,
            "by_kind": {"drift": 6, "resolved": 1, "performance": 3, "quality": 1},
            "score": score(1, 1, 95.0, 120.0, 3.0),
            "pareto": False,
        },
        {
            "name": "models.fraud.detectors.page_hinkley.threshold=100",
            "values": {"models.fraud.detectors.page_hinkley.threshold": 100},
            "alerts": 8,
            "by_kind": {"drift": 5, "resolved": 1, "performance": 1, "quality": 1},
            "score": score(1, 1, 130.0, 170.0, 0.0),
            "pareto": True,
        },
    ]
    return {
        "title": "driftstream backtest",
        "generated": "2026-11-29T02:30:00Z",
        "input": {
            "kind": "files",
            "description": "data/export.jsonl.gz (3 files)",
            "records": 60000,
            "start": START,
            "end": START + WINDOWS * WINDOW,
        },
        "settings": settings,
        "shown": 0,
        "models": {FRAUD: fraud, CHURN: churn},
        "incidents": [
            {
                "model_id": FRAUD,
                "start": START + 20 * WINDOW,
                "end": START + 45 * WINDOW,
                "note": "amount & country shift",
                "detected": True,
                "delay_seconds": 41.0,
                "delay_events": 410,
                "first_alert": {
                    "feature": "amount",
                    "detector": "adwin",
                    "statistic": "mean_shift",
                    "event_time": START + 20 * WINDOW + 41.0,
                },
            },
            {
                "model_id": FRAUD,
                "start": START + 40 * WINDOW,
                "end": None,
                "note": None,
                "detected": False,
                "delay_seconds": None,
                "delay_events": None,
                "first_alert": None,
            },
        ],
        "dead_letters": {"malformed_json": 3, "non_finite": 1},
    }


# One chart per statistic|reference, one detector strip per column with detector alerts,
# one chart per performance metric, one strip of error-stream detectors, one sweep scatter.
EXPECTED_CHARTS = (4 + 1) + 2 + 1 + 1 + (2 + 1) + 1 + 1


class StrictParser(HTMLParser):
    """Checks that every element is closed in order, and collects tags and attributes."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]} at {self.getpos()}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    return parser


def charts(page: str) -> dict[str, str]:
    """Every chart's markup by its title (the aria-label, still escaped)."""
    found = {}
    for match in re.finditer(r'<svg class="chart"[^>]*aria-label="([^"]*)"', page):
        end = page.index("</svg>", match.start())
        found[match.group(1)] = page[match.start() : end]
    return found


def markers(chart: str, css: str) -> int:
    """Alert markers (dots with a tooltip, unlike the legend's) of a colour class."""
    return len(re.findall(rf'<circle class="{css} mk" cx="[^"]+" cy="[^"]+" r="4.2">', chart))


def section(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    end = page.find("<h2", start)
    return page[start : end if end >= 0 else len(page)]


@pytest.fixture(scope="module")
def page() -> str:
    return render_report(sample_report())


def test_the_page_is_well_formed_html(page):
    parser = parse(page)
    assert page.startswith("<!DOCTYPE html>")
    assert [tag for tag, _ in parser.tags][:3] == ["html", "head", "meta"]


def test_the_page_needs_no_network(page):
    assert "http://" not in page and "https://" not in page
    for forbidden in ("<script", "<link", "@import", "url(", "<img", "<iframe"):
        assert forbidden not in page.lower()
    for tag, attrs in parse(page).tags:
        assert tag not in {"script", "link", "img", "iframe", "object", "embed", "image"}
        for name, value in attrs:
            assert name not in {"src", "srcset", "xlink:href"}
            assert not name.startswith("on")
            if name == "href":
                assert value is not None and value.startswith("#")


def test_user_strings_are_escaped(page):
    assert EVIL not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "churn&amp;co &quot;v2&quot;" in page
    assert "amount &amp; country shift" in page
    text = "".join(parse(page).text)
    assert EVIL in text and CHURN in text


def test_one_chart_per_series_strip_metric_and_sweep(page):
    assert page.count("<svg") == EXPECTED_CHARTS
    titles = set(charts(page))
    for title in (
        "amount · psi vs baseline",
        "amount · psi vs previous window",
        "amount · detector firings",
        "country · chi2 vs baseline",
        "&lt;img src=x onerror=alert(1)&gt; · psi vs baseline",
        "__score__ · wasserstein vs baseline",
        "accuracy on joined labels",
        "roc_auc on joined labels",
        "error-stream detector firings",
        "tenure · ks vs baseline",
        "Sweep: detection delay against false alarms",
    ):
        assert title in titles


def test_alerts_are_drawn_on_their_own_chart(page):
    found = charts(page)
    psi = found["amount · psi vs baseline"]
    assert (markers(psi, "al"), markers(psi, "ok")) == (1, 1)
    assert "threshold" in psi and "drift alert" in psi and "resolved" in psi
    previous = found["amount · psi vs previous window"]
    assert (markers(previous, "al"), markers(previous, "ok")) == (1, 0)
    assert markers(found["amount · ks vs baseline"], "al") == 0
    strip = found["amount · detector firings"]
    assert ">adwin<" in strip and ">page_hinkley<" in strip
    assert strip.count('<path class="al tk"') == 2 + 1  # two firings and the legend's
    accuracy = found["accuracy on joined labels"]
    assert markers(accuracy, "al") == 1 and "baseline" in accuracy
    errors = found["error-stream detector firings"]
    assert ">adwin<" in errors and ">ddm<" in errors


def test_alerts_no_chart_shows_are_listed(page):
    listed = section(page, "model-1")
    table = listed[listed.index("Alerts not charted") :]
    assert "partition_split" in table and "outlier_rate" in table
    assert "mean_shift" not in table  # on the detector strip


def test_incident_bands_follow_the_incident_columns(page):
    found = charts(page)

    def bands(chart: str) -> int:
        return len(re.findall(r'<rect class="inc" [^>]*><title>', chart))

    assert bands(found["amount · psi vs baseline"]) == 2
    assert bands(found["&lt;img src=x onerror=alert(1)&gt; · psi vs baseline"]) == 1
    assert bands(found["accuracy on joined labels"]) == 2
    assert bands(found["tenure · ks vs baseline"]) == 0


def test_gaps_break_the_line(page):
    accuracy = charts(page)["accuracy on joined labels"]
    assert accuracy.count('<polyline class="ln"') == 2  # one gap in the value line
    assert accuracy.count('<polyline class="bl"') == 1


def test_time_axis_and_summary_are_in_utc(page):
    psi = charts(page)["amount · psi vs baseline"]
    assert "01-01 00:15" in psi and "event time (UTC)" in psi
    summary = section(page, "summary")
    assert "2026-01-01 00:00:00 – 2026-01-01 01:00:00 UTC (1 h)" in summary
    assert "60,000" in summary and "data/export.jsonl.gz (3 files)" in summary
    assert "malformed_json 3" in summary and "non_finite 1" in summary
    assert ">drift</span> 7" in summary and ">performance</span> 3" in summary


def test_incidents_table_shows_delays_and_misses(page):
    incidents = section(page, "incidents")
    assert "41 s" in incidents and "410 events" in incidents
    assert "detected" in incidents and "missed" in incidents
    assert "end of data" in incidents
    assert "<code>amount</code> adwin / mean_shift at 2026-01-01 00:20:41" in incidents


def test_sweep_table_marks_the_pareto_settings(page):
    sweep = section(page, "sweep")
    rows = re.findall(r"<tr[^>]*><td class=\"num\">#(\d)</td>(.*?)</tr>", sweep)
    assert [index for index, _ in rows] == ["0", "1", "2"]
    assert ["Pareto" in row for _, row in rows] == [True, False, True]
    assert "41 s · 410 events" in rows[0][1] and "2 / 0" in rows[0][1]
    assert '<tr class="shown">' in sweep
    scatter = charts(page)["Sweep: detection delay against false alarms"]
    assert ">#0<" in scatter and ">#2<" in scatter and ">#1<" not in scatter
    assert "false alarms per day" in scatter and "median detection delay (s)" in scatter


def test_the_page_is_small(page):
    assert len(page.encode()) < 150_000


def test_without_a_sweep_there_is_no_scatter():
    report = sample_report()
    report["settings"] = [
        {
            "name": "config as given",
            "values": {},
            "alerts": 13,
            "by_kind": {"drift": 7},
            "score": None,
            "pareto": True,
        }
    ]
    report["incidents"] = []
    page = render_report(report)
    parse(page)
    assert page.count("<svg") == EXPECTED_CHARTS - 1
    assert 'id="sweep"' not in page
    assert "not scored" in page and "No known incidents" in page


def point(time: float, value: float | None, threshold: float | None = 0.1) -> dict[str, Any]:
    return {"start": time - 60, "end": time, "value": value, "threshold": threshold, "count": 5}


def empty_model() -> dict[str, Any]:
    return {"columns": {}, "alerts": [], "performance": {}, "incidents": []}


def one_model(**parts: Any) -> dict[str, Any]:
    report = sample_report()
    report["models"] = {"m": {**empty_model(), **parts}}
    report["input"] = {**report["input"], "start": None, "end": None}
    return report


DEGENERATE = {
    "nothing": {},
    "no models": {**sample_report(), "models": {}, "incidents": [], "settings": []},
    "empty model": one_model(),
    "single point": one_model(columns={"x": {"psi|baseline": [point(START, 0.2)]}}),
    "constant": one_model(
        columns={"x": {"psi|baseline": [point(START + i, 0.0) for i in range(9)]}}
    ),
    "all gaps": one_model(columns={"x": {"psi|baseline": [point(START, None, None)] * 3}}),
    "no times": one_model(columns={"x": {"psi|baseline": [{"start": None, "end": None}]}}),
    "alert only": one_model(
        alerts=[alert("drift", "m", "x", "adwin", "mean_shift", 1, None, None)]
    ),
    "bad values": one_model(
        columns={"x": {"psi|baseline": [point(START, float("nan")), point(START + 60, 1e300)]}},
        alerts=[{"kind": "drift", "event_time": None, "window": None}, "not an alert"],
        incidents=[{"start": None}, {"start": START, "end": START}],
    ),
    "shown out of range": {**sample_report(), "shown": 7},
    "huge numbers": one_model(
        performance={"mae": [point(START + i, 1e9 + i, 2e9) for i in range(3)]},
    ),
}


@pytest.mark.parametrize("report", DEGENERATE.values(), ids=DEGENERATE.keys())
def test_degenerate_inputs_render(report):
    page = render_report(copy.deepcopy(report))
    parse(page)
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")


def test_a_single_point_is_a_dot_and_a_constant_a_line():
    single = render_report(DEGENERATE["single point"])
    assert '<circle class="ln pt"' in single
    constant = render_report(DEGENERATE["constant"])
    assert constant.count('<polyline class="ln"') == 1


def test_many_windows_are_downsampled_but_keep_alert_windows():
    count = 50_000
    values = [0.05 + 0.02 * math.sin(index / 7) for index in range(count)]
    alerting = [12_345, 33_333]
    for index in alerting:
        values[index] = 0.05  # mid-range: only being an alert window keeps it
    raw = [point(START + 60 * index, value) for index, value in enumerate(values)]
    alerts = [
        {
            **alert("drift", "m", "x", "window", "psi", 0, 0.05, 0.1),
            "event_time": START + 60 * index,
        }
        for index in alerting
    ]
    page = render_report(one_model(columns={"x": {"psi|baseline": raw}}, alerts=alerts))
    parse(page)
    chart = next(chart for title, chart in charts(page).items() if title.startswith("x · psi"))
    drawn = re.findall(r'<polyline class="ln" points="([^"]*)"', chart)
    assert len(drawn) == 1
    assert len(drawn[0].split()) <= MAX_POINTS
    assert f"of {count} windows drawn" in chart
    assert markers(chart, "al") == len(alerting)
    assert len(page.encode()) < 100_000

    kept = downsample(values, keep=alerting)
    assert len(kept) <= MAX_POINTS
    assert set(alerting) <= set(kept)
    assert {values.index(max(values)), values.index(min(values))} <= set(kept)
