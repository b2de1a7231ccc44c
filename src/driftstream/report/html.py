"""The backtest report as one self-contained HTML page.

:func:`render_report` turns the replay's summary (the data it also writes to
``summary.json``) into a page that opens offline: inline CSS, inline SVG
charts from :mod:`driftstream.report.svg`, no script, no link to anything.
Model ids, feature names, notes and setting names are user input, so every
string taken from the data is escaped before it reaches the markup.

The page reads top to bottom: what was replayed, how well the shown setting
did against the known incidents, how the sweep's settings compare, then per
model a chart of every statistic over event time with its alerts and the
incidents shaded, and the model's performance on joined labels.

>>> page = render_report({"title": "a <b> test", "models": {}})
>>> page.startswith("<!DOCTYPE html>"), "a &lt;b&gt; test" in page, "<b>" in page
(True, True, False)
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from driftstream.report import svg

__all__ = ["render_report"]

PERFORMANCE = "__performance__"
ROUTING = "__routing__"
WINDOW = "window"
KINDS = ("drift", "resolved", "performance", "quality", "anomaly")
MAX_LISTED_ALERTS = 50  # rows of alerts that no chart shows, per model

PAGE_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f6f7f9;color:#1d2433;
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1240px;margin:0 auto;padding:18px 24px 48px;background:#fff}
h1{font-size:24px;margin:6px 0 2px}
h2{font-size:19px;margin:30px 0 8px;padding-bottom:4px;border-bottom:2px solid #e4e7ec}
h3{font-size:16px;margin:22px 0 6px}
h4{font-size:14px;margin:16px 0 6px}
p{margin:6px 0}
.muted{color:#667085;font-weight:normal}
nav{margin:8px 0 4px;font-size:13px}
nav a{margin-right:14px;color:#1f5fbf}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border-bottom:1px solid #e4e7ec;padding:4px 10px;text-align:left;vertical-align:top}
thead th{background:#f2f4f7;font-weight:600;white-space:nowrap}
table.kv th{background:none;font-weight:600;white-space:nowrap;color:#475467}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.shown td{background:#fffaeb}
td.id{white-space:nowrap}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;
 background:#f2f4f7;padding:0 3px;border-radius:3px;overflow-wrap:break-word}
.chip{display:inline-block;margin:0 6px 2px 0;padding:0 7px;border-radius:9px;
 background:#eef2f6;white-space:nowrap}
.drift,.missed,.performance{color:#b42318;font-weight:600}
.resolved,.detected{color:#067647;font-weight:600}
.quality,.anomaly{color:#b54708;font-weight:600}
.pareto{color:#b54708;font-weight:700;white-space:nowrap}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:10px 18px}
svg.chart{display:block;width:100%;height:auto;border:1px solid #eaecf0;border-radius:4px;
 background:#fff}
.wide{max-width:760px}
"""


def render_report(report: Mapping[str, Any]) -> str:
    """The whole page for one backtest summary (see the module docstring)."""
    title = str(report.get("title") or "driftstream backtest")
    settings = [item for item in _list(report.get("settings")) if isinstance(item, Mapping)]
    shown = _shown_setting(report, settings)
    models = _mapping(report.get("models"))
    source = _mapping(report.get("input"))
    span = (svg.finite(source.get("start")), svg.finite(source.get("end")))
    sections = [
        _summary(report, settings, shown),
        _score(shown),
        _incidents(_list(report.get("incidents"))),
        _sweep(settings, report.get("shown")),
    ]
    for number, (model_id, model) in enumerate(models.items(), start=1):
        sections.append(_model(number, str(model_id), _mapping(model), span))
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            f"<style>{PAGE_CSS}{svg.CSS}</style></head>\n<body><main>",
            f"<h1>{escape(title)}</h1>",
            _subtitle(report, shown),
            _contents(models, len(settings) > 1),
            *sections,
            "</main></body></html>\n",
        ]
    )


# --- plain values ------------------------------------------------------------


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _e(value: object) -> str:
    """Escaped text; a missing value is a dash."""
    return "—" if value is None else escape(str(value))


def _code(value: object) -> str:
    return f"<code>{_e(value)}</code>"


