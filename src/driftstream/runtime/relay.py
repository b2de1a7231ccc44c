"""The outbox relay: publish committed alerts and dead letters, then forget them.

Entries reach Kafka at least once: the relay deletes an entry from the
outbox only after the broker confirmed its delivery. A crash in between
re-sends it later with the same ``alert_id``, so consumers can deduplicate.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from driftstream.runtime.alerts import HEADER_REASON
from driftstream.runtime.metrics import Metrics
from driftstream.runtime.store import OutboxEntry, PartitionStore

log = logging.getLogger(__name__)


class Relay:
    """Drains partition outboxes into Kafka."""

    def __init__(self, producer: Producer, metrics: Metrics, dlq_topic: str, timeout: float = 10.0):
        self.producer = producer
        self.metrics = metrics
        self.dlq_topic = dlq_topic
        self.timeout = timeout

    def publish(self, store: PartitionStore) -> int:
        """Send every pending entry of ``store``; returns how many were delivered."""
        delivered: list[OutboxEntry] = []
        while entries := store.pending():
            sent = self._send(entries)
            if not sent:
                break
            store.delete([entry.id for entry in sent])
            delivered += sent
            if len(sent) < len(entries):
                break
        for entry in delivered:
            self._count(entry)
        self.metrics.outbox_entries.labels(partition=str(store.partition)).set(store.outbox_size())
        return len(delivered)

    def _send(self, entries: list[OutboxEntry]) -> list[OutboxEntry]:
        confirmed: list[OutboxEntry] = []

        def on_delivery(error: KafkaError | None, message: Message, entry: OutboxEntry) -> None:
            if error is None:
                confirmed.append(entry)
            else:
                log.warning("delivery of %s to %s failed: %s", entry.id, entry.topic, error)

        for entry in entries:
            self._produce(entry, lambda e, m, entry=entry: on_delivery(e, m, entry))
        remaining = self.producer.flush(self.timeout)
        if remaining:
            log.warning("%d outbox entries not confirmed within %.0f s", remaining, self.timeout)
        order = {entry.id: i for i, entry in enumerate(entries)}
        return sorted(confirmed, key=lambda entry: order[entry.id])

    def _produce(self, entry: OutboxEntry, callback: Any) -> None:
        send = functools.partial(
            self.producer.produce,
            entry.topic,
            value=entry.value,
            key=entry.key,
            headers=list(entry.headers),
            on_delivery=callback,
        )
        try:
            send()
        except BufferError:
            # The local queue is full: make room, then try once more.
            self.producer.poll(1.0)
            send()

    def _count(self, entry: OutboxEntry) -> None:
        if entry.topic == self.dlq_topic:
            reason = dict(entry.headers).get(HEADER_REASON, b"unknown").decode(errors="replace")
            self.metrics.dead_letters_published.labels(reason=reason).inc()
            return
        event = orjson.loads(entry.value)
        self.metrics.alerts_published.labels(
            kind=event.get("kind", ""), severity=event.get("severity", "")
        ).inc()
