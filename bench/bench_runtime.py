"""End-to-end throughput and memory: driftstream against the raw floor, at scale.

One run, on the embedded broker and a real Redis, over one topic (one
partition) of reference events, each keyed by its ``model_id``: by default
one model and 12 features (10 numeric + 2 categorical) plus a score.
Pipelines:

- **floor**: confluent-kafka ``consume(n)`` plus ``orjson.loads`` of every
  value, nothing else;
- **driftstream**: the worker end to end with every monitor on (windowed
  statistics on every column, ADWIN, Page-Hinkley and CUSUM on every numeric
  one),
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

The workload scales three ways:

- ``--models N``: events go round-robin to N models (``reference-model``
  when N is 1, else ``reference-model-000``, ``reference-model-001``, ...).
  Every model has the same baseline, built once and written once per model
  (a baseline file names its model);
- ``--features F``: F - 2 numeric features (``n0``, ``n1``, ... as
  ``driftstream.synthetic.reference_frame`` draws them) and the 2
  categoricals;
- ``--segments S``: every event carries ``"segment": {"shard": "s00"}`` to
  ``s{S-1}``, evenly spread in a fixed random order, and every model splits
  its monitors by ``shard`` with ``max_values: S``.

On the reference workload (1 model, 12 features, no segments) a run
measures every pipeline; on any other, the floor and driftstream only
(``--all`` adds the rest). Floor and driftstream runs interleave, round
after round; medians count. Each measurement runs in a fresh process,
which reports its events/s and its peak RSS (``VmHWM``), so no pipeline
inherits another's memory. No rate counts the first batch read (the
connection, the group join and the first fetch come with it), so
``--events`` must exceed ``--batch``.

One command per row of the README's tables:

    python bench/bench_runtime.py                   # reference: every pipeline
    python bench/bench_runtime.py --models 10
    python bench/bench_runtime.py --models 100
    python bench/bench_runtime.py --features 50
    python bench/bench_runtime.py --segments 100    # 1 model x 100 segment values

The last line is JSON with the figures. Not a test: these machines are
shared, so compare ratios measured in one run, not absolute numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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
    reference_numeric,
)

LABEL_DELAY_SECONDS = 30.0
START_TS = 1_767_225_600.0
SEGMENT_KEY = "shard"
SEGMENT_SEED = 3
TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class Workload:
    """What the topic holds: how many models, features and segment values."""

    models: int = 1
    features: int = len(REFERENCE_NUMERIC) + len(REFERENCE_CATEGORICAL)
    segments: int = 0

    @property
    def numeric(self) -> int:
        return self.features - len(REFERENCE_CATEGORICAL)

    @property
    def reference(self) -> bool:
        return self == REFERENCE

    def model_ids(self) -> list[str]:
        if self.models == 1:
            return [REFERENCE_MODEL_ID]
        width = max(3, len(str(self.models - 1)))
        return [f"{REFERENCE_MODEL_ID}-{k:0{width}d}" for k in range(self.models)]

    def owners(self, n: int) -> list[str]:
        """The model of each of ``n`` events: round-robin."""
        ids = self.model_ids()
        return [ids[i % len(ids)] for i in range(n)]

    def segment_values(self, n: int) -> list[str] | None:
        """Each event's ``shard``: every value equally often, in a fixed random order."""
        if not self.segments:
            return None
        width = max(2, len(str(self.segments - 1)))
        order = np.random.default_rng(SEGMENT_SEED).permutation(np.arange(n) % self.segments)
        return [f"s{value:0{width}d}" for value in order.tolist()]

    def describe(self) -> str:
        models = "1 model" if self.models == 1 else f"{self.models:,} models"
        segments = f"{self.segments:,} segment values" if self.segments else "no segments"
        return (
            f"{models}, {self.numeric} numeric + {len(REFERENCE_CATEGORICAL)} categorical "
            f"features + score, {segments}"
        )


REFERENCE = Workload()


