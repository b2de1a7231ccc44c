"""Attach driftstream's monitors to a Faust app (faust-streaming).

A team that already runs a Faust app can watch its model traffic without
deploying ``driftstream run`` beside it. Every batch a stream yields
(``Stream.take_events``) runs through the worker's own checkpoint
(``runtime/worker.py``): decode, route, update the monitors, commit state,
offsets and outbox to Redis in one Lua call, then relay the outbox to the
alerts and dead-letter topics. The config file, the Redis keys and the
alert schema are those of ``driftstream run``. Install the extra with
``pip install 'driftstream[faust]'``.

The smallest use is an agent of driftstream's own on the config's input
topics (predictions, features, and labels when a model joins them)::

    import faust
    from driftstream.integrations.faust import attach

    app = faust.App("scoring", broker="kafka://localhost:9092", store="memory://")
    monitors = attach(app, config="driftstream.yaml")

Or, inside an agent of your own, each batch once it is monitored and
committed::

    from driftstream.integrations.faust import Monitors

    monitors = Monitors(app, "driftstream.yaml")
    predictions = app.topic("driftstream.predictions", value_serializer="raw")

    @app.agent(predictions)
    async def score(stream):
        async for events in monitors.batches(stream):
            ...  # your own work on the batch

Create either at import time, next to the app's agents: it connects to
the app's rebalance signals, a timer (which relays alerts while the
stream is idle) and its shutdown.

**Guarantees.** A batch's monitor states, the offsets it reached (the
topic, partition and offset of each record, as Faust read it) and its
alerts are committed together, and ``take_events`` acks the batch to Faust
only after that commit. So Faust's committed offsets never pass
driftstream's: after a crash or a rebalance Faust delivers again from its
own offset, records Redis already covers are skipped, and nothing is
counted twice. The state is effectively once, as with ``driftstream run``;
alerts go out at least once, under deterministic ids. What Faust itself
skips is another matter: records it never delivers (an offset reset after
retention removed them, offsets committed by hand) are never monitored,
and a warning names the offsets. Partitions follow Faust's assignment:
each assigned partition is claimed (a new epoch), each revoked one
released, and a member that lost a partition without hearing of it is
fenced at its next commit.

**Differences from ``driftstream run``.** A batch is processed on the
app's event loop, synchronously, like any CPU-bound agent. While Redis is
unavailable the agent waits and retries with backoff, acking nothing, so
the stream backs up instead of running on unmonitored. ``kafka.routing:
repartition`` is refused (it consumes a topic of its own), and so is an
agent with ``concurrency`` above 1 (its instances would split a
partition's records). Give the integration a ``kafka.group_id`` of its
own: the Redis keys are named after it, and a ``driftstream run`` group of
the same name would fence it. Metrics go to ``Monitors.registry``; serve
it with ``driftstream.runtime.metrics.serve`` if the app has no endpoint
of its own.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import OFFSET_INVALID, TopicPartition
from prometheus_client import CollectorRegistry

from driftstream.config import Config, ConfigError, check_client_settings, load_config
from driftstream.runtime.app import check_kafka, connect_redis
from driftstream.runtime.decode import Record
from driftstream.runtime.metrics import Metrics
from driftstream.runtime.models import load_models
from driftstream.runtime.worker import Worker

log = logging.getLogger(__name__)

# How often an idle app relays what its outbox still holds and retries Redis.
TICK_SECONDS = 1.0
# The shortest wait between two tries while a batch waits on Redis.
MIN_WAIT_SECONDS = 0.01

Place = tuple[str, int]  # topic, partition
Rebalanced = Callable[[Any, list[TopicPartition]], None]
Highwater = Callable[[TopicPartition], int | None]


class StreamFeed:
    """The consumer a ``Worker`` reads through: each Faust batch's records, seeks honoured.

    Faust owns the group membership and the fetching. This hands the worker
    a batch's records as ``consume`` would, and applies the worker's seeks
    within the batch, so a rewind (records taken while Redis is down) hands
    them out again. ``assigned`` and ``revoked`` run the worker's rebalance
    callbacks, as confluent-kafka would. After a claim, the first record a
    partition delivers is checked against the offset the claim starts at:
    a record past it means Faust skipped records, which a warning names.

    >>> feed = StreamFeed()
    >>> feed.subscribe(["predictions"])
    >>> feed.assigned({0})
    >>> feed.feed([Record("predictions", 0, offset, None, b"{}") for offset in (7, 8, 9)])
    >>> [record.offset for record in feed.consume(2)]
    [7, 8]
    >>> feed.seek(TopicPartition("predictions", 0, 8))  # the worker gives one back
    >>> [record.offset for record in feed.consume(10)], len(feed)
    ([8, 9], 0)
    """

    def __init__(self, highwater: Highwater | None = None) -> None:
        self.topics: list[str] = []
        self.numbers: set[int] = set()  # partitions assigned
        self._highwater = highwater
        self._on_assign: Rebalanced | None = None
        self._on_revoke: Rebalanced | None = None
        self._places: set[Place] = set()
        self._paused: set[Place] = set()
        self._records: dict[Place, list[Record]] = {}
        self._cursor: dict[Place, int] = {}
        self._expected: dict[Place, int] = {}  # where a claim starts, until a record arrives

    # -- what the worker calls, as on confluent-kafka's Consumer -------------

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: Rebalanced | None = None,
        on_revoke: Rebalanced | None = None,
        on_lost: Rebalanced | None = None,
    ) -> None:
        self.topics = list(topics)
        self._on_assign = on_assign
        self._on_revoke = on_revoke

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Record]:
        taken: list[Record] = []
        for place, records in self._records.items():
            if place in self._paused or place not in self._places:
                continue
            start = self._cursor[place]
            more = records[start : start + num_messages - len(taken)]
            self._cursor[place] = start + len(more)
            taken += more
            if len(taken) >= num_messages:
                break
        return taken

    def assign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._places.add((tp.topic, tp.partition))
            if tp.offset >= 0:
                self.seek(tp)

    def seek(self, partition: TopicPartition) -> None:
        place = (partition.topic, partition.partition)
        offset = partition.offset
        if offset >= 0:
            self._expected[place] = offset
        records = self._records.get(place)
        if records:
            start = bisect.bisect_left(records, offset, key=_offset) if offset >= 0 else 0
            self._cursor[place] = start
            self._check_gap(place)

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(topic, partition) for topic, partition in sorted(self._places)]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._paused -= {(tp.topic, tp.partition) for tp in partitions}

    def commit(
        self, offsets: list[TopicPartition] | None = None, asynchronous: bool = True
    ) -> None:
        pass  # Faust commits its own offsets, once take_events acks a committed batch

    def committed(
        self, partitions: list[TopicPartition], timeout: float | None = None
    ) -> list[TopicPartition]:
        # Faust's group offsets tell what Faust acked, not what driftstream
        # committed: a unit without offsets in Redis starts where Faust is.
        return [TopicPartition(tp.topic, tp.partition, OFFSET_INVALID) for tp in partitions]

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float | None = None, cached: bool = False
    ) -> tuple[int, int]:
        high = self._highwater(partition) if self._highwater is not None else None
        if high is None:
            return OFFSET_INVALID, OFFSET_INVALID
        return OFFSET_INVALID, high

    def close(self) -> None:
        self.clear()

    # -- what the Faust side calls --------------------------------------------

    def assigned(self, numbers: Iterable[int]) -> None:
        """Faust assigned these partitions: the worker claims each one not already its own."""
        new = sorted(set(numbers) - self.numbers)
        if not new:
            return
        self.numbers.update(new)
        partitions = [TopicPartition(topic, n) for n in new for topic in self.topics]
        if self._on_assign is not None:
            self._on_assign(self, partitions)  # the worker calls assign() from here
        else:
            self.assign(partitions)

    def revoked(self, numbers: Iterable[int]) -> None:
        """Faust revoked these partitions: the worker releases them, their records go."""
        gone = sorted(set(numbers) & self.numbers)
        if not gone:
            return
        self.numbers.difference_update(gone)
        partitions = [TopicPartition(topic, n) for n in gone for topic in self.topics]
        if self._on_revoke is not None:
            self._on_revoke(self, partitions)
        for place in [(tp.topic, tp.partition) for tp in partitions]:
            self._places.discard(place)
            self._paused.discard(place)
            self._expected.pop(place, None)
            self._records.pop(place, None)
            self._cursor.pop(place, None)

    def feed(self, records: Iterable[Record]) -> None:
        """One batch's records, in the order Faust delivered them."""
        self.clear()
        for record in records:
            place = (record.topic, record.partition)
            found = self._records.get(place)
            if found is None:
                found = self._records[place] = []
                self._cursor[place] = 0
            found.append(record)
        for place in self._records:
            self._check_gap(place)

    def __len__(self) -> int:
        """Records of the batch the worker can still take (paused partitions' do not count)."""
        return sum(
            len(records) - self._cursor[place]
            for place, records in self._records.items()
            if place in self._places and place not in self._paused
        )

    def clear(self) -> int:
        """Drop the batch; returns how many of its records were never taken."""
        left = sum(len(records) - self._cursor[place] for place, records in self._records.items())
        self._records.clear()
        self._cursor.clear()
        return left

    def _check_gap(self, place: Place) -> None:
        records = self._records.get(place)
        if not records or place not in self._expected:
            return
        expected = self._expected.pop(place)
        first = records[0].offset
        if first > expected:
            log.warning(
                "%s partition %d: the first record Faust delivered after the claim is at "
                "offset %d, but driftstream's last commit ends at offset %d: records %d to %d "
                "are not monitored (Faust's group committed offsets past driftstream's, or "
                "they left the topic)",
                place[0],
                place[1],
                first,
                expected,
                expected,
                first - 1,
            )


