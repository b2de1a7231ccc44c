"""Liveness and readiness of a worker, answered on the metrics port.

- ``/healthz`` (liveness): the worker loop finished an iteration within
  ``metrics.liveness_seconds``. A loop stuck in a call that never returns
  fails it, so an orchestrator restarts the process. An outage does not:
  the loop keeps iterating while it waits for Redis or Kafka.
- ``/readyz`` (readiness): the worker owns partitions, Redis answers a PING
  and Kafka answers a metadata request.

The worker calls ``beat`` once per loop iteration: two assignments, no
lock, nothing per event. The probes run on the HTTP server's threads, never
on the loop's, with short timeouts of their own, and their answer is kept
for ``cache_seconds`` so a burst of probes costs one round trip.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from driftstream.config import Config

__all__ = [
    "Answer",
    "Health",
    "Probe",
    "kafka_probe",
    "liveness_seconds",
    "probes_for",
    "redis_probe",
]

# A loop iteration waits kafka.batch_timeout_seconds for records, then
# processes at most kafka.batch_size of them; around a rebalance or an
# outage it also waits out Kafka's and Redis's own timeouts (10 s for
# committed offsets, 5 s per Redis call, 5 s for the relay's flush).
LIVENESS_FLOOR_SECONDS = 60.0
LIVENESS_BATCH_TIMEOUTS = 20
PROBE_TIMEOUT_SECONDS = 1.0
CACHE_SECONDS = 1.0

# A probe returns None when the service answers, else why it does not.
Check = Callable[[], str | None]


@dataclass(frozen=True)
class Probe:
    name: str
    check: Check


@dataclass(frozen=True)
class Answer:
    ok: bool
    text: str


def liveness_seconds(config: Config) -> float:
    """``metrics.liveness_seconds``, or its default: 20 poll timeouts, at least a minute."""
    configured = config.metrics.liveness_seconds
    if configured is not None:
        return float(configured)
    return max(LIVENESS_FLOOR_SECONDS, LIVENESS_BATCH_TIMEOUTS * config.kafka.batch_timeout_seconds)


class Health:
    """What ``/healthz`` and ``/readyz`` answer; the worker updates it, HTTP threads read it."""

    def __init__(
        self,
        liveness_seconds: float,
        probes: Sequence[Probe] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        if liveness_seconds <= 0:
            msg = f"liveness_seconds must be positive, got {liveness_seconds}"
            raise ValueError(msg)
        self.liveness_seconds = liveness_seconds
        self.probes = tuple(probes)
        self.clock = clock
        self.cache_seconds = cache_seconds
        # Starting up (the group join, the first claims) counts as alive.
        self._beat_at = clock()
        self._partitions = 0
        self._lock = threading.Lock()
        self._checked_at = -float("inf")
        self._problems: list[str] = []

    def beat(self, partitions: int) -> None:
        """One loop iteration finished, owning ``partitions`` partitions."""
        self._partitions = partitions
        self._beat_at = self.clock()

    def alive(self) -> Answer:
        quiet = self.clock() - self._beat_at
        if quiet <= self.liveness_seconds:
            return Answer(True, f"alive: last loop iteration {quiet:.1f} s ago")
        return Answer(
            False,
            f"not alive: the worker loop has not finished an iteration for {quiet:.0f} s "
            f"(metrics.liveness_seconds: {self.liveness_seconds:g})",
        )

    def ready(self) -> Answer:
        problems = []
        partitions = self._partitions
        if partitions == 0:
            problems.append("no partitions assigned")
        problems += self._probe()
        if problems:
            return Answer(False, "not ready: " + "; ".join(problems))
        names = " and ".join(probe.name for probe in self.probes)
        answer = f", {names} answer" if names else ""
        plural = "" if partitions == 1 else "s"
        return Answer(True, f"ready: {partitions} partition{plural}{answer}")

    def _probe(self) -> list[str]:
        with self._lock:
            if self.clock() - self._checked_at >= self.cache_seconds:
                self._problems = [
                    f"{probe.name}: {why}"
                    for probe in self.probes
                    if (why := _run(probe.check)) is not None
                ]
                self._checked_at = self.clock()
            return list(self._problems)


def _run(check: Check) -> str | None:
    try:
        return check()
    except Exception as error:  # a probe must answer, whatever its client raises
        return f"{type(error).__name__}: {error}"


def redis_probe(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> Check:
    """PING through a client of its own, so a probe never waits on the worker's timeouts."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )

    def check() -> str | None:
        try:
            client.ping()
        except redis.RedisError as error:
            return f"no answer to PING ({_clause(error)})"
        return None

    return check


def kafka_probe(
    settings: Mapping[str, Any], topic: str, timeout: float = PROBE_TIMEOUT_SECONDS
) -> Check:
    """A metadata request for ``topic`` through an admin client of its own (built on first use).

    librdkafka's own log is off: the worker's clients already report a broker
    that went away.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    made: list[AdminClient] = []

    def check() -> str | None:
        if not made:
            quiet: dict[str, Any] = {"log_level": 0, "error_cb": lambda _: None}
            made.append(AdminClient({**settings, **quiet}))
        try:
            made[0].list_topics(topic, timeout=timeout)
        except KafkaException as error:
            first = error.args[0] if error.args else error
            reason = first.str() if hasattr(first, "str") else str(first)
            return f"no answer to a metadata request ({_clause(reason)})"
        return None

    return check


def _clause(error: object) -> str:
    return str(error).strip().rstrip(".")


def probes_for(config: Config) -> list[Probe]:
    """Redis at ``redis.url`` and Kafka with every ``kafka.client`` setting (SASL, TLS)."""
    kafka = config.kafka
    return [
        Probe("Redis", redis_probe(config.redis.url.get_secret_value())),
        Probe("Kafka", kafka_probe(kafka.shared_settings(), kafka.topics.predictions)),
    ]
