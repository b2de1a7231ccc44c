"""Small inline SVG charts for the backtest report, in plain Python.

The report must open offline as one file, so it carries no plotting library
and no script: every chart here is an ``<svg>`` string with a ``viewBox``,
styled by the classes in :data:`CSS`, which the page puts in its ``<style>``
block once instead of repeating colours in every element.

Three charts cover the report:

- :func:`time_chart`: lines over event time (a value, a dashed threshold,
  a dotted baseline) with alert markers and shaded incident bands;
- :func:`firing_strip`: one row per sequential detector, a tick where it fired;
- :func:`scatter_chart`: the sweep, false alarms against detection delay.

Every string that reaches the markup goes through :func:`html.escape`: titles,
labels and tooltips come from user data (model ids, feature names).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

__all__ = [
    "CSS",
    "MAX_POINTS",
    "Band",
    "Line",
    "Marker",
    "ScatterPoint",
    "Tick",
    "downsample",
    "finite",
    "firing_strip",
    "linear_ticks",
    "nice_domain",
    "nice_step",
    "scatter_chart",
    "tick_labels",
    "time_chart",
    "time_text",
    "time_ticks",
    "widen_time",
]

MAX_POINTS = 600  # per drawn series: enough for a 500-pixel-wide plot

WIDTH = 560
HEIGHT = 236
LEFT = 84  # room for tick labels, the rotated axis label and detector names
RIGHT = 18
TOP = 50  # a title line and a legend line
BOTTOM = 42  # tick labels and the axis label
CHAR_WIDTH = 6.2  # rough width of one character at the 11 px chart font
STRIP_ROW = 22
MIN_TIME_SPAN = 60.0  # seconds; a narrower time axis has unreadable ticks

# Colours by role, shared by every chart. ``mk`` comes after the colours so a
# marker's white outline wins over its colour class's stroke.
CSS = """
svg.chart text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
 font-size:11px;fill:#344054}