def number_text(value: object) -> str:
    """A number for a table: thousands separated, at most three significant decimals.

    >>> number_text(60000), number_text(41.0), number_text(0.5), number_text(0.0123456)
    ('60,000', '41', '0.5', '0.0123')
    >>> number_text(None), number_text(1234.5678)
    ('—', '1,234.6')
    """
    number = svg.finite(value)
    if number is None:
        return "—"
    if number == int(number) and abs(number) < 1e15:
        return f"{int(number):,}"
    if abs(number) >= 100:
        return f"{number:,.1f}"
    if abs(number) >= 1:
        return f"{number:.2f}".rstrip("0").rstrip(".")
    return f"{number:.3g}"


def utc_text(seconds: object) -> str:
    """Epoch seconds as a UTC date and time, or a dash.

    >>> utc_text(1767225600.0), utc_text(None)
    ('2026-01-01 00:00:00', '—')
    """
    number = svg.finite(seconds)
    return "—" if number is None else svg.time_text(number)


def duration_text(seconds: float) -> str:
    """A duration in the two largest units that matter.

    >>> duration_text(41), duration_text(3600), duration_text(3 * 86400 + 7200), duration_text(95)
    ('41 s', '1 h', '3 d 2 h', '1 min 35 s')
    """
    whole = round(seconds)
    if whole < 60:
        return f"{number_text(seconds) if seconds < 10 else whole} s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size} {unit}")
            whole %= size
        elif parts:
            parts.append("")
    return " ".join(part for part in parts[:2] if part)


def delay_text(seconds: object, events: object) -> str:
    """A detection delay in seconds and in events.

    >>> delay_text(41.0, 410), delay_text(None, None)
    ('41 s · 410 events', '—')
    """
    parts = []
    if svg.finite(seconds) is not None:
        parts.append(f"{number_text(seconds)} s")
    if svg.finite(events) is not None:
        parts.append(f"{number_text(events)} events")
    return " · ".join(parts) or "—"


def _kind_chips(counts: Mapping[str, Any]) -> str:
    chips = [
        f'<span class="chip"><span class="{_css_kind(kind)}">{_e(kind)}</span> '
        f"{number_text(count)}</span>"
        for kind, count in counts.items()
    ]
    return "".join(chips) or '<span class="muted">none</span>'


def _css_kind(kind: object) -> str:
    return str(kind) if kind in KINDS else "muted"


# --- page head and tables ----------------------------------------------------


