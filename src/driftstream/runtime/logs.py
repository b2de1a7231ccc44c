"""Log output: plain text for a terminal, JSON lines for log shippers, and the progress line.

In JSON, each record is one object on one line: ``ts`` (RFC 3339, UTC,
milliseconds), ``level``, ``logger``, ``message``, then the record's
structured fields (what the call passed as ``extra``: partitions, alert
ids, rates), and ``exception`` with the traceback when there is one.

>>> record = logging.makeLogRecord(
...     {"name": "driftstream.example", "levelname": "INFO", "msg": "claimed partitions %s",
...      "args": ([0, 1],), "partitions": [0, 1]}
... )
>>> line = orjson.loads(JsonFormatter().format(record))
>>> line["level"], line["logger"], line["message"], line["partitions"]
('INFO', 'driftstream.example', 'claimed partitions [0, 1]', [0, 1])
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import orjson
from prometheus_client.metrics import MetricWrapperBase

from driftstream.runtime.metrics import Metrics

__all__ = ["FORMATS", "JsonFormatter", "ProgressLog", "configure"]

Format = Literal["text", "json"]
FORMATS: tuple[Format, ...] = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Every attribute a LogRecord has before ``extra`` adds its own.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__)
_STANDARD |= {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the record's ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        # default=str: a field orjson cannot encode (a Path, an exception) is still written.
        return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def configure(level: str, fmt: Format = "text", stream: TextIO | None = None) -> bool:
    """Send every log record of ``level`` and above to ``stream`` (stderr) in ``fmt``.

    As ``logging.basicConfig``, it leaves alone a root logger that already has
    handlers (an application embedding the CLI, a test runner): returns
    False then. Called again, it replaces its own handler.
    """
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if isinstance(handler, _Handler)]
    if root.handlers and not ours:
        return False
    for handler in ours:
        root.removeHandler(handler)
    handler = _Handler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    return True


class _Handler(logging.StreamHandler):
    """The CLI's handler: to ``stream``, else to whatever ``sys.stderr`` is when a record comes."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream or sys.stderr)
        self._fixed = stream is not None

    def emit(self, record: logging.LogRecord) -> None:
        if not self._fixed:
            self.stream = sys.stderr
        super().emit(record)


class ProgressLog:
    """Every ``every_seconds``, one INFO line: events/s, lag, alerts and dead letters so far.

    The worker asks ``due()`` once per loop iteration (one comparison); the
    line reads the worker's own counters, so it costs nothing per event.
    """

    def __init__(
        self,
        metrics: Metrics,
        every_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        self.metrics = metrics
        self.every_seconds = every_seconds
        self.clock = clock
        self.log = logger or logging.getLogger("driftstream.runtime.worker")
        self._since = clock()
        self._events = 0

    def due(self) -> bool:
        return self.every_seconds > 0 and self.clock() - self._since >= self.every_seconds

    def report(self, partitions: Collection[int]) -> None:
        """Log the line, for a worker that owns ``partitions``.

        Events are the valid ones committed (``driftstream_events_consumed_total``).
        """
        now = self.clock()
        elapsed = max(now - self._since, 1e-9)
        events = _total(self.metrics.events_consumed)
        rate = (events - self._events) / elapsed
        self._since, self._events = now, events
        fields = {
            "events_per_second": round(rate, 1),
            "events": events,
            "lag_messages": self._lag(partitions),
            "alerts_published": _total(self.metrics.alerts_published),
            "dead_letters": _total(self.metrics.dead_letters_published),
            "outbox_entries": _total(self.metrics.outbox_entries, partitions),
            "partitions": sorted(partitions),
        }
        self.log.info(
            "progress: %.0f events/s over the last %.0f s, %d events committed, lag %d messages, "
            "%d alerts and %d dead letters published, %d waiting in the outbox, partitions %s",
            rate,
            elapsed,
            events,
            fields["lag_messages"],
            fields["alerts_published"],
            fields["dead_letters"],
            fields["outbox_entries"],
            fields["partitions"],
            extra=fields,
        )

    def _lag(self, partitions: Collection[int]) -> int:
        return _total(self.metrics.consumer_lag, partitions)


def _total(metric: MetricWrapperBase, partitions: Collection[int] | None = None) -> int:
    """The sum of a counter's or gauge's values; with ``partitions``, of those partitions only.

    A gauge of a partition this worker released keeps its last value; it is
    not this worker's to report any more.
    """
    owned = None if partitions is None else {str(p) for p in partitions}
    total = 0.0
    for family in metric.collect():
        wanted = family.name + ("_total" if family.type == "counter" else "")
        for sample in family.samples:
            if sample.name != wanted:
                continue
            if owned is not None and sample.labels.get("partition") not in owned:
                continue
            total += sample.value
    return int(total)