svg.chart .ttl{font-size:13px;font-weight:600;fill:#101828}
svg.chart .axl{fill:#475467}
svg.chart .tkl{font-size:10.5px;fill:#475467}
svg.chart .ax{stroke:#98a2b3;stroke-width:1}
svg.chart .gr{stroke:#eaecf0;stroke-width:1}
svg.chart .ln{stroke:#1f5fbf;stroke-width:1.7;fill:none}
svg.chart .ln.pt{fill:#1f5fbf;stroke:none}
svg.chart .th{stroke:#344054;stroke-width:1.3;stroke-dasharray:6 4;fill:none}
svg.chart .th.pt{fill:#344054;stroke:none}
svg.chart .bl{stroke:#0e9384;stroke-width:1.6;stroke-dasharray:2 3;fill:none}
svg.chart .bl.pt{fill:#0e9384;stroke:none}
svg.chart .al{fill:#d92d20;stroke:#d92d20}
svg.chart .ok{fill:#12b76a;stroke:#12b76a}
svg.chart .ot{fill:#f79009;stroke:#f79009}
svg.chart .st{fill:#98a2b3;stroke:#98a2b3}
svg.chart .pf{fill:#f79009;stroke:#b54708}
svg.chart .fr{stroke:#f79009;stroke-width:1.3;stroke-dasharray:4 3;fill:none}
svg.chart .tk{stroke-width:2}
svg.chart .mk{stroke:#fff;stroke-width:1.2}
svg.chart .inc{fill:#fdb022;fill-opacity:.22;stroke:none}
svg.chart .nd{fill:#98a2b3;font-style:italic}
"""


@dataclass(frozen=True)
class Line:
    """A series drawn as a polyline, broken where ``ys`` holds ``None``."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    css: str  # "ln" value, "th" threshold, "bl" baseline


@dataclass(frozen=True)
class Marker:
    """One alert on a time chart: a dot at ``x`` (top edge when ``y`` is ``None``)."""

    x: float
    y: float | None
    css: str  # "al" alert, "ok" resolved, "ot" other
    label: str  # its legend entry
    tip: str  # its tooltip


@dataclass(frozen=True)
class Band:
    """A shaded span of event time (an incident); ``end`` ``None`` runs to the axis end."""

    start: float
    end: float | None
    tip: str


@dataclass(frozen=True)
class Tick:
    """One detector firing on a strip: a coloured tick in row ``row`` at ``x``."""

    x: float
    row: int
    css: str
    label: str
    tip: str


@dataclass(frozen=True)
class ScatterPoint:
    """One sweep setting; ``highlight`` marks the Pareto front and gets ``label`` drawn."""

    x: float
    y: float
    label: str
    highlight: bool
    tip: str


def finite(value: object) -> float | None:
    """``value`` as a float if it is a finite number (bools are not), else ``None``.

    >>> finite(3), finite(None), finite(float("nan")), finite(True), finite("1")
    (3.0, None, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def downsample(
    ys: Sequence[float | None], keep: Iterable[int] = (), limit: int = MAX_POINTS
) -> list[int]:
    """Indices of at most about ``limit`` points that keep a series' shape.

    The series is cut into equal runs and each run keeps its lowest and its
    highest value and one gap (``None``), so spikes and gaps survive where an
    even stride would skip them. The first and last points and every index in
    ``keep`` (the windows where alerts fired) always stay, even past ``limit``.

    >>> values = [float(i % 7) for i in range(100_000)]
    >>> kept = downsample(values, keep=[54_321], limit=600)
    >>> len(kept) <= 600, 54_321 in kept, kept[0], kept[-1]
    (True, True, 0, 99999)
    >>> downsample([1.0, None, 2.0], limit=600)
    [0, 1, 2]
    """
    count = len(ys)
    if count <= limit:
        return list(range(count))
    kept = {index for index in keep if 0 <= index < count} | {0, count - 1}
    runs = max(1, (limit - len(kept)) // 3)
    size = count / runs
    for run in range(runs):
        low, high = int(run * size), min(count, int((run + 1) * size))
        lowest = highest = gap = None
        least = most = 0.0
        for index in range(low, high):
            value = ys[index]
            if value is None:
                gap = index if gap is None else gap
            elif lowest is None or highest is None:
                lowest = highest = index
                least = most = value
            elif value < least:
                lowest, least = index, value
            elif value > most:
                highest, most = index, value
        kept.update(index for index in (lowest, highest, gap) if index is not None)
    return sorted(kept)


def nice_step(span: float, count: int) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about ``count`` steps.

    >>> nice_step(1.0, 4), nice_step(0.37, 4), nice_step(7300, 5)
    (0.25, 0.1, 2000.0)
    """
    if not math.isfinite(span) or span <= 0:
        return 1.0
    raw = span / max(count, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0):
        if raw <= factor * magnitude * (1 + 1e-9):
            return factor * magnitude
    return 10.0 * magnitude


def nice_domain(
    values: Iterable[float | None], include_zero: bool = False, steps: int = 4
) -> tuple[float, float]:
    """A y range with round ends that holds every finite value in ``values``.

    A constant series gets room around it, so its line sits mid-chart
    rather than on an edge.

    >>> nice_domain([0.02, 0.31], include_zero=True)
    (0.0, 0.4)
    >>> nice_domain([5.0, 5.0])
    (4.5, 5.5)
    >>> nice_domain([])
    (0.0, 1.0)
    """
    numbers = [value for value in values if value is not None and math.isfinite(value)]
    if not numbers:
        return 0.0, 1.0
    low, high = min(numbers), max(numbers)
    if include_zero:
        low, high = min(low, 0.0), max(high, 0.0)
    if high - low <= abs(high) * 1e-12:
        pad = abs(high) * 0.1 or 1.0
        low, high = (low if include_zero and low == 0 else low - pad), high + pad
    else:  # headroom, so a value or threshold at the maximum does not sit on the frame
        high += (high - low) * 0.04
    step = nice_step(high - low, steps)
    bottom, top = math.floor(low / step) * step, math.ceil(high / step) * step
    if not (math.isfinite(bottom) and math.isfinite(top)) or top <= bottom:
        return low, high
    return bottom, top


def linear_ticks(low: float, high: float, steps: int = 4) -> tuple[list[float], float]:
    """Round tick values between ``low`` and ``high``, and the step between them.

    >>> linear_ticks(0.0, 0.4)
    ([0.0, 0.1, 0.2, 0.3, 0.4], 0.1)
    """
    step = nice_step(high - low, steps)
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    if not (math.isfinite(first) and math.isfinite(last)) or last - first > 20:
        return [low, high], high - low
    # Through text so 3 × 0.1 prints as 0.3, not 0.30000000000000004.
    return [float(f"{index * step:.12g}") for index in range(int(first), int(last) + 1)], step


def tick_labels(ticks: Sequence[float], step: float) -> list[str]:
    """Tick values printed with as many decimals as their step needs.

    >>> tick_labels([0.0, 0.25, 0.5], 0.25)
    ['0', '0.25', '0.5']
    >>> tick_labels([0.0, 2e-05], 2e-05)
    ['0', '2e-05']
    >>> tick_labels([0.0, 2_000_000.0], 2_000_000.0)
    ['0', '2e+06']
    """
    biggest = max((abs(tick) for tick in ticks), default=0.0)
    if step <= 0 or not math.isfinite(step) or biggest >= 1e6 or step < 1e-3:
        labels = [f"{tick:.3g}" for tick in ticks]
    else:
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        if round(step * 10**decimals) != step * 10**decimals:  # 2.5 × 10^k needs one more
            decimals += 1
        labels = [f"{tick:.{decimals}f}" for tick in ticks]
        labels = [label.rstrip("0").rstrip(".") if "." in label else label for label in labels]
    return ["0" if label in ("-0", "0.0", "-0.0") else label for label in labels]


_TIME_STEPS = (
    1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200,
    86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400, 182 * 86400,
    365 * 86400,
)  # fmt: skip


def time_ticks(start: float, end: float, max_count: int) -> tuple[list[float], str]:
    """Tick times on round UTC boundaries and the ``strftime`` format to print them.

    >>> ticks, fmt = time_ticks(1767225600.0, 1767229200.0, 5)
    >>> [time_text(tick, fmt) for tick in ticks]
    ['01-01 00:00', '01-01 00:15', '01-01 00:30', '01-01 00:45', '01-01 01:00']
    """
    span = max(end - start, 1e-9)
    step = float(_TIME_STEPS[-1])
    for candidate in _TIME_STEPS:
        if span / candidate <= max(max_count - 1, 1):
            step = float(candidate)
            break
    else:
        while span / step > max(max_count - 1, 1):
            step *= 2
    first = math.ceil(start / step - 1e-9)
    ticks: list[float] = []
    index = first
    while index * step <= end + 1e-9 and len(ticks) <= max_count:
        ticks.append(index * step)
        index += 1
    if step < 60:
        fmt = "%H:%M:%S"
    elif step < 86400:
        fmt = "%m-%d %H:%M"
    else:
        fmt = "%Y-%m-%d"
    return ticks, fmt


def time_text(seconds: float, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Epoch seconds printed in UTC (the raw number if no calendar holds it).

    >>> time_text(1767225600.0)
    '2026-01-01 00:00:00'
    """
    try:
        return datetime.fromtimestamp(seconds, tz=UTC).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return f"{seconds:g}"


def widen_time(start: float, end: float) -> tuple[float, float]:
    """A time axis at least :data:`MIN_TIME_SPAN` wide, centred on the data.

    >>> widen_time(100.0, 100.0)
    (70.0, 130.0)
    """
    if end - start >= MIN_TIME_SPAN:
        return start, end
    middle = (start + end) / 2
    return middle - MIN_TIME_SPAN / 2, middle + MIN_TIME_SPAN / 2


class _Scale:
    """Maps a data interval linearly onto a pixel interval."""

    def __init__(self, domain: tuple[float, float], pixels: tuple[float, float]) -> None:
        self.low, self.high = domain
        self.start, self.end = pixels
        width = self.high - self.low
        self.ratio = (self.end - self.start) / width if width > 0 else 0.0

    def __call__(self, value: float) -> float:
        pixel = self.start + (value - self.low) * self.ratio
        low, high = sorted((self.start, self.end))
        return min(max(pixel, low - 1.0), high + 1.0)  # a stray value stays at the edge


def _n(value: float) -> str:
    """A pixel coordinate with one decimal: enough on screen, short in the file."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _clip(text: str, pixels: float) -> str:
    """``text`` cut with an ellipsis to fit about ``pixels`` of chart text."""
    room = max(4, int(pixels / CHAR_WIDTH))
    return text if len(text) <= room else text[: room - 1] + "…"


def _text(x: float, y: float, text: str, css: str = "", anchor: str = "start") -> str:
    cls = f' class="{css}"' if css else ""
    align = "" if anchor == "start" else f' text-anchor="{anchor}"'
    return f'<text x="{_n(x)}" y="{_n(y)}"{cls}{align}>{escape(text)}</text>'


def _edge_text(x: float, y: float, text: str, width: float) -> str:
    """A tick label centred on ``x``, or flush with the chart's edge if it would run off it."""
    half = len(text) * CHAR_WIDTH * 0.85 / 2  # tick labels are the smaller font
    if x + half > width - 2:
        return _text(width - 2, y, text, "tkl", "end")
    if x - half < 2:
        return _text(2, y, text, "tkl")
    return _text(x, y, text, "tkl", "middle")


def _open(width: int, height: int, title: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
    )


def _heading(title: str, width: int) -> str:
    return _text(10, 18, _clip(title, width - 20), "ttl")


def _legend(entries: Sequence[tuple[str, str, str]], width: int) -> str:
    """One legend line under the title; entries are (shape, css class, label)."""
    parts: list[str] = []
    x = float(LEFT)
    seen: set[tuple[str, str, str]] = set()
    for entry in entries:
        if entry in seen:
            continue
        seen.add(entry)
        shape, css, label = entry
        y = 36.0
        if shape == "line":
            parts.append(f'<path class="{css}" d="M{_n(x)} {_n(y - 4)}h18"/>')
        elif shape == "band":
            parts.append(
                f'<rect class="{css}" x="{_n(x)}" y="{_n(y - 10)}" width="18" height="12"/>'
            )
        elif shape == "tick":
            parts.append(f'<path class="{css} tk" d="M{_n(x + 9)} {_n(y - 11)}v14"/>')
        else:
            parts.append(f'<circle class="{css} mk" cx="{_n(x + 9)}" cy="{_n(y - 4)}" r="4"/>')
        parts.append(_text(x + 23, y, label))
        x += 23 + len(label) * CHAR_WIDTH + 14
        if x > width - 40:  # the rest would run off the chart; the tooltips still tell
            break
    return "".join(parts)


def _time_axis(domain: tuple[float, float], xs: _Scale, top: float, bottom: float) -> str:
    """Vertical grid lines and UTC labels on round times, and the axis title."""
    plot_width = xs.end - xs.start
    ticks, fmt = time_ticks(domain[0], domain[1], max(2, int(plot_width // 82)))
    parts: list[str] = []
    for tick in ticks:
        x = xs(tick)
        parts.append(f'<path class="gr" d="M{_n(x)} {_n(top)}V{_n(bottom)}"/>')
        parts.append(_edge_text(x, bottom + 14, time_text(tick, fmt), xs.end + RIGHT))
    parts.append(f'<path class="ax" d="M{_n(xs.start)} {_n(bottom)}H{_n(xs.end)}"/>')
    label = "event time (UTC)"
    if fmt == "%H:%M:%S" and ticks:
        label = f"event time (UTC, {time_text(ticks[0], '%Y-%m-%d')})"
    parts.append(_text((xs.start + xs.end) / 2, bottom + 31, label, "axl", "middle"))
    return "".join(parts)


def _value_axis(domain: tuple[float, float], ys: _Scale, left: float, right: float) -> str:
    """Horizontal grid lines with their values; the axis title is drawn by the caller."""
    ticks, step = linear_ticks(*domain)
    labels = tick_labels(ticks, step)
    parts: list[str] = []
    for tick, label in zip(ticks, labels, strict=True):
        y = ys(tick)
        parts.append(f'<path class="gr" d="M{_n(left)} {_n(y)}H{_n(right)}"/>')
        parts.append(_text(left - 5, y + 3.5, label, "tkl", "end"))
    parts.append(f'<path class="ax" d="M{_n(left)} {_n(ys.start)}V{_n(ys.end)}"/>')
    return "".join(parts)


def _y_title(text: str, top: float, bottom: float) -> str:
    middle = (top + bottom) / 2
    return (
        f'<text class="axl" transform="translate(13 {_n(middle)}) rotate(-90)" '
        f'text-anchor="middle">{escape(_clip(text, bottom - top))}</text>'
    )


def _bands(bands: Sequence[Band], xs: _Scale, top: float, bottom: float) -> str:
    parts = []
    for band in bands:
        start = xs(band.start)
        end = xs.end if band.end is None else xs(band.end)
        width = max(end - start, 2.0)  # an instant incident still shows
        parts.append(
            f'<rect class="inc" x="{_n(start)}" y="{_n(top)}" width="{_n(width)}" '
            f'height="{_n(bottom - top)}"><title>{escape(band.tip)}</title></rect>'
        )
    return "".join(parts)


def _flatten(run: Sequence[tuple[float, float]]) -> list[tuple[str, str]]:
    """Printed points without the inner ones of level stretches, which draw nothing new.

    A threshold or a baseline is mostly level, so this keeps them a few points long.

    >>> _flatten([(0.0, 5.0), (1.0, 5.0), (2.0, 5.0), (3.0, 7.0)])
    [('0', '5'), ('2', '5'), ('3', '7')]
    """
    printed = [(_n(x), _n(y)) for x, y in run]
    return [
        point
        for index, point in enumerate(printed)
        if index in (0, len(printed) - 1)
        or not (printed[index - 1][1] == point[1] == printed[index + 1][1])
    ]


def _polyline(line: Line, xs: _Scale, ys: _Scale) -> str:
    """The line in runs between gaps; a point alone between gaps becomes a dot."""
    parts: list[str] = []
    run: list[tuple[float, float]] = []

    def flush() -> None:
        if len(run) == 1:
            x, y = run[0]
            parts.append(f'<circle class="{line.css} pt" cx="{_n(x)}" cy="{_n(y)}" r="2.5"/>')
        elif run:
            points = " ".join(f"{x},{y}" for x, y in _flatten(run))
            parts.append(f'<polyline class="{line.css}" points="{points}"/>')
        run.clear()

    for x, y in zip(line.xs, line.ys, strict=True):
        if y is None:
            flush()
        else:
            run.append((xs(x), ys(y)))
    flush()
    return "".join(parts)


def _markers(markers: Sequence[Marker], xs: _Scale, ys: _Scale) -> str:
    parts = []
    for marker in markers:
        y = ys.end if marker.y is None else ys(marker.y)
        parts.append(
            f'<circle class="{marker.css} mk" cx="{_n(xs(marker.x))}" cy="{_n(y)}" r="4.2">'
            f"<title>{escape(marker.tip)}</title></circle>"
        )
    return "".join(parts)


def time_chart(
    title: str,
    y_label: str,
    domain: tuple[float, float],
    lines: Sequence[Line],
    markers: Sequence[Marker] = (),
    bands: Sequence[Band] = (),
    include_zero: bool = False,
) -> str:
    """Lines over event time with alert markers and incident bands, as one ``<svg>``.

    ``domain`` is the time axis, shared by every chart of a model so they line
    up; ``include_zero`` starts the value axis at zero (distances, which are
    never negative, read better against their threshold that way).

    >>> chart = time_chart("psi", "psi", (0.0, 3600.0),
    ...                    [Line("value", [600.0, 1200.0], [0.05, 0.4], "ln")])
    >>> chart.count("<svg"), "<polyline" in chart, "01-01 00:15" in chart
    (1, True, True)
    """
    left, right = float(LEFT), float(WIDTH - RIGHT)
    top, bottom = float(TOP), float(HEIGHT - BOTTOM)
    values = [y for line in lines for y in line.ys]
    values += [marker.y for marker in markers]
    value_domain = nice_domain(values, include_zero)
    xs = _Scale(domain, (left, right))
    ys = _Scale(value_domain, (bottom, top))
    legend: list[tuple[str, str, str]] = [
        ("line", line.css, line.label) for line in lines if any(y is not None for y in line.ys)
    ]
    legend += [("dot", marker.css, marker.label) for marker in markers]
    if bands:
        legend.append(("band", "inc", "incident"))
    body = [
        _open(WIDTH, HEIGHT, title),
        _heading(title, WIDTH),
        _legend(legend, WIDTH),
        _bands(bands, xs, top, bottom),
        _value_axis(value_domain, ys, left, right),
        _time_axis(domain, xs, top, bottom),
        _y_title(y_label, top, bottom),
    ]
    if not any(y is not None for y in values):
        body.append(_text((left + right) / 2, (top + bottom) / 2, "no values", "nd", "middle"))
    body += [_polyline(line, xs, ys) for line in lines]
    body.append(_markers(markers, xs, ys))
    body.append("</svg>")
    return "".join(body)


def firing_strip(
    title: str,
    domain: tuple[float, float],
    rows: Sequence[str],
    ticks: Sequence[Tick],
    bands: Sequence[Band] = (),
) -> str:
    """Sequential detector firings: one row per detector, a tick at each firing.

    >>> strip = firing_strip("amount: detector firings", (0.0, 600.0), ["adwin"],
    ...                      [Tick(300.0, 0, "al", "drift", "adwin fired")])
    >>> strip.count("<svg"), strip.count('class="al tk"')
    (1, 2)
    """
    height = TOP + STRIP_ROW * max(len(rows), 1) + BOTTOM
    left, right = float(LEFT), float(WIDTH - RIGHT)
    top, bottom = float(TOP), float(height - BOTTOM)
    xs = _Scale(domain, (left, right))
    legend: list[tuple[str, str, str]] = [("tick", tick.css, tick.label) for tick in ticks]
    if bands:
        legend.append(("band", "inc", "incident"))
    body = [
        _open(WIDTH, height, title),
        _heading(title, WIDTH),
        _legend(legend, WIDTH),
        _bands(bands, xs, top, bottom),
        _time_axis(domain, xs, top, bottom),
    ]
    for index, row in enumerate(rows):
        middle = top + STRIP_ROW * (index + 0.5)
        body.append(
            f'<path class="gr" d="M{_n(left)} {_n(top + STRIP_ROW * (index + 1))}H{_n(right)}"/>'
        )
        label = f"<title>{escape(row)}</title>" if _clip(row, LEFT - 8) != row else ""
        body.append(
            f'<text class="tkl" x="{_n(left - 5)}" y="{_n(middle + 3.5)}" text-anchor="end">'
            f"{escape(_clip(row, LEFT - 8))}{label}</text>"
        )
    body.append(f'<path class="ax" d="M{_n(left)} {_n(top)}V{_n(bottom)}"/>')
    for tick in ticks:
        middle = top + STRIP_ROW * (tick.row + 0.5)
        x = _n(xs(tick.x))
        body.append(
            f'<g><title>{escape(tick.tip)}</title><path class="{tick.css} tk" '
            f'd="M{x} {_n(middle - 8)}V{_n(middle + 8)}"/>'
            f'<circle class="{tick.css}" cx="{x}" cy="{_n(middle)}" r="3.4"/></g>'
        )
    body.append("</svg>")
    return "".join(body)


def scatter_chart(title: str, x_label: str, y_label: str, points: Sequence[ScatterPoint]) -> str:
    """A scatter of points with the highlighted ones joined, labelled and drawn on top.

    Labels that would overlap one already placed try the other sides of
    their point, so close Pareto points stay readable.

    >>> chart = scatter_chart("sweep", "x", "y", [ScatterPoint(0.5, 40.0, "#0", True, "a"),
    ...                                           ScatterPoint(2.0, 90.0, "#1", False, "b")])
    >>> chart.count("<circle"), ">#0<" in chart, ">#1<" in chart
    (4, True, False)
    """
    width, height = WIDTH, 320
    left, right = float(LEFT), float(width - RIGHT - 10)
    top, bottom = float(TOP), float(height - BOTTOM)
    # A little room past the largest values keeps edge points and their labels inside.
    x_values = [point.x for point in points]
    y_values = [point.y for point in points]
    x_values.append(max(x_values, default=0.0) * 1.08)
    y_values.append(max(y_values, default=0.0) * 1.08)
    x_domain = nice_domain(x_values, include_zero=True, steps=5)
    y_domain = nice_domain(y_values, include_zero=True)
    xs = _Scale(x_domain, (left, right))
    ys = _Scale(y_domain, (bottom, top))
    legend = [("dot", "st", "setting"), ("dot", "pf", "Pareto front (setting #)")]
    body = [
        _open(width, height, title),
        _heading(title, width),
        _legend(legend, width),
        _value_axis(y_domain, ys, left, right),
        _y_title(y_label, top, bottom),
    ]
    ticks, step = linear_ticks(*x_domain, steps=5)
    for tick, label in zip(ticks, tick_labels(ticks, step), strict=True):
        x = xs(tick)
        body.append(f'<path class="gr" d="M{_n(x)} {_n(top)}V{_n(bottom)}"/>')
        body.append(_text(x, bottom + 14, label, "tkl", "middle"))
    body.append(f'<path class="ax" d="M{_n(left)} {_n(bottom)}H{_n(right)}"/>')
    body.append(_text((left + right) / 2, bottom + 31, x_label, "axl", "middle"))
    front = sorted((point for point in points if point.highlight), key=lambda p: (p.x, p.y))
    if len(front) > 1:
        joined = " ".join(f"{_n(xs(point.x))},{_n(ys(point.y))}" for point in front)
        body.append(f'<polyline class="fr" points="{joined}"/>')
    ordered = sorted(points, key=lambda point: point.highlight)  # the front on top
    for point in ordered:
        css, radius = ("pf", 5.5) if point.highlight else ("st", 4.0)
        body.append(
            f'<circle class="{css} mk" cx="{_n(xs(point.x))}" cy="{_n(ys(point.y))}" '
            f'r="{radius}"><title>{escape(point.tip)}</title></circle>'
        )
    body.append(_scatter_labels(front, xs, ys, (left, right, top, bottom)))
    body.append("</svg>")
    return "".join(body)


def _scatter_labels(
    points: Sequence[ScatterPoint],
    xs: _Scale,
    ys: _Scale,
    box: tuple[float, float, float, float],
) -> str:
    """Labels beside their points, each on the first side that overlaps nothing placed."""
    left, right, top, bottom = box
    placed: list[tuple[float, float, float, float]] = []
    parts = []
    for point in points:
        x, y = xs(point.x), ys(point.y)
        width, height = len(point.label) * CHAR_WIDTH + 2, 12.0
        sides = ((8, -12), (8, 2), (-8 - width, -12), (-8 - width, 2), (-width / 2, -22))
        chosen: tuple[float, float] = sides[0]
        for dx, dy in sides:
            box_x, box_y = x + dx, y + dy
            inside = left <= box_x and box_x + width <= right + 12 and top - 12 <= box_y <= bottom
            if inside and not any(
                _overlaps((box_x, box_y, width, height), other) for other in placed
            ):
                chosen = (dx, dy)
                break
        box_x, box_y = x + chosen[0], y + chosen[1]
        placed.append((box_x, box_y, width, height))
        parts.append(_text(box_x + 1, box_y + 10, point.label))
    return "".join(parts)


def _overlaps(
    first: tuple[float, float, float, float], second: tuple[float, float, float, float]
) -> bool:
    x1, y1, w1, h1 = first
    x2, y2, w2, h2 = second
    return x1 < x2 + w2 and x2 < x1 + w1 and y1 < y2 + h2 and y2 < y1 + h1
