"""Preview the Grafana dashboard without Grafana: live data, drawn by hand, screenshotted.

No Grafana server runs here, but Prometheus and headless Chromium do. This
script runs driftstream the way docker-compose.yml does, for a few minutes,
and draws deploy/grafana/driftstream.json from the data:

1. the embedded Kafka-compatible broker and a private Redis
   (driftstream.runtime.services), as the demo starts them;
2. the compose setup's two fraud models (deploy/compose/driftstream.yaml),
   with windows and labels scaled to a run of minutes, their baselines
   (``driftstream traffic --write-baselines``) and topics;
3. ``--workers`` ``driftstream run`` processes in one consumer group, each
   with its own metrics port (``DRIFTSTREAM__METRICS__PORT``);
4. a local Prometheus scraping them every couple of seconds as the job
   ``driftstream``, with deploy/prometheus/rules.yml loaded;
5. ``driftstream traffic`` at ``--rate`` events/s, with labels and a drift
   of amount, latency_ms and country from the middle of the run, plus a
   trickle of bad records (malformed JSON, an unknown model) so the
   dead-letter panels have something to show;
6. then every panel's queries through Prometheus' HTTP API (Grafana's
   variables replaced as Grafana would replace them), an HTML page laid out
   on the dashboard's grid, and a Chromium screenshot of it.

It prints where the page and the PNG are, and which panels got no data.

    .venv/bin/python deploy/grafana/preview.py --minutes 3

Everything it starts (services, workers, traffic, Prometheus, Chromium) is
stopped and every working folder removed at the end, on Ctrl-C or SIGTERM
too. Only the output folder (``--out``) is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import html
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Producer

from driftstream.report.svg import linear_ticks, nice_domain, tick_labels, time_text, time_ticks
from driftstream.runtime.services import ServiceError, free_port, kafka_service, redis_service

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "driftstream.json"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DRIFTSTREAM = Path(sys.executable).with_name("driftstream")
MODELS = ("fraud-web", "fraud-payments")  # the compose setup's two models
# A window every 10 s per model at the default rate, so a run of minutes
# draws a line of drift statistics rather than two dots.
WINDOW_EVENTS = 1000
# Labels come 10 s after their prediction on average; windows of joined
# pairs are judged 30 s after they end, and a prediction unlabelled after
# 60 s expires, so coverage settles near 0.9 (a tenth never get a label)
# within the run.
LABEL_DELAY_SECONDS = 10.0
LABELS = {
    "positive": "fraud",
    "window_seconds": 30,
    "wait_seconds": 30,
    "lateness_seconds": 5,
    "ttl_seconds": 60,
}
SCRAPE_SECONDS = 2
BAD_RECORD_SECONDS = 2.0  # one malformed and one unknown-model record this often
PAGE_WIDTH = 1600
PAGE_HEIGHT = 3000
GRID_ROW_PIXELS = 36  # one unit of a panel's gridPos height
GAP = 8
# Grafana's classic palette, in its order.
PALETTE = (
    "#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9",
    "#705da0", "#508642", "#cca300", "#447ebc", "#c15c17", "#890f02", "#0a437c",
)  # fmt: skip
COLOURS = {"green": "#56a64b", "orange": "#ff9830", "red": "#e02f44", "yellow": "#fade2a"}
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class PreviewError(RuntimeError):
    """A step that could not run; the message says which and how to fix it."""


# ---------------------------------------------------------------- processes


def _die_with_parent() -> None:
    """Runs in each child: its own session (Ctrl-C is ours to pass on), killed with us."""
    os.setsid()
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Children:
    """The processes this run starts; ``stop_all`` ends them, newest first."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, command: Sequence[str], env: dict[str, str] | None = None) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self.running.append((name, process))

    def check(self) -> None:
        for name, process in self.running:
            if process.poll() is not None:
                msg = f"{name} exited with status {process.returncode}:\n{self.tail(name)}"
                raise PreviewError(msg)

    def tail(self, name: str, lines: int = 8) -> str:
        text = (self.logs / f"{name}.log").read_text(errors="replace")
        return "\n".join("  " + line for line in text.strip().splitlines()[-lines:])

    def stop(self, name: str, grace: float = 30.0) -> None:
        """SIGTERM (a worker commits and leaves its group), then SIGKILL after ``grace``."""
        for index, (known, process) in enumerate(self.running):
            if known == name:
                _terminate(process, grace)
                del self.running[index]
                return

    def stop_all(self) -> None:
        while self.running:
            _, process = self.running.pop()
            _terminate(process, 30.0)


def _terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run(command: Sequence[str], what: str) -> None:
    done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        msg = f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}"
        raise PreviewError(msg)


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _wait_for(url: str, timeout: float, children: Children) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children.check()
        if _get(url, 2.0)[0] == 200:
            return True
        time.sleep(0.5)
    return False


# ---------------------------------------------------------------- the run


@dataclass
class Run:
    """What was started and when (wall clock)."""

    config: Path
    bootstrap: str
    topics: dict[str, str]
    prometheus: str
    metrics_ports: list[int]
    started: float = 0.0
    traffic_started: float = 0.0
    drift_at: float = 0.0  # when the traffic's first drifted event was due
    stopped: float = 0.0


