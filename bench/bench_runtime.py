"""End-to-end throughput: driftstream against the raw floor and a per-event pipeline.

One run, on the embedded broker and a real Redis, over one topic of
reference events (10 numeric + 2 categorical features + a score):

- **floor**: confluent-kafka ``consume(n)`` plus ``orjson.loads`` of every
  value, nothing else;
- **driftstream**: the worker end to end with every monitor on (windowed
  statistics on every column, ADWIN and Page-Hinkley on every numeric one),
  state, offsets and outbox committed to Redis per micro-batch;
- **driftstream, repartition**: the same with ``kafka.routing: repartition``:
  every event is read, forwarded through the outbox to the repartition
  topic, and read again there by its model's monitors;
- **driftstream, labels**: the same with a label for every prediction on a
  labels topic, 30 s of event time after it: every pair is joined in the
  Redis buffer, and windows of 10 s are judged (metrics, ADWIN and DDM on
  the error stream). Its rate counts predictions, like the others; each
  one also brings a label record, so it is also given in records/s;
- **per-event**: the design driftstream exists to beat, a loop per event
  and per feature with river's ADWIN and Page-Hinkley (no state store).

    python bench/bench_runtime.py [--events 200000]

The last line is JSON with the figures. Not a test: these machines are
shared, so compare ratios measured in one run, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry

from driftstream.config import parse_config
from driftstream.core.baseline import build_profile
from driftstream.runtime.app import build_worker, create_topics
from driftstream.runtime.services import kafka_service, redis_service
from driftstream.synthetic import (
    REFERENCE_CATEGORICAL,
    REFERENCE_MODEL_ID,
    REFERENCE_NUMERIC,
    feature_rows,
    reference_frame,
)

LABEL_DELAY_SECONDS = 30.0
START_TS = 1_767_225_600.0


def make_labels(n: int) -> list[bytes]:
    """One label per reference event, sent LABEL_DELAY_SECONDS of event time after it."""
    data = reference_frame(n, seed=2)
    return [
        orjson.dumps(
            {
                "event_id": f"e{i}",
                "model_id": REFERENCE_MODEL_ID,
                "ts": START_TS + i * 0.001 + LABEL_DELAY_SECONDS,
                "label": label,
            }
        )
        for i, label in enumerate(reference_labels(data).tolist())
    ]


def reference_labels(data: dict[str, Any]) -> Any:
    """Outcomes that follow the reference score (a calibrated model)."""
    import numpy as np

    rng = np.random.default_rng(5)
    return np.where(rng.random(len(data["score"])) < data["score"], "yes", "no").astype(object)


def make_events(n: int) -> list[bytes]:
    data = reference_frame(n, seed=2)
    rows = feature_rows(data, (*REFERENCE_NUMERIC, *REFERENCE_CATEGORICAL))
    return [
        orjson.dumps(
            {
                "event_id": f"e{i}",
                "model_id": REFERENCE_MODEL_ID,
                "model_version": "v1",
                "ts": START_TS + i * 0.001,
                "features": features,
                "prediction": prediction,
                "score": score,
            }
        )
        for i, (features, prediction, score) in enumerate(
            zip(rows, data["prediction"].tolist(), data["score"].tolist(), strict=True)
        )
    ]


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    # One partition, created up front: the floor reads partition 0 only.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1)])[topic].result(timeout=15)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000}
    )
    key = REFERENCE_MODEL_ID.encode()
    for value in values:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(60):
        raise SystemExit("the broker did not take every event within 60 s")


def timed_consume(
    bootstrap: str, topic: str, n: int, batch: int, handle: Callable[[list[Message]], object]
) -> float:
    """Events per second of ``handle`` over the first ``n`` events of ``topic``."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    seen, started, deadline = 0, None, time.monotonic() + 300
    while seen < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {seen:,} of {n:,} events arrived on {topic}")
        messages = consumer.consume(batch, 1.0)[: n - seen]
        if started is None and messages:
            started = time.perf_counter()
        handle(messages)
        seen += len(messages)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return n / elapsed


def floor(bootstrap: str, topic: str, n: int, batch: int) -> float:
    def decode(messages: list[Message]) -> None:
        for message in messages:
            orjson.loads(message.value())

    return timed_consume(bootstrap, topic, n, batch, decode)


def per_event(bootstrap: str, topic: str, n: int, batch: int) -> float:
    from river.drift import ADWIN, PageHinkley

    detectors = {name: (ADWIN(), PageHinkley()) for name in REFERENCE_NUMERIC}
    counts: dict[str, dict[str, int]] = {name: {} for name in REFERENCE_CATEGORICAL}

    def update(messages: list[Message]) -> None:
        for message in messages:
            features = json.loads(message.value())["features"]
            for name, (adwin, ph) in detectors.items():
                adwin.update(features[name])
                ph.update(features[name])
            for name, table in counts.items():
                table[features[name]] = table.get(features[name], 0) + 1

    return timed_consume(bootstrap, topic, n, batch, update)


