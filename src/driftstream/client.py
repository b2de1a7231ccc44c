"""The producer SDK: model servers log predictions, features and labels to Kafka.

A thin wrapper over ``confluent_kafka.Producer`` that writes the JSON
contract of DESIGN.md, keyed by ``model_id``. Calls never wait for the
broker: a message is queued, delivery callbacks are served with ``poll(0)``,
and ``flush()`` / ``close()`` are where the caller waits.

Values the worker would dead-letter (NaN, infinities, naive datetimes, wrong
types) are refused here, at the call that made them, with the field named.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import orjson
from confluent_kafka import KafkaError, Message, Producer

from driftstream.contract import read_timestamp

__all__ = ["DeliveryError", "DriftClient", "QueueFullError"]

Scalar = float | int | str | bool | None
Timestamp = float | int | datetime | str | None

DEFAULT_CONFIG: Mapping[str, Any] = {
    "linger.ms": 5,
    "compression.type": "lz4",
    "enable.idempotence": True,
    # librdkafka hashes keys with CRC32 by default, the Java client with
    # murmur2. Co-partitioning needs every producer of a model's predictions
    # and labels to pick the same partition, so match the Java client.
    "partitioner": "murmur2_random",
}

# Long enough for librdkafka to hand a batch to the broker and free queue
# space, short enough that a model server's request does not stall on it.
QUEUE_FULL_WAIT_SECONDS = 0.5


class DeliveryError(RuntimeError):
    """Messages that did not reach the broker by the time the client closed."""

    def __init__(self, message: str, *, failed: int, queued: int) -> None:
        super().__init__(message)
        self.failed = failed
        self.queued = queued


class QueueFullError(BufferError):
    """The local producer queue stayed full: the broker is slow or unreachable."""


class DriftClient:
    """Logs inference events for driftstream; thread-safe like the Producer it wraps."""

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        predictions_topic: str = "driftstream.predictions",
        features_topic: str = "driftstream.features",
        labels_topic: str = "driftstream.labels",
        model_version: str = "",
    ) -> None:
        self.predictions_topic = predictions_topic
        self.features_topic = features_topic
        self.labels_topic = labels_topic
        self.model_version = _text(model_version, "model_version")
        self._producer = Producer(_producer_config(bootstrap_servers, config))
        self._delivery_errors = 0
        # Messages handed to the producer, and delivery reports received: what
        # is still queued is their difference. len(producer) would also count
        # librdkafka's own events (an "all brokers down" error, say).
        self._produced = 0
        self._reported = 0
        self._last_error: KafkaError | None = None
        self._closed = False

    def log_prediction(
        self,
        model_id: str,
        features: Mapping[str, Scalar],
        prediction: float | int | str,
        score: float | None = None,
        event_id: str | None = None,
        model_version: str | None = None,
        segment: Mapping[str, str] | None = None,
        ts: Timestamp = None,
    ) -> str:
        """Queue one prediction event; returns its event_id (a uuid4 hex unless given)."""
        event = self._inference_event(model_id, features, event_id, model_version, segment, ts)
        event["prediction"] = _prediction(prediction)
        if score is not None:
            event["score"] = _number(score, "score")
        self._send(self.predictions_topic, model_id, event)
        return str(event["event_id"])

    def log_features(
        self,
        model_id: str,
        features: Mapping[str, Scalar],
        *,
        event_id: str | None = None,
        model_version: str | None = None,
        segment: Mapping[str, str] | None = None,
        ts: Timestamp = None,
    ) -> str:
        """Queue one feature event (a prediction event without a prediction); returns event_id."""
        event = self._inference_event(model_id, features, event_id, model_version, segment, ts)
        self._send(self.features_topic, model_id, event)
        return str(event["event_id"])

    def log_label(
        self, model_id: str, event_id: str, label: float | int | str | bool, ts: Timestamp = None
    ) -> None:
        """Queue the ground truth for an earlier (or later) event with the same event_id.

        ``model_id`` is required: labels are joined per model, so a label
        source that knows only the event_id must look the model up. ``ts`` is
        when the label became known (default: now); the worker joins it to
        the prediction in event time, up to the model's ``labels.ttl_seconds``.
        """
        event = {
            "event_id": _given_event_id(event_id),
            "model_id": _model_id(model_id),
            "ts": _timestamp(ts),
            "label": _label(label),
        }
        self._send(self.labels_topic, model_id, event)

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` seconds for delivery; returns how many are still queued."""
        self._producer.flush(timeout)
        return max(self._produced - self._reported, 0)

    def close(self, timeout: float = 10.0) -> None:
        """Flush, then stop; raises DeliveryError if any message was not delivered."""
        self._close(timeout, strict=True)

    @property
    def delivery_errors(self) -> int:
        """Messages the broker never acknowledged, counted from delivery callbacks."""
        return self._delivery_errors

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Undelivered messages must not hide the exception that ended the block.
        self._close(10.0, strict=exc is None)

    def _inference_event(
        self,
        model_id: str,
        features: Mapping[str, Scalar],
        event_id: str | None,
        model_version: str | None,
        segment: Mapping[str, str] | None,
        ts: Timestamp,
    ) -> dict[str, Any]:
        version = self.model_version if model_version is None else model_version
        event: dict[str, Any] = {
            "event_id": uuid.uuid4().hex if event_id is None else _given_event_id(event_id),
            "model_id": _model_id(model_id),
            "model_version": _text(version, "model_version"),
            "ts": _timestamp(ts),
            "features": _features(features),
        }
        if segment is not None:
            event["segment"] = _segment(segment)
        return event

    def _send(self, topic: str, model_id: str, event: dict[str, Any]) -> None:
        if self._closed:
            msg = "DriftClient is closed"
            raise RuntimeError(msg)
        payload = orjson.dumps(event)
        key = model_id.encode()
        try:
            self._producer.produce(topic, payload, key, on_delivery=self._on_delivery)
        except BufferError:
            self._producer.poll(QUEUE_FULL_WAIT_SECONDS)
            self._retry_produce(topic, payload, key)
        self._produced += 1
        self._producer.poll(0)

    def _retry_produce(self, topic: str, payload: bytes, key: bytes) -> None:
        try:
            self._producer.produce(topic, payload, key, on_delivery=self._on_delivery)
        except BufferError as exc:
            queued = len(self._producer)
            msg = (
                f"local producer queue is full ({queued} messages waiting) after "
                f"{QUEUE_FULL_WAIT_SECONDS} s: the broker is slow or unreachable; "
                "call flush() or raise queue.buffering.max.messages in config"
            )
            raise QueueFullError(msg) from exc

    def _on_delivery(self, err: KafkaError | None, _message: Message) -> None:
        self._reported += 1
        if err is not None:
            self._delivery_errors += 1
            self._last_error = err

    def _close(self, timeout: float, *, strict: bool) -> None:
        if self._closed:
            return
        queued = self.flush(timeout)
        failed = self._delivery_errors
        last_error = self._last_error
        self._closed = True
        if queued:
            # Without a purge, shutting the producer down would wait for the
            # queued messages' own timeout (minutes by default).
            self._producer.purge()
            self._producer.poll(0)
        # Producer.close() arrived in confluent-kafka 2.x; without it the
        # (now empty) producer is released with the client.
        release = getattr(self._producer, "close", None)
        if release is not None:
            release()
        if strict and (queued or failed):
            raise _delivery_error(failed, queued, timeout, last_error)


