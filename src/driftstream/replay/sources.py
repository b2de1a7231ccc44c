"""What a replay reads: JSON-lines files, or a range of the configured topics.

Files hold one event per line in the Kafka contract (``.jsonl``, or
``.jsonl.gz``). A bare event is given the topic of its role, told by its
fields (``prediction`` for a prediction, ``label`` without ``features``
for a label, else features), partition 0 and the next offset of that
topic in file order. An export line keeps the record's Kafka place, so a
replay of the export raises the alerts, with the same ids, that the topic
raised::

    {"kafka":{"topic":"t","partition":0,"offset":5,"key":"<base64>"},"event":{...}}

(``"value_b64"`` instead of ``"event"`` for a value that is not one line
of JSON). ``export`` writes that format from a topic range.

A topic range is read by a plain consumer that joins no group and commits
nothing, from ``--from`` to ``--to``: RFC 3339 times (Kafka's record
timestamps, through ``offsets_for_times``) or ``topic:partition:offset``
places. Without ``--to`` each partition is read to its end, as the read
reaches it.
"""

from __future__ import annotations

import base64
import functools
import gzip
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from driftstream.config import Config
from driftstream.replay.feed import as_record
from driftstream.replay.incidents import rfc3339_seconds
from driftstream.runtime.decode import Record

EXPORT_PREFIX = b'{"kafka":'
_EVENT_MARK = b'},"event":'
_MODEL_ID = re.compile(rb'"model_id"\s*:\s*"((?:[^"\\]|\\.)*)"')
_COMPACT_MODEL_ID = b'"model_id":"'
ROLES = ("predictions", "features", "labels")
CHUNK_BYTES = 1 << 20  # lines read at a time
_PLACE = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+):(?P<partition>\d+):(?P<offset>\d+)$")
KAFKA_TIMEOUT_SECONDS = 15.0
# A partition that yields neither records nor its end for this long is left.
QUIET_SECONDS = 30.0
POLL_SECONDS = 0.05
# Errors that mean a partition has nothing more in the range.
_AT_END = (KafkaError._PARTITION_EOF, KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE)
log = logging.getLogger(__name__)


class SourceError(ValueError):
    """A replay input that cannot be read as asked; the message says what to fix."""


@dataclass
class LineError:
    """A file line that holds no record (it is counted and listed, never fatal)."""

    path: str
    line: int
    reason: str


@dataclass
class FileSource:
    """Records of JSON-lines files, in file order (see the module docstring)."""

    paths: Sequence[Path]
    topics: Mapping[str, str]  # role -> topic: predictions, features, labels
    errors: list[LineError] = field(default_factory=list)
    bad_lines: int = 0
    _offsets: dict[str, int] = field(default_factory=dict)  # topic -> next offset (partition 0)

    def __post_init__(self) -> None:
        for path in self.paths:
            if not Path(path).is_file():
                msg = f"--data {path}: no such file"
                raise SourceError(msg)

    @property
    def description(self) -> str:
        names = ", ".join(str(p) for p in self.paths[:3])
        more = f" and {len(self.paths) - 3} more" if len(self.paths) > 3 else ""
        return f"files: {names}{more}"

    def size(self) -> int:
        """Bytes to read, for the progress display (compressed bytes for .gz)."""
        return sum(os.path.getsize(p) for p in self.paths)

    def batches(self, size: int, progress: Any = None) -> Iterator[list[Record]]:
        batch: list[Record] = []
        done = 0
        for path in self.paths:
            with open(path, "rb") as raw:
                stream: Any = gzip.GzipFile(fileobj=raw) if _gzipped(path) else raw
                number = 1
                while lines := stream.readlines(CHUNK_BYTES):
                    batch += self._messages(str(path), number, lines)
                    number += len(lines)
                    while len(batch) >= size:
                        if progress is not None:
                            progress(done + raw.tell())
                        yield batch[:size]
                        batch = batch[size:]
            done += os.path.getsize(path)
        if batch:
            yield batch

    def _messages(self, path: str, first: int, lines: list[bytes]) -> list[Record]:
        """The records of consecutive lines, numbered from ``first`` (a hot loop: kept flat)."""
        found = []
        offsets = self._offsets
        predictions, features, labels = (self.topics[r] for r in ROLES)
        for number, line in enumerate(lines, first):
            line = line.rstrip(b"\r\n")
            if not line or line.isspace():
                continue
            if line.startswith(EXPORT_PREFIX):
                exported = self._exported(path, number, line)
                if exported is not None:
                    found.append(exported)
                continue
            if b'"prediction"' in line:
                topic = predictions
            elif b'"label"' in line and b'"features"' not in line:
                topic = labels
            elif b'"features"' in line:
                topic = features
            else:
                topic = predictions  # the decoder dead-letters it with the reason
            offset = offsets.get(topic, 0)
            offsets[topic] = offset + 1
            found.append(Record(topic, 0, offset, _model_key(line), line))
        return found

    def _exported(self, path: str, number: int, line: bytes) -> Record | None:
        try:
            return _exported(line)
        except (ValueError, KeyError, TypeError) as error:
            self._bad(path, number, f"an export line that does not parse: {error}")
            return None

    def _bad(self, path: str, number: int, reason: str) -> None:
        self.bad_lines += 1
        if len(self.errors) < 100:
            self.errors.append(LineError(path, number, reason))


