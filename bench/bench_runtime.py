"""End-to-end throughput: driftstream against the raw floor and a per-event pipeline.

One run, on the embedded broker and a real Redis, over one topic of
reference events (10 numeric + 2 categorical features + a score):

- **floor**: confluent-kafka ``consume(n)`` plus ``orjson.loads`` of every
  value, nothing else;
- **driftstream**: the worker end to end with every monitor on (windowed
  statistics on every column, ADWIN and Page-Hinkley on every numeric one),
  state, offsets and outbox committed to Redis per micro-batch;
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
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from driftstream.config import parse_config
from driftstream.core.baseline import build_profile
from driftstream.runtime.app import build_worker, create_topics
from driftstream.runtime.services import kafka_service, redis_service
from driftstream.synthetic import (
    REFERENCE_CATEGORICAL,
    REFERENCE_MODEL_ID,
    REFERENCE_NUMERIC,
    reference_frame,
)


def make_events(n: int) -> list[bytes]:
    data = reference_frame(n, seed=2)
    columns = {k: v.tolist() for k, v in data.items()}
    names = (*REFERENCE_NUMERIC, *REFERENCE_CATEGORICAL)
    return [
        orjson.dumps(
            {
                "event_id": f"e{i}",
                "model_id": REFERENCE_MODEL_ID,
                "model_version": "v1",
                "ts": 1_767_225_600.0 + i * 0.001,
                "features": {name: columns[name][i] for name in names},
                "prediction": columns["prediction"][i],
                "score": columns["score"][i],
            }
        )
        for i in range(n)
    ]


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
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
    producer.flush(60)


def floor(bootstrap: str, topic: str, n: int, batch: int) -> float:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-floor", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    seen, started = 0, None
    while seen < n:
        messages = consumer.consume(batch, 1.0)
        if started is None and messages:
            started = time.perf_counter()
        for message in messages:
            orjson.loads(message.value())
        seen += len(messages)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return n / elapsed


def per_event(bootstrap: str, topic: str, n: int, batch: int) -> float:
    from river.drift import ADWIN, PageHinkley

    detectors = {name: (ADWIN(), PageHinkley()) for name in REFERENCE_NUMERIC}
    counts: dict[str, dict[str, int]] = {name: {} for name in REFERENCE_CATEGORICAL}
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-naive", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    seen, started = 0, None
    while seen < n:
        messages = consumer.consume(batch, 1.0)
        if started is None and messages:
            started = time.perf_counter()
        for message in messages[: n - seen]:
            event = json.loads(message.value())
            features = event["features"]
            for name, (adwin, ph) in detectors.items():
                adwin.update(features[name])
                ph.update(features[name])
            for name, table in counts.items():
                table[features[name]] = table.get(features[name], 0) + 1
        seen += len(messages)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return min(seen, n) / elapsed


def driftstream(
    bootstrap: str, redis_url: str, topic: str, n: int, batch: int, workdir: Path
) -> float:
    data = reference_frame(20_000, seed=1)
    profile = build_profile(
        data, model_id=REFERENCE_MODEL_ID, prediction="prediction", score="score"
    )
    (workdir / "baseline.json").write_bytes(profile.to_json())
    run = uuid.uuid4().hex[:6]
    config = parse_config(
        {
            "models": {REFERENCE_MODEL_ID: {"baseline": str(workdir / "baseline.json")}},
            "kafka": {
                "client": {"bootstrap.servers": bootstrap, "session.timeout.ms": 6000},
                "group_id": f"bench-{run}",
                "batch_size": batch,
                "partitions": 1,
                "topics": {
                    "predictions": topic,
                    "features": f"{topic}-features",
                    "alerts": f"{topic}-alerts",
                    "dlq": f"{topic}-dlq",
                },
            },
            "redis": {"url": redis_url, "key_prefix": f"bench-{run}"},
            "metrics": {"port": 0},
        }
    )
    create_topics(config)
    worker = build_worker(config, CollectorRegistry())
    worker.start()
    while worker.processed == 0:  # the group join is not throughput
        worker.step()
    first, started = worker.processed, time.perf_counter()
    while worker.processed < n:
        worker.step()
    elapsed = time.perf_counter() - started
    worker.close()
    return (n - first) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument(
        "--naive-events",
        type=int,
        default=50_000,
        help="events for the slow per-event pipeline (default: 50000)",
    )
    parser.add_argument("--batch", type=int, default=5000, help="micro-batch size")
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
        print("measuring ...", file=sys.stderr)
        floor_eps = floor(bootstrap, topic, args.events, args.batch)
        ours = driftstream(bootstrap, redis_url, topic, args.events, args.batch, Path(tmp))
        naive = per_event(bootstrap, topic, min(args.naive_events, args.events), args.batch)
    print(f"reference event: 10 numeric + 2 categorical features + score, {size:.0f} bytes")
    print(f"{'pipeline':<44}{'events/s':>12}{'vs floor':>10}")
    for name, eps in (
        ("floor: consume + orjson decode", floor_eps),
        ("driftstream: every monitor + Redis commits", ours),
        ("per-event: json + river loop per feature", naive),
    ):
        print(f"{name:<44}{eps:>12,.0f}{eps / floor_eps:>9.2f}x")
    print(
        json.dumps(
            {
                "floor_events_per_s": round(floor_eps),
                "driftstream_events_per_s": round(ours),
                "ratio": round(ours / floor_eps, 3),
                "per_event_events_per_s": round(naive),
                "driftstream_vs_per_event": round(ours / naive, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