class Monitors:
    """driftstream's monitors on a Faust app: one ``Worker`` fed by the app's streams.

    ``config`` is a ``Config`` or the path of the YAML file ``driftstream
    run`` reads. ``registry`` receives the metrics (a new one by default);
    ``redis_client`` replaces the client made from ``redis.url``. Settings
    the integration cannot run with raise ``ConfigError``, services that do
    not answer ``ServiceError``, each naming the fix; without faust-streaming
    installed, ``ModuleNotFoundError`` says how to install it.
    """

    def __init__(
        self,
        app: Any,
        config: Config | str | Path,
        *,
        registry: CollectorRegistry | None = None,
        redis_client: redis.Redis | None = None,
    ) -> None:
        _require_faust()
        self.app = app
        self.config = config if isinstance(config, Config) else load_config(config)
        _check_supported(self.config)
        check_client_settings(self.config.kafka)
        models = load_models(self.config)
        client = connect_redis(self.config) if redis_client is None else redis_client
        check_kafka(self.config)
        self.registry = CollectorRegistry() if registry is None else registry
        metrics = Metrics(self.registry, max_features=self.config.limits.max_features)
        self.feed = StreamFeed(self._highwater)
        self.worker = Worker(
            self.config,
            models,
            redis_client=client,
            metrics=metrics,
            consumer_factory=lambda settings: self.feed,  # type: ignore[arg-type,return-value]
        )
        self.worker.start()
        self.topics = input_topics(self.config)
        self._lock = asyncio.Lock()  # one batch at a time, whichever agent sends it
        self._closed = False
        self._signals = (
            (app.on_partitions_assigned, self._assigned),
            (app.on_partitions_revoked, self._revoked),
            (app.on_before_shutdown, self._shutdown),
        )
        for signal, receiver in self._signals:
            signal.connect(receiver)
        app.timer(TICK_SECONDS, name=f"driftstream-{self.config.kafka.group_id}")(self._tick)

    async def batches(
        self, stream: Any, max_: int | None = None, within: float | None = None
    ) -> AsyncIterator[Sequence[Any]]:
        """Yield the stream's events in batches, each monitored and committed first.

        ``max_`` and ``within`` are ``take_events``'s (defaults: the config's
        ``kafka.batch_size`` and ``kafka.batch_timeout_seconds``). Faust acks
        a batch once the loop body that received it is done.
        """
        check_channel(self.app, self.config, stream.channel)
        if stream.concurrency_index:
            msg = (
                "an agent that feeds driftstream's monitors must run with concurrency=1: its "
                "instances would take turns at a partition's records"
            )
            raise ConfigError(msg)
        size = max_ or self.config.kafka.batch_size
        timeout = self.config.kafka.batch_timeout_seconds if within is None else within
        async for events in stream.take_events(size, within=timeout):
            await self.monitor(events)
            yield events

    async def monitor(self, events: Sequence[Any]) -> None:
        """Monitor one batch of Faust events and commit it; waits out Redis outages."""
        if self._closed:
            msg = "these monitors are closed: the app is shutting down"
            raise RuntimeError(msg)
        async with self._lock:
            self.feed.feed(self._admit([_record(event) for event in events]))
            try:
                await self._drain()
            finally:
                left = self.feed.clear()
                if left:
                    log.info(
                        "%d records of partitions no longer this worker's are left to their owner",
                        left,
                    )

    def close(self) -> bool:
        """Commit what is held, relay the outbox; False when Redis was unavailable at the end."""
        if self._closed:
            return True
        self._closed = True
        # Faust's signals keep their receivers in a registry shared by every app.
        for signal, receiver in self._signals:
            signal.disconnect(receiver)
        return self.worker.close()

    async def _drain(self) -> None:
        """Step the worker until the batch is taken and committed, or left to its owner."""
        worker = self.worker
        while len(self.feed) or _waiting(worker):
            before = (len(self.feed), worker.processed)
            worker.step()
            if (len(self.feed), worker.processed) != before:
                continue
            if not _waiting(worker):
                return  # records of partitions the worker dropped after a fencing
            wait = worker.store.wait() if not worker.store.up else MIN_WAIT_SECONDS
            await asyncio.sleep(min(max(wait, MIN_WAIT_SECONDS), TICK_SECONDS))

    def _admit(self, records: list[Record]) -> list[Record]:
        """The records of partitions Faust assigned; claims those the signal did not bring yet."""
        new = {record.partition for record in records} - self.feed.numbers
        if not new:
            return records
        owned = self._faust_owned() & new
        self.feed.assigned(owned)
        stray = new - owned
        if not stray:
            return records
        log.warning(
            "records of partitions %s arrived after Faust revoked them; left to their owner",
            sorted(stray),
        )
        return [record for record in records if record.partition not in stray]

    def _faust_owned(self) -> set[int]:
        assignment = self.app.consumer.assignment()
        return {tp.partition for tp in assignment if tp.topic in self.topics}

    def _assigned(self, sender: Any, assigned: Iterable[Any], **_: Any) -> None:
        # The signal carries the whole new assignment; anything else was revoked.
        numbers = {tp.partition for tp in assigned if tp.topic in self.topics}
        self.feed.revoked(self.feed.numbers - numbers)
        self.feed.assigned(numbers)

    def _revoked(self, sender: Any, revoked: Iterable[Any], **_: Any) -> None:
        self.feed.revoked({tp.partition for tp in revoked if tp.topic in self.topics})

    def _shutdown(self, sender: Any, **_: Any) -> None:
        self.close()

    async def _tick(self, *_: Any) -> None:
        """Relay the outbox and retry Redis while no batch arrives."""
        if not self._closed and not self._lock.locked():
            self.worker.step()

    def _highwater(self, partition: TopicPartition) -> int | None:
        from faust.types import TP

        try:
            high = self.app.consumer.highwater(TP(partition.topic, partition.partition))
        except Exception:  # the lag gauge is never worth failing a batch for
            return None
        return int(high) if high is not None else None