def write_config(workdir: Path, bootstrap: str, redis_url: str) -> tuple[Path, dict[str, str]]:
    """The compose config, scaled to minutes, on fresh topic, group and key names."""
    run_id = uuid.uuid4().hex[:8]
    topics = {
        name: f"preview-{run_id}.{name}"
        for name in ("predictions", "features", "labels", "alerts", "dlq", "repartition")
    }
    models = {
        model: {
            "baseline": str(workdir / "baselines" / f"{model}.json"),
            "window": {"kind": "count", "size": WINDOW_EVENTS},
            "labels": LABELS,
        }
        for model in MODELS
    }
    document = {
        "version": 1,
        "models": models,
        "kafka": {
            "client": {
                "bootstrap.servers": bootstrap,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
            },
            "group_id": f"preview-{run_id}",
            "topics": topics,
            "partitions": 4,
        },
        "redis": {"url": redis_url, "key_prefix": f"preview-{run_id}"},
        "metrics": {"host": "127.0.0.1", "port": 0},  # each worker's port comes from its env
    }
    path = workdir / "driftstream.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path, topics


def write_prometheus_config(workdir: Path, ports: Sequence[int]) -> Path:
    document = {
        "global": {
            "scrape_interval": f"{SCRAPE_SECONDS}s",
            "scrape_timeout": f"{SCRAPE_SECONDS}s",
            "evaluation_interval": f"{SCRAPE_SECONDS}s",
        },
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "driftstream",  # the name the rules' up{job=...} expects
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{port}" for port in ports]}],
            }
        ],
    }
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