def make_labels(n: int, workload: Workload = REFERENCE) -> list[bytes]:
    """One label per reference event, sent LABEL_DELAY_SECONDS of event time after it."""
    data = reference_frame(n, seed=2, numeric=workload.numeric)
    owners = workload.owners(n)
    return [
        orjson.dumps(
            {
                "event_id": f"e{i}",
                "model_id": owners[i],
                "ts": START_TS + i * 0.001 + LABEL_DELAY_SECONDS,
                "label": label,
            }
        )
        for i, label in enumerate(reference_labels(data).tolist())
    ]


def reference_labels(data: dict[str, Any]) -> Any:
    """Outcomes that follow the reference score (a calibrated model)."""
    rng = np.random.default_rng(5)
    return np.where(rng.random(len(data["score"])) < data["score"], "yes", "no").astype(object)


def make_events(n: int, workload: Workload = REFERENCE) -> list[bytes]:
    """``n`` prediction events of ``workload``, event ``i`` at ``START_TS + i`` ms."""
    data = reference_frame(n, seed=2, numeric=workload.numeric)
    rows = feature_rows(data, (*reference_numeric(workload.numeric), *REFERENCE_CATEGORICAL))
    owners = workload.owners(n)
    segments = workload.segment_values(n)
    values = []
    for i, (features, prediction, score) in enumerate(
        zip(rows, data["prediction"].tolist(), data["score"].tolist(), strict=True)
    ):
        event: dict[str, Any] = {
            "event_id": f"e{i}",
            "model_id": owners[i],
            "model_version": "v1",
            "ts": START_TS + i * 0.001,
            "features": features,
            "prediction": prediction,
            "score": score,
        }
        if segments is not None:
            event["segment"] = {SEGMENT_KEY: segments[i]}
        values.append(orjson.dumps(event))
    return values


def produce(
    bootstrap: str, topic: str, values: list[bytes], keys: Sequence[str] | None = None
) -> None:
    """``values`` on a new one-partition topic, keyed by ``keys`` (default: the reference id)."""
    # One partition, created up front: the floor reads partition 0 only.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1)])[topic].result(timeout=15)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000}
    )
    encoded = {key: key.encode() for key in set(keys or ())}
    default = REFERENCE_MODEL_ID.encode()
    for i, value in enumerate(values):
        key = default if keys is None else encoded[keys[i]]
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(60):
        raise SystemExit("the broker did not take every event within 60 s")


def untimed(what: str, first: int, total: int) -> str | None:
    """Why a rate cannot be measured, when the untimed first batch took every record."""
    if first < total:
        return None
    return (
        f"{what}: the first batch read all {total:,} records, and the first batch is not "
        "timed (it comes with the connection and the group join); use more --events than --batch"
    )


def timed_consume(
    bootstrap: str, topic: str, n: int, batch: int, handle: Callable[[list[Message]], object]
) -> float:
    """Events per second of ``handle`` over the first ``n`` events of ``topic``.

    The first non-empty batch (connection and first fetch) is not timed or counted.
    """
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    seen, first, started = 0, 0, 0.0
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while seen < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {seen:,} of {n:,} events arrived on {topic}")
        messages = consumer.consume(batch, 1.0)[: n - seen]
        handle(messages)
        seen += len(messages)
        if not first and messages:
            first, started = seen, time.perf_counter()
    elapsed = time.perf_counter() - started
    consumer.close()
    refused = untimed(f"consuming {topic}", first, n)
    if refused:
        raise SystemExit(refused)
    return (n - first) / elapsed


def floor(bootstrap: str, topic: str, n: int, batch: int) -> float:
    def decode(messages: list[Message]) -> None:
        for message in messages:
            orjson.loads(message.value())

    return timed_consume(bootstrap, topic, n, batch, decode)


def per_event(
    bootstrap: str, topic: str, n: int, batch: int, numeric: Sequence[str] = REFERENCE_NUMERIC
) -> float:
    from river.drift import ADWIN, PageHinkley

    detectors = {name: (ADWIN(), PageHinkley()) for name in numeric}
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