def _delivery_error(
    failed: int, queued: int, timeout: float, last_error: KafkaError | None
) -> DeliveryError:
    parts = []
    if failed:
        reason = f" (last error: {last_error.str()})" if last_error is not None else ""
        parts.append(f"{failed} failed delivery{reason}")
    if queued:
        parts.append(f"{queued} still queued after {timeout} s and discarded")
    msg = f"{failed + queued} messages were not delivered: " + "; ".join(parts)
    return DeliveryError(msg, failed=failed, queued=queued)


def _producer_config(
    bootstrap_servers: str | None, config: Mapping[str, Any] | None
) -> dict[str, Any]:
    merged = {**DEFAULT_CONFIG, **(config or {})}
    if bootstrap_servers is not None:
        configured = merged.get("bootstrap.servers", bootstrap_servers)
        if configured != bootstrap_servers:
            msg = (
                f"bootstrap_servers={bootstrap_servers!r} conflicts with "
                f"config['bootstrap.servers']={configured!r}; give one"
            )
            raise ValueError(msg)
        merged["bootstrap.servers"] = bootstrap_servers
    if not merged.get("bootstrap.servers"):
        msg = "no broker: pass bootstrap_servers or config['bootstrap.servers']"
        raise ValueError(msg)
    return merged


def _model_id(model_id: object) -> str:
    if not isinstance(model_id, str) or not model_id:
        msg = f"model_id must be a non-empty string, got {model_id!r}"
        raise ValueError(msg)
    return model_id


