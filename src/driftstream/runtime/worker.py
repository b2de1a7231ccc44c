"""The stream processor: micro-batches in, monitors updated, one commit, alerts out.

A checkpoint is a short list of named steps, run for every micro-batch:

1. **consume** up to ``batch_size`` records (``consume(n, timeout)``);
2. **take** each partition unit's records it has not taken yet;
3. **prepare**: decode them into per-model columns (bad records into dead
   letters), **load** the monitors the batch needs, **update** them into
   findings, and judge the unit's streams as a whole (silent models, old
   baselines, dead-letter share: ``stream_checks``);
4. **commit** per partition unit, in one Lua call: monitor states, the next
   offsets and the outbox (alerts + dead letters), refused if a newer
   owner claimed the unit;
5. **relay** the outbox to Kafka, deleting entries once delivered;
6. **report** offsets to Kafka (for lag tools, and to resume from if Redis
   loses a unit's keys) and metrics.

Correctness rests on Redis alone: on assignment a worker claims each unit
(a new epoch) and seeks to the offsets stored there, so a restarted or
replacement worker continues exactly where the last commit left off.

Faults are survived, not fatal (DESIGN.md, invariant 6):

- **Redis errors anywhere** (claim, load, commit, relay) pause the whole
  assignment. The worker keeps calling ``consume`` so the group keeps it,
  holds the batch it already took, and retries with capped exponential
  backoff and jitter: a batch whose monitors were updated is committed
  exactly as prepared (a retried commit that had landed answers "applied"),
  one that failed while loading is prepared again. Offsets never move
  without a commit, and nothing is counted twice. One line says Redis went
  away, one that it is back.
- **Redis lost a unit's keys** (restarted without persistence): its epoch
  is gone. The worker logs an error, counts it, claims the unit again and
  goes on from Kafka's committed offsets with fresh monitors.
- **A newer owner** (a higher epoch) drops the unit and pauses its
  partitions until Kafka revokes them; still assigned after
  ``FENCED_GRACE_SECONDS``, the worker claims it again, as a rebalance would.
- **A state that cannot be loaded** is kept under a quarantine name in the
  unit's state hash, logged and counted, and a fresh monitor starts from
  the baseline.
- **Kafka trouble**: consume errors are logged once until records flow
  again (librdkafka reconnects by itself); entries the relay cannot
  deliver stay in the outbox and are retried with backoff.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import orjson
import redis
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from redis.backoff import AbstractBackoff

from driftstream.config import Config
from driftstream.contract import UNKNOWN_TOPIC
from driftstream.core.anomaly_monitor import AnomalyMonitor
from driftstream.core.comparison import VersionComparison
from driftstream.core.dead_letter_rate import DeadLetterRate
from driftstream.core.findings import Finding, Reading
from driftstream.core.join import JoinState
from driftstream.core.keys import WHOLE, KeyRegistry, MonitorKey
from driftstream.core.monitor import ModelMonitor
from driftstream.core.performance_monitor import WindowPairs
from driftstream.runtime import monitoring, routing, stream_checks
from driftstream.runtime.alerts import Source, alert_event, dead_letter_headers, encode_alert
from driftstream.runtime.decode import DeadLetter, Decoded, Decoder, ModelBatch, Record
from driftstream.runtime.labels import JoinBatch, JoinOutcome, Memory, Window
from driftstream.runtime.logs import ProgressLog
from driftstream.runtime.metrics import Metrics
from driftstream.runtime.models import (
    FEATURES,
    FRESHNESS_STATE_NAME,
    LABELS,
    PREDICTIONS,
    ModelSpec,
    anomaly_state_name,
    comparison_state_name,
    keys_state_name,
)
from driftstream.runtime.relay import HEADER_ROOM_BYTES, Relay, error_name
from driftstream.runtime.store import (
    Availability,
    Fenced,
    OutboxEntry,
    PartitionStore,
    RedisClient,
    UnitStore,
    default_backoff,
)
from driftstream.runtime.stream_checks import Cited, Freshness, Stream

if TYPE_CHECKING:
    from driftstream.runtime.health import Health

log = logging.getLogger(__name__)
# librdkafka's own lines, through Python's logging so --log-format applies to them too.
KAFKA_LOG = logging.getLogger("driftstream.kafka")

# Exit status of `driftstream run` when it stopped with records it took but
# could not commit (Redis unavailable): they are processed again later.
EXIT_UNCOMMITTED = 3
FENCED_GRACE_SECONDS = 30.0
KAFKA_TIMEOUT_SECONDS = 10.0
CLOSE_FLUSH_SECONDS = 5.0
LIBRDKAFKA_MESSAGE_BYTES = 1_000_000  # librdkafka's default message.max.bytes
# A state blob that fails to load is kept under this name in the unit's hash.
QUARANTINE_NAME = "quarantined:{name}:epoch-{epoch}"

ConsumerFactory = Callable[[dict[str, Any]], Consumer]
ProducerFactory = Callable[[dict[str, Any]], Producer]
StoreFactory = Callable[[int], UnitStore]  # partition number -> the unit's store


class Watcher(Protocol):
    """Hears what each commit carried, once it landed (a replay's timeline and clocks)."""

    def consumed(self, batch: ModelBatch) -> None:
        """One model's decoded events of one role."""

    def judged(self, model_id: str, role: str, readings: Sequence[Reading]) -> None:
        """The windows one model's monitor of ``role`` judged (``labels``: performance)."""


# A labelled model's join of one batch: what it did, its state blob, its
# alerts, its latest metrics, and the windows it judged.
JoinResult = tuple[JoinOutcome, bytes, list[OutboxEntry], dict[str, float], list[Reading]]


@dataclass
class Prepared:
    """One unit's micro-batch, processed and ready to commit."""

    offsets: dict[str, int]
    states: dict[str, bytes]
    outbox: list[OutboxEntry]
    decoded: Decoded
    touched: dict[str, ModelMonitor]
    routing: routing.RoutingState | None = None  # the unit's, once this commits
    register: list[str] = field(default_factory=list)  # models new to the unit
    splits: list[tuple[str, list[int]]] = field(default_factory=list)  # alerts raised
    forwarded: int = 0
    duplicates: int = 0
    ops: list[tuple[str, str, bytes, bytes]] = field(default_factory=list)  # the join's writes
    joins: dict[str, JoinOutcome] = field(default_factory=dict)  # model -> what its join did
    performance: dict[str, dict[str, float]] = field(default_factory=dict)  # latest metrics
    readings: list[tuple[str, str, list[Reading]]] = field(default_factory=list)  # judged windows
    keys: dict[str, MonitorKey] = field(default_factory=dict)  # touched monitor -> its key
    retired: list[tuple[str, str, str]] = field(default_factory=list)  # model, role, version
    overflow: list[tuple[str, str, int]] = field(default_factory=list)  # model, key, rows
    registries: dict[str, KeyRegistry] = field(default_factory=dict)  # as of this commit
    anomalies: list[tuple[str, int, int]] = field(default_factory=list)  # model, flagged, held back
    freshness: Freshness | None = None  # the unit's watches, when this batch fed them


@dataclass
class Held:
    """Records a unit took but has not committed; ``prepared`` once monitors saw them."""

    records: list[Record]
    offsets: dict[str, int]  # the next offset after them, per topic
    prepared: Prepared | None = None


@dataclass
class Unit:
    """Partition ``partition`` of every input topic, owned under ``epoch`` (0: not claimed)."""

    partition: int
    store: UnitStore
    epoch: int = 0
    offsets: dict[str, int] = field(default_factory=dict)  # committed in Redis
    position: dict[str, int] = field(default_factory=dict)  # next offset to take
    monitors: dict[str, ModelMonitor] = field(default_factory=dict)
    registries: dict[str, KeyRegistry] = field(default_factory=dict)  # as committed
    comparisons: dict[str, VersionComparison] = field(default_factory=dict)
    anomalies: dict[str, AnomalyMonitor] = field(default_factory=dict)
    freshness: Freshness | None = None  # loaded with the first batch
    dead_letters: dict[str, DeadLetterRate] = field(default_factory=dict)
    joins: dict[str, bytes | None] = field(default_factory=dict)  # label state blobs, as committed
    memory: dict[str, Memory] = field(default_factory=dict)  # of each join, as last committed
    held: Held | None = None
    quarantined: dict[str, bytes] = field(default_factory=dict)  # for the next commit
    needs_seek: bool = False  # claimed, but the consumer is not at `position` yet
    relay_due: bool = False
    routing: routing.RoutingState | None = None  # loaded with the first batch
    registered: set[str] = field(default_factory=set)  # models this claim registered
    # Splits a commit revealed (two units saw a model at once): alerts for the next commit.
    splits: list[tuple[str, set[int], ModelBatch]] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.epoch > 0 and not self.needs_seek


class Worker:
    """One member of the consumer group.

    The Kafka clients come from ``consumer_factory`` and ``producer_factory``
    (called with the settings built below; confluent-kafka's by default), so
    tests can run ``step()`` on an in-memory broker. Each partition unit's
    store comes from ``store_factory`` (Redis through ``redis_client`` by
    default; a replay keeps it in memory). ``backoff`` spaces the retries
    after Redis or relay failures (redis-py's backoff classes; capped
    exponential with jitter by default) and ``clock`` measures them.
    ``watcher``, when given, hears of the events and windows of every commit.
    ``health``, when given, hears after each iteration of ``run`` that the
    loop is alive and how many partitions it owns (``/healthz``, ``/readyz``).
    """

    def __init__(
        self,
        config: Config,
        models: Mapping[str, ModelSpec],
        *,
        redis_client: RedisClient | None = None,
        metrics: Metrics,
        consumer_factory: ConsumerFactory = Consumer,
        producer_factory: ProducerFactory = Producer,
        store_factory: StoreFactory | None = None,
        backoff: AbstractBackoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        watcher: Watcher | None = None,
        health: Health | None = None,
    ) -> None:
        if redis_client is None and store_factory is None:
            msg = "a worker needs a redis_client or a store_factory"
            raise ValueError(msg)
        self.config = config
        self.models = models
        self.redis = redis_client
        self.store_factory = store_factory
        self.watcher = watcher
        self.health = health
        self.metrics = metrics
        self.clock = clock
        self.progress = ProgressLog(metrics, config.metrics.progress_seconds, clock, log)
        topics = config.kafka.topics
        self.roles = {topics.predictions: PREDICTIONS, topics.features: FEATURES}
        if any(spec.labels is not None for spec in models.values()):
            self.roles[topics.labels] = LABELS
        # With routing by repartition, the input topics are only forwarded
        # and the monitors read the repartition topic.
        self.repartition = topics.repartition if config.kafka.routing == "repartition" else None
        self.inputs = [*self.roles, *([self.repartition] if self.repartition else [])]
        self.decoder = Decoder(
            {model_id: spec.columns() for model_id, spec in models.items()},
            self.roles,
            max_message_bytes=config.limits.max_message_bytes,
            max_features=config.limits.max_features,
        )
        self.units: dict[int, Unit] = {}
        # Per model: feature names its events carried that its baseline lacks,
        # the first limits.max_features of them, for the log.
        self.unknown_names: dict[str, dict[str, None]] = {}
        self._freshness = any(spec.freshness is not None for spec in models.values())
        self.processed = 0  # records committed by this worker
        self.store = Availability(metrics, backoff, clock)
        self._relay_backoff = backoff or default_backoff()
        self._relay_failures = 0
        self._relay_at = 0.0
        self._paused = False
        self._fenced_at: dict[int, float] = {}  # dropped partitions Kafka still assigns
        self._kafka_trouble = False
        self.consumer = consumer_factory(self.consumer_settings())
        producer_settings = self.producer_settings()
        self.producer = producer_factory(producer_settings)
        self.relay = Relay(
            self.producer,
            metrics,
            topics.dlq,
            max_bytes=int(producer_settings["message.max.bytes"]) - HEADER_ROOM_BYTES,
            alerts_topic=topics.alerts,
        )

    def consumer_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "auto.offset.reset": "earliest",
            "log_level": 4,
            "logger": KAFKA_LOG,
        }
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

    def producer_settings(self) -> dict[str, Any]:
        # A dead letter repeats a record, cut if longer than this (the input
        # limit, at least librdkafka's default), plus the headers.
        room = max(self.config.limits.max_message_bytes, LIBRDKAFKA_MESSAGE_BYTES)
        room += HEADER_ROOM_BYTES
        settings: dict[str, Any] = {
            "linger.ms": 5,
            "acks": "all",
            "enable.idempotence": True,
            "message.max.bytes": room,
            "logger": KAFKA_LOG,
        }
        if self.repartition:
            # Forwards of one source partition must land in order and without
            # gaps, or the duplicate marks would drop a re-sent one (routing.py):
            # no delivery timeout, and any gap is a fatal error instead. The
            # latter is flagged experimental at every start; warnings that
            # matter reach the log through the relay's own failure lines.
            settings.update(
                {"enable.gapless.guarantee": True, "message.timeout.ms": 0, "log_level": 3}
            )
        settings.update(self.config.kafka.shared_settings())
        return settings

    # -- group membership ---------------------------------------------------

    def start(self) -> None:
        self.consumer.subscribe(
            list(self.inputs),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = sorted({tp.partition for tp in partitions})
        new = [Unit(number, self._store(number)) for number in numbers]
        for unit in new:
            self.units[unit.partition] = unit
            self._fenced_at.pop(unit.partition, None)
        self._locate([unit for unit in new if self.store.up and self._claim(unit)])
        for tp in partitions:
            unit = self.units[tp.partition]
            if unit.epoch:
                tp.offset = self._start_offset(unit, tp.topic)
        consumer.assign(partitions)
        unclaimed = [tp for tp in partitions if not self.units[tp.partition].epoch]
        if unclaimed or self._paused:
            # Nothing may be consumed before a claim says where to start.
            consumer.pause(partitions if self._paused else unclaimed)
        if unclaimed:
            self._pause()
        self._owned_changed("claimed")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for number in sorted({tp.partition for tp in partitions}):
            unit = self.units.pop(number, None)
            self._fenced_at.pop(number, None)
            self.relay.forget(number)
            if unit is not None and unit.held is not None:
                log.info(
                    "partition %d: %d records taken but not committed are left to the next owner",
                    number,
                    len(unit.held.records),
                )
        self.metrics.partitions_owned.set(self._owned())
        released = sorted({tp.partition for tp in partitions})
        self.metrics.forget_partitions(released)
        log.info("released partitions %s", released, extra={"partitions": released})

    def _store(self, number: int) -> UnitStore:
        if self.store_factory is not None:
            return self.store_factory(number)
        assert self.redis is not None
        return PartitionStore(
            self.redis,
            prefix=self.config.redis.key_prefix,
            group=self.config.kafka.group_id,
            partition=number,
        )

    def _claim(self, unit: Unit) -> bool:
        """Become the unit's owner (a new epoch); False while Redis is down."""
        try:
            claim = unit.store.claim()
        except redis.RedisError as error:
            self._redis_failed("claim", error)
            return False
        self.store.succeeded()
        unit.epoch = claim.epoch
        unit.offsets = dict(claim.offsets)
        return True

    def _locate(self, units: Sequence[Unit], lost: str | None = None) -> None:
        """Where each claimed unit starts: Redis's offsets, else Kafka's committed ones.

        Kafka has offsets only for what was committed to Redis first, so a
        unit with offsets in Kafka and none in Redis lost its keys.
        """
        missing = [(u.partition, t) for u in units for t in self.inputs if t not in u.offsets]
        kafka = self._kafka_committed(missing)
        for unit in units:
            found = {t: o for (p, t), o in kafka.items() if p == unit.partition}
            if lost is not None or (found and not unit.offsets):
                self._state_lost(unit, lost or "it has no offsets, Kafka has committed ones")
            unit.position = {**found, **unit.offsets}
            unit.relay_due = True  # what a previous owner committed but never sent

    def _start_offset(self, unit: Unit, topic: str) -> int:
        return unit.position.get(topic, OFFSET_BEGINNING)

    def _kafka_committed(self, places: Sequence[tuple[int, str]]) -> dict[tuple[int, str], int]:
        """The group's offsets committed to Kafka for these (partition, topic) places."""
        if not places:
            return {}
        asked = [TopicPartition(topic, partition) for partition, topic in places]
        try:
            answer = self.consumer.committed(asked, timeout=KAFKA_TIMEOUT_SECONDS)
        except KafkaException as error:
            log.warning("Kafka's committed offsets are unknown: %s", error)
            return {}
        return {
            (tp.partition, tp.topic): tp.offset
            for tp in answer
            if tp.error is None and tp.offset >= 0
        }

    def _state_lost(self, unit: Unit, why: str) -> None:
        self.metrics.state_lost.inc()
        log.error(
            "Redis lost the keys of group %r partition %d (%s): its state was reset, for "
            "example by a restart without persistence (AOF). Claimed it again under epoch %d; "
            "continuing from Kafka's committed offsets with fresh monitors",
            self.config.kafka.group_id,
            unit.partition,
            why,
            unit.epoch,
        )

    def _owned(self) -> int:
        return sum(unit.epoch > 0 for unit in self.units.values())

    def _owned_changed(self, verb: str) -> None:
        self.metrics.partitions_owned.set(self._owned())
        owned = sorted(n for n, u in self.units.items() if u.epoch)
        log.info("%s partitions %s", verb, owned, extra={"partitions": owned})

    # -- one micro-batch ----------------------------------------------------

    def step(self) -> int:
        """Consume, process, commit and relay one micro-batch; returns its size.

        While Redis is unavailable it retries what is held instead, when the
        backoff allows, and otherwise only polls the paused consumer.
        """
        if self._blocked():
            self._recover()
            return 0
        self._resume()
        messages = self._consume(self.config.kafka.batch_timeout_seconds)
        if not messages:
            self._relay()
            self._check_fenced()
            return 0
        started = time.perf_counter()
        for unit, records in self._by_unit(messages):
            self._take(unit, records)
            self._finish(unit)
        self._relay()
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self._report_lag()
        self._check_fenced()
        return len(messages)

    def _consume(self, timeout: float) -> list[Message]:
        messages = self.consumer.consume(self.config.kafka.batch_size, timeout)
        if messages and type(messages[0]) is Record:
            return messages  # a replay's feed: records made once for every setting
        if any(message.error() is not None for message in messages):
            self._kafka_errors(messages)
            return [message for message in messages if message.error() is None]
        if messages and self._kafka_trouble:
            self._kafka_trouble = False
            log.info("Kafka: records arrive again")
        return messages

    def _kafka_errors(self, messages: Sequence[Message]) -> None:
        for message in messages:
            error: KafkaError | None = message.error()
            if error is None:
                continue
            if error.fatal():
                raise KafkaException(error)
            self.metrics.consume_errors.labels(error=error_name(error)).inc()
            if not self._kafka_trouble:
                self._kafka_trouble = True
                log.warning(
                    "Kafka: %s (librdkafka reconnects by itself; further consume errors are "
                    "not logged until records arrive again)",
                    error,
                )

    def _by_unit(self, messages: Sequence[Message]) -> list[tuple[Unit, list[Record]]]:
        grouped: dict[int, list[Record]] = defaultdict(list)
        if messages and type(messages[0]) is Record:
            for record in cast(Sequence[Record], messages):
                grouped[record.partition].append(record)
        elif self.repartition:
            for m in messages:
                headers = m.headers() if m.topic() == self.repartition else None
                grouped[m.partition()].append(  # type: ignore[index]
                    Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(), headers)  # type: ignore[arg-type]
                )
        else:
            for m in messages:
                grouped[m.partition()].append(  # type: ignore[index]
                    Record(m.topic(), m.partition(), m.offset(), m.key(), m.value())  # type: ignore[arg-type]
                )
        pairs = []
        for number, records in grouped.items():
            unit = self.units.get(number)
            if unit is not None and unit.ready and unit.held is None:
                pairs.append((unit, records))
            else:
                self._rewind(records)
        return pairs

    def _take(self, unit: Unit, records: list[Record]) -> None:
        """Hold the records no commit or earlier batch covered (a fetch from before a seek)."""
        position = unit.position
        fresh = [r for r in records if r.offset >= position.get(r.topic, 0)]
        if fresh:
            offsets = _next_offsets(fresh)
            position.update(offsets)
            unit.held = Held(fresh, offsets)

    def _finish(self, unit: Unit, retry: bool = False) -> bool:
        """Prepare and commit what the unit holds; False when it must wait for Redis."""
        held = unit.held
        if held is None:
            return True
        if not (self.store.up or retry):
            self._pause()
            return False
        try:
            if held.prepared is None:
                held.prepared = self._prepare(unit, held)
        except redis.RedisError as error:
            return self._store_failed("load", error)
        try:
            stored = self._commit(unit, held.prepared)
        except redis.RedisError as error:
            return self._store_failed("commit", error)
        if stored:
            self._committed(unit, held.records, held.prepared)
        return True

    def _store_failed(self, operation: str, error: redis.RedisError) -> bool:
        self._redis_failed(operation, error)
        self._pause()
        return False

    def _redis_failed(self, operation: str, error: redis.RedisError) -> None:
        """Count and schedule the retry; the first failure's warning comes from ``self.store``."""
        self.store.failed(operation, error)
        if self.store.failures > 1:
            log.info(
                "Redis retry %d failed (%s: %s); next try in %.1f s",
                self.store.failures - 1,
                operation,
                error,
                self.store.wait(),
                extra={"operation": operation, "retry": self.store.failures - 1},
            )

    def _prepare(self, unit: Unit, held: Held) -> Prepared:
        """Decode, route and update; every Redis read comes before any change to the unit."""
        saved = self._load_routing(unit)
        state = routing.RoutingState(dict(saved.marks), list(saved.reported))
        records: Sequence[Record] = held.records
        forwards: list[OutboxEntry] = []
        dead: list[DeadLetter] = []
        sources: dict[int, Source] = {}
        duplicates = 0
        if self.repartition:
            records, forwards, dead, sources, duplicates = self._route(unit, held.records, state)
        decoded = self.decoder.decode(records)
        # Each stream in the order of the log it was read from: before dead
        # letters are mapped back to their source records.
        checked = stream_checks.streams(decoded, self.roles, self.models)
        dead += [self._from_source(letter, sources) for letter in decoded.dead]
        outbox = forwards + [self._dead_letter(letter) for letter in dead]
        register = [] if self.repartition else self._unregistered(unit, decoded.batches)
        splits = self._split_alerts(unit, decoded.batches, register, state)
        outbox += [entry for _, _, entry in splits]
        monitor_batches = [b for b in decoded.batches if b.role != LABELS]
        self._load_keys(unit, monitor_batches, checked)
        planned = monitoring.plan_batches(
            monitor_batches, self.models, unit.registries, unit.comparisons, unit.anomalies
        )
        self._load(unit, monitoring.wanted_monitors(planned))
        joined = self._join(unit, decoded.batches, sources)  # reads Redis: before any update
        done = monitoring.update(planned, unit.monitors, self.models)
        for part in done.fed:
            outbox += self._alerts(part.planned.batch, part.findings, sources, part.key)
        for item, findings in done.comparisons:
            outbox += self._comparison_alerts(item.batch, findings, sources)
        for item, findings in done.anomalies:
            outbox += self._alerts(item.batch, findings, sources)
        touched = done.touched
        readings = monitoring.readings(done)
        states = monitoring.states(done)
        ops: list[tuple[str, str, bytes, bytes]] = []
        performance: dict[str, dict[str, float]] = {}
        for model_id, (outcome, blob, alerts, values, judged) in joined.items():
            states[label_state_name(model_id)] = blob
            outbox += alerts
            ops += outcome.ops
            readings.append((model_id, LABELS, judged))
            if values:
                performance[model_id] = values
        alerts, checks, watched = self._stream_checks(unit, decoded.batches, checked, sources)
        outbox += alerts
        states.update(checks)
        states.update(unit.quarantined)
        if state != saved:
            states[routing.STATE_NAME] = orjson.dumps(state.to_state())
        decoded = replace(decoded, dead=dead)
        return Prepared(
            held.offsets,
            states,
            outbox,
            decoded,
            touched,
            state,
            register,
            [(model_id, partitions) for model_id, partitions, _ in splits],
            len(forwards),
            duplicates,
            ops,
            {model_id: found[0] for model_id, found in joined.items()},
            performance,
            readings,
            {part.name: part.key for part in done.fed},
            done.retired,
            done.overflow,
            done.registries,
            _anomaly_counts(done),
            unit.freshness if watched else None,
        )

    def _load_routing(self, unit: Unit) -> routing.RoutingState:
        if unit.routing is None:
            blob = unit.store.load([routing.STATE_NAME]).get(routing.STATE_NAME)
            unit.routing = routing.RoutingState()
            if blob is not None:
                try:
                    unit.routing = routing.RoutingState.from_state(orjson.loads(blob))
                except ValueError as error:
                    # Marks lost only let relay duplicates through; say so loudly.
                    log.error("partition %d: routing state ignored: %s", unit.partition, error)
        return unit.routing

    def _route(
        self, unit: Unit, records: Sequence[Record], state: routing.RoutingState
    ) -> tuple[list[Record], list[OutboxEntry], list[DeadLetter], dict[int, Source], int]:
        """Forward input records; turn repartition records back into their sources.

        Records read from the repartition topic are decoded as one stream
        per unit (partition ``unit.partition``, their own offsets), so each
        model's events keep their order in that log whatever the batch cuts;
        ``sources`` maps those offsets back to the original records.
        """
        forwards, dead = self._forward([r for r in records if r.topic != self.repartition])
        own: list[Record] = []
        sources: dict[int, Source] = {}
        duplicates = 0
        for record in (r for r in records if r.topic == self.repartition):
            source = routing.source_of(record.headers)
            if source is None:
                detail = "a record on the repartition topic without driftstream's source headers"
                dead.append(DeadLetter(record, UNKNOWN_TOPIC, detail))
            elif state.fresh(source):
                sources[record.offset] = source
                own.append(
                    Record(source.topic, unit.partition, record.offset, record.key, record.value)
                )
            else:
                duplicates += 1
        return own, forwards, dead, sources, duplicates

    def _forward(self, records: Sequence[Record]) -> tuple[list[OutboxEntry], list[DeadLetter]]:
        kafka = self.config.kafka
        limit = self.config.limits.max_message_bytes
        forwards, refused = [], []
        for record in records:
            fits = record.value is not None and len(record.value) <= limit
            model_id = routing.model_of(record.value, self.models) if fits else None
            if model_id is None:
                refused.append(record)
            else:
                forwards.append(
                    routing.forward_entry(
                        record, model_id, kafka.topics.repartition, kafka.partitions
                    )
                )
        # The decoder names the reason for what cannot be routed.
        return forwards, self.decoder.decode(refused).dead if refused else []

    @staticmethod
    def _from_source(letter: DeadLetter, sources: Mapping[int, Source]) -> DeadLetter:
        source = sources.get(letter.record.offset)
        if source is None:
            return letter
        original = Record(
            source.topic, source.partition, source.offset, letter.record.key, letter.record.value
        )
        return replace(letter, record=original)

    def _unregistered(self, unit: Unit, batches: Sequence[ModelBatch]) -> list[str]:
        return sorted({b.model_id for b in batches} - unit.registered)

    def _split_alerts(
        self,
        unit: Unit,
        batches: Sequence[ModelBatch],
        register: Sequence[str],
        state: routing.RoutingState,
    ) -> list[tuple[str, list[int], OutboxEntry]]:
        """Alerts for models already seen on another partition (a read, before any change)."""
        found = list(unit.splits)
        for model_id in register:
            seen = unit.store.model_partitions(model_id) | {unit.partition}
            if len(seen) > 1:
                found.append((model_id, seen, next(b for b in batches if b.model_id == model_id)))
        alerts = []
        for model_id, partitions, batch in found:
            # Reported once per unit: the state remembers it from this commit on.
            if state.report(routing.split_alert_id(model_id, partitions)):
                entry = self._split_alert(model_id, partitions, batch)
                alerts.append((model_id, sorted(partitions), entry))
        return alerts

    def _split_alert(self, model_id: str, partitions: set[int], batch: ModelBatch) -> OutboxEntry:
        alert_id = routing.split_alert_id(model_id, partitions)
        ts = float(batch.batch.ts[0])
        finding = Finding(
            "quality",
            model_id,
            str(batch.versions[0]),
            "__routing__",
            "routing",
            "partition_split",
            float(len(partitions)),
            1.0,
            "warning",
            "partitions",
            ts,
            ts,
            0,
            ts,
            0,
        )
        source = Source(batch.topic, batch.partition, int(batch.offsets[0]))
        event = alert_event(
            finding, role=batch.role, source=source, model_version=str(batch.versions[0])
        )
        event["alert_id"] = alert_id
        event["details"]["partitions"] = sorted(partitions)
        topic = self.config.kafka.topics.alerts
        return OutboxEntry(alert_id, topic, model_id.encode(), encode_alert(event))

    def _join(
        self, unit: Unit, batches: Sequence[ModelBatch], sources: Mapping[int, Source]
    ) -> dict[str, JoinResult]:
        """Each labelled model's join for this batch, on copies: the unit changes only on commit."""
        sides: dict[str, dict[str, ModelBatch]] = defaultdict(dict)
        for batch in batches:
            spec = self.models[batch.model_id]
            if spec.labels is not None and batch.role in (PREDICTIONS, LABELS):
                sides[batch.model_id][batch.role] = batch
        if not sides:
            return {}
        missing = [m for m in sides if m not in unit.joins]
        if missing:
            names = [label_state_name(m) for m in missing]
            blobs = unit.store.load(names)
            for model_id, name in zip(missing, names, strict=True):
                unit.joins[model_id] = blobs.get(name)
        places = {offset: (s.partition, s.offset) for offset, s in sources.items()}
        return {
            model_id: self._join_model(unit, model_id, found, places)
            for model_id, found in sorted(sides.items())
        }

    def _join_model(
        self,
        unit: Unit,
        model_id: str,
        sides: Mapping[str, ModelBatch],
        places: Mapping[int, tuple[int, int]],
    ) -> JoinResult:
        labels = self.models[model_id].labels
        assert labels is not None
        state, monitor = self._label_state(unit, model_id)
        buffer = unit.store.join_buffer(model_id)
        join = JoinBatch(buffer, labels.join, state, unit.memory.get(model_id))
        outcome = join.run(sides.get(PREDICTIONS), sides.get(LABELS), places)
        alerts: list[OutboxEntry] = []
        values: dict[str, float] = {}
        readings: list[Reading] = []
        for window in outcome.windows:
            pairs = _window_pairs(window, outcome.state, labels.join.regression)
            findings = monitor.judge(pairs)
            values = monitor.last_values
            readings += monitor.readings
            alerts += [
                self._performance_alert(model_id, window, f, monitor.baseline_of(f.statistic))
                for f in findings
            ]
        blob = orjson.dumps({"join": outcome.state.to_state(), "performance": monitor.to_state()})
        return outcome, blob, alerts, values, readings

    def _label_state(self, unit: Unit, model_id: str) -> tuple[JoinState, Any]:
        labels = self.models[model_id].labels
        assert labels is not None
        blob = unit.joins.get(model_id)
        if blob is None:
            return JoinState(), labels.new_monitor()
        try:
            saved = orjson.loads(blob)
            return (
                JoinState.from_state(saved["join"]),
                labels.restore_monitor(saved["performance"]),
            )
        except (ValueError, TypeError, KeyError) as error:
            unit.joins[model_id] = None
            unit.memory.pop(model_id, None)
            self._quarantine(
                unit,
                label_state_name(model_id),
                model_id,
                blob,
                error,
                "started the join over (entries already in its buffer are no longer tracked)",
            )
            return JoinState(), labels.new_monitor()

    def _performance_alert(
        self, model_id: str, window: Window, finding: Finding, baseline: float
    ) -> OutboxEntry:
        pair = window.pairs[finding.row]
        source = Source(
            self.config.kafka.topics.predictions, int(pair["partition"]), int(pair["offset"])
        )
        compared = finding.details is not None and "challenger" in finding.details
        event = alert_event(
            finding,
            role=LABELS,
            source=source,
            model_version=finding.model_version,
            monitor=MonitorKey(finding.model_version).suffix() if compared else "",
        )
        labels = self.models[model_id].labels
        assert labels is not None
        event["details"].update(
            baseline=_finite(baseline),
            window_value=_finite(finding.value),
            joined=int(finding.window_count),
            task=labels.performance.task,
        )
        topic = self.config.kafka.topics.alerts
        return OutboxEntry(event["alert_id"], topic, model_id.encode(), encode_alert(event))

    def _observe_join(
        self, model_id: str, outcome: JoinOutcome, values: Mapping[str, float] | None
    ) -> None:
        self.metrics.observe_labels(model_id, outcome.counts, outcome.delays)
        self.metrics.labels_pending.labels(model_id, "predictions").set(
            outcome.state.pending_predictions
        )
        self.metrics.labels_pending.labels(model_id, "labels").set(outcome.state.pending_labels)
        for metric, value in (values or {}).items():
            if value == value:  # NaN is skipped
                self.metrics.performance_metric.labels(model_id, metric).set(value)

    def _load_keys(
        self, unit: Unit, batches: Sequence[ModelBatch], checked: Mapping[str, Stream]
    ) -> None:
        """The registries, comparisons and stream checks the batches need, read in one call."""
        wanted: dict[str, tuple[str, str]] = {}
        if unit.freshness is None and self._freshness:
            wanted[FRESHNESS_STATE_NAME] = ("freshness", "")  # the unit's: no model of its own
        for name, stream in checked.items():
            wanted[name] = ("dead_letters", stream.model_id)
        for batch in batches:
            spec = self.models[batch.model_id]
            if spec.keys.splits:
                wanted[keys_state_name(batch.role, batch.model_id)] = ("keys", batch.model_id)
            if spec.comparison is not None and batch.role == PREDICTIONS:
                wanted[comparison_state_name(batch.model_id)] = ("compare", batch.model_id)
            if spec.anomaly is not None and batch.role == PREDICTIONS:
                wanted[anomaly_state_name(batch.model_id)] = ("anomaly", batch.model_id)
        held = (unit.registries, unit.comparisons, unit.anomalies, unit.dead_letters)
        missing = [n for n in wanted if not any(n in kept for kept in held)]
        blobs = unit.store.load(missing) if missing else {}
        for name in missing:
            what, model_id = wanted[name]
            if what == "freshness":
                unit.freshness = self._restore(
                    unit,
                    name,
                    model_id,
                    blobs.get(name),
                    partial(Freshness, self.models),
                    partial(Freshness, self.models),
                )
                continue
            spec, blob = self.models[model_id], blobs.get(name)
            if what == "dead_letters":
                unit.dead_letters[name] = self._restore(
                    unit, name, model_id, blob, spec.restore_dead_letters, spec.new_dead_letters
                )
            elif what == "keys":
                unit.registries[name] = self._restore(
                    unit,
                    name,
                    model_id,
                    blob,
                    partial(KeyRegistry.from_state, spec.keys),
                    partial(KeyRegistry, spec.keys),
                )
            elif what == "anomaly":
                unit.anomalies[name] = self._restore(
                    unit, name, model_id, blob, spec.restore_anomaly, spec.new_anomaly
                )
            else:
                assert spec.comparison is not None
                unit.comparisons[name] = self._restore(
                    unit,
                    name,
                    model_id,
                    blob,
                    partial(VersionComparison.from_state, spec.comparison, spec.baseline),
                    partial(VersionComparison, spec.comparison, spec.baseline),
                )

    def _load(self, unit: Unit, wanted: Mapping[str, tuple[str, str, MonitorKey]]) -> None:
        """Every monitor the plans feed, read from Redis in one call before any update."""
        missing = [name for name in wanted if name not in unit.monitors]
        blobs = unit.store.load(missing) if missing else {}
        for name in missing:
            role, model_id, key = wanted[name]
            spec = self.models[model_id]
            unit.monitors[name] = self._restore(
                unit,
                name,
                model_id,
                blobs.get(name),
                partial(spec.restore_monitor, role, key=key),
                partial(spec.new_monitor, role, key),
            )

    def _stream_checks(
        self,
        unit: Unit,
        batches: Sequence[ModelBatch],
        checked: Mapping[str, Stream],
        sources: Mapping[int, Source],
    ) -> tuple[list[OutboxEntry], dict[str, bytes], bool]:
        """Freshness and dead-letter share: their alerts, their states, whether freshness ran.

        They change the unit's trackers in place, after every read: a batch
        prepared is committed exactly so, or the unit is dropped.
        """
        cited: list[Cited] = []
        states: dict[str, bytes] = {}
        watched = False
        freshness = unit.freshness
        if freshness is not None and any(b.role == PREDICTIONS for b in batches):
            cited += freshness.observe(batches)
            states[FRESHNESS_STATE_NAME] = orjson.dumps(freshness.to_state())
            watched = True
        for name, stream in sorted(checked.items()):
            rate = unit.dead_letters[name]
            cited += stream_checks.judge(stream, rate)
            states[name] = orjson.dumps(rate.to_state())
        return [self._cited_alert(c, sources) for c in cited], states, watched

    def _cited_alert(self, cited: Cited, sources: Mapping[int, Source]) -> OutboxEntry:
        finding = cited.finding
        source = sources.get(cited.offset) or Source(cited.topic, cited.partition, cited.offset)
        event = alert_event(
            finding, role=cited.role, source=source, model_version=finding.model_version
        )
        topic = self.config.kafka.topics.alerts
        return OutboxEntry(event["alert_id"], topic, finding.model_id.encode(), encode_alert(event))

    def _restore(
        self,
        unit: Unit,
        name: str,
        model_id: str,
        blob: bytes | None,
        restore: Callable[[Any], Any],
        new: Callable[[], Any],
    ) -> Any:
        """A saved state restored, or a fresh one; a blob that cannot be loaded is quarantined."""
        if blob is None:
            return new()
        try:
            return restore(orjson.loads(blob))
        except (ValueError, TypeError, KeyError) as error:
            self._quarantine(unit, name, model_id, blob, error, "started afresh from the baseline")
            return new()

    def _quarantine(
        self, unit: Unit, name: str, model_id: str, blob: bytes, error: Exception, then: str
    ) -> None:
        """Keep a blob that cannot be loaded for a post-mortem; one bad blob must not take
        the partition down. ``model_id`` is empty for a state of the whole unit."""
        kept = QUARANTINE_NAME.format(name=name, epoch=unit.epoch)
        unit.quarantined[kept] = blob
        self.metrics.state_quarantined.labels(model=model_id).inc()
        log.error(
            "partition %d: state %r of %s cannot be loaded: %s; kept it as %r and %s",
            unit.partition,
            name,
            f"model {model_id!r}" if model_id else "the partition unit",
            error,
            kept,
            then,
        )

    def _alerts(
        self,
        batch: ModelBatch,
        findings: Sequence[Finding],
        sources: Mapping[int, Source],
        key: MonitorKey = WHOLE,
    ) -> list[OutboxEntry]:
        entries = []
        alerts_topic = self.config.kafka.topics.alerts
        for finding in findings:
            offset = int(batch.offsets[finding.row])
            source = sources.get(offset) or Source(batch.topic, batch.partition, offset)
            event = alert_event(
                finding,
                role=batch.role,
                source=source,
                model_version=key.version or str(batch.versions[finding.row]),
                segment=key.segment(),
                monitor=key.suffix(),
            )
            entries.append(
                OutboxEntry(
                    event["alert_id"], alerts_topic, batch.model_id.encode(), encode_alert(event)
                )
            )
        return entries

    def _comparison_alerts(
        self, batch: ModelBatch, findings: Sequence[Finding], sources: Mapping[int, Source]
    ) -> list[OutboxEntry]:
        """A challenger's alerts: the challenger's version, one id per challenger."""
        entries = []
        for finding in findings:
            key = MonitorKey(finding.model_version)
            entries += self._alerts(batch, [finding], sources, key)
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

    def _commit(self, unit: Unit, prepared: Prepared) -> bool:
        """One atomic write of the batch; False when the unit turned out not to be ours."""
        started = time.perf_counter()
        try:
            unit.store.commit(
                unit.epoch,
                prepared.offsets,
                prepared.states,
                prepared.outbox,
                prepared.register,
                prepared.ops,
            )
        except Fenced as fenced:
            self._fenced(unit, fenced)
            return False
        self.store.succeeded()
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        return True

    def _committed(self, unit: Unit, records: list[Record], prepared: Prepared) -> None:
        unit.held = None
        unit.offsets.update(prepared.offsets)
        unit.routing = prepared.routing
        self._registered(unit, prepared)
        self.metrics.forwarded.inc(prepared.forwarded)
        self.metrics.repartition_duplicates.inc(prepared.duplicates)
        for name in prepared.states:
            unit.quarantined.pop(name, None)
        for model_id, outcome in prepared.joins.items():
            unit.joins[model_id] = prepared.states[label_state_name(model_id)]
            unit.memory[model_id] = outcome.memory()
            self._observe_join(model_id, outcome, prepared.performance.get(model_id))
        self.processed += len(records)
        decoded = prepared.decoded
        self._count(decoded.consumed, decoded.dead, prepared.touched, prepared.keys)
        self._keys_changed(unit, prepared)
        self._streams_checked(prepared)
        if self.watcher is not None:
            for batch in prepared.decoded.batches:
                self.watcher.consumed(batch)
            for model_id, role, readings in prepared.readings:
                if readings:
                    self.watcher.judged(model_id, role, readings)
        if prepared.outbox:
            unit.relay_due = True
        self._commit_to_kafka(unit, prepared.offsets)

    def _registered(self, unit: Unit, prepared: Prepared) -> None:
        """A split found only by this commit (two units saw a model at once) goes out next."""
        unit.registered.update(prepared.register)
        for model_id, where in prepared.splits:
            self.metrics.partition_splits.labels(model=model_id).inc()
            log.warning(
                "model %r arrives on partitions %s of group %r: its producers use different "
                "partitioners, so its events are split between independent monitors. Key every "
                "event by model_id with the murmur2 partitioner, or set kafka.routing: "
                "repartition",
                model_id,
                where,
                self.config.kafka.group_id,
            )
        unit.splits = []  # this commit carried their alerts
        reported = prepared.routing.reported if prepared.routing else []
        for model_id, partitions in unit.store.partitions_seen.items():
            if len(partitions) > 1 and routing.split_alert_id(model_id, partitions) not in reported:
                batch = next(b for b in prepared.decoded.batches if b.model_id == model_id)
                unit.splits.append((model_id, partitions, batch))

    def _commit_to_kafka(self, unit: Unit, offsets: Mapping[str, int]) -> None:
        # For lag tools, and to resume from should Redis lose the unit's keys.
        try:
            self.consumer.commit(
                offsets=[TopicPartition(t, unit.partition, o) for t, o in offsets.items()],
                asynchronous=True,
            )
        except KafkaException as error:
            log.debug("partition %d: offsets not committed to Kafka: %s", unit.partition, error)

    def _fenced(self, unit: Unit, fenced: Fenced) -> None:
        if fenced.stored == 0:
            self._reclaim_lost(unit)
            return
        # A newer owner holds the unit (or claimed it after Redis lost its
        # keys): drop it and everything computed since the last commit.
        log.warning(
            "%s; dropping partition %d",
            fenced,
            unit.partition,
            extra={"partition": unit.partition, "epoch": unit.epoch, "stored_epoch": fenced.stored},
        )
        self.metrics.fenced.inc()
        self.units.pop(unit.partition, None)
        self._fenced_at[unit.partition] = self.clock()
        self._pause_partition(unit.partition)
        self.metrics.partitions_owned.set(self._owned())
        self.metrics.forget_partitions([unit.partition])

    def _reclaim_lost(self, unit: Unit) -> None:
        """Redis has no epoch for a unit this worker owns: claim it again from Kafka's offsets."""
        fresh = Unit(unit.partition, unit.store)
        self.units[unit.partition] = fresh
        if not self._claim(fresh):
            return  # _retry claims it once Redis answers; the offsets tell it was lost
        self._locate([fresh], f"its epoch is gone while this worker held epoch {unit.epoch}")
        fresh.needs_seek = True
        self._seek(fresh)

    def _seek(self, unit: Unit) -> bool:
        """Move the consumer to where the unit's claim says to start."""
        try:
            for tp in self.consumer.assignment():
                if tp.partition == unit.partition:
                    tp.offset = self._start_offset(unit, tp.topic)
                    self.consumer.seek(tp)
        except KafkaException as error:
            log.info("partition %d: seek failed (%s); trying again", unit.partition, error)
            return False
        unit.needs_seek = False
        return True

    def _count(
        self,
        consumed: Mapping[tuple[str, str], int],
        dead: Sequence[Any],
        monitors: Mapping[str, ModelMonitor],
        keys: Mapping[str, MonitorKey],
    ) -> None:
        for (model_id, topic), count in consumed.items():
            self.metrics.events_consumed.labels(model=model_id, topic=topic).inc(count)
        for letter in dead:
            self.metrics.invalid_events.labels(
                reason=letter.reason, topic=letter.record.topic
            ).inc()
            if letter.model_id:
                self.metrics.model_dead_letters.labels(
                    model=letter.model_id, reason=letter.reason
                ).inc()
        for name, monitor in monitors.items():
            key = keys.get(name, WHOLE)
            self.metrics.observe_statistics(
                monitor.settings.model_id,
                monitor.last_values,
                key.version,
                monitoring.segment_label(key),
            )

    def _streams_checked(self, prepared: Prepared) -> None:
        """Freshness gauges, and feature names no baseline has: counted, the new ones logged."""
        if prepared.freshness is not None:
            for model_id, (silence, age) in prepared.freshness.lags().items():
                self.metrics.model_silence.labels(model=model_id).set(silence)
                if age is not None:
                    self.metrics.baseline_age.labels(model=model_id).set(age)
        cap = self.config.limits.max_features
        for model_id, found in sorted(prepared.decoded.unknown_features.items()):
            self.metrics.unknown_features.labels(model=model_id).inc(found.count)
            listed = self.unknown_names.setdefault(model_id, {})
            new = [name for name in found.names if name not in listed][: cap - len(listed)]
            if not new:
                continue
            listed.update(dict.fromkeys(new))
            log.warning(
                "model %r: events carry features its baseline does not have, so they are not "
                "watched: %s%s (rebuild the baseline with them to watch them)",
                model_id,
                ", ".join(repr(name) for name in sorted(new)),
                f"; names past the first {cap} are counted, not listed"
                if len(listed) >= cap
                else "",
            )

    def _keys_changed(self, unit: Unit, prepared: Prepared) -> None:
        """Registries as committed; retired versions and overflowing segments counted."""
        unit.registries.update(prepared.registries)
        for model_id, role, version in prepared.retired:
            self.metrics.versions_retired.labels(model=model_id).inc()
            log.info(
                "partition %d: model %r retired version %r of its %s (over versions.max_active, "
                "or quiet for versions.retire_after_seconds of event time); its monitors' state "
                "was deleted",
                unit.partition,
                model_id,
                version,
                role,
            )
        for model_id, key, rows in prepared.overflow:
            self.metrics.segment_overflow.labels(model=model_id, key=key).inc(rows)
        for model_id, flagged, held_back in prepared.anomalies:
            self.metrics.anomalies_flagged.labels(model=model_id).inc(flagged)
            self.metrics.anomalies_suppressed.labels(model=model_id).inc(held_back)

    def _relay(self, retry: bool = False) -> None:
        """Publish outboxes with something to send; Kafka failures back off, Redis ones pause."""
        if not (self.store.up or retry) or self.clock() < self._relay_at:
            return
        left = 0
        for unit in list(self.units.values()):
            if not unit.relay_due:
                continue
            try:
                remaining = self.relay.publish(unit.store)
            except redis.RedisError as error:
                self._store_failed("relay", error)
                return
            self.store.succeeded()
            unit.relay_due = remaining > 0
            left += remaining
        if left:
            self._relay_failures += 1
            self._relay_at = self.clock() + self._relay_backoff.compute(self._relay_failures)
        else:
            self._relay_failures = 0

    def _report_lag(self) -> None:
        try:
            assignment = self.consumer.assignment()
        except KafkaException:
            return
        for tp in assignment:
            unit = self.units.get(tp.partition)
            if unit is None:
                continue
            try:
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high is not None and high >= 0:
                lag = max(0, high - unit.offsets.get(tp.topic, 0))
                self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    lag
                )

    # -- outages ------------------------------------------------------------

    def _blocked(self) -> bool:
        return not self.store.up or any(
            not unit.ready or unit.held is not None for unit in self.units.values()
        )

    def _recover(self) -> None:
        """Retry what waits on Redis when the backoff allows; poll the paused consumer meanwhile."""
        if self.store.due():
            self._retry()
        if self._blocked():
            wait = self.store.wait() if not self.store.up else self._poll_seconds()
            self._rewind(self._records(self._consume(min(wait, self._poll_seconds()))))
            self._report_lag()  # the lag grows meanwhile, and the gauges should show it
        else:
            self._resume()

    def _poll_seconds(self) -> float:
        return self.config.kafka.batch_timeout_seconds

    def _retry(self) -> None:
        for unit in sorted(self.units.values(), key=lambda u: u.partition):
            if unit.epoch == 0:
                if not self._claim(unit):
                    return
                self._locate([unit])
                self._owned_changed("claimed")
                unit.needs_seek = True
            if unit.needs_seek and not self._seek(unit):
                return
            if unit.held is not None and not self._finish(unit, retry=True):
                return
        self._relay(retry=True)

    def _pause(self) -> None:
        if self._paused:
            return
        self._paused = True
        try:
            self.consumer.pause(self.consumer.assignment())
        except KafkaException as error:
            log.debug("pause failed: %s", error)

    def _resume(self) -> None:
        if not self._paused:
            return
        try:
            owned = [tp for tp in self.consumer.assignment() if tp.partition in self.units]
            self.consumer.resume(owned)
        except KafkaException as error:
            log.debug("resume failed: %s", error)
            return
        self._paused = False

    def _pause_partition(self, number: int) -> None:
        try:
            mine = [tp for tp in self.consumer.assignment() if tp.partition == number]
            self.consumer.pause(mine)
        except KafkaException as error:
            log.debug("pause of partition %d failed: %s", number, error)

    def _rewind(self, records: Sequence[Record]) -> None:
        """Seek back over records fetched for a partition that cannot take them now."""
        first: dict[tuple[str, int], int] = {}
        for record in records:
            place = (record.topic, record.partition)
            first[place] = min(first.get(place, record.offset), record.offset)
        for (topic, partition), offset in first.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as error:
                log.debug("rewind of %s[%d] failed: %s", topic, partition, error)

    @staticmethod
    def _records(messages: Sequence[Message]) -> list[Record]:
        return [
            Record(m.topic(), m.partition(), m.offset(), m.key(), m.value())  # type: ignore[arg-type]
            for m in messages
        ]

    def _check_fenced(self) -> None:
        """Claim again a dropped partition that Kafka still assigns long after a fencing."""
        if not self._fenced_at:
            return
        try:
            assigned = {tp.partition for tp in self.consumer.assignment()}
        except KafkaException:
            return
        now = self.clock()
        for number, since in list(self._fenced_at.items()):
            if number not in assigned:
                del self._fenced_at[number]
            elif now - since >= FENCED_GRACE_SECONDS:
                del self._fenced_at[number]
                log.warning(
                    "partition %d: still assigned %.0f s after it was fenced; claiming it again",
                    number,
                    now - since,
                )
                unit = Unit(number, self._store(number))
                self.units[number] = unit
                self._pause()  # _recover claims, seeks and resumes

    # -- lifecycle ----------------------------------------------------------

    def run(self, stop: threading.Event, on_step: Callable[[Worker], None] | None = None) -> bool:
        """Process micro-batches until ``stop`` is set, then leave the group.

        Returns ``close()``'s answer: False when records taken could not be
        committed before stopping.
        """
        self.start()
        try:
            while not stop.is_set():
                self.step()
                self._iterated()
                if on_step is not None:
                    on_step(self)
        except BaseException:
            self.close()
            raise
        return self.close()

    def _iterated(self) -> None:
        """Once per loop iteration: the health beat and, when due, the progress line."""
        if self.health is not None:
            self.health.beat(self._owned())
        if self.progress.due():
            owned = [number for number, unit in self.units.items() if unit.epoch]
            self.progress.report(owned)

    def pending_outbox(self) -> int:
        return sum(unit.store.outbox_size() for unit in self.units.values())

    def uncommitted(self) -> int:
        """Records taken but not committed yet."""
        return sum(len(u.held.records) for u in self.units.values() if u.held is not None)

    def close(self) -> bool:
        """Commit what is held (one try), flush the outboxes and leave the group; never raises.

        Returns False when Redis is unavailable at the end: records taken but
        not committed are then processed again by the partitions' next owner.
        """
        try:
            for unit in list(self.units.values()):
                if unit.held is not None and unit.ready:
                    self._finish(unit, retry=True)  # one last try, whatever the backoff says
            if self.store.up and not self._relay_failures:  # a broker outage would make it wait
                for unit in self.units.values():
                    unit.relay_due = True
                self._relay_at = 0.0
                self._relay()
            self.producer.flush(CLOSE_FLUSH_SECONDS)
        except Exception as error:  # leaving the group matters more than any of the above
            log.error("while closing: %s", error)
        finally:
            left = self.uncommitted()
            self._leave()
        if left or not self.store.up:
            log.error(
                "stopped while Redis is unavailable: %d records taken were not committed; the "
                "partitions' next owner processes them again from the last commit",
                left,
            )
            return False
        return True

    def _leave(self) -> None:
        try:
            self.consumer.close()
        except Exception as error:
            log.error("leaving the consumer group failed: %s", error)


def label_state_name(model_id: str) -> str:
    """Name of a model's label join and performance state inside a partition unit."""
    return f"labels:{model_id}"


def _window_pairs(window: Window, state: JoinState, regression: bool) -> WindowPairs:
    pairs = window.pairs
    versions = state.versions.values
    names = [versions[int(c)] if int(c) < len(versions) else "" for c in pairs["version"]]
    return WindowPairs(
        window.number,
        window.start,
        window.end,
        window.values("label", regression),
        window.values("prediction", regression),
        pairs["score"].astype(np.float64),
        pairs["ts"].astype(np.float64),
        np.array(names, dtype=object),
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _next_offsets(records: Sequence[Record]) -> dict[str, int]:
    # Offsets rise within a topic-partition, so the last record of each topic wins.
    return {record.topic: record.offset + 1 for record in records}


def _anomaly_counts(done: monitoring.Outcome) -> list[tuple[str, int, int]]:
    """Per model: events flagged as anomalies, and those the rate limit held back."""
    counts = []
    for item, _ in done.anomalies:
        anomaly = item.anomaly
        assert anomaly is not None
        counts.append((item.batch.model_id, anomaly.last_flagged, anomaly.last_suppressed))
    return counts
