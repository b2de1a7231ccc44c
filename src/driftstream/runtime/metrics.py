"""Prometheus metrics of a worker, and the HTTP endpoint that exposes them.

The endpoint answers ``/metrics`` (the exposition), ``/healthz`` and
``/readyz`` (``health.Health``: 200, or 503 with the reason in plain text)
and 404 for any other path.

Every metric lives on a registry the caller passes in. Importing this module
registers nothing, so two workers (or two tests) in one process never clash
and the default global registry stays untouched.

>>> from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> metrics = Metrics(registry)
>>> metrics.events_consumed.labels(model="churn", topic="predictions").inc(3)
>>> registry.get_sample_value(
...     "driftstream_events_consumed_total", {"model": "churn", "topic": "predictions"}
... )
3.0
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from driftstream.contract import REASONS
from driftstream.runtime.alerts import ALERT_KINDS, SEVERITIES

if TYPE_CHECKING:
    from driftstream.runtime.health import Health

__all__ = ["DURATION_BUCKETS_SECONDS", "Metrics", "Server", "serve"]

# Micro-batches and Redis commits take from about a millisecond to, when
# something is wrong, several seconds; the buckets cover that range with
# roughly 2.5x steps so quantile estimates stay within a bucket's width.
DURATION_BUCKETS_SECONDS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


# Label delays run from seconds (clicks) to weeks (chargebacks).
LABEL_DELAY_BUCKETS_SECONDS = (
    1.0,
    10.0,
    60.0,
    300.0,
    1800.0,
    3600.0,
    6 * 3600.0,
    86400.0,
    3 * 86400.0,
    7 * 86400.0,
    30 * 86400.0,
)


def observe_many(histogram: Histogram, values: npt.NDArray[np.float64]) -> None:
    """``histogram.observe`` for every value, with one count per bucket instead of one per value.

    A batch joins tens of thousands of labels; observing each costs about
    4 µs. prometheus_client keeps a count per bucket (not cumulative) and a
    sum, so the same result is one ``inc`` per bucket. If a release moves
    those internals, this falls back to observing one by one.
    """
    if not len(values):
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values.tolist():
            histogram.observe(value)
        return
    # Bucket i holds values in (bound[i-1], bound[i]], as observe() files them.
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    total.inc(float(np.sum(values)))
    for bucket, count in zip(buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)


class Metrics:
    """All worker metrics, registered on an injected CollectorRegistry (never the global one)."""

    def __init__(self, registry: CollectorRegistry, *, max_features: int = 256) -> None:
        if max_features < 1:
            msg = f"max_features must be at least 1, got {max_features}"
            raise ValueError(msg)
        self.registry = registry
        self.max_features = max_features
        self._features: dict[str, set[str]] = {}
        # The worker thread observes while the HTTP thread scrapes; the
        # per-model feature sets are ours to guard, prometheus_client guards its own.
        self._lock = threading.Lock()
        self._register_stream(registry)
        self._register_state(registry)
        self._register_outputs(registry)
        self._register_labels(registry)
        self._register_stream_checks(registry)
        self._joined: dict[str, float] = {}
        self._expired: dict[str, float] = {}

    def _register_stream(self, registry: CollectorRegistry) -> None:
        self.events_consumed = Counter(
            "driftstream_events_consumed_total",
            "Valid events consumed, by model and input topic.",
            ["model", "topic"],
            registry=registry,
        )
        self.invalid_events = Counter(
            "driftstream_invalid_events_total",
            "Events rejected by decoding or validation (sent to the dead-letter topic).",
            ["reason", "topic"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "driftstream_batch_processing_seconds",
            "Time to decode, monitor and commit one micro-batch.",
            buckets=DURATION_BUCKETS_SECONDS,
            registry=registry,
        )
        self.consume_errors = Counter(
            "driftstream_consume_errors_total",
            "Errors the Kafka consumer reported instead of records, by librdkafka error name.",
            ["error"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "driftstream_consumer_lag_messages",
            "Messages between the high watermark and the worker's position.",
            ["topic", "partition"],
            registry=registry,
        )

    def _register_state(self, registry: CollectorRegistry) -> None:
        self.commit_seconds = Histogram(
            "driftstream_state_commit_seconds",
            "Time of the atomic Redis commit of state, offsets and outbox.",
            buckets=DURATION_BUCKETS_SECONDS,
            registry=registry,
        )
        self.outbox_entries = Gauge(
            "driftstream_outbox_entries",
            "Alerts committed to the outbox and not yet published.",
            ["partition"],
            registry=registry,
        )
        self.partitions_owned = Gauge(
            "driftstream_partitions_owned",
            "Input partitions this worker currently owns.",
            registry=registry,
        )
        self.fenced = Counter(
            "driftstream_fenced_commits_total",
            "Commits refused because another worker claimed the partition (stale epoch).",
            registry=registry,
        )
        self._register_store(registry)

    def _register_store(self, registry: CollectorRegistry) -> None:
        self.store_up = Gauge(
            "driftstream_store_up",
            "1 while Redis answers, 0 while it does not (consumption is paused meanwhile).",
            registry=registry,
        )
        self.store_retries = Counter(
            "driftstream_store_retries_total",
            "Redis operations that failed and will be retried, by operation.",
            ["operation"],
            registry=registry,
        )
        self.state_lost = Counter(
            "driftstream_store_state_lost_total",
            "Partitions whose keys Redis lost (restart without persistence, eviction); "
            "each was claimed again and resumed from Kafka's committed offsets.",
            registry=registry,
        )
        self.state_quarantined = Counter(
            "driftstream_state_quarantined_total",
            "Monitor states that could not be loaded, kept under a quarantine name and "
            "replaced by a fresh monitor.",
            ["model"],
            registry=registry,
        )
        self._register_routing(registry)

    def _register_routing(self, registry: CollectorRegistry) -> None:
        self.forwarded = Counter(
            "driftstream_repartition_forwarded_total",
            "Input events forwarded to the repartition topic (routing: repartition).",
            registry=registry,
        )
        self.repartition_duplicates = Counter(
            "driftstream_repartition_duplicates_total",
            "Forwarded events read again after a relay retry, and dropped.",
            registry=registry,
        )
        self.partition_splits = Counter(
            "driftstream_partition_splits_total",
            "Models found on more than one partition (routing: by_key); each raised a quality "
            "alert. Producers disagree on the partitioner.",
            ["model"],
            registry=registry,
        )

    def _register_outputs(self, registry: CollectorRegistry) -> None:
        self.drift_statistic = Gauge(
            "driftstream_drift_statistic",
            "Latest drift statistic of a feature against a reference, per monitor: version "
            "(empty unless versions are monitored apart) and segment (country=US; empty for "
            "all traffic).",
            ["model", "version", "segment", "feature", "statistic", "reference"],
            registry=registry,
        )
        self.versions_retired = Counter(
            "driftstream_versions_retired_total",
            "Model versions retired (over versions.max_active, or quiet for "
            "versions.retire_after_seconds); their monitors' state was deleted.",
            ["model"],
            registry=registry,
        )
        self.segment_overflow = Counter(
            "driftstream_segment_overflow_events_total",
            "Events whose segment value came after segments.max_values others and went to "
            "the shared __other__ monitors, per segment key.",
            ["model", "key"],
            registry=registry,
        )
        self.anomalies_flagged = Counter(
            "driftstream_anomaly_events_flagged_total",
            "Prediction events scored over the model's anomaly threshold (anomaly.rate of "
            "baseline-like traffic), published or not.",
            ["model"],
            registry=registry,
        )
        self.anomalies_suppressed = Counter(
            "driftstream_anomaly_events_suppressed_total",
            "Flagged events not published as anomaly alerts because the model was over "
            "anomaly.max_per_minute of event time; the next published one counts them.",
            ["model"],
            registry=registry,
        )
        self.series_dropped = Counter(
            "driftstream_metric_series_dropped_total",
            "Statistic values not exported because the model reached its feature cap.",
            ["model"],
            registry=registry,
        )
        self.alerts_published = Counter(
            "driftstream_alerts_published_total",
            "Alerts published to the alerts topic (re-sends included).",
            ["kind", "severity"],
            registry=registry,
        )
        self.dead_letters_published = Counter(
            "driftstream_dead_letters_published_total",
            "Records published to the dead-letter topic.",
            ["reason"],
            registry=registry,
        )
        # Every series exists at 0 from the start: a labelled counter otherwise
        # appears at its first increment, and increase() and rate() never see
        # that first step, so the first critical alert would page no one.
        for kind in ALERT_KINDS:
            for severity in SEVERITIES:
                self.alerts_published.labels(kind=kind, severity=severity)
        for reason in REASONS:
            self.dead_letters_published.labels(reason=reason)
        self.dead_letters_truncated = Counter(
            "driftstream_dead_letters_truncated_total",
            "Dead letters whose value (or key) was cut to fit the producer's message size.",
            registry=registry,
        )
        self.relay_failures = Counter(
            "driftstream_relay_failures_total",
            "Outbox entries Kafka did not take or confirm; they stay in the outbox and "
            "are sent again later. By librdkafka error name.",
            ["error"],
            registry=registry,
        )

    def _register_labels(self, registry: CollectorRegistry) -> None:
        self.labels = Counter(
            "driftstream_labels_total",
            "Label join outcomes per model: joined, expired (a prediction never labelled "
            "within labels.ttl_seconds), orphan (a label that never met its prediction), "
            "duplicate, evicted (over labels.max_pending), late (joined after its window was "
            "judged), duplicate_prediction, sampled_out.",
            ["model", "outcome"],
            registry=registry,
        )
        self.labels_pending = Gauge(
            "driftstream_labels_pending",
            "Entries waiting in the join buffer, per side (predictions or labels).",
            ["model", "side"],
            registry=registry,
        )
        self.label_delay = Histogram(
            "driftstream_label_delay_seconds",
            "Event time from a prediction to its label, per joined pair.",
            ["model"],
            buckets=LABEL_DELAY_BUCKETS_SECONDS,
            registry=registry,
        )
        self.label_coverage = Gauge(
            "driftstream_label_coverage_ratio",
            "Joined / (joined + expired) since this worker started: the share of predictions "
            "that got their label in time.",
            ["model"],
            registry=registry,
        )
        self.performance_metric = Gauge(
            "driftstream_performance_metric",
            "A model's performance metric over its latest judged window of joined pairs.",
            ["model", "metric"],
            registry=registry,
        )

    def _register_stream_checks(self, registry: CollectorRegistry) -> None:
        self.model_dead_letters = Counter(
            "driftstream_model_dead_letters_total",
            "Dead letters of a configured model, by reason: those whose event named the model "
            "(unknown_model and unreadable records have none).",
            ["model", "reason"],
            registry=registry,
        )
        self.unknown_features = Counter(
            "driftstream_unknown_features_total",
            "Feature values under names the model's baseline does not have (ignored); an "
            "event with two such names counts twice. The names are logged, not labels.",
            ["model"],
            registry=registry,
        )
        self.model_silence = Gauge(
            "driftstream_model_silence_seconds",
            "Event time from the model's latest prediction event to the latest event of any "
            "model on its partition (quality.max_silence_seconds judges it).",
            ["model"],
            registry=registry,
        )
        self.baseline_age = Gauge(
            "driftstream_baseline_age_seconds",
            "Event time from the model's baseline's creation (created_at) to the latest event "
            "on its partition (quality.max_model_age_days judges it).",
            ["model"],
            registry=registry,
        )

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Drop the lag and outbox series of partitions this worker gave up.

        Their last values would otherwise stay on this worker's page beside
        the new owner's, frozen, and a sum or a max over workers would count
        them.
        """
        gone = {str(number) for number in partitions}
        for metric in self.consumer_lag.collect():
            for sample in metric.samples:
                if sample.labels["partition"] in gone:
                    with contextlib.suppress(KeyError):
                        self.consumer_lag.remove(sample.labels["topic"], sample.labels["partition"])
        for number in gone:
            with contextlib.suppress(KeyError):
                self.outbox_entries.remove(number)

    def observe_labels(self, model: str, counts: Mapping[str, int], delays: Any) -> None:
        """Count one commit's join outcomes and label delays, and update the coverage."""
        for outcome, count in counts.items():
            if count:
                self.labels.labels(model, outcome).inc(count)
        observe_many(self.label_delay.labels(model), np.maximum(np.asarray(delays), 0.0))
        joined = self._joined[model] = self._joined.get(model, 0.0) + counts.get("joined", 0)
        expired = self._expired[model] = self._expired.get(model, 0.0) + counts.get("expired", 0)
        if joined + expired:
            self.label_coverage.labels(model).set(joined / (joined + expired))

    def observe_statistics(
        self,
        model: str,
        values: Mapping[tuple[str, str, str], float],
        version: str = "",
        segment: str = "",
    ) -> None:
        """Set one monitor's drift statistics keyed by (feature, statistic, reference).

        NaN is skipped.

        A model's first ``max_features`` distinct features get series; values of
        any later feature are dropped and counted, so one model with runaway
        feature names cannot blow up the scrape.
        """
        dropped = 0
        with self._lock:
            admitted = self._features.setdefault(model, set())
            for (feature, statistic, reference), value in values.items():
                if math.isnan(value):
                    continue
                if not self._admit(admitted, feature):
                    dropped += 1
                    continue
                series = self.drift_statistic.labels(
                    model, version, segment, feature, statistic, reference
                )
                series.set(value)
        if dropped:
            self.series_dropped.labels(model).inc(dropped)

    def _admit(self, admitted: set[str], feature: str) -> bool:
        if feature in admitted:
            return True
        if len(admitted) >= self.max_features:
            return False
        admitted.add(feature)
        return True