def _given_event_id(event_id: object) -> str:
    if not isinstance(event_id, str) or not event_id:
        msg = f"event_id must be a non-empty string, got {event_id!r}"
        raise ValueError(msg)
    return event_id


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        msg = f"{field} must be a string, got {type(value).__name__}"
        raise TypeError(msg)
    return value


def _features(features: object) -> dict[str, Scalar]:
    if not isinstance(features, Mapping):
        msg = f"features must be a mapping of name to value, got {type(features).__name__}"
        raise TypeError(msg)
    clean: dict[str, Scalar] = features if type(features) is dict else dict(features)
    converted: dict[str, Scalar] = {}
    for name, value in clean.items():
        if not isinstance(name, str):
            msg = f"feature names must be strings, got {name!r}"
            raise TypeError(msg)
        if value is None or type(value) in (str, int, bool):
            continue
        if type(value) is float:
            _check_finite(value, f"feature {name!r}")
            continue
        converted[name] = _plain_scalar(value, f"feature {name!r}")
    return {**clean, **converted} if converted else clean


def _plain_scalar(value: object, field: str) -> Scalar:
    """A Python scalar for ``value``: numpy scalars and str/int/float subclasses are unwrapped."""
    plain = value.item() if hasattr(value, "item") and hasattr(value, "dtype") else value
    if plain is None or isinstance(plain, bool):
        return plain
    # Going through the base class's methods keeps the value of str/int enums,
    # where str() would give the member's name.
    if isinstance(plain, str):
        return str.__str__(plain)
    if isinstance(plain, int):
        return int.__int__(plain)
    if isinstance(plain, float):
        return _check_finite(float(plain), field)
    msg = f"{field} must be a number, string, bool or None, got {type(value).__name__}"
    raise TypeError(msg)


def _check_finite(value: float, field: str) -> float:
    if not math.isfinite(value):
        msg = f"{field} is {value}; the worker would dead-letter the event"
        raise ValueError(msg)
    return value


def _number(value: object, field: str) -> float | int:
    plain = _plain_scalar(value, field)
    if isinstance(plain, bool) or not isinstance(plain, int | float):
        msg = f"{field} must be a number, got {type(value).__name__}"
        raise TypeError(msg)
    return plain


def _prediction(value: object) -> float | int | str:
    plain = _plain_scalar(value, "prediction")
    if plain is None or isinstance(plain, bool):
        msg = f"prediction must be a number or a string, got {plain!r}"
        raise TypeError(msg)
    return plain


def _label(value: object) -> float | int | str | bool:
    plain = _plain_scalar(value, "label")
    if plain is None:
        msg = "label must be a number, string or bool, got None"
        raise TypeError(msg)
    return plain


def _segment(segment: object) -> dict[str, str]:
    if not isinstance(segment, Mapping):
        msg = f"segment must be a mapping of string to string, got {type(segment).__name__}"
        raise TypeError(msg)
    for key, value in segment.items():
        if not isinstance(key, str) or not isinstance(value, str):
            msg = f"segment entries must be string to string, got {key!r}: {value!r}"
            raise TypeError(msg)
    return dict(segment)


def _timestamp(ts: object) -> float | int | str:
    """Epoch seconds or an RFC 3339 string, checked by the contract the worker uses."""
    if ts is None:
        return time.time()
    if isinstance(ts, datetime):
        ts = _utc_text(ts)
    read_timestamp(ts)
    return ts  # type: ignore[return-value]  # read_timestamp refused every other type


def _utc_text(ts: datetime) -> str:
    if ts.tzinfo is None or ts.utcoffset() is None:
        msg = f"ts is a naive datetime ({ts.isoformat()}); give it a timezone, e.g. tzinfo=UTC"
        raise ValueError(msg)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