def attach(
    app: Any,
    topic: Any = None,
    *,
    config: Config | str | Path,
    registry: CollectorRegistry | None = None,
    redis_client: redis.Redis | None = None,
    max_: int | None = None,
    within: float | None = None,
    name: str | None = None,
) -> Monitors:
    """Add an agent to ``app`` that monitors ``topic`` with driftstream, and return its monitors.

    ``topic`` is a Faust topic of the config's input topics, best read raw
    (``app.topic(name, value_serializer="raw")``); by default, every input
    topic of the config. ``name`` names the agent (default
    ``driftstream-<kafka.group_id>``); the other arguments are those of
    ``Monitors`` and ``Monitors.batches``.
    """
    config = config if isinstance(config, Config) else load_config(config)
    if topic is None:
        names = sorted(input_topics(config))
        topic = app.topic(*names, value_serializer="raw", key_serializer="raw")
    check_channel(app, config, topic)
    monitors = Monitors(app, config, registry=registry, redis_client=redis_client)

    async def driftstream_monitors(stream: Any) -> None:
        async for _ in monitors.batches(stream, max_, within):
            pass

    agent_name = name or f"driftstream-{monitors.config.kafka.group_id}"
    app.agent(topic, name=agent_name, concurrency=1)(driftstream_monitors)
    return monitors


