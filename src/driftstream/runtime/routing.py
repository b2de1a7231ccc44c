"""Routing: which partition unit monitors a model, whatever the producers did.

A model's monitors live on one partition unit, its home. Two modes
(``kafka.routing``):

- **by_key** (default, fastest). Producers key every event by ``model_id``
  with the Java client's murmur2 partitioner (the SDK does). The worker
  registers each model's partitions in a shared Redis set, inside the
  commit, and raises one ``quality`` alert (``statistic: partition_split``)
  when a model shows up on more than one partition: two partitioners
  (librdkafka's and kcat's default is CRC32) would otherwise split it into
  independent monitors without a word.
- **repartition**. Producers key by anything. The unit that consumes an
  input record forwards it, through the outbox and in the same commit as
  its offsets, to the repartition topic at partition
  ``murmur2(model_id) % partitions``. Monitors read only that topic, so
  each model's events arrive in one ordered log.

The relay publishes at least once, so a forwarded record can arrive twice.
Each unit keeps, per source topic-partition, the highest source offset it
has monitored (its *mark*) in its committed state, and drops anything at
or below it. That is exact because one source partition's forwards reach a
repartition partition in order and without gaps: they are produced in
outbox order by one idempotent producer with ``enable.gapless.guarantee``
(a gap would be a fatal producer error, after which nothing later of that
producer is delivered), whose messages never time out (librdkafka keeps
retrying through a broker outage, in order), and re-sent copies only ever
follow the originals.

>>> murmur2_partition(b"fraud-detector", 4)  # where the SDK puts it too
0
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from driftstream.core.state import StatePath, StateReader
from driftstream.runtime.alerts import Source
from driftstream.runtime.decode import Record
from driftstream.runtime.store import OutboxEntry

HEADER_SOURCE_TOPIC = "driftstream.source.topic"
HEADER_SOURCE_PARTITION = "driftstream.source.partition"
HEADER_SOURCE_OFFSET = "driftstream.source.offset"
# The state blob, next to the monitors' in the unit's hash.
STATE_NAME = "routing"
# Splits remembered as reported: one per model at most, so a cap far above
# any model count only guards the state's size.
MAX_REPORTED = 10_000

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """The 32-bit murmur2 hash of the Java Kafka client (seed 0x9747b28c), as unsigned."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@functools.lru_cache(maxsize=4096)  # a few models, each looked up once per event
def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition the Java client (and the SDK) picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def forward_entry(record: Record, model_id: str, topic: str, partitions: int) -> OutboxEntry:
    """The outbox entry that carries ``record`` to the model's home on ``topic``."""
    key = model_id.encode()
    return OutboxEntry(
        f"fwd:{record.topic}:{record.partition}:{record.offset}",
        topic,
        key,
        record.value or b"",
        (
            (HEADER_SOURCE_TOPIC, record.topic.encode()),
            (HEADER_SOURCE_PARTITION, str(record.partition).encode()),
            (HEADER_SOURCE_OFFSET, str(record.offset).encode()),
        ),
        partition=murmur2_partition(key, partitions),
    )


def model_of(value: bytes | None, known: Mapping[str, Any]) -> str | None:
    """The configured model an input value names, or None (the decoder says why)."""
    if not value:
        return None
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    model_id = event.get("model_id") if type(event) is dict else None
    return model_id if type(model_id) is str and model_id in known else None


def source_of(headers: Sequence[tuple[str, bytes]] | None) -> Source | None:
    """The source a forwarded record's headers name, or None if they do not."""
    found = dict(headers or ())
    try:
        return Source(
            found[HEADER_SOURCE_TOPIC].decode(),
            int(found[HEADER_SOURCE_PARTITION]),
            int(found[HEADER_SOURCE_OFFSET]),
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


@dataclass
class RoutingState:
    """A unit's routing memory: source marks and the partition splits it reported."""

    marks: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> offset
    reported: list[str] = field(default_factory=list)  # split alert ids, oldest first

    def fresh(self, source: Source) -> bool:
        """Whether ``source`` is new; marks it seen (call in log order)."""
        place = f"{source.topic}:{source.partition}"
        if source.offset <= self.marks.get(place, -1):
            return False
        self.marks[place] = source.offset
        return True

    def report(self, alert_id: str) -> bool:
        """Whether a split alert is new to this unit; remembers it."""
        if alert_id in self.reported:
            return False
        self.reported.append(alert_id)
        del self.reported[:-MAX_REPORTED]
        return True

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "routing",
            "version": 1,
            "marks": dict(self.marks),
            "reported": list(self.reported),
        }

    @classmethod
    def from_state(cls, state: Any) -> RoutingState:
        """Read a saved state strictly; the error names the bad key.

        >>> RoutingState.from_state({"kind": "routing", "version": 1,
        ...                          "marks": {"t:0": -3}, "reported": []})
        Traceback (most recent call last):
        ...
        ValueError: routing state key 'marks.t:0' must be an int >= 0, got -3
        """
        reader = StateReader(state, "routing", ["marks", "reported"], StatePath("routing"))
        return cls(reader.count_map("marks"), reader.texts("reported"))


def split_alert_id(model_id: str, partitions: Iterable[int]) -> str:
    """Deterministic id of a partition-split alert: the model and its sorted partitions."""
    identity = ["partition_split", model_id, sorted(partitions)]
    return hashlib.sha256(orjson.dumps(identity)).hexdigest()[:32]