def write_baselines(folder: Path, workload: Workload, labels: bool) -> dict[str, Path]:
    """One baseline, built once, written for each model of ``workload``: model id to file."""
    data = reference_frame(20_000, seed=1, numeric=workload.numeric)
    if labels:
        data["label"] = reference_labels(data)
    profile = build_profile(
        data,
        model_id=REFERENCE_MODEL_ID,
        prediction="prediction",
        score="score",
        target="label" if labels else None,
        positive="yes" if labels else None,
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for model_id in workload.model_ids():
        path = folder / f"{model_id}.json"
        path.write_bytes(dataclasses.replace(profile, model_id=model_id).to_json())
        paths[model_id] = path
    return paths


def model_settings(workload: Workload, labels: bool) -> dict[str, Any]:
    """The config every model of the run shares, but for its baseline."""
    model: dict[str, Any] = {}
    if labels:
        model["labels"] = {
            "positive": "yes",
            "window_seconds": 10.0,
            "wait_seconds": LABEL_DELAY_SECONDS,
            "lateness_seconds": 1.0,
            "ttl_seconds": 3600.0,
        }
    if workload.segments:
        model["segments"] = {"keys": [SEGMENT_KEY], "max_values": workload.segments}
    return model


def driftstream(
    bootstrap: str,
    redis_url: str,
    topic: str,
    n: int,
    batch: int,
    workdir: Path,
    routing: str = "by_key",
    labels: bool = False,
    workload: Workload = REFERENCE,
    baselines: Mapping[str, Path] | None = None,
) -> float:
    """Events of ``topic`` monitored per second (with repartition, each is read twice).

    With ``labels`` every event's label is read from ``<topic>-labels`` and
    joined; the rate still counts the events of ``topic``. ``baselines``
    maps each model of ``workload`` to its baseline file; without it they
    are written to ``workdir``. Neither the group join nor the first batch
    is timed.
    """
    if baselines is None:
        baselines = write_baselines(workdir, workload, labels)
    model = model_settings(workload, labels)
    raw = document(model, bootstrap, redis_url, topic, batch, routing, baselines=baselines)
    config = parse_config(raw)
    create_topics(config)
    registry = CollectorRegistry()
    worker = build_worker(config, registry)
    worker.start()
    reads = 2 if routing == "repartition" or labels else 1
    total = reads * n
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while worker.processed == 0:  # the group join is not throughput
        if time.monotonic() > deadline:
            raise SystemExit(f"driftstream: no record processed within {TIMEOUT_SECONDS:.0f} s")
        worker.step()
    first, started = worker.processed, time.perf_counter()
    refused = untimed("driftstream", first, total)
    if refused:
        worker.close()
        raise SystemExit(refused)
    while worker.processed < total:
        if time.monotonic() > deadline:
            raise SystemExit(f"driftstream: only {worker.processed:,} of {total:,} records")
        worker.step()
    elapsed = time.perf_counter() - started
    worker.close()
    invalid = sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "driftstream_invalid_events_total"
    )
    if invalid:
        msg = f"driftstream: {invalid:,.0f} records were dead-lettered; every one should be valid"
        raise SystemExit(msg)
    return (total - first) / reads / elapsed


