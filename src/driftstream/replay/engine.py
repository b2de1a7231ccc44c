"""Replay recorded records through the live worker, once per setting of a sweep.

Each setting gets a ``Worker`` (runtime/worker.py) with a feed for a
consumer, a capture for a producer and stores in memory
(runtime/memory_store.py): the same decode, routing, monitors, label join,
alert building and outbox as ``driftstream run``, so a backtest's alerts
are the alerts production would have published, ids included. The input
is read once; each batch goes to every setting's worker in turn. Settings
that decode alike (a sweep over thresholds or windows) share one decode
per batch.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
import orjson
from prometheus_client import CollectorRegistry

from driftstream.config import Config
from driftstream.core.findings import Reading
from driftstream.replay.feed import CaptureProducer, FeedConsumer
from driftstream.runtime.alerts import HEADER_REASON
from driftstream.runtime.decode import Decoded, Decoder, ModelBatch, Record
from driftstream.runtime.memory_store import MemoryStore, Registry
from driftstream.runtime.metrics import Metrics
from driftstream.runtime.models import PREDICTIONS, ModelSpec
from driftstream.runtime.worker import Worker

TIMELINE_FIELDS = (
    "model_id",
    "role",
    "kind",
    "column",
    "statistic",
    "reference",
    "value",
    "threshold",
    "baseline",
    "window_start",
    "window_end",
    "count",
)


class Timeline:
    """Every judged window of one setting, kept as columns (a row costs ~100 bytes)."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {name: [] for name in TIMELINE_FIELDS}

    def __len__(self) -> int:
        return len(self.columns["model_id"])

    def add(self, model_id: str, role: str, kind: str, reading: Reading) -> None:
        values = (
            model_id,
            role,
            kind,
            reading.column,
            reading.statistic,
            reading.reference,
            _finite(reading.value),
            _finite(reading.threshold),
            _finite(reading.baseline),
            _finite(reading.start),
            _finite(reading.end),
            int(reading.count),
        )
        for name, value in zip(TIMELINE_FIELDS, values, strict=True):
            self.columns[name].append(value)

    def rows(self) -> Iterator[dict[str, Any]]:
        columns = [self.columns[name] for name in TIMELINE_FIELDS]
        for values in zip(*columns, strict=True):
            yield dict(zip(TIMELINE_FIELDS, values, strict=True))


@dataclass
class Watch:
    """What one setting's worker committed: windows, and events per model and role."""

    timeline: Timeline = field(default_factory=Timeline)
    events: Counter[tuple[str, str]] = field(default_factory=Counter)  # (model, role)
    on_predictions: Callable[[str, np.ndarray], None] | None = None  # their event times

    def consumed(self, batch: ModelBatch) -> None:
        self.events[(batch.model_id, batch.role)] += len(batch.batch)
        if batch.role == PREDICTIONS and self.on_predictions is not None:
            self.on_predictions(batch.model_id, batch.batch.ts)

    def judged(self, model_id: str, role: str, readings: Sequence[Reading]) -> None:
        kind = "performance" if role == "labels" else "window"
        for reading in readings:
            self.timeline.add(model_id, role, kind, reading)


class SharedDecoder(Decoder):
    """One decode per batch for settings that decode alike.

    The first worker to decode a unit's records keeps the result for the
    others; every worker gets the same batches in the same order, so the
    k-th request for the same records is the last, and the entry goes.
    """

    def __init__(self, decoder: Decoder, users: int) -> None:
        self.__dict__.update(decoder.__dict__)
        self._users = users
        self._cache: dict[tuple[Any, ...], list[Any]] = {}

    def decode(self, records: Sequence[Record]) -> Decoded:
        if self._users == 1 or not records:
            return super().decode(records)
        first, last = records[0], records[-1]
        key = (first.topic, first.partition, first.offset, last.topic, last.offset, len(records))
        entry = self._cache.get(key)
        if entry is None:
            entry = [super().decode(records), 0]
            self._cache[key] = entry
        entry[1] += 1
        if entry[1] >= self._users:
            del self._cache[key]
        return entry[0]