class BadRecords:
    """A trickle of records the worker must dead-letter: malformed JSON and an unknown model."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap, "log_level": 4})
        self._topic = topic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bad-records", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._producer.flush(10)

    def _loop(self) -> None:
        unknown = {
            "event_id": "",
            "model_id": "no-such-model",
            "model_version": "v1",
            "ts": 0.0,
            "features": {"amount": 1.0},
            "prediction": "ok",
        }
        while not self._stop.wait(BAD_RECORD_SECONDS):
            unknown["event_id"] = uuid.uuid4().hex
            unknown["ts"] = time.time()
            self._producer.produce(self._topic, b'{"event_id": "cut short', key=MODELS[0])
            self._producer.produce(self._topic, json.dumps(unknown).encode(), key="no-such-model")
            self._producer.poll(0)


@contextlib.contextmanager
def running(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[Run, Children]]:
    """Services, workers and Prometheus up; stopped (newest first) on the way out."""
    logs = workdir / "logs"
    logs.mkdir()
    children = Children(logs)
    with contextlib.ExitStack() as stack:
        _say("starting the embedded Kafka broker and Redis ...")
        bootstrap = stack.enter_context(kafka_service(os.environ))
        redis_url = stack.enter_context(redis_service(os.environ))
        stack.callback(children.stop_all)
        config, topics = write_config(workdir, bootstrap, redis_url)
        driftstream = str(DRIFTSTREAM)
        _run([driftstream, "traffic", "--config", str(config), "--write-baselines"], "baselines")
        _run([driftstream, "topics", "create", "--config", str(config)], "topics create")
        ports = [free_port() for _ in range(args.workers)]
        prometheus_port = free_port()
        children.start(
            "prometheus",
            [
                args.prometheus,
                f"--config.file={write_prometheus_config(workdir, ports)}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
                "--log.level=warn",
            ],
        )
        prometheus = f"http://127.0.0.1:{prometheus_port}"
        if not _wait_for(f"{prometheus}/-/ready", 60, children):
            msg = f"Prometheus did not get ready:\n{children.tail('prometheus')}"
            raise PreviewError(msg)
        run = Run(config, bootstrap, topics, prometheus, ports, started=time.time())
        for number, port in enumerate(ports, 1):
            env = {**os.environ, "DRIFTSTREAM__METRICS__PORT": str(port)}
            children.start(f"worker-{number}", [driftstream, "run", "--config", str(config)], env)
        _say(f"{args.workers} worker(s) on metrics ports {', '.join(map(str, ports))} ...")
        for number, port in enumerate(ports, 1):
            if not _wait_for(f"http://127.0.0.1:{port}/readyz", 90, children):
                _say(f"  worker-{number} is not ready after 90 s; going on (see its log)")
        yield run, children


def produce(args: argparse.Namespace, run: Run, children: Children) -> None:
    """Traffic at ``args.rate`` for ``args.minutes``, drifted from the middle on."""
    seconds = args.minutes * 60.0
    drift_at = int(args.rate * seconds / 2)
    children.start(
        "traffic",
        [
            str(DRIFTSTREAM),
            "traffic",
            "--config",
            str(run.config),
            "--rate",
            f"{args.rate:g}",
            "--drift-at",
            str(drift_at),
            "--label-delay",
            f"{LABEL_DELAY_SECONDS:g}",
        ],
    )
    bad = BadRecords(run.bootstrap, run.topics["predictions"])
    bad.start()
    run.traffic_started = time.time()
    run.drift_at = run.traffic_started + seconds / 2
    _say(
        f"traffic: {args.rate:g} events/s for {args.minutes:g} min, drift from event "
        f"{drift_at:,} (about {seconds / 2:.0f} s in), {2 / BAD_RECORD_SECONDS:g} bad records/s"
    )
    deadline = time.monotonic() + seconds
    next_line = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            children.check()
            time.sleep(1.0)
            if time.monotonic() >= next_line:
                next_line += 30
                _say(f"  {_progress(run)}")
        # The queries end here, while traffic still flows, as a live dashboard shows it.
        run.stopped = time.time()
    finally:
        bad.stop()
        children.stop("traffic", grace=10)
    time.sleep(3 * SCRAPE_SECONDS)  # a few more scrapes, so the range's end has samples


def _progress(run: Run) -> str:
    elapsed = time.time() - run.traffic_started
    rate = instant(run.prometheus, "sum(rate(driftstream_events_consumed_total[20s]))")
    lag = instant(run.prometheus, "sum(driftstream_consumer_lag_messages)")
    alerts = instant(run.prometheus, "sum(driftstream_alerts_published_total)")
    return f"{elapsed:4.0f} s: {_plain(rate)} events/s, lag {_plain(lag)}, {_plain(alerts)} alerts"


def _plain(series: list[dict[str, Any]]) -> str:
    if not series:
        return "-"
    return f"{float(series[0]['value'][1]):,.0f}"


# ---------------------------------------------------------------- Prometheus


def api(base: str, path: str, params: dict[str, str]) -> Any:
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    status, body = _get(url, 30.0)
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {"status": "error", "error": f"HTTP {status}: {body[:200]!r}"}
    if answer.get("status") != "success":
        raise PreviewError(str(answer.get("error", answer)))
    return answer["data"]


def instant(base: str, query: str, at: float | None = None) -> list[dict[str, Any]]:
    params = {"query": query}
    if at is not None:
        params["time"] = f"{at:.3f}"
    try:
        return list(api(base, "query", params)["result"])
    except PreviewError:
        return []


@dataclass
class Series:
    name: str
    times: list[float]
    values: list[float | None]

    def last(self) -> float | None:
        return next((v for v in reversed(self.values) if v is not None), None)

    def peak(self) -> float | None:
        present = [v for v in self.values if v is not None]
        return max(present) if present else None


@dataclass
class Target:
    expr: str  # as written in the dashboard
    query: str  # as sent, variables replaced
    series: list[Series] = field(default_factory=list)
    instant_value: list[tuple[str, float | None]] = field(default_factory=list)
    error: str = ""
    sparkline: bool = False  # a stat draws one only from a range query, as Grafana does

    def has_data(self) -> bool:
        return any(s.last() is not None for s in self.series) or any(
            v is not None for _, v in self.instant_value
        )


def variables(start: float, end: float, width_pixels: int) -> dict[str, str]:
    """Grafana's values for the variables, for a Prometheus datasource scraped every few seconds.

    ``$__interval`` is the range over the panel's data points, at least the
    datasource's scrape interval; ``$__rate_interval`` is the larger of
    ``$__interval`` plus one scrape and four scrapes (Grafana's rule). The
    All value of ``$model`` is the dashboard's allValue, ``.*``.
    """
    interval = max(SCRAPE_SECONDS, math.ceil((end - start) / max(width_pixels, 1)))
    rate_interval = max(interval + SCRAPE_SECONDS, 4 * SCRAPE_SECONDS)
    return {
        "model": ".*",
        "__rate_interval": f"{rate_interval}s",
        "__interval": f"{interval}s",
        "__range": f"{int(end - start)}s",
    }


def substitute(expr: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def legend(fmt: str, labels: dict[str, str], expr: str) -> str:
    """A series' name as Grafana's Prometheus datasource makes it."""
    if fmt and fmt != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    if not shown:
        return expr  # Grafana names a series without labels after its query
    if len(shown) == 1:
        return next(iter(shown.values()))
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(shown.items())) + "}"


def number(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def evaluate(run: Run, panel: dict[str, Any], width_pixels: int) -> list[Target]:
    start, end = run.started, run.stopped
    values = variables(start, end, width_pixels)
    step = values["__interval"].removesuffix("s")
    targets = []
    for spec in panel.get("targets", []):
        expr = spec["expr"]
        target = Target(expr, substitute(expr, values), sparkline=bool(spec.get("range")))
        fmt = spec.get("legendFormat", "")
        try:
            data = api(
                run.prometheus,
                "query_range",
                {"query": target.query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step},
            )
            for item in data["result"]:
                times = [float(t) for t, _ in item["values"]]
                points = [number(v) for _, v in item["values"]]
                target.series.append(Series(legend(fmt, item["metric"], expr), times, points))
            if spec.get("instant"):
                for item in api(
                    run.prometheus, "query", {"query": target.query, "time": f"{end:.3f}"}
                )["result"]:
                    name = legend(fmt, item["metric"], expr)
                    target.instant_value.append((name, number(item["value"][1])))
        except PreviewError as error:
            target.error = str(error)
        targets.append(target)
    return targets


# ---------------------------------------------------------------- drawing


def fmt_value(
    value: float | None,
    unit: str,
    mappings: Sequence[dict[str, Any]] = (),
    decimals: int | None = None,
) -> str:
    """A value as Grafana prints it in the panel's unit (the common units only)."""
    if value is None:
        return "No data"
    if decimals is not None and unit in ("short", "none", ""):
        value = round(value, decimals)
    for mapping in mappings:
        if mapping.get("type") == "value":
            text = mapping.get("options", {}).get(f"{value:g}", {}).get("text")
            if text is not None:
                return str(text)
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        if value == 0:
            return "0 s"
        if abs(value) < 1e-3:
            return f"{value * 1e6:.0f} µs"
        if abs(value) < 1:
            return f"{value * 1e3:.3g} ms"
        return f"{value:.3g} s"
    if unit in ("short", "reqps", "cps", "ops"):
        suffix = "" if unit == "short" else f" {unit}"
        for scale, name in ((1e9, " Bil"), (1e6, " Mil"), (1e3, " K")):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{name}{suffix}"
        return f"{value:.3g}{suffix}"
    return f"{value:.3g}"


def threshold_steps(panel: dict[str, Any]) -> list[tuple[float | None, str]]:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    steps = defaults.get("thresholds", {}).get("steps", [])
    return [(step.get("value"), COLOURS.get(step["color"], step["color"])) for step in steps]


def step_colour(panel: dict[str, Any], value: float | None) -> str:
    colour = "#8e8e8e"
    if value is None:
        return colour
    for limit, step in threshold_steps(panel):
        if limit is None or value >= limit:
            colour = step
    return colour


@dataclass(frozen=True)
class Box:
    left: float
    top: float
    width: float
    height: float


def draw_chart(
    panel: dict[str, Any],
    targets: Sequence[Target],
    box: Box,
    span: tuple[float, float],
    marks: Sequence[tuple[float, str]],
) -> str:
    """The panel's series as an SVG time chart, in Grafana's style for the options it uses."""
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    custom = defaults.get("custom", {})
    unit = defaults.get("unit", "short")
    series = [s for t in targets for s in t.series]
    bars = custom.get("drawStyle") == "bars"
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    drawn = _stack(series, stacked)
    values: list[float | None] = [v for _, ys, _ in drawn for v in ys]
    # Grafana's axis fits the data only; a soft min/max widens it (so a threshold shows).
    soft = [custom.get("axisSoftMin"), custom.get("axisSoftMax")]
    low, high = nice_domain([*values, *soft], include_zero=bars or stacked)
    low = defaults.get("min", low)
    high = defaults.get("max", high)
    if high <= low:
        high = low + 1.0
    left, right, top, bottom = 58.0, box.width - 8, 8.0, box.height - 20
    width, height = box.width, box.height

    def x_of(t: float) -> float:
        return left + (t - span[0]) / max(span[1] - span[0], 1e-9) * (right - left)

    def y_of(v: float) -> float:
        v = min(max(v, low), high)
        return bottom - (v - low) / (high - low) * (bottom - top)

    parts = [f'<svg width="{width:.0f}" height="{height:.0f}" class="chart">']
    parts += _thresholds(panel, custom, low, high, left, right, y_of)
    ticks, step = linear_ticks(low, high, 4)
    for tick, label in zip(ticks, tick_labels(ticks, step), strict=True):
        y = y_of(tick)
        parts.append(f'<path class="gr" d="M{left:.1f} {y:.1f}H{right:.1f}"/>')
        text = fmt_value(tick, unit) if unit not in ("none", "") else label
        parts.append(f'<text x="{left - 4:.1f}" y="{y + 3.5:.1f}" text-anchor="end">{text}</text>')
    times, fmt = time_ticks(span[0], span[1], max(2, int((right - left) // 70)))
    for tick in times:
        x = x_of(tick)
        parts.append(f'<path class="gr" d="M{x:.1f} {top:.1f}V{bottom:.1f}"/>')
        label = time_text(tick, "%H:%M:%S" if fmt == "%H:%M:%S" else "%H:%M")
        parts.append(f'<text x="{x:.1f}" y="{bottom + 14:.1f}" text-anchor="middle">{label}</text>')
    for at, label in marks:
        x = x_of(at)
        line = f'<path class="mark" d="M{x:.1f} {top:.1f}V{bottom:.1f}">'
        parts.append(f"{line}<title>{html.escape(label)}</title></path>")
    fill = float(custom.get("fillOpacity", 0)) / 100
    for index, (one, ys, bases) in enumerate(drawn):
        style = Style(PALETTE[index % len(PALETTE)], bars, fill, x_of, y_of)
        parts.append(_series(one.times, ys, bases, style))
    if not any(v is not None for v in values):
        parts.append(
            f'<text x="{(left + right) / 2:.0f}" y="{(top + bottom) / 2:.0f}" '
            'class="nodata" text-anchor="middle">No data</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _stack(
    series: Sequence[Series], stacked: bool
) -> list[tuple[Series, list[float | None], list[float]]]:
    """Each series' drawn values and what they stand on: the ones below when stacked, else 0."""
    totals: dict[float, float] = {}
    out = []
    for one in series:
        if not stacked:
            out.append((one, list(one.values), [0.0] * len(one.values)))
            continue
        ys: list[float | None] = []
        bases: list[float] = []
        for t, v in zip(one.times, one.values, strict=True):
            bases.append(totals.get(t, 0.0))
            if v is None:
                ys.append(None)
                continue
            totals[t] = totals.get(t, 0.0) + v
            ys.append(totals[t])
        out.append((one, ys, bases))
    return out


def _thresholds(
    panel: dict[str, Any],
    custom: dict[str, Any],
    low: float,
    high: float,
    left: float,
    right: float,
    y_of: Any,
) -> list[str]:
    """Grafana's threshold style: dashed lines, and with ``line+area`` the bands behind."""
    mode = custom.get("thresholdsStyle", {}).get("mode", "off")
    if mode == "off":
        return []
    steps = threshold_steps(panel)
    parts = []
    if "area" in mode:
        for index, (limit, colour) in enumerate(steps):
            start = low if limit is None else max(limit, low)
            end = steps[index + 1][0] if index + 1 < len(steps) else high
            end = high if end is None else min(end, high)
            if end > start:
                y0, y1 = y_of(end), y_of(start)
                parts.append(
                    f'<rect x="{left:.1f}" y="{y0:.1f}" width="{right - left:.1f}" '
                    f'height="{y1 - y0:.1f}" fill="{colour}" fill-opacity="0.12"/>'
                )
    for limit, colour in steps:
        if limit is None:
            continue
        if low <= limit <= high:
            y = y_of(limit)
            parts.append(
                f'<path d="M{left:.1f} {y:.1f}H{right:.1f}" stroke="{colour}" '
                'stroke-width="1.5" stroke-dasharray="6 4"/>'
            )
        else:  # Grafana's axis does not stretch to a threshold: say where it is
            where = "above" if limit > high else "below"
            parts.append(
                f'<text x="{right - 2:.1f}" y="{(12 if where == "above" else y_of(low) - 4):.1f}" '
                f'class="off" text-anchor="end" fill="{colour}">threshold {limit:g} {where} the '
                "axis</text>"
            )
    return parts


@dataclass(frozen=True)
class Style:
    colour: str
    bars: bool
    fill: float  # the panel's fillOpacity, 0 to 1
    x_of: Any
    y_of: Any


def _series(
    times: Sequence[float], ys: Sequence[float | None], bases: Sequence[float], style: Style
) -> str:
    x_of, y_of, colour = style.x_of, style.y_of, style.colour
    if style.bars:
        width = max(2.0, (x_of(times[1]) - x_of(times[0])) * 0.7) if len(times) > 1 else 4.0
        return "".join(
            f'<rect x="{x_of(t) - width / 2:.1f}" y="{y_of(v):.1f}" width="{width:.1f}" '
            f'height="{max(y_of(base) - y_of(v), 0.5):.1f}" fill="{colour}" '
            f'fill-opacity="{max(style.fill, 0.3):.2f}"/>'
            for t, v, base in zip(times, ys, bases, strict=True)
            if v is not None and v != base
        )
    runs: list[list[tuple[float, float, float]]] = [[]]
    for t, v, base in zip(times, ys, bases, strict=True):
        if v is None:  # spanNulls false: a gap breaks the line
            runs.append([])
        else:
            runs[-1].append((x_of(t), y_of(v), y_of(base)))
    parts = []
    for run in runs:
        if len(run) == 1:
            x, y, _ = run[0]
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="1.8" fill="{colour}"/>')
        elif run:
            line = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in run)
            if style.fill:
                under = " ".join(f"{x:.1f},{b:.1f}" for x, _, b in reversed(run))
                parts.append(
                    f'<polygon points="{line} {under}" fill="{colour}" '
                    f'fill-opacity="{style.fill:.2f}"/>'
                )
            parts.append(
                f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.4"/>'
            )
    return "".join(parts)


def draw_legend(panel: dict[str, Any], targets: Sequence[Target], rows: int, width: float) -> str:
    """A table legend on the right, with the panel's calcs (last, max)."""
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    series = [s for t in targets for s in t.series]
    if not series:
        return ""
    lines = [
        f'<table class="legend" style="width:{width:.0f}px">'
        f'<col style="width:{width - 116:.0f}px"><col style="width:58px"><col style="width:58px">'
        "<tr><th></th><th>Last *</th><th>Max</th></tr>"
    ]
    for index, one in enumerate(series[:rows]):
        colour = PALETTE[index % len(PALETTE)]
        lines.append(
            f'<tr><td><span class="sw" style="background:{colour}"></span>'
            f"{html.escape(one.name)}</td><td>{fmt_value(one.last(), unit)}</td>"
            f"<td>{fmt_value(one.peak(), unit)}</td></tr>"
        )
    if len(series) > rows:
        lines.append(f'<tr><td colspan="3" class="more">+ {len(series) - rows} more</td></tr>')
    lines.append("</table>")
    return "".join(lines)


def draw_stat(panel: dict[str, Any], targets: Sequence[Target], box: Box) -> str:
    """One tile per value: Grafana's stat with background colour, name and sparkline."""
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit", "short")
    mappings = defaults.get("mappings", [])
    shown = [pair for t in targets for pair in t.instant_value]
    if not shown:
        return '<div class="stat empty">No data</div>'
    text_mode = panel.get("options", {}).get("textMode", "auto")
    named = text_mode in ("value_and_name", "name") or (text_mode == "auto" and len(shown) > 1)
    sparks = {s.name: s for t in targets if t.sparkline for s in t.series}
    width = box.width / len(shown)
    tiles = []
    for name, value in shown:
        colour = step_colour(panel, value)
        spark = sparks.get(name)
        line = _sparkline(spark, width, box.height) if spark else ""
        label = f'<div class="sname">{html.escape(name)}</div>' if named else ""
        text = fmt_value(value, unit, mappings, defaults.get("decimals"))
        tiles.append(
            f'<div class="tile" style="background:{colour};width:{width - 4:.0f}px">{line}'
            f'{label}<div class="sval">{text}</div></div>'
        )
    return '<div class="stat">' + "".join(tiles) + "</div>"


def _sparkline(series: Series, width: float, height: float) -> str:
    present = [(t, v) for t, v in zip(series.times, series.values, strict=True) if v is not None]
    if len(present) < 2:
        return ""
    t0, t1 = present[0][0], present[-1][0]
    low = min(v for _, v in present)
    high = max(v for _, v in present)
    high = high if high > low else low + 1

    def point(t: float, v: float) -> str:
        x = (t - t0) / max(t1 - t0, 1e-9) * width
        y = height - (v - low) / (high - low) * height * 0.45
        return f"{x:.1f},{y:.1f}"

    points = " ".join(point(t, v) for t, v in present)
    return (
        f'<svg class="spark" width="{width:.0f}" height="{height:.0f}">'
        f'<polygon points="0,{height:.0f} {points} {width:.0f},{height:.0f}" '
        'fill="#ffffff" fill-opacity="0.18"/>'
        f'<polyline points="{points}" fill="none" stroke="#ffffff" stroke-opacity="0.6"/></svg>'
    )


def layout(panel: dict[str, Any]) -> Box:
    grid = panel["gridPos"]
    column = (PAGE_WIDTH - GAP) / 24
    return Box(
        GAP + grid["x"] * column,
        56 + grid["y"] * GRID_ROW_PIXELS,
        grid["w"] * column - GAP,
        grid["h"] * GRID_ROW_PIXELS - GAP,
    )


CSS = """
body{margin:0;background:#f4f5f5;font:12px system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
 color:#24292e;width:1600px;position:relative}
h1{font-size:17px;margin:0;padding:14px 10px 0}
.sub{color:#6e7781;padding:2px 10px;font-size:11px}
.panel{position:absolute;background:#fff;border:1px solid #d8d9da;border-radius:3px;overflow:hidden}
.panel h2{font-size:12.5px;margin:0;padding:5px 8px;font-weight:600;white-space:nowrap;
 overflow:hidden;text-overflow:ellipsis}
.row{position:absolute;font-size:14px;font-weight:600;border-bottom:1px solid #c7d0d9}
.body{display:flex;height:calc(100% - 26px)}
.body svg{flex:none}
.chart text{font-size:10px;fill:#6e7781}
.chart .gr{stroke:#eceef0}
.chart .mark{stroke:#8f43e6;stroke-width:1.2;stroke-dasharray:2 3}
.chart .nodata{font-size:14px;fill:#8e8e8e}
.chart text.off{font-size:10px;font-style:italic}
table.legend{border-collapse:collapse;font-size:10.5px;align-self:flex-start;margin-top:4px;
 table-layout:fixed}
.legend th{color:#1f62e0;font-weight:500;text-align:right;padding:0 4px}
.legend td{padding:0 3px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;line-height:1.3}
.legend td+td{text-align:right}
.legend .more{color:#6e7781;text-align:left}
.sw{display:inline-block;width:12px;height:3px;margin-right:4px;vertical-align:middle}
.stat{display:flex;height:calc(100% - 26px);gap:4px;padding:0 2px 2px}
.tile{position:relative;color:#fff;border-radius:2px;overflow:hidden;text-align:center}
.spark{position:absolute;left:0;bottom:0}
.sname{position:relative;font-size:11px;padding:4px;white-space:nowrap;overflow:hidden;
 text-overflow:ellipsis}
.sval{position:relative;font-size:30px;font-weight:600}
.empty{align-items:center;justify-content:center;color:#8e8e8e;font-size:14px}
.err{color:#c4162a;font-size:10.5px;padding:2px 8px}
.foot{position:absolute;left:10px;font-size:11px;color:#57606a;width:1560px}
"""


def render(
    dashboard: dict[str, Any], results: dict[int, list[Target]], run: Run, alerts: list[str]
) -> str:
    span = (run.started, run.stopped)
    marks = [(run.drift_at, "drift starts (traffic's drifted events)")]
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(dashboard['title'])}"
        f" preview</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(dashboard['title'])} (preview)</h1>",
        '<div class="sub">',
        html.escape(
            f"{time_text(span[0], '%H:%M:%S')} to {time_text(span[1], '%H:%M:%S')} UTC; "
            f"model = All; scrape {SCRAPE_SECONDS} s; the dotted purple line is the start of "
            "the drift (not part of the dashboard). Legend 'Last *' is the last non-null value."
        ),
        "</div>",
    ]
    bottom = 0.0
    for panel in dashboard["panels"]:
        box = layout(panel)
        bottom = max(bottom, box.top + box.height)
        style = f"left:{box.left:.0f}px;top:{box.top:.0f}px;width:{box.width:.0f}px;"
        if panel["type"] == "row":
            parts.append(
                f'<div class="row" style="{style}height:{box.height:.0f}px">'
                f"{html.escape(panel['title'])}</div>"
            )
            continue
        targets = results.get(panel["id"], [])
        inner = Box(0, 0, box.width - 2, box.height - 28)
        errors = "".join(
            f'<div class="err">{html.escape(t.error)}</div>' for t in targets if t.error
        )
        if panel["type"] == "stat":
            body = draw_stat(panel, targets, inner)
        else:
            legend_width = min(340.0, box.width * 0.46)
            chart_box = Box(0, 0, box.width - legend_width - 4, inner.height)
            rows = max(1, int((inner.height - 14) // 13.5) - 1)
            body = (
                '<div class="body">'
                + draw_chart(panel, targets, chart_box, span, marks)
                + draw_legend(panel, targets, rows, legend_width)
                + "</div>"
            )
        parts.append(
            f'<div class="panel" style="{style}height:{box.height:.0f}px">'
            f"<h2>{html.escape(panel['title'])}</h2>{errors}{body}</div>"
        )
    firing = "; ".join(alerts) or "none"
    parts.append(
        f'<div class="foot" style="top:{bottom + 12:.0f}px">Prometheus alerts '
        f"(rules.yml) during the run: {html.escape(firing)}</div></body></html>"
    )
    return "".join(parts)


def screenshot(chromium: str, page: Path, png: Path, profile: Path) -> str:
    """Chromium's headless screenshot of ``page``; returns an error line, or ''."""
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        f"--window-size={PAGE_WIDTH},{PAGE_HEIGHT}",
        f"--screenshot={png}",
        page.as_uri(),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return "chromium did not finish within 120 s"
    if done.returncode != 0 or not png.exists():
        return f"chromium failed ({done.returncode}): {done.stderr.strip()[-300:]}"
    return ""


# ---------------------------------------------------------------- main


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# What the counters say at the end, unprocessed: the truth the panels' rates
# and increases are read against.
TOTALS = (
    "sum by (kind, severity) (driftstream_alerts_published_total)",
    "sum by (kind, severity) (increase(driftstream_alerts_published_total[1h]))",
    "sum by (topic) (driftstream_events_consumed_total)",
    "sum by (reason) (driftstream_invalid_events_total)",
    "sum by (reason) (driftstream_dead_letters_published_total)",
    "sum by (outcome) (driftstream_labels_total)",
    "driftstream_label_coverage_ratio",
    "sum(driftstream_state_commit_seconds_count)",
)


def totals(run: Run) -> list[str]:
    lines = []
    for query in TOTALS:
        found = instant(run.prometheus, query, run.stopped)
        values = ", ".join(
            f"{legend('__auto', item['metric'], 'all')}={float(item['value'][1]):g}"
            for item in found
        )
        lines.append(f"{query}: {values or 'no data'}")
    return lines


def firing_alerts(run: Run) -> list[str]:
    """The rules that were pending or firing at any time of the run, with their state at its end."""
    seconds = int(run.stopped - run.started) + 1
    during = instant(
        run.prometheus, f"max by (alertname, alertstate) (max_over_time(ALERTS[{seconds}s]))"
    )
    at_end = instant(run.prometheus, "ALERTS", run.stopped)
    final = {(i["metric"]["alertname"], i["metric"]["alertstate"]) for i in at_end}
    shown = set()
    for item in during:
        name, state = item["metric"]["alertname"], item["metric"]["alertstate"]
        shown.add(f"{name} ({state}{', still at the end' if (name, state) in final else ''})")
    return sorted(shown)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preview.py",
        description=(
            "Preview deploy/grafana/driftstream.json without Grafana: run driftstream on the "
            "embedded broker and Redis with the demo's traffic (labels, a drift from the middle "
            "of the run, a trickle of bad records), scrape the workers with a local Prometheus "
            "loading deploy/prometheus/rules.yml, evaluate every panel's queries over the run, "
            "draw the dashboard as an HTML page and screenshot it with headless Chromium. "
            "Prints where the page and the PNG are and which panels got no data. Needs "
            "Prometheus and Chromium on PATH (Debian: apt-get install prometheus chromium)."
        ),
    )
    parser.add_argument(
        "--minutes", type=float, default=3.0, help="minutes of traffic (default: 3)"
    )
    parser.add_argument(
        "--rate", type=float, default=200.0, help="events/s over both models (default: 200)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="workers in the consumer group (default: 2)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "driftstream-dashboard-preview",
        help="folder for dashboard.html, dashboard.png and queries.json "
        "(default: %(default)s; kept after the run)",
    )
    parser.add_argument(
        "--dashboard",
        type=Path,
        default=DASHBOARD,
        help="the dashboard JSON to draw (default: the project's; an edited copy tries a fix)",
    )
    parser.add_argument(
        "--prometheus", default="prometheus", help="the Prometheus server binary (default: on PATH)"
    )
    parser.add_argument(
        "--chromium", default="chromium", help="the Chromium binary (default: on PATH)"
    )
    return parser


def check_args(args: argparse.Namespace) -> None:
    if not 0.5 <= args.minutes <= 60:
        msg = f"--minutes must be between 0.5 and 60, got {args.minutes:g}"
        raise PreviewError(msg)
    if not 1 <= args.rate <= 20_000:
        msg = f"--rate must be between 1 and 20000 events/s, got {args.rate:g}"
        raise PreviewError(msg)
    if not 1 <= args.workers <= 4:
        msg = f"--workers must be 1 to 4 (the topics have 4 partitions), got {args.workers}"
        raise PreviewError(msg)
    for option, name in (("--prometheus", args.prometheus), ("--chromium", args.chromium)):
        found = shutil.which(name)
        if found is None:
            msg = f"{option} {name}: not found (apt-get install {Path(name).name})"
            raise PreviewError(msg)
        setattr(args, option.removeprefix("--"), found)
    if not DRIFTSTREAM.exists():
        msg = f"{DRIFTSTREAM} not found: run this with the venv's python (pip install -e .)"
        raise PreviewError(msg)


def load_dashboard(path: Path) -> dict[str, Any]:
    try:
        dashboard = json.loads(path.read_text())
        panels = dashboard["panels"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        msg = f"--dashboard {path}: not a readable Grafana dashboard ({error})"
        raise PreviewError(msg) from None
    return {**dashboard, "panels": panels}


def preview(args: argparse.Namespace) -> int:
    dashboard = load_dashboard(args.dashboard)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="driftstream-preview-") as folder:
        workdir = Path(folder)
        with running(args, workdir) as (run, children):
            produce(args, run, children)
            _say("evaluating the panels' queries ...")
            results: dict[int, list[Target]] = {}
            for panel in dashboard["panels"]:
                if panel["type"] != "row":
                    width = int(layout(panel).width)
                    results[panel["id"]] = evaluate(run, panel, width)
            alerts = firing_alerts(run)
            counted = totals(run)
            produced = children.tail("traffic", 1).strip()
        args.out.mkdir(parents=True, exist_ok=True)
        page = args.out / "dashboard.html"
        page.write_text(render(dashboard, results, run, alerts), encoding="utf-8")
        write_queries(args.out / "queries.json", dashboard, results)
        png = args.out / "dashboard.png"
        png.unlink(missing_ok=True)
        problem = screenshot(args.chromium, page, png, workdir / "chromium")
    report(dashboard, results, alerts, page, None if problem else png, time.monotonic() - began)
    sys.stdout.write(f"traffic: {produced}\ncounters at the end of the range:\n")
    sys.stdout.writelines(f"  {line}\n" for line in counted)
    if problem:
        _say(problem)
        return 1
    return 0


def write_queries(path: Path, dashboard: dict[str, Any], results: dict[int, list[Target]]) -> None:
    """Every query as sent, with its series' last and largest values: for reading, not drawing."""
    document = []
    for panel in dashboard["panels"]:
        for target in results.get(panel.get("id", -1), []):
            document.append(
                {
                    "panel": panel["title"],
                    "query": target.query,
                    "error": target.error,
                    "instant": target.instant_value,
                    "series": [
                        {"name": s.name, "last": s.last(), "max": s.peak()} for s in target.series
                    ],
                }
            )
    path.write_text(json.dumps(document, indent=1))


def report(
    dashboard: dict[str, Any],
    results: dict[int, list[Target]],
    alerts: list[str],
    page: Path,
    png: Path | None,
    seconds: float,
) -> None:
    with_data, without = [], []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        targets = results[panel["id"]]
        empty = [t for t in targets if not t.has_data()]
        if not empty:
            with_data.append(panel["title"])
            continue
        why = "; ".join(f"{t.query}" + (f" ({t.error})" if t.error else "") for t in empty)
        without.append(f"{panel['title']}: {why}")
    out = sys.stdout
    out.write(f"\npage:       {page}\n")
    out.write(f"screenshot: {png if png else '(none)'}\n")
    out.write(f"took {seconds:.0f} s\n")
    out.write(f"{len(with_data)} panels with data: {', '.join(with_data)}\n")
    out.write(f"{len(without)} panels (or queries) without data:\n")
    for line in without:
        out.write(f"  - {line}\n")
    out.write(f"Prometheus alerts during the run: {'; '.join(alerts) or 'none'}\n")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        check_args(args)
        return preview(args)
    except (PreviewError, ServiceError) as error:
        _say(f"error: {error}")
        return 1
    except KeyboardInterrupt:
        _say("interrupted: everything started was stopped and its folders removed")
        return 130


if __name__ == "__main__":
    sys.exit(main())