def driftstream(
    bootstrap: str,
    redis_url: str,
    topic: str,
    n: int,
    batch: int,
    workdir: Path,
    routing: str = "by_key",
    labels: bool = False,
) -> float:
    """Events of ``topic`` monitored per second (with repartition, each is read twice).

    With ``labels`` every event's label is read from ``<topic>-labels`` and
    joined; the rate still counts the events of ``topic``.
    """
    data = reference_frame(20_000, seed=1)
    model: dict[str, Any] = {"baseline": str(workdir / "baseline.json")}
    if labels:
        data["label"] = reference_labels(data)
        model["labels"] = {
            "positive": "yes",
            "window_seconds": 10.0,
            "wait_seconds": LABEL_DELAY_SECONDS,
            "lateness_seconds": 1.0,
            "ttl_seconds": 3600.0,
        }
    profile = build_profile(
        data,
        model_id=REFERENCE_MODEL_ID,
        prediction="prediction",
        score="score",
        target="label" if labels else None,
        positive="yes" if labels else None,
    )
    (workdir / "baseline.json").write_bytes(profile.to_json())
    config = parse_config(document(model, bootstrap, redis_url, topic, batch, routing))
    create_topics(config)
    worker = build_worker(config, CollectorRegistry())
    worker.start()
    while worker.processed == 0:  # the group join is not throughput
        worker.step()
    reads = 2 if routing == "repartition" or labels else 1
    first, started = worker.processed, time.perf_counter()
    deadline = time.monotonic() + 300
    while worker.processed < reads * n:
        if time.monotonic() > deadline:
            raise SystemExit(f"driftstream: only {worker.processed:,} of {reads * n:,} records")
        worker.step()
    elapsed = time.perf_counter() - started
    worker.close()
    return (reads * n - first) / reads / elapsed


def document(
    model: dict[str, Any],
    bootstrap: str,
    redis_url: str,
    topic: str,
    batch: int,
    routing: str = "by_key",
    name: str = "bench",
) -> dict[str, Any]:
    """The config of one benchmark run: its own group, key prefix and repartition topic."""
    run = uuid.uuid4().hex[:6]
    return {
        "models": {REFERENCE_MODEL_ID: model},
        "kafka": {
            "client": {"bootstrap.servers": bootstrap, "session.timeout.ms": 6000},
            "group_id": f"{name}-{run}",
            "batch_size": batch,
            "partitions": 1,
            "routing": routing,
            "topics": {
                "predictions": topic,
                "features": f"{topic}-features",
                "labels": f"{topic}-labels",
                "alerts": f"{topic}-alerts",
                "dlq": f"{topic}-dlq",
                "repartition": f"{topic}-repartition-{run}",
            },
        },
        "redis": {"url": redis_url, "key_prefix": f"{name}-{run}"},
        "metrics": {"port": 0},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="floor and driftstream runs, interleaved; medians count (default: 3)",
    )
    parser.add_argument(
        "--naive-events",
        type=int,
        default=50_000,
        help="events for the slow per-event pipeline (default: 50000)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=20_000,
        help="micro-batch size (default: 20000, as the config's default)",
    )
    args = parser.parse_args()
    with (
        kafka_service(os.environ) as bootstrap,
        redis_service(os.environ) as redis_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        topic = f"bench-{uuid.uuid4().hex[:6]}"
        print(f"producing {args.events:,} reference events ...", file=sys.stderr)
        values = make_events(args.events)
        size = sum(map(len, values)) / len(values)
        produce(bootstrap, topic, values)
        produce(bootstrap, f"{topic}-labels", make_labels(args.events))
        floors, ours, repartitioned, labelled = [], [], [], []
        for round_number in range(1, args.rounds + 1):
            print(f"round {round_number}/{args.rounds} ...", file=sys.stderr)
            floors.append(floor(bootstrap, topic, args.events, args.batch))
            ours.append(
                driftstream(bootstrap, redis_url, topic, args.events, args.batch, Path(tmp))
            )
            repartitioned.append(
                driftstream(
                    bootstrap, redis_url, topic, args.events, args.batch, Path(tmp), "repartition"
                )
            )
            labelled.append(
                driftstream(
                    bootstrap, redis_url, topic, args.events, args.batch, Path(tmp), labels=True
                )
            )
        naive = per_event(bootstrap, topic, min(args.naive_events, args.events), args.batch)
    floor_eps, ours_eps = statistics.median(floors), statistics.median(ours)
    repartition_eps = statistics.median(repartitioned)
    labels_eps = statistics.median(labelled)
    print(
        f"reference event: 10 numeric + 2 categorical features + score, {size:.0f} bytes; "
        f"{args.events:,} events, batches of {args.batch:,}, median of {args.rounds} rounds"
    )
    print(f"{'pipeline':<44}{'events/s':>12}{'vs floor':>10}   rounds")
    rows = (
        ("floor: consume + orjson decode", floor_eps, floors),
        ("driftstream: every monitor + Redis commits", ours_eps, ours),
        ("driftstream, routing: repartition", repartition_eps, repartitioned),
        ("driftstream, every prediction labelled", labels_eps, labelled),
        ("per-event: json + river loop per feature", naive, [naive]),
    )
    for name, eps, runs in rows:
        each = ", ".join(f"{r:,.0f}" for r in runs)
        print(f"{name:<44}{eps:>12,.0f}{eps / floor_eps:>9.2f}x   {each}")
    print(
        f"labelled vs no labels: {labels_eps / ours_eps:.2f}x in predictions/s, "
        f"{2 * labels_eps / ours_eps:.2f}x in records/s (a labelled prediction is two records)"
    )
    print(
        json.dumps(
            {
                "floor_events_per_s": round(floor_eps),
                "driftstream_events_per_s": round(ours_eps),
                "ratio": round(ours_eps / floor_eps, 3),
                "repartition_events_per_s": round(repartition_eps),
                "repartition_ratio": round(repartition_eps / floor_eps, 3),
                "labels_events_per_s": round(labels_eps),
                "labels_ratio": round(labels_eps / floor_eps, 3),
                "labels_vs_no_labels": round(labels_eps / ours_eps, 3),
                "labels_vs_no_labels_records": round(2 * labels_eps / ours_eps, 3),
                "per_event_events_per_s": round(naive),
                "driftstream_vs_per_event": round(ours_eps / naive, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
