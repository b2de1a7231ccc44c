"""``driftstream demo``: the whole pipeline on embedded services, in one command.

It starts a Tansu broker and a private Redis (unless the environment names
running ones), builds a baseline from generated training data, produces
synthetic inference traffic for a small fraud model with a drift injected
into some features at a known event, runs the worker until every event is
committed and every alert delivered, and prints the alerts it reads back
from the alerts topic.

Labels follow their predictions as a label source would send them: after an
exponential delay (mean ``LABEL_DELAY_SECONDS`` of event time), a tenth
never, and a few before their prediction. From a second known event on, the
labels follow a new relationship to the features (a concept drift the
feature statistics cannot see), which the joined performance must catch.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import orjson
import yaml
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
LABEL_DELAY_SECONDS = 60.0  # mean delay from a prediction to its label, in event time
LABEL_LOSS = 0.1  # share of predictions that never get a label
LABEL_EARLY = 0.02  # share of labels sent before their prediction
# Windows of joined pairs: 30 s of prediction time (3,000 predictions), judged
# once the labels have had 30 s more to arrive.
DEMO_LABELS = {
    "positive": "fraud",
    "window_seconds": 30.0,
    "wait_seconds": 30.0,
    "lateness_seconds": 5.0,
    "ttl_seconds": 3600.0,
}


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
    concept_at: int | None = None,
    save: Path | None = None,
) -> int:
    """Run the demo; ``concept_at`` None produces no labels.

    With ``save``, the folder gets what a backtest of the demo needs (``_save``).
    """
    run_id = uuid.uuid4().hex[:8]
    with contextlib.ExitStack() as stack:
        err.write("starting embedded Kafka (Tansu) and Redis ...\n")
        bootstrap = stack.enter_context(kafka_service(env))
        redis_url = stack.enter_context(redis_service(env))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="driftstream-")))
        config = _demo_config(workdir, bootstrap, redis_url, run_id, seed, concept_at is not None)
        create_topics(config)
        concept = "" if concept_at is None else f", concept drift from event {concept_at:,}"
        err.write(f"producing {events:,} events (drift from event {drift_at:,}{concept}) ...\n")
        traffic = _produce(config, events, drift_at, seed, concept_at)
        worker = build_worker(config, CollectorRegistry())
        err.write("running the worker ...\n")
        total = events + traffic.labels
        _drain(worker, total, Progress(total, err))
        alerts = _read_alerts(config, _published(worker))
        if save is not None:
            _save(save, config, traffic, err)
    _report(alerts, events, traffic, as_json, out)
    return 0


@dataclass(frozen=True)
class Traffic:
    """What the demo produced, and where its changes start (event time)."""

    drift_ts: float | None
    concept_ts: float | None = None
    labels: int = 0


def _demo_config(
    workdir: Path, bootstrap: str, redis_url: str, run_id: str, seed: int, labels: bool
) -> Config:
    training = synthetic.frame(20_000, seed)
    profile = build_profile(
        training,
        model_id=synthetic.MODEL_ID,
        prediction="prediction",
        score="score",
        target="label",
        positive="fraud",
        created_from="demo training data",
    )
    baseline = workdir / "baseline.json"
    baseline.write_bytes(profile.to_json())
    topics = {
        name: f"driftstream-demo-{run_id}.{name}"
        for name in ("predictions", "features", "labels", "alerts", "dlq")
    }
    model: dict[str, Any] = {"baseline": str(baseline)}
    if labels:
        model["labels"] = DEMO_LABELS
    return parse_config(
        {
            "models": {synthetic.MODEL_ID: model},
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


def _produce(
    config: Config, events: int, drift_at: int, seed: int, concept_at: int | None
) -> Traffic:
    """Produce the traffic (and labels unless ``concept_at`` is None)."""
    parts = [(0, drift_at, seed + 1, ()), (drift_at, events, seed + 2, DRIFTED)]
    stable, drifted = (synthetic.frame(end - start, s, drift=d) for start, end, s, d in parts)
    rows = _rows(stable) + _rows(drifted)
    ts = [START_TS + index * EVENT_SPACING for index in range(events)]
    sends: list[tuple[float, int, str, int]] = [(t, 1, "prediction", i) for i, t in enumerate(ts)]
    truth: list[str] = []
    if concept_at is not None:
        truth = _labels(parts, concept_at)
        sends += _label_sends(ts, seed)
    sends.sort()
    client = DriftClient(
        str(config.kafka.client_settings()["bootstrap.servers"]),
        predictions_topic=config.kafka.topics.predictions,
        features_topic=config.kafka.topics.features,
        labels_topic=config.kafka.topics.labels,
        model_version="demo-1",
        config={"log_level": 4},
    )
    labels = 0
    with client:
        for at, _, kind, index in sends:
            if kind == "prediction":
                row = rows[index]
                client.log_prediction(
                    synthetic.MODEL_ID,
                    row["features"],
                    row["prediction"],
                    score=row["score"],
                    event_id=f"evt-{index}",
                    ts=ts[index],
                )
            else:
                client.log_label(
                    synthetic.MODEL_ID, f"evt-{index}", truth[index], ts=max(at, ts[index])
                )
                labels += 1
    return Traffic(
        START_TS + drift_at * EVENT_SPACING if drift_at < events else None,
        None if concept_at is None or concept_at >= events else ts[concept_at],
        labels,
    )


def _save(folder: Path, config: Config, traffic: Traffic, err: TextIO) -> None:
    """The demo's topics as an export, its config, baseline and known incidents.

    ``driftstream replay --config config.yaml --data events.jsonl.gz
    --incidents incidents.yaml`` then replays exactly what the worker read.
    """
    from driftstream.replay.sources import export, topic_source

    folder.mkdir(parents=True, exist_ok=True)
    model = config.models[synthetic.MODEL_ID]
    (folder / "baseline.json").write_bytes(Path(model.baseline).read_bytes())
    topics = config.kafka.topics
    section: dict[str, Any] = {"baseline": "baseline.json"}
    if model.labels is not None:
        section["labels"] = DEMO_LABELS
    document = {
        "models": {synthetic.MODEL_ID: section},
        "kafka": {
            "group_id": config.kafka.group_id,
            "partitions": config.kafka.partitions,
            "topics": {
                name: getattr(topics, name)
                for name in ("predictions", "features", "labels", "alerts", "dlq")
            },
        },
        "redis": {"key_prefix": config.redis.key_prefix},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    incidents = []
    if traffic.drift_ts is not None:
        moved = [*DRIFTED, "__score__", "__prediction__"]  # the outputs follow their inputs
        incidents.append(
            {
                "model_id": synthetic.MODEL_ID,
                "start": traffic.drift_ts,
                "features": moved,
                "note": "injected drift of " + ", ".join(DRIFTED),
            }
        )
    if traffic.concept_ts is not None:
        incidents.append(
            {
                "model_id": synthetic.MODEL_ID,
                "start": traffic.concept_ts,
                "features": ["__performance__"],
                "note": "concept drift: labels follow a new relationship to the features",
            }
        )
    (folder / "incidents.yaml").write_text(yaml.safe_dump(incidents, sort_keys=False))
    source = topic_source(config, [], [])
    count = export(source, folder / "events.jsonl.gz", config.kafka.batch_size)
    err.write(f"saved {count:,} records, the config, baseline and incidents to {folder}\n")


def _labels(parts: list[tuple[int, int, int, Any]], concept_at: int) -> list[str]:
    """Each event's true label: the old relationship before ``concept_at``, the new one after."""
    truth: list[str] = []
    for start, end, seed, drift in parts:
        old = synthetic.frame(end - start, seed, drift=drift)["label"].tolist()
        new = synthetic.frame(end - start, seed, drift=drift, concept=True)["label"].tolist()
        truth += [new[i] if start + i >= concept_at else old[i] for i in range(end - start)]
    return truth


