"""The stream processor: micro-batches in, monitors updated, one commit, alerts out.

A checkpoint is a short list of named steps, run for every micro-batch:

1. **consume** up to ``batch_size`` records (``consume(n, timeout)``);
2. **decode** them into per-model columns, bad records into dead letters;
3. **update** each model's monitors, a batch at a time, into findings;
4. **commit** per partition unit, in one Lua call: monitor states, the next
   offsets and the outbox (alerts + dead letters), refused if a newer
   owner claimed the unit;
5. **relay** the outbox to Kafka, deleting entries once delivered;
6. **report** offsets to Kafka (for lag tools only) and metrics.

Correctness rests on Redis alone: on assignment a worker claims each unit
(a new epoch) and seeks to the offsets stored there, so a restarted or
replacement worker continues exactly where the last commit left off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from driftstream.config import Config
from driftstream.core.monitor import ModelMonitor
from driftstream.runtime.alerts import Source, alert_event, dead_letter_headers, encode_alert
from driftstream.runtime.decode import Decoder, ModelBatch, Record
from driftstream.runtime.metrics import Metrics
from driftstream.runtime.models import FEATURES, PREDICTIONS, ModelSpec, state_name
from driftstream.runtime.relay import Relay
from driftstream.runtime.store import Fenced, OutboxEntry, PartitionStore

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 5


@dataclass
class Unit:
    """Partition ``partition`` of every input topic, owned under ``epoch``."""

    partition: int
    store: PartitionStore
    epoch: int
    offsets: dict[str, int]
    monitors: dict[str, ModelMonitor] = field(default_factory=dict)


class Worker:
    """One member of the consumer group."""

    def __init__(
        self,
        config: Config,
        models: Mapping[str, ModelSpec],
        *,
        redis_client: redis.Redis,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.models = models
        self.redis = redis_client
        self.metrics = metrics
        topics = config.kafka.topics
        self.roles = {topics.predictions: PREDICTIONS, topics.features: FEATURES}
        self.decoder = Decoder(
            {model_id: spec.columns() for model_id, spec in models.items()},
            self.roles,
            max_message_bytes=config.limits.max_message_bytes,
            max_features=config.limits.max_features,
        )
        self.units: dict[int, Unit] = {}
        self.processed = 0  # records committed by this worker
        self.consumer = Consumer(self._consumer_settings())
        self.producer = Producer(self._producer_settings())
        self.relay = Relay(self.producer, metrics, topics.dlq)

    def _consumer_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"auto.offset.reset": "earliest", "log_level": 4}
        settings.update(self.config.kafka.client_settings())
        # Correctness needs these whatever the client settings say: offsets
        # come from Redis, and every input topic's partition p must land on
        # the same worker (range assignment over co-partitioned topics).
        settings.update(
            {
                "group.id": self.config.kafka.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "partition.assignment.strategy": "range",
            }
        )
        return settings

    def _producer_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"linger.ms": 5, "acks": "all", "enable.idempotence": True}
        settings.update(self.config.kafka.shared_settings())
        return settings

    # -- group membership ---------------------------------------------------

    def start(self) -> None:
        self.consumer.subscribe(
            list(self.roles),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for number in sorted({tp.partition for tp in partitions}):
            self._claim(number)
        for tp in partitions:
            tp.offset = self.units[tp.partition].offsets.get(tp.topic, OFFSET_BEGINNING)
        consumer.assign(partitions)
        self.metrics.partitions_owned.set(len(self.units))
        log.info("claimed partitions %s", sorted(self.units))
        for unit in list(self.units.values()):
            self.relay.publish(unit.store)  # what a previous owner committed but never sent

    def _claim(self, number: int) -> None:
        store = PartitionStore(
            self.redis,
            prefix=self.config.redis.key_prefix,
            group=self.config.kafka.group_id,
            partition=number,
        )
        claim = store.claim()
        self.units[number] = Unit(number, store, claim.epoch, dict(claim.offsets))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for number in {tp.partition for tp in partitions}:
            self.units.pop(number, None)
        self.metrics.partitions_owned.set(len(self.units))
        log.info("released partitions %s", sorted({tp.partition for tp in partitions}))

    # -- one micro-batch ----------------------------------------------------

    def step(self) -> int:
        """Consume, process, commit and relay one micro-batch; returns its size."""
        kafka = self.config.kafka
        messages = self.consumer.consume(kafka.batch_size, kafka.batch_timeout_seconds)
        if not messages:
            return 0
        started = time.perf_counter()
        for number, records in self._by_unit(messages).items():
            unit = self.units.get(number)
            if unit is not None and records:
                self._process(unit, records)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self._report_lag()
        return len(messages)

    def _by_unit(self, messages: Sequence[Message]) -> dict[int, list[Record]]:
        records = [
            Record(m.topic(), m.partition(), m.offset(), m.key(), m.value())  # type: ignore[arg-type]
            for m in messages
            if m.error() is None
        ]
        if len(records) < len(messages):
            for message in messages:
                if message.error() is not None:
                    log.warning("consume error: %s", message.error())
        grouped: dict[int, list[Record]] = defaultdict(list)
        for record in records:
            grouped[record.partition].append(record)
        return {
            number: self._unseen(self.units[number], group)
            for number, group in grouped.items()
            if number in self.units
        }

    @staticmethod
    def _unseen(unit: Unit, records: list[Record]) -> list[Record]:
        """Drop what an earlier commit already covered (a fetch from before a seek)."""
        stored = unit.offsets
        return [r for r in records if r.offset >= stored.get(r.topic, 0)]

    def _process(self, unit: Unit, records: list[Record]) -> None:
        decoded = self.decoder.decode(records)
        outbox = [self._dead_letter(letter) for letter in decoded.dead]
        touched: dict[str, ModelMonitor] = {}
        for batch in decoded.batches:
            name = state_name(batch.role, batch.model_id)
            monitor = self._monitor(unit, batch.role, batch.model_id)
            outbox += self._alerts(batch, monitor.update(batch.batch))
            touched[name] = monitor
        offsets = _next_offsets(records)
        states = {name: orjson.dumps(m.to_state()) for name, m in touched.items()}
        if not self._commit(unit, offsets, states, outbox):
            return
        self.processed += len(records)
        self._count(decoded.consumed, decoded.dead, touched)
        if outbox:
            self.relay.publish(unit.store)
        self.consumer.commit(
            offsets=[TopicPartition(t, unit.partition, o) for t, o in offsets.items()],
            asynchronous=True,
        )

    def _monitor(self, unit: Unit, role: str, model_id: str) -> ModelMonitor:
        name = state_name(role, model_id)
        monitor = unit.monitors.get(name)
        if monitor is None:
            spec = self.models[model_id]
            stored = unit.store.load([name]).get(name)
            monitor = (
                spec.new_monitor(role)
                if stored is None
                else spec.restore_monitor(role, orjson.loads(stored))
            )
            unit.monitors[name] = monitor
        return monitor

    def _alerts(self, batch: ModelBatch, findings: Sequence[Any]) -> list[OutboxEntry]:
        entries = []
        alerts_topic = self.config.kafka.topics.alerts
        for finding in findings:
            source = Source(batch.topic, batch.partition, int(batch.offsets[finding.row]))
            event = alert_event(
                finding,
                role=batch.role,
                source=source,
                model_version=str(batch.versions[finding.row]),
            )
            entries.append(
                OutboxEntry(
                    event["alert_id"], alerts_topic, batch.model_id.encode(), encode_alert(event)
                )
            )
        return entries

    def _dead_letter(self, letter: Any) -> OutboxEntry:
        record = letter.record
        return OutboxEntry(
            f"dlq:{record.topic}:{record.partition}:{record.offset}",
            self.config.kafka.topics.dlq,
            record.key,
            record.value or b"",
            tuple(dead_letter_headers(letter)),
        )

    def _commit(
        self,
        unit: Unit,
        offsets: dict[str, int],
        states: dict[str, bytes],
        outbox: list[OutboxEntry],
    ) -> bool:
        started = time.perf_counter()
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                unit.store.commit(unit.epoch, offsets, states, outbox)
                break
            except Fenced as error:
                # A newer owner holds the unit: drop it and everything computed since.
                log.warning("%s; dropping partition %d", error, unit.partition)
                self.metrics.fenced.inc()
                self.units.pop(unit.partition, None)
                self.metrics.partitions_owned.set(len(self.units))
                return False
            except redis.ConnectionError:
                if attempt == COMMIT_ATTEMPTS:
                    raise
                # A retried commit is safe: the script answers "applied" if it landed.
                time.sleep(0.2 * attempt)
        unit.offsets.update(offsets)
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        return True

    def _count(
        self,
        consumed: Mapping[tuple[str, str], int],
        dead: Sequence[Any],
        monitors: Mapping[str, ModelMonitor],
    ) -> None:
        for (model_id, topic), count in consumed.items():
            self.metrics.events_consumed.labels(model=model_id, topic=topic).inc(count)
        for letter in dead:
            self.metrics.invalid_events.labels(
                reason=letter.reason, topic=letter.record.topic
            ).inc()
        for monitor in monitors.values():
            self.metrics.observe_statistics(monitor.settings.model_id, monitor.last_values)

    def _report_lag(self) -> None:
        for tp in self.consumer.assignment():
            unit = self.units.get(tp.partition)
            if unit is None:
                continue
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high is not None and high >= 0:
                lag = max(0, high - unit.offsets.get(tp.topic, 0))
                self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    lag
                )

    # -- lifecycle ----------------------------------------------------------

    def run(self, stop: threading.Event, on_step: Callable[[Worker], None] | None = None) -> None:
        """Process micro-batches until ``stop`` is set, then leave the group cleanly."""
        self.start()
        try:
            while not stop.is_set():
                self.step()
                if on_step is not None:
                    on_step(self)
        finally:
            self.close()

    def pending_outbox(self) -> int:
        return sum(unit.store.outbox_size() for unit in self.units.values())

    def close(self) -> None:
        """Finish: the last batch is committed already; flush alerts and leave the group."""
        for unit in list(self.units.values()):
            self.relay.publish(unit.store)
        self.producer.flush(10)
        self.consumer.close()


def _next_offsets(records: Sequence[Record]) -> dict[str, int]:
    # Offsets rise within a topic-partition, so the last record of each topic wins.
    return {record.topic: record.offset + 1 for record in records}
