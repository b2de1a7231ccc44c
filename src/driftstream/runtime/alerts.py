"""Alert events, the JSON contract published to the alerts topic, and dead letters.

An alert event is plain JSON data, laid out as ``schemas/alert.schema.json``
describes (``ALERT_SCHEMA_VERSION``). Its ``alert_id`` is a hash of what
triggered it: the model, role, feature, detector, statistic, reference, kind
and the source record (topic, partition, offset). Replaying the same input
therefore yields the same ids, and a re-published alert (the outbox relay
publishes at least once) keeps its id, so consumers can drop duplicates.

Times are epoch seconds; ``details.event_time_rfc3339`` repeats the event
time for people reading the topic. JSON has no NaN or infinity, so a value
that is not finite is published as ``null``.

A dead letter goes to the dead-letter topic with the original key and the
original value bytes untouched, and says why in its headers (see
``schemas/dead_letter.md``).

>>> from driftstream.core.findings import Finding
>>> finding = Finding("drift", "fraud", "v1", "amount", "window", "psi", 0.31, 0.2,
...                   "critical", "baseline", 100.0, 160.0, 5000, 160.0, 4999)
>>> source = Source("driftstream.predictions", 3, 81234)
>>> event = alert_event(finding, role="predictions", source=source, model_version="v1")
>>> event["alert_id"] == alert_id(finding, "predictions", source)
True
>>> event["window"], event["details"]["event_time_rfc3339"]
({'start': 100.0, 'end': 160.0, 'count': 5000}, '1970-01-01T00:02:40Z')
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from driftstream.core.findings import Finding
from driftstream.runtime.decode import DeadLetter

ALERT_SCHEMA_VERSION = 1
# Kinds the contract defines; the monitors emit drift and resolved today.
ALERT_KINDS = ("drift", "resolved", "quality", "anomaly", "performance", "comparison")
SEVERITIES = ("critical", "warning", "info", "ok")

# Header names on dead letters; every value is UTF-8 text.
HEADER_REASON = "driftstream.dlq.reason"
HEADER_DETAIL = "driftstream.dlq.detail"
HEADER_TOPIC = "driftstream.dlq.topic"
HEADER_PARTITION = "driftstream.dlq.partition"
HEADER_OFFSET = "driftstream.dlq.offset"
# A detail names a field and quotes at most a short value; the cap only
# guards the header size against a pathological one.
MAX_DETAIL_BYTES = 1024


@dataclass(frozen=True)
class Source:
    """The input record that triggered an alert."""

    topic: str
    partition: int
    offset: int


def alert_id(finding: Finding, role: str, source: Source, monitor: str = "") -> str:
    """A deterministic id: 32 hex digits of SHA-256 over what triggered the alert.

    The hashed fields go into a JSON array in a fixed order, so no two
    different combinations can serialise alike. ``monitor`` tells apart the
    monitors of one model's versions and segments, which one event feeds
    together; the whole-traffic monitor's is empty, and left out.
    """
    identity = [
        finding.model_id,
        role,
        finding.feature,
        finding.detector,
        finding.statistic,
        finding.reference,
        finding.kind,
        source.topic,
        int(source.partition),
        int(source.offset),
    ]
    if monitor:
        identity.append(monitor)
    return hashlib.sha256(orjson.dumps(identity)).hexdigest()[:32]


def alert_event(
    finding: Finding,
    *,
    role: str,
    source: Source,
    model_version: str,
    segment: Mapping[str, str] | None = None,
    monitor: str = "",
) -> dict[str, Any]:
    """The alert event for one finding, as published (``segment`` ``{}`` = whole model).

    ``monitor`` is the monitor's key suffix (see ``alert_id``); the
    finding's own ``details`` join the event's.
    """
    details = {
        "reference": finding.reference,
        "role": role,
        "event_time_rfc3339": rfc3339(finding.event_time),
    }
    details.update(finding.details or {})
    return {
        "schema_version": ALERT_SCHEMA_VERSION,
        "alert_id": alert_id(finding, role, source, monitor),
        "kind": finding.kind,
        "severity": finding.severity,
        "model_id": finding.model_id,
        "model_version": model_version,
        "segment": dict(segment or {}),
        "feature": finding.feature,
        "detector": finding.detector,
        "statistic": finding.statistic,
        "value": _finite(finding.value),
        "threshold": _finite(finding.threshold),
        "window": {
            "start": _finite(finding.window_start),
            "end": _finite(finding.window_end),
            "count": int(finding.window_count),
        },
        "source": {
            "topic": source.topic,
            "partition": int(source.partition),
            "offset": int(source.offset),
        },
        "event_time": _finite(finding.event_time),
        "details": details,
    }


def encode_alert(event: Mapping[str, Any]) -> bytes:
    """The event's JSON bytes, keys sorted so equal events give equal bytes."""
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """Kafka headers saying why a record was refused and where it came from."""
    detail = letter.detail.encode("utf-8", "replace")[:MAX_DETAIL_BYTES]
    record = letter.record
    return [
        (HEADER_REASON, letter.reason.encode()),
        (HEADER_DETAIL, detail.decode("utf-8", "ignore").encode()),
        (HEADER_TOPIC, record.topic.encode("utf-8", "replace")),
        (HEADER_PARTITION, str(record.partition).encode()),
        (HEADER_OFFSET, str(record.offset).encode()),
    ]


def rfc3339(seconds: float) -> str | None:
    """Epoch seconds as RFC 3339 in UTC (``...Z``), or ``None`` if not representable.

    >>> rfc3339(1795323600.25)
    '2026-11-22T05:00:00.250000Z'
    """
    if not math.isfinite(seconds):
        return None
    try:
        moment = datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat().replace("+00:00", "Z")


def _finite(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