def _shown_setting(
    report: Mapping[str, Any], settings: Sequence[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    index = report.get("shown")
    if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(settings):
        return settings[index]
    return settings[0] if len(settings) == 1 else None


def _subtitle(report: Mapping[str, Any], shown: Mapping[str, Any] | None) -> str:
    parts = [f"generated {_e(report.get('generated'))}"]
    if shown is not None:
        parts.append(f"alerts and charts for the setting {_code(shown.get('name'))}")
    return f'<p class="muted">{" · ".join(parts)}</p>'


def _contents(models: Mapping[str, Any], sweep: bool) -> str:
    links = ['<a href="#summary">Summary</a>', '<a href="#incidents">Incidents</a>']
    if sweep:
        links.append('<a href="#sweep">Sweep</a>')
    links += [
        f'<a href="#model-{number}">model {_e(model_id)}</a>'
        for number, model_id in enumerate(models, start=1)
    ]
    return f"<nav>{''.join(links)}</nav>"


def _summary(
    report: Mapping[str, Any],
    settings: Sequence[Mapping[str, Any]],
    shown: Mapping[str, Any] | None,
) -> str:
    source = _mapping(report.get("input"))
    start, end = svg.finite(source.get("start")), svg.finite(source.get("end"))
    if start is not None and end is not None:
        span = f"{utc_text(start)} – {utc_text(end)} UTC ({duration_text(max(end - start, 0))})"
    else:
        span = "unknown (no event times read)"
    models = _mapping(report.get("models"))
    if shown is not None:
        alerts = number_text(shown.get("alerts"))
        by_kind = _mapping(shown.get("by_kind"))
    else:
        counted = Counter(
            str(alert.get("kind"))
            for model in models.values()
            for alert in _list(_mapping(model).get("alerts"))
            if isinstance(alert, Mapping)
        )
        alerts, by_kind = number_text(sum(counted.values())), counted
    letters = {str(k): v for k, v in _mapping(report.get("dead_letters")).items()}
    total_letters = sum(svg.finite(count) or 0 for count in letters.values())
    letter_chips = "".join(
        f'<span class="chip">{_e(reason)} {number_text(count)}</span>'
        for reason, count in sorted(letters.items(), key=lambda item: -(svg.finite(item[1]) or 0))
    )
    kind, description = str(source.get("kind") or ""), str(source.get("description") or "")
    said = f"{_e(kind)}: " if kind and not description.startswith(kind) else ""
    rows = [
        ("Input", f"{said}{_code(description or None)}"),
        ("Records", number_text(source.get("records"))),
        ("Event time", span),
        ("Models", ", ".join(_code(model_id) for model_id in models) or "none"),
        ("Settings", f"{len(settings)}" + (" (a sweep)" if len(settings) > 1 else "")),
        ("Alerts", f"{alerts} &nbsp; {_kind_chips(by_kind)}"),
        ("Dead letters", f"{number_text(total_letters)} &nbsp; {letter_chips}"),
    ]
    body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return f'<h2 id="summary">Summary</h2><table class="kv">{body}</table>'


SCORE_COLUMNS = (
    ("incidents", "incidents"),
    ("detected", "detected"),
    ("missed", "missed"),
    ("median delay", "median"),
    ("p90 delay", "p90"),
    ("false alarms", "false_alarms"),
    ("false alarms / day", "false_alarms_per_day"),
)


def _delay(score: Mapping[str, Any], which: str) -> str:
    """A score's median or p90 delay, in seconds and events."""
    return delay_text(score.get(f"delay_seconds_{which}"), score.get(f"delay_events_{which}"))


def _score_cells(score: Mapping[str, Any]) -> str:
    cells = []
    for _, key in SCORE_COLUMNS:
        text = _delay(score, key) if key in ("median", "p90") else number_text(score.get(key))
        cells.append(f'<td class="num">{text}</td>')
    return "".join(cells)


def _score(shown: Mapping[str, Any] | None) -> str:
    heading = "<h2>Score</h2>"
    score = _mapping(shown.get("score")) if shown is not None else {}
    if not score:
        return heading + "<p>No known incidents were given, so the alerts are not scored.</p>"
    rows = [("drift, quality and anomaly alerts", score)]
    performance = _mapping(score.get("performance"))
    if performance:
        rows.append(("performance alerts", performance))
    head = "".join(f'<th class="num">{name}</th>' for name, _ in SCORE_COLUMNS)
    body = "".join(f"<tr><th>{name}</th>{_score_cells(values)}</tr>" for name, values in rows)
    return (
        f'{heading}<p class="muted">The shown setting\'s alerts against the known incidents; '
        "an alert outside every incident is a false alarm.</p>"
        f"<table><thead><tr><th>scored</th>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _first_alert(alert: object) -> str:
    first = _mapping(alert)
    if not first:
        return "—"
    return (
        f"{_code(first.get('feature'))} {_e(first.get('detector'))} / "
        f"{_e(first.get('statistic'))} at {utc_text(first.get('event_time'))}"
    )


def _incidents(incidents: Sequence[Any]) -> str:
    heading = '<h2 id="incidents">Incidents</h2>'
    rows = []
    for incident in (item for item in incidents if isinstance(item, Mapping)):
        detected = incident.get("detected")
        status = (
            '<span class="detected">detected</span>'
            if detected
            else ('<span class="missed">missed</span>')
        )
        end = incident.get("end")
        rows.append(
            f'<tr><td class="id">{_code(incident.get("model_id"))}</td>'
            f'<td class="num">{utc_text(incident.get("start"))}</td>'
            f'<td class="num">{"end of data" if end is None else utc_text(end)}</td>'
            f"<td>{_e(incident.get('note')) if incident.get('note') else ''}</td>"
            f"<td>{status}</td>"
            f'<td class="num">{delay_text(incident.get("delay_seconds"), None)}</td>'
            f'<td class="num">{delay_text(None, incident.get("delay_events"))}</td>'
            f"<td>{_first_alert(incident.get('first_alert'))}</td></tr>"
        )
    if not rows:
        return heading + "<p>No known incidents were given for this replay.</p>"
    head = (
        "<tr><th>model</th><th>start (UTC)</th><th>end (UTC)</th><th>note</th><th>result</th>"
        '<th class="num">delay</th><th class="num">delay (events)</th><th>first alert</th></tr>'
    )
    return f"{heading}<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _sweep(settings: Sequence[Mapping[str, Any]], shown: object) -> str:
    if len(settings) <= 1:
        return ""
    rows = []
    points = []
    for index, setting in enumerate(settings):
        score = _mapping(setting.get("score"))
        pareto = setting.get("pareto") is True
        found = (
            f"{number_text(score.get('detected'))} / {number_text(score.get('missed'))}"
            if score
            else "—"
        )
        mark = '<span class="pareto">◆ Pareto</span>' if pareto else ""
        css = ' class="shown"' if index == shown else ""
        name = _code(setting.get("name")) + (' <span class="muted">(shown)</span>' if css else "")
        rows.append(
            f'<tr{css}><td class="num">#{index}</td><td>{name}</td>'
            f'<td class="num">{number_text(setting.get("alerts"))}</td>'
            f'<td class="num">{found}</td>'
            f'<td class="num">{_delay(score, "median")}</td>'
            f'<td class="num">{_delay(score, "p90")}</td>'
            f'<td class="num">{number_text(score.get("false_alarms_per_day"))}</td>'
            f"<td>{mark}</td></tr>"
        )
        x = svg.finite(score.get("false_alarms_per_day"))
        y = svg.finite(score.get("delay_seconds_median"))
        if x is not None and y is not None:
            tip = (
                f"#{index} {setting.get('name')}: {number_text(x)} false alarms/day, "
                f"median delay {number_text(y)} s"
            )
            points.append(svg.ScatterPoint(x, y, f"#{index}", pareto, tip))
    head = (
        '<tr><th class="num">#</th><th>setting</th><th class="num">alerts</th>'
        '<th class="num">detected / missed</th><th class="num">median delay</th>'
        '<th class="num">p90 delay</th><th class="num">false alarms / day</th><th></th></tr>'
    )
    table = f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
    if points:
        chart = svg.scatter_chart(
            "Sweep: detection delay against false alarms",
            "false alarms per day",
            "median detection delay (s)",
            points,
        )
        missing = len(settings) - len(points)
        note = (
            f'<p class="muted">{missing} setting(s) not plotted: no score or nothing detected.</p>'
            if missing
            else ""
        )
        figure = f'<div class="wide">{chart}</div>{note}'
    else:
        figure = "<p>No setting detected an incident, so there is no delay to plot.</p>"
    intro = (
        '<p class="muted">One row per setting. ◆ Pareto: no other setting is both faster '
        "(median delay) and quieter (false alarms per day).</p>"
    )
    return f'<h2 id="sweep">Sweep</h2>{intro}{table}{figure}'


# --- one model -----------------------------------------------------------------


class _Point:
    """One judged window, read defensively from the summary's plain data."""

    __slots__ = ("baseline", "end", "start", "threshold", "value", "x")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.start = svg.finite(raw.get("start"))
        self.end = svg.finite(raw.get("end"))
        self.x = self.end if self.end is not None else self.start
        self.value = svg.finite(raw.get("value"))
        self.threshold = svg.finite(raw.get("threshold"))
        self.baseline = svg.finite(raw.get("baseline"))


def _points(raw: object) -> list[_Point]:
    """The series' windows that have a time, in time order."""
    points = [_Point(item) for item in _list(raw) if isinstance(item, Mapping)]
    return sorted((point for point in points if point.x is not None), key=_point_time)


def _point_time(point: _Point) -> float:
    return point.x if point.x is not None else 0.0


def _alert_time(alert: Mapping[str, Any]) -> float | None:
    time = svg.finite(alert.get("event_time"))
    return time if time is not None else svg.finite(_mapping(alert.get("window")).get("end"))


def _time_domain(
    model: Mapping[str, Any], span: tuple[float | None, float | None]
) -> tuple[float, float] | None:
    """The time axis of every chart of a model: the input's range and all of its data."""
    times = [time for time in span if time is not None]
    for series in _mapping(model.get("columns")).values():
        for raw in _mapping(series).values():
            times += [point.x for point in _points(raw) if point.x is not None]
    for raw in _mapping(model.get("performance")).values():
        times += [point.x for point in _points(raw) if point.x is not None]
    for alert in _list(model.get("alerts")):
        time = _alert_time(_mapping(alert))
        times += [] if time is None else [time]
    for incident in _list(model.get("incidents")):
        for key in ("start", "end"):
            time = svg.finite(_mapping(incident).get(key))
            times += [] if time is None else [time]
    if not times:
        return None
    return svg.widen_time(min(times), max(times))


def _bands(incidents: Iterable[Mapping[str, Any]], column: str | None) -> list[svg.Band]:
    """Incident bands for a column's charts (``None``: performance, where every incident counts).

    An incident names the columns it moved; one that names none (``None``)
    concerns them all. Any incident can cost the model accuracy, so the
    performance charts shade every one.
    """
    bands = []
    for incident in incidents:
        features = incident.get("features")
        if column is not None and isinstance(features, list) and column not in features:
            continue
        start = svg.finite(incident.get("start"))
        if start is None:
            continue
        end = svg.finite(incident.get("end"))
        note = incident.get("note")
        until = "end of data" if end is None else utc_text(end)
        tip = f"incident{': ' + str(note) if note else ''} ({utc_text(start)} – {until} UTC)"
        bands.append(svg.Band(start, end, tip))
    return bands


_MARKER_STYLE = {
    "drift": ("al", "drift alert"),
    "performance": ("al", "performance alert"),
    "resolved": ("ok", "resolved"),
}


def _alert_tip(alert: Mapping[str, Any]) -> str:
    value, threshold = svg.finite(alert.get("value")), svg.finite(alert.get("threshold"))
    return (
        f"{alert.get('kind')} ({alert.get('severity')}) at {utc_text(_alert_time(alert))} UTC: "
        f"{alert.get('detector')} {alert.get('statistic')} = {number_text(value)}, "
        f"threshold {number_text(threshold)}"
    )


def _nearest(times: Sequence[float], time: float) -> int:
    """Index of the window whose time is nearest to ``time`` (``times`` sorted, not empty)."""
    index = bisect.bisect_left(times, time)
    if index == len(times):
        return index - 1
    if index > 0 and time - times[index - 1] < times[index] - time:
        return index - 1
    return index


def _line_chart(
    title: str,
    y_label: str,
    points: Sequence[_Point],
    alerts: Sequence[Mapping[str, Any]],
    bands: Sequence[svg.Band],
    domain: tuple[float, float],
    performance: bool,
) -> str:
    """A value over time against its threshold (and baseline), alerts as markers."""
    times = [_point_time(point) for point in points]
    markers = []
    keep = []
    for alert in alerts:
        time = _alert_time(alert)
        if time is None:
            continue
        y = svg.finite(alert.get("value"))
        if times:
            nearest = _nearest(times, time)
            keep.append(nearest)
            y = y if y is not None else points[nearest].value
        css, label = _MARKER_STYLE.get(str(alert.get("kind")), ("ot", str(alert.get("kind"))))
        markers.append(svg.Marker(time, y, css, label, _alert_tip(alert)))
    chosen = [points[index] for index in svg.downsample([p.value for p in points], keep)]
    xs = [_point_time(point) for point in chosen]
    lines = [svg.Line("value", xs, [point.value for point in chosen], "ln")]
    if performance:
        lines.append(svg.Line("baseline", xs, [point.baseline for point in chosen], "bl"))
    lines.append(svg.Line("threshold", xs, [point.threshold for point in chosen], "th"))
    if len(chosen) < len(points):
        title = f"{title} ({len(chosen)} of {len(points)} windows drawn)"
    return svg.time_chart(
        title, y_label, domain, lines, markers, bands, include_zero=not performance
    )


def _strip(
    title: str,
    alerts: Sequence[Mapping[str, Any]],
    bands: Sequence[svg.Band],
    domain: tuple[float, float],
) -> str:
    """Sequential detector firings, one row per detector (and statistic, when it has several)."""
    statistics: dict[str, set[str]] = {}
    for alert in alerts:
        statistics.setdefault(str(alert.get("detector")), set()).add(str(alert.get("statistic")))
    rows: list[str] = []
    ticks = []
    for alert in alerts:
        time = _alert_time(alert)
        if time is None:
            continue
        detector = str(alert.get("detector"))
        row = detector
        if len(statistics[detector]) > 1:
            row = f"{detector}/{alert.get('statistic')}"
        if row not in rows:
            rows.append(row)
        css, label = _MARKER_STYLE.get(str(alert.get("kind")), ("ot", str(alert.get("kind"))))
        ticks.append(svg.Tick(time, rows.index(row), css, label, _alert_tip(alert)))
    return svg.firing_strip(title, domain, rows, ticks, bands)


def _reference_text(reference: str) -> str:
    return {"baseline": "baseline", "previous_window": "previous window"}.get(
        reference, reference or "?"
    )


def _same_reference(alert: Mapping[str, Any], reference: str) -> bool:
    """Whether a window alert judged against ``reference`` (alerts name it in details)."""
    named = _mapping(alert.get("details")).get("reference")
    if not isinstance(named, str) or not named or not reference:
        return True
    return named.startswith(reference) or reference.startswith(named)


def _model(
    number: int, model_id: str, model: Mapping[str, Any], span: tuple[float | None, float | None]
) -> str:
    alerts = [alert for alert in _list(model.get("alerts")) if isinstance(alert, Mapping)]
    incidents = [item for item in _list(model.get("incidents")) if isinstance(item, Mapping)]
    columns = _mapping(model.get("columns"))
    performance = _mapping(model.get("performance"))
    counts = Counter(str(alert.get("kind")) for alert in alerts)
    heading = f'<h2 id="model-{number}">Model {_code(model_id)}</h2>'
    facts = (
        f"<p>{len(alerts)} alerts &nbsp; {_kind_chips(counts)} · "
        f"{len(incidents)} known incident(s) · {len(columns)} column(s) charted</p>"
    )
    domain = _time_domain(model, span)
    if domain is None:
        return heading + "<p>No windows were judged and no alerts raised for this model.</p>"
    drawn: set[int] = set()
    parts = [heading, facts, '<h3>Input drift</h3><p class="muted">']
    parts.append(
        "Each statistic per window against its threshold (dashed); red dots are drift alerts, "
        "green ones resolutions; shaded bands are the known incidents.</p>"
    )
    feature_parts = [
        _column(column, _mapping(columns.get(column)), alerts, incidents, domain, drawn)
        for column in _column_order(columns, alerts)
    ]
    parts += feature_parts if any(feature_parts) else ["<p>No column was charted.</p>"]
    parts.append(_performance(performance, alerts, incidents, domain, drawn))
    parts.append(_other_alerts([alert for alert in alerts if id(alert) not in drawn]))
    return "".join(parts)


def _column_order(columns: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]]) -> list[str]:
    """Charted columns in the summary's order, then columns that only detectors watched."""
    order = [str(column) for column in columns]
    for alert in alerts:
        feature = str(alert.get("feature"))
        detector = alert.get("detector")
        if feature in (PERFORMANCE, ROUTING) or detector == WINDOW or feature in order:
            continue
        if alert.get("kind") in ("drift", "resolved"):
            order.append(feature)
    return order


def _column(
    column: str,
    series: Mapping[str, Any],
    alerts: Sequence[Mapping[str, Any]],
    incidents: Sequence[Mapping[str, Any]],
    domain: tuple[float, float],
    drawn: set[int],
) -> str:
    """One column's charts: each statistic against each reference, then detector firings."""
    own = [
        alert
        for alert in alerts
        if alert.get("feature") == column and alert.get("kind") in ("drift", "resolved")
    ]
    bands = _bands(incidents, column)
    charts = []
    for key, raw in series.items():
        if not isinstance(raw, list):  # not a series of windows: nothing to draw
            continue
        statistic, _, reference = str(key).partition("|")
        matching = [
            alert
            for alert in own
            if alert.get("detector") == WINDOW
            and alert.get("statistic") == statistic
            and _same_reference(alert, reference)
        ]
        drawn.update(id(alert) for alert in matching)
        title = f"{column} · {statistic} vs {_reference_text(reference)}"
        charts.append(_line_chart(title, statistic, _points(raw), matching, bands, domain, False))
    firings = [alert for alert in own if alert.get("detector") != WINDOW]
    if firings:
        drawn.update(id(alert) for alert in firings)
        charts.append(_strip(f"{column} · detector firings", firings, bands, domain))
    if not charts:
        return ""
    counts = Counter(str(alert.get("kind")) for alert in own)
    summary = ", ".join(f"{count} {kind}" for kind, count in counts.items()) or "no alerts"
    return (
        f'<h4>{_code(column)} <span class="muted">{summary}</span></h4>'
        f'<div class="grid">{"".join(charts)}</div>'
    )


def _performance(
    performance: Mapping[str, Any],
    alerts: Sequence[Mapping[str, Any]],
    incidents: Sequence[Mapping[str, Any]],
    domain: tuple[float, float],
    drawn: set[int],
) -> str:
    """Windowed metrics on joined labels, and the error-stream detectors' firings."""
    heading = "<h3>Performance on joined labels</h3>"
    own = [
        alert
        for alert in alerts
        if alert.get("feature") == PERFORMANCE
        or (alert.get("kind") == "performance" and alert.get("feature") != ROUTING)
    ]
    bands = _bands(incidents, None)
    charts = []
    for metric, raw in performance.items():
        matching = [
            alert
            for alert in own
            if alert.get("detector") == WINDOW and alert.get("statistic") == metric
        ]
        drawn.update(id(alert) for alert in matching)
        title = f"{metric} on joined labels"
        charts.append(_line_chart(title, str(metric), _points(raw), matching, bands, domain, True))
    firings = [alert for alert in own if id(alert) not in drawn and alert.get("detector") != WINDOW]
    if firings:
        drawn.update(id(alert) for alert in firings)
        charts.append(_strip("error-stream detector firings", firings, bands, domain))
    if not charts:
        return heading + "<p>No labels were joined, so there is no performance to chart.</p>"
    intro = (
        '<p class="muted">Each metric per window of joined predictions and labels, with the '
        "baseline's value (dotted) and the alert threshold (dashed); red dots are performance "
        "alerts.</p>"
    )
    return f'{heading}{intro}<div class="grid">{"".join(charts)}</div>'


def _other_alerts(alerts: Sequence[Mapping[str, Any]]) -> str:
    """Alerts that no chart shows (quality, anomaly, statistics without a timeline)."""
    if not alerts:
        return ""
    ordered = sorted(alerts, key=lambda alert: _alert_time(alert) or 0.0)
    rows = [
        f'<tr><td class="num">{utc_text(_alert_time(alert))}</td>'
        f'<td><span class="{_css_kind(alert.get("kind"))}">{_e(alert.get("kind"))}</span></td>'
        f"<td>{_e(alert.get('severity'))}</td><td>{_code(alert.get('feature'))}</td>"
        f"<td>{_e(alert.get('detector'))}</td><td>{_e(alert.get('statistic'))}</td>"
        f'<td class="num">{number_text(alert.get("value"))}</td>'
        f'<td class="num">{number_text(alert.get("threshold"))}</td></tr>'
        for alert in ordered[:MAX_LISTED_ALERTS]
    ]
    more = len(ordered) - MAX_LISTED_ALERTS
    note = f'<p class="muted">… and {more} more, not listed.</p>' if more > 0 else ""
    head = (
        "<tr><th>event time (UTC)</th><th>kind</th><th>severity</th><th>column</th>"
        '<th>detector</th><th>statistic</th><th class="num">value</th>'
        '<th class="num">threshold</th></tr>'
    )
    return (
        "<h3>Alerts not charted</h3>"
        f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>{note}"
    )