def _gzipped(path: Path | str) -> bool:
    return str(path).endswith(".gz")


def _model_key(line: bytes) -> bytes | None:
    """The key a producer gives the event: its model id (the worker checks it)."""
    at = line.find(_COMPACT_MODEL_ID)
    if at >= 0:  # the usual compact JSON, found without a regular expression
        at += len(_COMPACT_MODEL_ID)
        key = line[at : line.find(b'"', at)]
        if b"\\" not in key:
            return key
    found = _MODEL_ID.search(line)
    if found is None:
        return None
    if b"\\" not in found[1]:
        return found[1]
    try:  # an escape in the id: JSON says what it stands for
        model_id = orjson.loads(line).get("model_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return model_id.encode() if isinstance(model_id, str) else None


def _exported(line: bytes) -> Record:
    end = line.find(_EVENT_MARK)
    if end > 0 and line.endswith(b"}"):
        meta = orjson.loads(line[len(EXPORT_PREFIX) : end + 1])
        value: bytes | None = line[end + len(_EVENT_MARK) : -1]
    else:
        whole = orjson.loads(line)
        meta = whole["kafka"]
        encoded = whole.get("value_b64")
        value = None if encoded is None else base64.b64decode(encoded, validate=True)
    key = meta.get("key")
    return Record(
        str(meta["topic"]),
        int(meta["partition"]),
        int(meta["offset"]),
        None if key is None else _key_bytes(key),
        value,
    )


@functools.lru_cache(maxsize=4096)
def _key_bytes(encoded: str) -> bytes:
    """A base64 key; an export repeats a few keys (model ids) on every line."""
    return base64.b64decode(encoded, validate=True)


def export_line(record: Record) -> bytes:
    """One record as an export line (the format ``FileSource`` reads back)."""
    key = record.key
    meta = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": None if key is None else base64.b64encode(key).decode("ascii"),
    }
    value = record.value
    head = EXPORT_PREFIX + orjson.dumps(meta)
    if value is not None and b"\n" not in value and b"\r" not in value and _is_json(value):
        return head + b',"event":' + value + b"}"
    encoded = None if value is None else base64.b64encode(value).decode("ascii")
    return head + b',"value_b64":' + orjson.dumps(encoded) + b"}"


def _is_json(value: bytes) -> bool:
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return True


# -- topic ranges ---------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """One end of a range: a time (epoch milliseconds), or offsets per (topic, partition)."""

    text: str
    millis: int | None = None
    places: Mapping[tuple[str, int], int] = field(default_factory=dict)


def parse_bound(texts: Sequence[str], flag: str) -> Bound:
    """``--from``/``--to``: one RFC 3339 time, or ``topic:partition:offset`` places."""
    if len(texts) == 1 and not _PLACE.match(texts[0]):
        return Bound(texts[0], millis=round(parse_time(texts[0], flag) * 1000))
    places: dict[tuple[str, int], int] = {}
    for text in texts:
        found = _PLACE.match(text)
        if found is None:
            msg = (
                f"{flag} {text!r}: give one RFC 3339 time (2026-01-01T00:00:00Z) or "
                "topic:partition:offset places"
            )
            raise SourceError(msg)
        places[(found["topic"], int(found["partition"]))] = int(found["offset"])
    return Bound(" ".join(texts), places=places)


def parse_time(text: str, flag: str) -> float:
    """Epoch seconds of an RFC 3339 time (a time without offset is UTC)."""
    seconds = rfc3339_seconds(text)
    if seconds is None:
        msg = f"{flag} {text!r} is not an RFC 3339 time such as 2026-01-01T00:00:00Z"
        raise SourceError(msg)
    return seconds


