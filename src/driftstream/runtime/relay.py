"""The outbox relay: publish committed alerts and dead letters, then forget them.

Entries reach Kafka at least once: the relay deletes an entry from the
outbox only after the broker confirmed its delivery. A crash in between
re-sends it later with the same ``alert_id``, so consumers can deduplicate.

Kafka trouble is never fatal here. An entry the producer refuses (a full
queue, a size limit, an unknown topic) or the broker does not confirm stays
in the outbox, is counted in ``driftstream_relay_failures_total`` and logged,
and goes out on a later call; an entry still in flight is not produced
twice. Only Redis errors reach the caller, which pauses and retries.

A dead letter carries the original record, which can be as large as the
input topic allowed. One that would not fit the producer's message size is
cut: the ``driftstream.dlq.truncated`` header then gives the original value
size in bytes (``driftstream.dlq.key_truncated`` the key's, in the rare case
the key alone is too long).
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from driftstream.runtime.alerts import HEADER_REASON
from driftstream.runtime.metrics import Metrics
from driftstream.runtime.store import OutboxEntry, UnitStore

log = logging.getLogger(__name__)

HEADER_TRUNCATED = "driftstream.dlq.truncated"
HEADER_KEY_TRUNCATED = "driftstream.dlq.key_truncated"
# What a produced message needs beyond its key and value: the dead-letter
# headers (the detail is capped at 1 KiB, a topic name at 249 bytes) and
# the record framing, with a wide margin.
HEADER_ROOM_BYTES = 8192


def fit(entry: OutboxEntry, limit: int) -> tuple[OutboxEntry, bool]:
    """``entry`` with its key and value cut to ``limit`` bytes together; whether it was cut.

    >>> entry = OutboxEntry("dlq:t:0:7", "dlq", b"key", b"x" * 100)
    >>> small, cut = fit(entry, 13)
    >>> cut, small.key, small.value, small.headers
    (True, b'key', b'xxxxxxxxxx', (('driftstream.dlq.truncated', b'100'),))
    >>> fit(entry, 103) == (entry, False)
    True
    """
    key = entry.key or b""
    if len(key) + len(entry.value) <= limit:
        return entry, False
    headers = list(entry.headers)
    kept_key = min(len(key), limit)
    if kept_key < len(key):
        headers.append((HEADER_KEY_TRUNCATED, str(len(key)).encode()))
    kept_value = limit - kept_key
    if kept_value < len(entry.value):
        headers.append((HEADER_TRUNCATED, str(len(entry.value)).encode()))
    cut = OutboxEntry(
        entry.id,
        entry.topic,
        None if entry.key is None else entry.key[:kept_key],
        entry.value[:kept_value],
        tuple(headers),
        entry.partition,
    )
    return cut, True


class Relay:
    """Drains partition outboxes into Kafka."""

    def __init__(
        self,
        producer: Producer,
        metrics: Metrics,
        dlq_topic: str,
        *,
        max_bytes: int = 1_000_000 - HEADER_ROOM_BYTES,
        timeout: float = 5.0,
        batch: int = 1000,
        alerts_topic: str | None = None,
    ) -> None:
        self.producer = producer
        self.metrics = metrics
        self.dlq_topic = dlq_topic
        # Entries to other topics (events forwarded to the repartition topic) are not alerts.
        self.alerts_topic = alerts_topic
        self.max_bytes = max_bytes  # key + value of a dead letter
        self.timeout = timeout
        self.batch = batch
        self._in_flight: set[str] = set()
        self._confirmed: dict[int, list[OutboxEntry]] = defaultdict(list)
        self._failed: list[tuple[OutboxEntry, object]] = []

    def publish(self, store: UnitStore) -> int:
        """Send what ``store`` has pending, delete what was delivered; returns how many remain.

        Raises only ``redis.RedisError``: Kafka's refusals are counted and the
        entries stay for a later call.
        """
        while True:
            entries = store.pending(self.batch)
            for entry in entries:
                if entry.id not in self._in_flight:
                    self._produce(entry, store.partition)
            if self._in_flight:
                remaining = self.producer.flush(self.timeout)
                if remaining:
                    log.info("%d messages not confirmed within %.0f s", remaining, self.timeout)
            self._report_failures()
            done = self._confirmed.pop(store.partition, [])
            if done:
                store.delete([entry.id for entry in done])
                for entry in done:
                    self._count(entry)
            if len(entries) < self.batch or len(done) < len(entries):
                break
        left = store.outbox_size()
        self.metrics.outbox_entries.labels(partition=str(store.partition)).set(left)
        return left

    def forget(self, partition: int) -> None:
        """Drop confirmations kept for a partition this worker no longer owns."""
        self._confirmed.pop(partition, None)

    def _produce(self, entry: OutboxEntry, partition: int) -> None:
        if entry.topic == self.dlq_topic:
            entry, cut = fit(entry, self.max_bytes)
            if cut:
                self.metrics.dead_letters_truncated.inc()

        def delivered(error: KafkaError | None, message: Message) -> None:
            self._in_flight.discard(entry.id)
            if error is None:
                self._confirmed[partition].append(entry)
            else:
                self._failed.append((entry, error))

        send = functools.partial(self._send, entry, delivered)
        self._in_flight.add(entry.id)
        try:
            try:
                send()
            except BufferError:
                # The local queue is full: make room, then try once more.
                self.producer.poll(1.0)
                send()
        except (BufferError, KafkaException, TypeError, ValueError) as error:
            self._in_flight.discard(entry.id)
            self._failed.append((entry, error))

    def _send(self, entry: OutboxEntry, callback: Callable[..., None]) -> None:
        self.producer.produce(
            entry.topic,
            value=entry.value,
            key=entry.key,
            headers=list(entry.headers),
            on_delivery=callback,
            # -1 lets the producer's partitioner choose, as confluent-kafka's default does
            partition=-1 if entry.partition is None else entry.partition,
        )

    def _report_failures(self) -> None:
        failed, self._failed = self._failed, []
        if not failed:
            return
        for _, error in failed:
            self.metrics.relay_failures.labels(error=error_name(error)).inc()
        entry, error = failed[0]
        log.warning(
            "%d outbox entries not delivered (first: %s to %s: %s); they stay in the outbox",
            len(failed),
            entry.id,
            entry.topic,
            error,
        )

    def _count(self, entry: OutboxEntry) -> None:
        if entry.topic == self.dlq_topic:
            reason = dict(entry.headers).get(HEADER_REASON, b"unknown").decode(errors="replace")
            self.metrics.dead_letters_published.labels(reason=reason).inc()
            return
        if self.alerts_topic is not None and entry.topic != self.alerts_topic:
            return
        event = orjson.loads(entry.value)
        self.metrics.alerts_published.labels(
            kind=event.get("kind", ""), severity=event.get("severity", "")
        ).inc()
        names = ("alert_id", "kind", "severity", "statistic", "model_id", "feature")
        fields = {name: event.get(name) for name in names}
        log.info(
            "alert %s published: %s %s (%s), model %r, feature %r", *fields.values(), extra=fields
        )


def error_name(error: Any) -> str:
    """librdkafka's name of an error (``MSG_SIZE_TOO_LARGE``), else the exception's type."""
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        error = error.args[0]
    if isinstance(error, KafkaError):
        return str(error.name())
    return type(error).__name__