def input_topics(config: Config) -> frozenset[str]:
    """The topics the config's monitors read: predictions, features, and labels if joined."""
    topics = config.kafka.topics
    names = {topics.predictions, topics.features}
    if any(model.labels is not None for model in config.models.values()):
        names.add(topics.labels)
    return frozenset(names)


def check_channel(app: Any, config: Config, channel: Any) -> None:
    """Refuse a Faust topic the config does not name as an input; warn if it decodes values."""
    names = set(getattr(channel, "topics", None) or ())
    unknown = sorted(names - input_topics(config))
    if unknown:
        topics = config.kafka.topics
        msg = (
            f"the stream reads {', '.join(map(repr, unknown))}, which the config does not "
            f"name as an input topic (kafka.topics.predictions is {topics.predictions!r}, "
            f"kafka.topics.features {topics.features!r}, kafka.topics.labels "
            f"{topics.labels!r} when a model joins labels): name it there, or feed the "
            "monitors a stream of those topics"
        )
        raise ConfigError(msg)
    serializer = getattr(channel, "value_serializer", None) or app.conf.value_serializer
    if names and (serializer != "raw" or getattr(channel, "value_type", None) is not None):
        log.warning(
            "topic %s decodes values (%s) before driftstream sees them: a message it cannot "
            "decode fails the agent instead of reaching the dead-letter topic; give the "
            "topic value_serializer='raw'",
            ", ".join(sorted(names)),
            serializer,
        )


def _record(event: Any) -> Record:
    message = event.message
    return Record(message.topic, message.partition, message.offset, message.key, message.value)


def _offset(record: Record) -> int:
    return record.offset


def _waiting(worker: Worker) -> bool:
    """Whether the worker waits on Redis: unreachable, or a unit unclaimed or holding records."""
    return not worker.store.up or any(
        not unit.ready or unit.held is not None for unit in worker.units.values()
    )


def _require_faust() -> None:
    try:
        import faust  # noqa: F401
    except ImportError:
        msg = (
            "driftstream's Faust integration needs faust-streaming: "
            "pip install 'driftstream[faust]'"
        )
        raise ModuleNotFoundError(msg, name="faust") from None


def _check_supported(config: Config) -> None:
    if config.kafka.routing == "repartition":
        msg = (
            "kafka.routing: repartition is not supported by the Faust integration (it consumes "
            "a topic of its own); key events by model_id and set kafka.routing: by_key, or run "
            "`driftstream run`"
        )
        raise ConfigError(msg)
