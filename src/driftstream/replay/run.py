"""``driftstream replay``: read the input once, run every setting, write what they did.

Writes into the output folder:

- ``alerts.jsonl``: every alert exactly as the live worker publishes it;
- ``timeline.parquet``: one row per judged window, column and statistic
  (value, threshold, bounds, count), per performance window and metric,
  and per detector firing;
- ``summary.json``: the input, the counts, every setting with its score
  against the incidents, and what the report draws;
- ``report.html``: the same, for a person.

With a sweep (``--set``), each setting's alerts and timeline go to
``settings/<n>/`` and the report draws the first setting.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from driftstream.config import load_config
from driftstream.replay.engine import (
    TIMELINE_FIELDS,
    Progress,
    SettingRun,
    setting_run,
    share_decoders,
)
from driftstream.replay.incidents import (
    EventTimes,
    Incident,
    check_models,
    load_incidents,
    pareto,
    score,
)
from driftstream.replay.sources import FileSource, SourceError, TopicSource, topic_source
from driftstream.replay.sweep import Setting, load_settings, parse_set
from driftstream.runtime.models import load_models

LISTED_ERRORS = 20  # bad lines listed in summary.json; all are counted


@dataclass(frozen=True)
class ReplayOptions:
    config: Path
    out: Path
    data: Sequence[Path] = ()
    start: Sequence[str] = ()  # --from: one RFC 3339 time or topic:partition:offset places
    end: Sequence[str] = ()  # --to
    incidents: Path | None = None
    sets: Sequence[str] = ()
    batch_size: int | None = None
    quiet: bool = False
    report: bool = True


@dataclass
class Outcome:
    summary: dict[str, Any]
    runs: list[SettingRun] = field(default_factory=list)


def replay(options: ReplayOptions, stream: TextIO | None = None) -> Outcome:
    """Run the replay the options describe; raises ConfigError/SourceError/... naming the fix."""
    base = load_config(options.config)
    settings = load_settings(options.config, [parse_set(s) for s in options.sets])
    incidents = load_incidents(options.incidents) if options.incidents else []
    check_models(incidents, base.models, source=str(options.incidents))
    source = _source(options, base)
    runs = [
        setting_run(s.index, s.name, s.values, s.config, load_models(s.config)) for s in settings
    ]
    share_decoders(runs)
    times = EventTimes(incidents)
    runs[0].watch.on_predictions = times.add
    batch_size = options.batch_size or base.kafka.batch_size
    unit = "records" if isinstance(source, TopicSource) else "bytes"
    progress = Progress(source.size(), unit, stream)
    progress.enabled = progress.enabled and not options.quiet
    started = time.perf_counter()
    records = 0
    for batch in source.batches(batch_size, progress.read):
        for run in runs:
            run.feed(batch)
        records += len(batch)
        progress.add(len(batch))
    for run in runs:
        run.finish()
    progress.close()
    if not records:
        msg = f"the input holds no records: {source.description}"
        raise SourceError(msg)
    elapsed = time.perf_counter() - started
    summary = _summary(options, source, settings, runs, incidents, times, records, elapsed)
    _write(options.out, runs, summary, options.report)
    return Outcome(summary, runs)


def _source(options: ReplayOptions, config: Any) -> FileSource | TopicSource:
    if options.data and (options.start or options.end):
        msg = "give either --data files or a topic range (--from/--to), not both"
        raise SourceError(msg)
    if options.data:
        topics = config.kafka.topics
        roles = {
            "predictions": topics.predictions,
            "features": topics.features,
            "labels": topics.labels,
        }
        return FileSource([Path(p) for p in options.data], roles)
    return topic_source(config, options.start, options.end)


# -- results ------------------------------------------------------------------


def _summary(
    options: ReplayOptions,
    source: FileSource | TopicSource,
    settings: Sequence[Setting],
    runs: Sequence[SettingRun],
    incidents: Sequence[Incident],
    times: EventTimes,
    records: int,
    elapsed: float,
) -> dict[str, Any]:
    scored = []
    for run in runs:
        alerts = [orjson.loads(blob) for blob in run.alerts()]
        card = score(alerts, incidents, times).to_dict() if incidents else None
        scored.append((run, alerts, card))
    points = [
        (
            None if card is None else card["delay_seconds_median"],
            0.0 if card is None else card["false_alarms_per_day"],
        )
        for _, _, card in scored
    ]
    front = pareto(points) if incidents else [False] * len(runs)
    shown_run, shown_alerts, shown_card = scored[0]
    models = sorted({model for model, _ in shown_run.watch.events})
    spans = [span for span in map(times.span, models) if span is not None]
    return {
        "title": "driftstream backtest",
        "generated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": str(options.config),
        "input": {
            "kind": "files" if isinstance(source, FileSource) else "topics",
            "description": source.description,
            "records": records,
            "start": min((s[0] for s in spans), default=None),
            "end": max((s[1] for s in spans), default=None),
            "ranges": _ranges(source),
        },
        "settings": [
            {
                "index": run.index,
                "name": run.name,
                "values": run.values,
                "alerts": len(alerts),
                "by_kind": dict(Counter(a.get("kind", "?") for a in alerts)),
                "score": _card(card),
                "pareto": bool(on_front),
                "output": _folder(run, len(runs)),
            }
            for (run, alerts, card), on_front in zip(scored, front, strict=True)
        ],
        "shown": 0,
        "events": {f"{m}|{role}": n for (m, role), n in sorted(shown_run.watch.events.items())},
        "dead_letters": dict(shown_run.dead_letters()),
        "bad_lines": _bad_lines(source),
        "models": _models(shown_run, shown_alerts, incidents),
        "incidents": [] if shown_card is None else _first_caught(shown_card),
        "replay_seconds": round(elapsed, 3),
        "records_per_second": round(records / elapsed) if elapsed > 0 else None,
    }


def _first_caught(card: dict[str, Any]) -> list[dict[str, Any]]:
    """Each incident as the earlier of its drift-family and performance detections.

    An incident of the model's outputs (a concept drift) is caught by
    performance alerts only, one of its inputs mostly by drift alerts: a
    person asks whether and when any alert caught it.
    """
    merged = []
    drift = card["per_incident"]
    performance = (card.get("performance") or {}).get("per_incident") or [None] * len(drift)
    for first, second in zip(drift, performance, strict=True):
        chosen = dict(first, caught_by="drift" if first["detected"] else None)
        later = first["delay_seconds"] if first["detected"] else math.inf
        if second is not None and second["detected"] and second["delay_seconds"] < later:
            chosen = dict(second, caught_by="performance")
        merged.append(chosen)
    return merged


def _card(card: dict[str, Any] | None) -> dict[str, Any] | None:
    if card is None:
        return None
    return {k: v for k, v in card.items() if k != "per_incident"} | {
        "performance": None
        if card.get("performance") is None
        else {k: v for k, v in card["performance"].items() if k != "per_incident"}
    }


def _ranges(source: FileSource | TopicSource) -> list[dict[str, Any]]:
    if isinstance(source, FileSource):
        return [{"file": str(p)} for p in source.paths]
    return [
        {"topic": t, "partition": p, "from": start, "to": end}
        for (t, p), (start, end) in sorted(source.ranges.items())
    ]


def _bad_lines(source: FileSource | TopicSource) -> dict[str, Any]:
    if not isinstance(source, FileSource):
        return {"count": 0, "first": []}
    return {
        "count": source.bad_lines,
        "first": [
            {"file": e.path, "line": e.line, "reason": e.reason}
            for e in source.errors[:LISTED_ERRORS]
        ],
    }


def _folder(run: SettingRun, count: int) -> str:
    return "." if count == 1 else f"settings/{run.index:02d}"


def _models(
    run: SettingRun, alerts: Sequence[dict[str, Any]], incidents: Sequence[Incident]
) -> dict[str, Any]:
    models: dict[str, Any] = {}
    for row in run.watch.timeline.rows():
        model = models.setdefault(row["model_id"], _empty_model())
        point = {
            "start": row["window_start"],
            "end": row["window_end"],
            "value": row["value"],
            "threshold": row["threshold"],
            "count": row["count"],
        }
        if row["kind"] == "performance":
            model["performance"].setdefault(row["statistic"], []).append(
                point | {"baseline": row["baseline"]}
            )
            continue
        series = model["columns"].setdefault(row["column"], {})
        series.setdefault(f"{row['statistic']}|{row['reference']}", []).append(point)
    for alert in alerts:
        models.setdefault(alert["model_id"], _empty_model())["alerts"].append(alert)
    for incident in incidents:
        model = models.setdefault(incident.model_id, _empty_model())
        model["incidents"].append(
            {
                "start": incident.start,
                "end": incident.end,
                "features": None if incident.features is None else list(incident.features),
                "note": incident.note,
            }
        )
    return models


def _empty_model() -> dict[str, Any]:
    return {"columns": {}, "alerts": [], "performance": {}, "incidents": []}


def _write(out: Path, runs: Sequence[SettingRun], summary: dict[str, Any], report: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for run in runs:
        folder = out / _folder(run, len(runs))
        folder.mkdir(parents=True, exist_ok=True)
        alerts = run.alerts()
        (folder / "alerts.jsonl").write_bytes(b"".join(a + b"\n" for a in alerts))
        pq.write_table(_timeline_table(run, alerts), folder / "timeline.parquet")
    (out / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    if report:
        from driftstream.report import render_report

        (out / "report.html").write_text(render_report(summary), encoding="utf-8")


def _timeline_table(run: SettingRun, alerts: Sequence[bytes]) -> pa.Table:
    columns = {name: list(values) for name, values in run.watch.timeline.columns.items()}
    for blob in alerts:
        alert = orjson.loads(blob)
        if alert.get("detector") in (None, "window"):
            continue
        row = {
            "model_id": alert["model_id"],
            "role": "labels" if alert.get("feature") == "__performance__" else "predictions",
            "kind": "detector",
            "column": alert["feature"],
            "statistic": f"{alert['detector']}:{alert['statistic']}",
            "reference": alert.get("kind"),
            "value": alert.get("value"),
            "threshold": alert.get("threshold"),
            "baseline": None,
            "window_start": alert.get("event_time"),
            "window_end": alert.get("event_time"),
            "count": 0,
        }
        for name in TIMELINE_FIELDS:
            columns[name].append(row[name])
    schema = pa.schema(
        [
            (name, pa.string())
            if name in ("model_id", "role", "kind", "column", "statistic", "reference")
            else (name, pa.int64() if name == "count" else pa.float64())
            for name in TIMELINE_FIELDS
        ]
    )
    return pa.table(columns, schema=schema)


def _scored(card: dict[str, Any]) -> str:
    delay = card["delay_seconds_median"]
    shown = "-" if delay is None else f"{delay:.1f} s"
    return (
        f"caught {card['detected']} of {card['incidents']} incidents, median delay {shown}, "
        f"{card['false_alarms_per_day']:.2f} false alarms/day"
    )


def print_result(outcome: Outcome, out: Path, stream: TextIO | None = None) -> None:
    """The lines a person reads at the end of a replay."""
    stream = stream if stream is not None else sys.stdout
    summary = outcome.summary
    source = summary["input"]
    print(
        f"replayed {source['records']:,} records ({source['description']}) in "
        f"{summary['replay_seconds']:.1f} s, {summary['records_per_second'] or 0:,} records/s",
        file=stream,
    )
    for setting in summary["settings"]:
        line = f"  [{setting['index']}] {setting['name']}: {setting['alerts']} alerts"
        card = setting["score"]
        if card is not None:
            line += f"; drift alerts: {_scored(card)}"
            if card.get("performance") is not None:
                line += f"; performance alerts: {_scored(card['performance'])}"
            if setting["pareto"] and len(summary["settings"]) > 1:
                line += " (Pareto front)"
        print(line, file=stream)
    caught = [i for i in summary["incidents"] if i["caught_by"]]
    if summary["incidents"]:
        print(
            f"  incidents caught by any alert (first setting): {len(caught)} of "
            f"{len(summary['incidents'])}",
            file=stream,
        )
    dead = sum(summary["dead_letters"].values())
    if dead or summary["bad_lines"]["count"]:
        print(
            f"  {dead} records refused by the decoder (by reason in summary.json), "
            f"{summary['bad_lines']['count']} unreadable lines",
            file=stream,
        )
    print(f"wrote {out}/summary.json, report.html, alerts and timeline", file=stream)