class Server:
    """A running /metrics endpoint; ``port`` is the bound one (useful after port 0)."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread, host: str) -> None:
        self._httpd = httpd
        self._thread = thread
        self.host = host
        self.port = int(httpd.server_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """A thread per request: a slow readiness probe never holds up a scrape."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes every few seconds are not worth a log line each."""


StartResponse = Callable[[str, list[tuple[str, str]]], Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _app(registry: CollectorRegistry, health: Health | None) -> App:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)
        if health is not None and path in ("/healthz", "/readyz"):
            answer = health.alive() if path == "/healthz" else health.ready()
            status = "200 OK" if answer.ok else "503 Service Unavailable"
            return _text(start_response, status, answer.text)
        known = "/metrics, /healthz, /readyz" if health is not None else "/metrics"
        return _text(start_response, "404 Not Found", f"not found: {path} (served: {known})")

    return app


def _text(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    body = f"{text}\n".encode()
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


def serve(
    registry: CollectorRegistry, host: str, port: int, health: Health | None = None
) -> Server:
    """Serve the registry (and ``health``'s answers) over HTTP on a daemon thread.

    Port 0 picks a free port.
    """
    try:
        # An IPv6 host needs an IPv6 socket; wsgiref's default is IPv4.
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        server_class = type("Server", (_ThreadingServer,), {"address_family": family})
        httpd: WSGIServer = make_server(
            str(address[0]), port, _app(registry, health), server_class, handler_class=_QuietHandler
        )
    except OSError as exc:
        why = exc.strerror or str(exc)
        msg = f"cannot serve metrics on {host}:{port}: {why}"
        raise OSError(exc.errno, msg) from exc
    thread = threading.Thread(target=httpd.serve_forever, name="driftstream-metrics", daemon=True)
    thread.start()
    return Server(httpd, thread, host)