@dataclass
class SettingRun:
    """One setting's worker and what it produced."""

    index: int
    name: str
    values: dict[str, Any]
    config: Config
    worker: Worker
    consumer: FeedConsumer
    producer: CaptureProducer
    watch: Watch
    stores: dict[int, MemoryStore]  # partition -> its unit's store

    def feed(self, batch: Sequence[Any]) -> None:
        self.consumer.feed(batch)
        while len(self.consumer):
            self.worker.step()

    def finish(self) -> None:
        self.worker.close()

    def alerts(self) -> list[bytes]:
        """Every alert as published, in publication order."""
        topic = self.config.kafka.topics.alerts
        return [m.value() or b"" for m in self.producer.sent.get(topic, [])]

    def dead_letters(self) -> Counter[str]:
        reasons: Counter[str] = Counter()
        for message in self.producer.sent.get(self.config.kafka.topics.dlq, []):
            headers = dict(message.headers() or [])
            reasons[headers.get(HEADER_REASON, b"unknown").decode()] += 1
        return reasons


def setting_run(
    index: int,
    name: str,
    values: dict[str, Any],
    config: Config,
    models: Mapping[str, ModelSpec],
    decoder: Decoder | None = None,
) -> SettingRun:
    """A worker over memory stores and captured clients for one setting."""
    consumer = FeedConsumer()
    loopback = config.kafka.topics.repartition if config.kafka.routing == "repartition" else None
    producer = CaptureProducer(consumer=consumer, loopback=loopback)
    registry = Registry()
    watch = Watch()
    stores: dict[int, MemoryStore] = {}

    def store(number: int) -> MemoryStore:
        return stores.setdefault(
            number,
            MemoryStore(
                prefix=config.redis.key_prefix,
                group=config.kafka.group_id,
                partition=number,
                registry=registry,
            ),
        )

    worker = Worker(
        config,
        models,
        metrics=Metrics(CollectorRegistry(), max_features=config.limits.max_features),
        consumer_factory=lambda settings: consumer,  # type: ignore[arg-type,return-value]
        producer_factory=lambda settings: producer,  # type: ignore[arg-type,return-value]
        store_factory=store,
        watcher=watch,
    )
    if decoder is not None:
        worker.decoder = decoder
    worker.start()
    return SettingRun(index, name, values, config, worker, consumer, producer, watch, stores)


def share_decoders(runs: Sequence[SettingRun]) -> int:
    """Give settings whose decoders are configured alike one shared decoder; returns groups."""
    groups: dict[bytes, list[SettingRun]] = defaultdict(list)
    for run in runs:
        groups[_decoder_key(run.worker.decoder)].append(run)
    for members in groups.values():
        shared = SharedDecoder(members[0].worker.decoder, len(members))
        for run in members:
            run.worker.decoder = shared
    return len(groups)


def _decoder_key(decoder: Decoder) -> bytes:
    return orjson.dumps(
        {
            "models": {m: repr(spec) for m, spec in sorted(decoder.models.items())},
            "roles": decoder.roles,
            "max_message_bytes": decoder.max_message_bytes,
            "max_features": decoder.max_features,
        },
        option=orjson.OPT_SORT_KEYS,
    )


class Progress:
    """One status line on a terminal: records, records/s, and the ETA when the total is known."""

    def __init__(self, total: int | None, unit: str, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.total = total
        self.unit = unit  # what ``total`` counts: "bytes" or "records"
        self.records = 0
        self.done = 0
        self.started = time.monotonic()
        self._shown = 0.0

    def read(self, done: int) -> None:
        self.done = done

    def add(self, records: int) -> None:
        self.records += records
        now = time.monotonic()
        if self.enabled and now - self._shown >= 0.5:
            self._shown = now
            self.stream.write("\r" + self.line(now) + "\x1b[K")
            self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        text = f"replay: {self.records:,} records, {self.records / elapsed:,.0f} records/s"
        if self.total and self.done:
            share = min(self.done / self.total, 1.0)
            left = elapsed * (1 - share) / max(share, 1e-9)
            text += f", {share:.0%}, ETA {_clock(left)}"
        return text

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + self.line(time.monotonic()) + "\x1b[K\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)