@dataclass
class TopicSource:
    """Records of the configured input topics between two bounds (module docstring).

    Without ``--to`` a partition is read until the consumer reaches its end
    (librdkafka's end-of-partition event): a broker's reported high
    watermark only estimates progress, since some Kafka-compatible brokers
    report it behind the records they serve.
    """

    config: Config
    start: Bound | None
    end: Bound | None
    ranges: dict[tuple[str, int], tuple[int, int | None]] = field(default_factory=dict)
    _consumer: Consumer | None = None
    _estimate: int = 0

    @property
    def description(self) -> str:
        begin = self.start.text if self.start else "the beginning"
        finish = self.end.text if self.end else "the end"
        return f"topics {', '.join(self._topics())}: from {begin} to {finish}"

    def _topics(self) -> list[str]:
        topics = self.config.kafka.topics
        return [topics.predictions, topics.features, topics.labels]

    def open(self) -> None:
        """Resolve the bounds to offsets; raises SourceError for a bad or empty range."""
        if self.start is not None and self.end is not None:
            first, last = self.start.millis, self.end.millis
            if first is not None and last is not None and last <= first:
                msg = f"--to {self.end.text} is not after --from {self.start.text}"
                raise SourceError(msg)
        settings: dict[str, Any] = {"log_level": 3}
        settings.update(self.config.kafka.client_settings())
        settings.update(
            {
                "group.id": f"driftstream-replay-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                # A start past a partition's end is an error here, read as "nothing
                # to read", rather than a silent jump to some other offset.
                "auto.offset.reset": "error",
                # Fetch ahead while the worker processes a batch (librdkafka's
                # default stops at 100,000 records queued).
                "queued.min.messages": 1_000_000,
                # A partition with nothing left would hold each fetch this long.
                "fetch.wait.max.ms": 20,
            }
        )
        self._consumer = Consumer(settings)
        places = self._partitions()
        if not places:
            msg = f"none of the topics {', '.join(self._topics())} exists on the broker"
            raise SourceError(msg)
        starts = self._resolve(places, self.start)
        # A time ends a partition at its first record stamped at or after it.
        by_places = self.end is not None and self.end.millis is None
        ends = self._resolve(places, self.end) if by_places else dict.fromkeys(places)
        by_time = self.start is not None and self.start.millis is not None
        for place in places:
            start, end = starts[place], ends[place]
            if start is None and by_time:
                continue  # no record at or after --from
            first = 0 if start is None else start
            if end is not None and end <= first:
                continue
            self.ranges[place] = (first, end)
        if not self.ranges:
            msg = f"the range holds no records: {self.description}"
            raise SourceError(msg)
        self._estimate = self._estimated()

    def size(self) -> int:
        """Records in the range, estimated from the high watermarks where it has no end."""
        return self._estimate

    def _estimated(self) -> int:
        assert self._consumer is not None
        total = 0
        for (topic, number), (start, end) in self.ranges.items():
            if end is None:
                try:
                    _, end = self._consumer.get_watermark_offsets(
                        TopicPartition(topic, number), timeout=KAFKA_TIMEOUT_SECONDS
                    )
                except KafkaException:
                    end = start
            total += max(0, int(end or 0) - start)
        return total

    def _partitions(self) -> list[tuple[str, int]]:
        assert self._consumer is not None
        metadata = self._consumer.list_topics(timeout=KAFKA_TIMEOUT_SECONDS)
        found = []
        for topic in self._topics():
            info = metadata.topics.get(topic)
            if info is None or info.error is not None:
                continue
            found += [(topic, number) for number in sorted(info.partitions)]
        return found

    def _resolve(
        self, places: Sequence[tuple[str, int]], bound: Bound | None
    ) -> dict[tuple[str, int], int | None]:
        """Each partition's offset for ``bound``; None: its beginning or end (no bound)."""
        assert self._consumer is not None
        if bound is None:
            return dict.fromkeys(places)
        if bound.millis is None:
            unknown = set(bound.places) - set(places)
            if unknown:
                topic, number = sorted(unknown)[0]
                msg = f"{topic}:{number} is not a partition of the configured input topics"
                raise SourceError(msg)
            return {p: bound.places.get(p) for p in places}
        asked = [TopicPartition(t, n, bound.millis) for t, n in places]
        found = self._consumer.offsets_for_times(asked, timeout=KAFKA_TIMEOUT_SECONDS)
        # -1: no record at or after the time.
        return {(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None for tp in found}

    def batches(self, size: int, progress: Any = None) -> Iterator[list[Record]]:
        consumer = self._consumer
        assert consumer is not None
        consumer.assign([TopicPartition(t, n, s) for (t, n), (s, _) in self.ranges.items()])
        left = {place: end for place, (_, end) in self.ranges.items()}
        read: dict[tuple[str, int], int] = {}
        done = 0
        quiet_since = time.monotonic()
        batch: list[Record] = []
        try:
            while left:
                # A short wait: consume() holds out for a full batch until its timeout,
                # and the last records and the ends of partitions come in ones.
                messages = consumer.consume(size - len(batch), POLL_SECONDS)
                if messages:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > QUIET_SECONDS:
                    log.warning(
                        "no record and no end of partition for %.0f s on %s; ending the range",
                        QUIET_SECONDS,
                        ", ".join(f"{t}:{n}" for t, n in sorted(left)),
                    )
                    break
                batch += map(as_record, self._take(messages, left, read))
                if len(batch) >= size or (batch and not left):
                    done += len(batch)
                    if progress is not None:
                        progress(done)
                    yield batch
                    batch = []
            if batch:
                yield batch
        finally:
            consumer.close()
            for place, (start, _) in self.ranges.items():
                self.ranges[place] = (start, read.get(place, start))

    def _take(
        self,
        messages: Sequence[Any],
        left: dict[tuple[str, int], int | None],
        read: dict[tuple[str, int], int],
    ) -> list[Any]:
        """The messages inside the range; a partition leaves ``left`` at its end."""
        if self._open_ended() and len(left) == len(self.ranges):
            errors = sum(m.error() is not None for m in messages)
            if not errors:  # every partition still open, nothing to look at one by one
                return self._take_all(messages, read)
        batch = []
        for message in messages:
            place = (str(message.topic()), int(message.partition() or 0))
            error = message.error()
            if error is not None:
                if error.code() in _AT_END:
                    self._finish(place, left)
                elif error.fatal():
                    raise KafkaException(error)
                continue
            if place not in left:
                continue
            offset, end = int(message.offset() or 0), left[place]
            when = self._outside(message)
            if (end is not None and offset >= end) or when > 0:
                self._finish(place, left)
                continue
            if when < 0:
                continue
            batch.append(message)
            read[place] = offset + 1
            if end is not None and offset + 1 >= end:
                self._finish(place, left)
        return batch

    def _open_ended(self) -> bool:
        """No bound but the partitions' ends: no record needs a look of its own."""
        return (self.start is None or self.start.millis is None) and self.end is None

    def _take_all(self, messages: Sequence[Any], read: dict[tuple[str, int], int]) -> list[Any]:
        seen: set[tuple[str, int]] = set()
        for message in reversed(messages):  # the last record of each partition says how far
            place = (message.topic(), message.partition())
            if place in seen:
                continue
            seen.add(place)
            read[place] = message.offset() + 1
            if len(seen) == len(self.ranges):
                break
        return list(messages)

    def _outside(self, message: Any) -> int:
        """-1 before ``--from``'s time, 1 at or after ``--to``'s, else 0.

        ``offsets_for_times`` only says where to start reading; each record's
        own timestamp decides, since some Kafka-compatible brokers answer it
        loosely.
        """
        kind, millis = message.timestamp()
        if kind == TIMESTAMP_NOT_AVAILABLE or millis < 0:
            return 0
        if self.start is not None and self.start.millis is not None and millis < self.start.millis:
            return -1
        if self.end is not None and self.end.millis is not None and millis >= self.end.millis:
            return 1
        return 0

    def _finish(self, place: tuple[str, int], left: dict[tuple[str, int], int | None]) -> None:
        if place in left:
            del left[place]
            if self._consumer is not None:
                self._consumer.pause([TopicPartition(place[0], place[1])])


def topic_source(config: Config, start: Sequence[str], end: Sequence[str]) -> TopicSource:
    """The opened range of ``--from`` / ``--to`` (each empty: no bound on that side)."""
    source = TopicSource(
        config,
        parse_bound(start, "--from") if start else None,
        parse_bound(end, "--to") if end else None,
    )
    source.open()
    return source


def export(source: TopicSource, path: Path, batch_size: int = 20_000, progress: Any = None) -> int:
    """Write every record of an opened topic range as export lines; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "wb") as raw:
        stream: Any = gzip.GzipFile(fileobj=raw, mode="wb") if _gzipped(path) else raw
        try:
            for batch in source.batches(batch_size, progress):
                stream.write(b"".join(export_line(m) + b"\n" for m in batch))
                count += len(batch)
        finally:
            if stream is not raw:
                stream.close()
    return count
