"""``driftstream demo``: the whole pipeline on embedded services, in one command.

It starts a Tansu broker and a private Redis (unless the environment names
running ones), builds a baseline from generated training data, produces
synthetic inference traffic for a small fraud model with a drift injected
into some features at a known event, runs the worker until every event is
committed and every alert delivered, and prints the alerts it reads back
from the alerts topic.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from prometheus_client import CollectorRegistry

from driftstream import synthetic
from driftstream.client import DriftClient
from driftstream.config import Config, parse_config
from driftstream.core.baseline import build_profile
from driftstream.runtime.app import build_worker, create_topics
from driftstream.runtime.services import kafka_service, redis_service
from driftstream.runtime.worker import Worker

DRIFTED = ("amount", "latency_ms", "country")
START_TS = 1_767_225_600.0  # 2026-01-01T00:00:00Z: fixed, so runs are reproducible
EVENT_SPACING = 0.01  # seconds of event time between events (100 events/s)
TIME_LIMIT = 150.0


class Progress:
    """One status line on a terminal; a line per 10% elsewhere (CI logs)."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.live = stream.isatty()
        self._shown = -1

    def update(self, done: int, alerts: int) -> None:
        share = min(done / self.total, 1.0)
        if self.live:
            bar = "#" * int(share * 30)
            self.stream.write(f"\r  [{bar:<30}] {done:>9,}/{self.total:,} events, {alerts} alerts")
            self.stream.flush()
        elif int(share * 10) > self._shown:
            self._shown = int(share * 10)
            self.stream.write(f"  {done:,}/{self.total:,} events processed, {alerts} alerts\n")

    def finish(self) -> None:
        if self.live:
            self.stream.write("\n")


def run_demo(
    events: int,
    drift_at: int,
    seed: int,
    as_json: bool,
    env: Mapping[str, str],
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    run_id = uuid.uuid4().hex[:8]
    with contextlib.ExitStack() as stack:
        err.write("starting embedded Kafka (Tansu) and Redis ...\n")
        bootstrap = stack.enter_context(kafka_service(env))
        redis_url = stack.enter_context(redis_service(env))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="driftstream-")))
        config = _demo_config(workdir, bootstrap, redis_url, run_id, seed)
        create_topics(config)
        err.write(f"producing {events:,} events (drift from event {drift_at:,}) ...\n")
        drift_ts = _produce(config, events, drift_at, seed)
        worker = build_worker(config, CollectorRegistry())
        err.write("running the worker ...\n")
        _drain(worker, events, Progress(events, err))
        alerts = _read_alerts(config, _published(worker))
    _report(alerts, events, drift_ts, as_json, out)
    return 0


def _demo_config(workdir: Path, bootstrap: str, redis_url: str, run_id: str, seed: int) -> Config:
    training = synthetic.frame(20_000, seed)
    profile = build_profile(
        training,
        model_id=synthetic.MODEL_ID,
        prediction="prediction",
        score="score",
        target="label",
        created_from="demo training data",
    )
    baseline = workdir / "baseline.json"
    baseline.write_bytes(profile.to_json())
    topics = {
        name: f"driftstream-demo-{run_id}.{name}"
        for name in ("predictions", "features", "alerts", "dlq")
    }
    return parse_config(
        {
            "models": {synthetic.MODEL_ID: {"baseline": str(baseline)}},
            "kafka": {
                "client": {
                    "bootstrap.servers": bootstrap,
                    "session.timeout.ms": 6000,
                    "heartbeat.interval.ms": 1000,
                },
                "group_id": f"driftstream-demo-{run_id}",
                "topics": topics,
                "partitions": 2,
            },
            "redis": {"url": redis_url, "key_prefix": f"driftstream-demo-{run_id}"},
            "metrics": {"port": 0},
        },
        "demo config",
    )


