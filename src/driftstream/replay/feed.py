"""The Kafka clients a replayed worker talks to: records fed in, messages caught.

A replay runs the live ``Worker`` (runtime/worker.py); only its clients
differ. ``FeedConsumer`` hands the worker the records a source read, as if
a group of one member had every partition: records the worker takes as
they are (``decode.Record``), made once for every setting of a sweep
rather than once per worker. ``CaptureProducer`` keeps what the worker
publishes (alerts, dead letters) and sends the forwards of
``kafka.routing: repartition`` back to the consumer, as the repartition
topic would.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from confluent_kafka import OFFSET_INVALID, TopicPartition

from driftstream.runtime.decode import Record


class FeedMessage:
    """A record as confluent-kafka's ``Message`` shows it (the methods a worker calls)."""

    __slots__ = ("_headers", "_key", "_offset", "_partition", "_topic", "_value")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._key = key
        self._value = value
        self._headers = headers

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def error(self) -> None:
        return None


Callback = Callable[[Any, list[TopicPartition]], None]


class FeedConsumer:
    """Hands out the messages ``feed`` was given, in order, in batches of the worker's size.

    Every partition a message names is assigned to the worker (for every
    topic it subscribed to) before that message is handed out, so the
    worker claims units as a live one does. Offsets are not committed
    anywhere and seeks change nothing: a replay reads its input once, and a
    store in memory never makes the worker go back.
    """

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.settings = settings or {}
        self.topics: list[str] = []
        self._on_assign: Callback | None = None
        self._queue: list[Record] = []
        self._next = 0  # the first message of _queue not handed out yet
        self._assigned: set[int] = set()
        self._assignment: list[TopicPartition] = []

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: Callback | None = None,
        on_revoke: Callback | None = None,
        on_lost: Callback | None = None,
    ) -> None:
        self.topics = list(topics)
        self._on_assign = on_assign

    def feed(self, messages: Iterable[Record]) -> None:
        if self._next:  # drop what was handed out, once, rather than per message
            del self._queue[: self._next]
            self._next = 0
        self._queue.extend(messages)

    def __len__(self) -> int:
        return len(self._queue) - self._next

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Record]:
        batch = self._queue[self._next : self._next + num_messages]
        self._next += len(batch)
        self._assign({r.partition for r in batch} - self._assigned)
        return batch

    def _assign(self, partitions: set[int]) -> None:
        if not partitions:
            return
        self._assigned |= partitions
        new = [TopicPartition(t, p) for p in sorted(partitions) for t in self.topics]
        if self._on_assign is not None:
            self._on_assign(self, new)  # the worker calls assign() from here
        else:
            self.assign(new)

    def assign(self, partitions: list[TopicPartition]) -> None:
        known = {(tp.topic, tp.partition) for tp in self._assignment}
        self._assignment += [tp for tp in partitions if (tp.topic, tp.partition) not in known]

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition) for tp in self._assignment]

    def pause(self, partitions: list[TopicPartition]) -> None:
        pass  # a store in memory never fails, so the worker never waits

    def resume(self, partitions: list[TopicPartition]) -> None:
        pass

    def seek(self, partition: TopicPartition) -> None:
        pass

    def commit(
        self, offsets: list[TopicPartition] | None = None, asynchronous: bool = True
    ) -> None:
        pass

    def committed(
        self, partitions: list[TopicPartition], timeout: float | None = None
    ) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, OFFSET_INVALID) for tp in partitions]

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float | None = None, cached: bool = False
    ) -> tuple[int, int]:
        return OFFSET_INVALID, OFFSET_INVALID  # no lag to report: the input is all there

    def close(self) -> None:
        pass


class CaptureProducer:
    """Keeps every message per topic, but the ``loopback`` topic's go back to ``consumer``."""

    def __init__(
        self,
        settings: dict[str, Any] | None = None,
        *,
        consumer: FeedConsumer | None = None,
        loopback: str | None = None,
    ) -> None:
        self.settings = settings or {}
        self.consumer = consumer
        self.loopback = loopback
        self.sent: dict[str, list[FeedMessage]] = defaultdict(list)
        self._waiting: list[tuple[FeedMessage, Callable[..., None] | None]] = []
        self._offsets: dict[tuple[str, int], int] = defaultdict(int)

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        on_delivery: Callable[..., None] | None = None,
        partition: int | None = None,
    ) -> None:
        number = 0 if partition is None or partition < 0 else partition
        offset = self._offsets[(topic, number)]
        self._offsets[(topic, number)] = offset + 1
        headers = list(headers) if headers else None
        self._waiting.append((FeedMessage(topic, number, offset, key, value, headers), on_delivery))

    def poll(self, timeout: float | None = None) -> int:
        return self._deliver()

    def flush(self, timeout: float | None = None) -> int:
        self._deliver()
        return 0

    def __len__(self) -> int:
        return len(self._waiting)

    def _deliver(self) -> int:
        waiting, self._waiting = self._waiting, []
        for message, callback in waiting:
            if message.topic() == self.loopback and self.consumer is not None:
                self.consumer.feed([as_record(message, keep_headers=True)])
            else:
                self.sent[message.topic()].append(message)
            if callback is not None:
                callback(None, message)
        return len(waiting)


def as_record(message: Any, keep_headers: bool = False) -> Record:
    """A consumed message as the record a worker takes."""
    headers = message.headers() if keep_headers else None
    return Record(
        message.topic(),
        message.partition(),
        message.offset(),
        message.key(),
        message.value(),
        headers,
    )