def _label_sends(ts: list[float], seed: int) -> list[tuple[float, int, str, int]]:
    """When each label is sent: after a random delay, never, or just before its prediction."""
    rng = np.random.default_rng(seed + 100)
    count = len(ts)
    delays = rng.exponential(LABEL_DELAY_SECONDS, count)
    lost = rng.random(count) < LABEL_LOSS
    early = rng.random(count) < LABEL_EARLY
    sends = []
    for index in np.flatnonzero(~lost).tolist():
        if early[index]:
            # Sent before the prediction, with a time a moment after it.
            sends.append((ts[index] - 0.5, 0, "label", index))
        else:
            sends.append((ts[index] + float(delays[index]), 2, "label", index))
    return sends


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
    alerts: list[dict[str, Any]], events: int, traffic: Traffic, as_json: bool, out: TextIO
) -> None:
    features = (*synthetic.NUMERIC_FEATURES, *synthetic.CATEGORICAL_FEATURES)
    drifted = [f for f in features if f in DRIFTED]
    stable = [f for f in features if f not in DRIFTED]
    drift_ts = traffic.drift_ts
    summary = {
        "events": events,
        "drift_at_ts": drift_ts,
        "concept_drift_at_ts": traffic.concept_ts,
        "drifted_features": drifted,
        "stable_features": stable,
        "labels": traffic.labels,
        "alerts": len(alerts),
        "performance_alerts": sum(a["kind"] == "performance" for a in alerts),
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
        what = a["statistic"] if a["detector"] in ("window", "quality") else a["detector"]
        out.write(
            f"  {since:>9.1f}s  {a['kind']:<8} {a['severity']:<8} {a['feature']:<16} "
            f"{what:<26} {_num(a['value']):>8} {_num(a['threshold']):>9}\n"
        )
    when = "never" if drift_ts is None else f"at {drift_ts - START_TS:.1f}s of event time"
    out.write(f"\ndrift injected into {', '.join(drifted)} {when}; stable: {', '.join(stable)}\n")
    if traffic.labels:
        concept = traffic.concept_ts
        at = "never" if concept is None else f"at {concept - START_TS:.1f}s of event time"
        out.write(f"{traffic.labels:,} labels sent; concept drift (labels only) {at}\n")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