def _produce(config: Config, events: int, drift_at: int, seed: int) -> float | None:
    """Produce the traffic; returns the event time of the first drifted event."""
    stable = synthetic.frame(drift_at, seed + 1)
    drifted = synthetic.frame(max(events - drift_at, 0), seed + 2, drift=DRIFTED)
    client = DriftClient(
        str(config.kafka.client_settings()["bootstrap.servers"]),
        predictions_topic=config.kafka.topics.predictions,
        features_topic=config.kafka.topics.features,
        model_version="demo-1",
        config={"log_level": 4},
    )
    with client:
        index = 0
        for part in (stable, drifted):
            for row in _rows(part):
                client.log_prediction(
                    synthetic.MODEL_ID,
                    row["features"],
                    row["prediction"],
                    score=row["score"],
                    event_id=f"evt-{index}",
                    ts=START_TS + index * EVENT_SPACING,
                )
                index += 1
    return START_TS + drift_at * EVENT_SPACING if drift_at < events else None


def _rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for features, prediction, score in zip(
        synthetic.feature_rows(data),
        data["prediction"].tolist(),
        data["score"].tolist(),
        strict=True,
    ):
        # A JSON boolean, as a model server would send it.
        features["is_new_customer"] = features["is_new_customer"] == "true"
        rows.append({"features": features, "prediction": prediction, "score": score})
    return rows


def _drain(worker: Worker, events: int, progress: Progress) -> None:
    deadline = time.monotonic() + TIME_LIMIT
    worker.start()
    try:
        while worker.processed < events or worker.pending_outbox():
            if time.monotonic() > deadline:
                msg = f"the worker processed {worker.processed:,} of {events:,} events in time"
                raise TimeoutError(msg)
            worker.step()
            progress.update(worker.processed, int(_published(worker)))
    finally:
        progress.finish()
        worker.close()


def _published(worker: Worker) -> int:
    total = 0.0
    for metric in worker.metrics.alerts_published.collect():
        total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return int(total)


def _read_alerts(config: Config, expected: int) -> list[dict[str, Any]]:
    topic = config.kafka.topics.alerts
    consumer = Consumer(
        {
            "log_level": 4,
            **config.kafka.client_settings(),
            "group.id": "driftstream-demo-read",
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    alerts: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(alerts) < expected and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.5):
            value = message.value()
            if message.error() is None and value is not None:
                alerts.append(orjson.loads(value))
    consumer.close()
    return sorted(alerts, key=lambda a: (a["source"]["offset"], a["feature"], a["statistic"]))


def _report(
    alerts: list[dict[str, Any]], events: int, drift_ts: float | None, as_json: bool, out: TextIO
) -> None:
    features = (*synthetic.NUMERIC_FEATURES, *synthetic.CATEGORICAL_FEATURES)
    drifted = [f for f in features if f in DRIFTED]
    stable = [f for f in features if f not in DRIFTED]
    summary = {
        "events": events,
        "drift_at_ts": drift_ts,
        "drifted_features": drifted,
        "stable_features": stable,
        "alerts": len(alerts),
    }
    if as_json:
        for alert in alerts:
            out.write(orjson.dumps(alert).decode() + "\n")
        out.write(orjson.dumps({"summary": summary}).decode() + "\n")
        return
    out.write(f"\n{len(alerts)} alerts read back from the alerts topic:\n")
    out.write(
        f"  {'event time':>10}  {'kind':<8} {'severity':<8} {'feature':<16} "
        f"{'detector/statistic':<26} {'value':>8} {'threshold':>9}\n"
    )
    for a in alerts:
        since = a["event_time"] - START_TS
        what = a["statistic"] if a["detector"] == "window" else a["detector"]
        out.write(
            f"  {since:>9.1f}s  {a['kind']:<8} {a['severity']:<8} {a['feature']:<16} "
            f"{what:<26} {_num(a['value']):>8} {_num(a['threshold']):>9}\n"
        )
    when = "never" if drift_ts is None else f"at {drift_ts - START_TS:.1f}s of event time"
    out.write(f"\ndrift injected into {', '.join(drifted)} {when}; stable: {', '.join(stable)}\n")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