def document(
    model: dict[str, Any],
    bootstrap: str,
    redis_url: str,
    topic: str,
    batch: int,
    routing: str = "by_key",
    name: str = "bench",
    baselines: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """The config of one benchmark run: its own group, key prefix and repartition topic.

    ``model`` is the config of every model. Without ``baselines`` the run has
    the reference model alone, and ``model`` names its baseline; otherwise it
    has one model per entry, with that baseline file.
    """
    run = uuid.uuid4().hex[:6]
    if baselines is None:
        models = {REFERENCE_MODEL_ID: model}
    else:
        models = {
            model_id: {**model, "baseline": str(path)} for model_id, path in baselines.items()
        }
    return {
        "models": models,
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


@dataclass(frozen=True)
class Measured:
    """One measurement, made in its own process: events/s and that process's peak RSS."""

    events_per_s: float
    peak_rss_mib: float


def in_child(function: Callable[..., float], *args: Any, **kwargs: Any) -> Measured:
    """``function(*args, **kwargs)`` (an events/s) run in a fresh (spawned) process."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measured, function, *args, **kwargs).result()


def measured(function: Callable[..., float], *args: Any, **kwargs: Any) -> Measured:
    rate = function(*args, **kwargs)
    return Measured(rate, peak_rss_mib())


def peak_rss_mib() -> float:
    """This process's peak resident set size, in MiB.

    On Linux it is ``VmHWM`` from ``/proc/self/status``: ``ru_maxrss`` would
    not do in a child, since Linux keeps it across fork and exec, so a child
    reports at least the peak of the process that started it.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            msg = f"must be at least {low}, got {value}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events",
        type=at_least(2),
        default=200_000,
        help="events on the topic, every model's together; must exceed --batch, since the "
        "first batch is not timed (default: 200000)",
    )
    parser.add_argument(
        "--rounds",
        type=at_least(1),
        default=3,
        help="floor and driftstream runs, interleaved; medians count (default: 3)",
    )
    parser.add_argument(
        "--naive-events",
        type=at_least(2),
        default=50_000,
        help="events for the slow per-event pipeline, at most --events; must exceed "
        "--batch (default: 50000)",
    )
    parser.add_argument(
        "--batch",
        type=at_least(1),
        default=20_000,
        help="micro-batch size (default: 20000, as the config's default)",
    )
    parser.add_argument(
        "--models",
        type=at_least(1),
        default=1,
        help="models the events are spread over, round-robin, each event keyed by its "
        "model_id (default: 1)",
    )
    parser.add_argument(
        "--features",
        type=at_least(len(REFERENCE_CATEGORICAL) + 1),
        default=REFERENCE.features,
        help=f"features per event: {len(REFERENCE_CATEGORICAL)} categorical, the rest numeric "
        f"(default: {REFERENCE.features})",
    )
    parser.add_argument(
        "--segments",
        type=at_least(0),
        default=0,
        help="values of the segment key 'shard' the events are spread over, and each model's "
        "segments.max_values; 0 sends no segment (default: 0)",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="also measure repartition, labels and per-event on a workload other than the "
        "reference one",
    )
    args = parser.parse_args()
    if args.events <= args.batch:
        parser.error(
            f"--events ({args.events:,}) must exceed --batch ({args.batch:,}): "
            "the first batch is not timed"
        )
    args.workload = Workload(args.models, args.features, args.segments)
    args.every = args.all or args.workload.reference
    args.naive = min(args.naive_events, args.events)
    if args.every and args.naive <= args.batch:
        parser.error(
            f"--naive-events ({args.naive:,}) must exceed --batch ({args.batch:,}): "
            "the first batch is not timed"
        )
    return args


def measure(
    args: argparse.Namespace, bootstrap: str, redis_url: str, tmp: Path
) -> tuple[dict[str, list[Measured]], float]:
    """Each pipeline's measurements, and the mean event size in bytes."""
    workload: Workload = args.workload
    n, batch = args.events, args.batch
    topic = f"bench-{uuid.uuid4().hex[:6]}"
    print(f"producing {n:,} events: {workload.describe()} ...", file=sys.stderr)
    values = make_events(n, workload)
    size = sum(map(len, values)) / len(values)
    owners = workload.owners(n)
    produce(bootstrap, topic, values, owners)
    del values
    plain = write_baselines(tmp / "baselines", workload, labels=False)
    labelled: dict[str, Path] = {}
    if args.every:
        produce(bootstrap, f"{topic}-labels", make_labels(n, workload), owners)
        labelled = write_baselines(tmp / "baselines-labels", workload, labels=True)
    runs: dict[str, list[Measured]] = {"floor": [], "driftstream": []}
    if args.every:
        runs |= {"repartition": [], "labels": []}
    common = (bootstrap, redis_url, topic, n, batch, tmp)
    for round_number in range(1, args.rounds + 1):
        print(f"round {round_number}/{args.rounds} ...", file=sys.stderr)
        runs["floor"].append(in_child(floor, bootstrap, topic, n, batch))
        runs["driftstream"].append(
            in_child(driftstream, *common, workload=workload, baselines=plain)
        )
        if args.every:
            runs["repartition"].append(
                in_child(driftstream, *common, "repartition", workload=workload, baselines=plain)
            )
            runs["labels"].append(
                in_child(driftstream, *common, labels=True, workload=workload, baselines=labelled)
            )
    if args.every:
        numeric = reference_numeric(workload.numeric)
        runs["per_event"] = [in_child(per_event, bootstrap, topic, args.naive, batch, numeric)]
    return runs, size


ROWS = {
    "floor": "floor: consume + orjson decode",
    "driftstream": "driftstream: every monitor + Redis commits",
    "repartition": "driftstream, routing: repartition",
    "labels": "driftstream, every prediction labelled",
    "per_event": "per-event: json + river loop per feature",
}
# The JSON name of each pipeline's figures, and of its ratio to the floor.
KEYS = {
    "floor": ("floor", None),
    "driftstream": ("driftstream", "ratio"),
    "repartition": ("repartition", "repartition_ratio"),
    "labels": ("labels", "labels_ratio"),
    "per_event": ("per_event", None),
}


def report(args: argparse.Namespace, runs: dict[str, list[Measured]], size: float) -> None:
    workload: Workload = args.workload
    rate = {name: statistics.median(m.events_per_s for m in each) for name, each in runs.items()}
    peak = {name: max(m.peak_rss_mib for m in each) for name, each in runs.items()}
    floor_eps, ours_eps = rate["floor"], rate["driftstream"]
    per_model = f" ({args.events / workload.models:,.0f} per model)" if workload.models > 1 else ""
    print(
        f"workload: {workload.describe()}; {size:.0f} bytes per event; {args.events:,} events"
        f"{per_model}, batches of {args.batch:,}, median of {args.rounds} "
        f"round{'' if args.rounds == 1 else 's'}, "
        "each pipeline in a fresh process"
    )
    print(f"{'pipeline':<44}{'events/s':>12}{'vs floor':>10}{'peak RSS MiB':>14}   rounds")
    for name, each in runs.items():
        rounds = ", ".join(f"{m.events_per_s:,.0f}" for m in each)
        print(
            f"{ROWS[name]:<44}{rate[name]:>12,.0f}{rate[name] / floor_eps:>9.2f}x"
            f"{peak[name]:>14.1f}   {rounds}"
        )
    found: dict[str, Any] = {
        "events": args.events,
        "batch": args.batch,
        "rounds": args.rounds,
        "models": workload.models,
        "features": workload.features,
        "segments": workload.segments,
        "event_bytes": round(size),
    }
    for name in runs:
        key, ratio = KEYS[name]
        found[f"{key}_events_per_s"] = round(rate[name])
        if ratio:
            found[ratio] = round(rate[name] / floor_eps, 3)
        found[f"{key}_peak_rss_mib"] = round(peak[name], 1)
    if "labels" in runs:
        labels_eps = rate["labels"]
        print(
            f"labelled vs no labels: {labels_eps / ours_eps:.2f}x in predictions/s, "
            f"{2 * labels_eps / ours_eps:.2f}x in records/s (a labelled prediction is two records)"
        )
        found["labels_vs_no_labels"] = round(labels_eps / ours_eps, 3)
        found["labels_vs_no_labels_records"] = round(2 * labels_eps / ours_eps, 3)
    if "per_event" in runs:
        found["driftstream_vs_per_event"] = round(ours_eps / rate["per_event"], 2)
    print(json.dumps(found))


def main() -> None:
    args = arguments()
    with (
        kafka_service(os.environ) as bootstrap,
        redis_service(os.environ) as redis_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        runs, size = measure(args, bootstrap, redis_url, Path(tmp))
    report(args, runs, size)


if __name__ == "__main__":
    main()
