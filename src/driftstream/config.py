"""The YAML config, validated into frozen pydantic models.

A bad config fails early with the path of the bad key, e.g.
``models.fraud.window.size: Input should be greater than 0``. Every value
comes from the file, from a ``DRIFTSTREAM__`` environment variable (which
wins; ``config_env`` gives the mapping), from a secret's ``<key>_file``, or
from defaults, and each default is documented where it is defined (the
core's ``settings`` and ``stats`` modules give their sources).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from driftstream.config_env import (
    OverrideError,
    Overrides,
    merge,
    read_environment,
    read_secret_files,
)
from driftstream.contract import MAX_LABEL_BYTES, REASONS
from driftstream.core import stats
from driftstream.core.anomaly import MAX_RATE
from driftstream.core.anomaly_monitor import AnomalySettings
from driftstream.core.baseline import BaselineProfile, load_baseline
from driftstream.core.budget import Budget
from driftstream.core.dead_letter_rate import DeadLetterSettings
from driftstream.core.detectors.cusum import (
    DEFAULT_MIN_INSTANCES,
    DEFAULT_SHIFTS,
    DEFAULT_THRESHOLD,
)
from driftstream.core.freshness import FreshnessSettings
from driftstream.core.monitor import default_feature_settings, kind_of, profiles_of
from driftstream.core.quality import QualitySettings
from driftstream.core.settings import (
    DEFAULT_ADWIN,
    DEFAULT_PAGE_HINKLEY,
    EpisodeSettings,
    FeatureSettings,
    MonitorSettings,
    StatisticSetting,
    WindowSettings,
)
from driftstream.core.state import MAX_COUNT

CONFIG_VERSION = 1


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key."""


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowConfig(Frozen):
    """Tumbling windows: ``count`` of events, or ``time`` in event-time seconds."""

    kind: Literal["count", "time"] = "count"
    size: int = Field(default=WindowSettings.size, gt=0)
    seconds: float = Field(default=WindowSettings.seconds, gt=0)
    min_count: int = Field(default=WindowSettings.min_count, ge=1)


class EpisodeConfig(Frozen):
    resolve_windows: int = Field(default=EpisodeSettings.resolve_windows, ge=1)
    resolve_ratio: float = Field(default=EpisodeSettings.resolve_ratio, gt=0, le=1)
    detector_quiet_events: int = Field(default=EpisodeSettings.detector_quiet_events, ge=1)


class AdwinConfig(Frozen):
    delta: float = Field(default=DEFAULT_ADWIN["delta"], gt=0, lt=1)
    clock: int = Field(default=int(DEFAULT_ADWIN["clock"]), ge=1)
    max_buckets: int = Field(default=int(DEFAULT_ADWIN["max_buckets"]), ge=2)
    min_window_length: int = Field(default=int(DEFAULT_ADWIN["min_window_length"]), ge=1)
    grace_period: int = Field(default=int(DEFAULT_ADWIN["grace_period"]), ge=0)


class PageHinkleyConfig(Frozen):
    min_instances: int = Field(default=int(DEFAULT_PAGE_HINKLEY["min_instances"]), ge=1)
    delta: float = Field(default=float(DEFAULT_PAGE_HINKLEY["delta"]), ge=0)
    threshold: float = Field(default=float(DEFAULT_PAGE_HINKLEY["threshold"]), gt=0)
    alpha: float = Field(default=float(DEFAULT_PAGE_HINKLEY["alpha"]), gt=0, le=1)
    mode: Literal["up", "down", "both"] = "both"


class CusumConfig(Frozen):
    """The multi-chart CUSUM. ``threshold`` is the least one used: with a
    false-alarm budget (``alerts.false_alarms_per_day``) the monitor raises
    it to what the budget allows at the traffic's rate."""

    shifts: tuple[float, ...] = Field(default=DEFAULT_SHIFTS, min_length=1, max_length=16)
    threshold: float = Field(default=DEFAULT_THRESHOLD, gt=0, lt=1e6)
    min_instances: int = Field(default=DEFAULT_MIN_INSTANCES, ge=0)

    @field_validator("shifts")
    @classmethod
    def _shifts_in_range(cls, shifts: tuple[float, ...]) -> tuple[float, ...]:
        if not all(2.0**-10 <= shift <= 10.0 for shift in shifts):
            msg = f"every shift must be in [2**-10, 10] standard deviations, got {list(shifts)}"
            raise ValueError(msg)
        return shifts


class DetectorsConfig(Frozen):
    adwin: AdwinConfig = AdwinConfig()
    page_hinkley: PageHinkleyConfig = PageHinkleyConfig()
    cusum: CusumConfig = CusumConfig()


class StatisticConfig(Frozen):
    """Overrides for one statistic; unset values keep the documented default."""

    threshold: float | None = None
    critical: float | None = None


StatisticName = Literal["psi", "js", "ks", "wasserstein", "chi2", "linf"]
DetectorName = Literal["adwin", "page_hinkley", "cusum"]


class FeatureConfig(Frozen):
    """Per-feature overrides. ``kind`` also steers ``driftstream baseline``."""

    kind: Literal["numeric", "categorical"] | None = None
    enabled: bool = True
    statistics: dict[StatisticName, StatisticConfig] | None = None
    detectors: list[DetectorName] | None = None


ErrorDetectorName = Literal["adwin", "ddm"]


class MetricConfig(Frozen):
    """Overrides for judging one performance metric against the baseline's value."""

    enabled: bool = True
    # How many standard errors of the window's sampling error a metric may
    # fall short by before the window counts as worse (core/performance.py).
    z: float | None = Field(default=None, gt=0)
    # Absolute slack on top of the sampling error (same units as the metric).
    tolerance: float | None = Field(default=None, ge=0)


class LabelsConfig(Frozen):
    """Joining late labels to predictions by event_id, in event time.

    ``ttl_seconds`` defaults to 7 days (label sources such as chargebacks
    often take days). Windows group joined pairs by the prediction's event
    time; a window is judged once the model's watermark passes its end plus
    ``wait_seconds``, the time its labels may take to arrive.
    """

    task: Literal["classification", "regression"] | None = None  # default: the baseline's
    positive: str | None = None  # default: the baseline's positive class
    ttl_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)
    lateness_seconds: float = Field(default=60.0, ge=0)
    max_pending: int = Field(default=1_000_000, ge=1)
    sample_rate: float = Field(default=1.0, gt=0, le=1)
    window_seconds: float = Field(default=3600.0, gt=0)
    wait_seconds: float = Field(default=3600.0, ge=0)
    min_count: int = Field(default=200, ge=1)
    # Keys: the task's metric names (core/performance.py); checked with the baseline.
    metrics: dict[str, MetricConfig] = {}
    detectors: list[ErrorDetectorName] = ["adwin", "ddm"]


class VersionsConfig(Frozen):
    """Monitors per model version, and champion vs challenger comparison.

    Off by default: one set of monitors watches all of a model's traffic,
    as before versions were split. With ``monitor: true`` each version gets
    its own monitors (against the model's baseline); at most ``max_active``
    versions are held, the least recently seen (by event time) retiring when
    another arrives, and any not seen for ``retire_after_seconds`` of event
    time retiring too. Retired versions' state is deleted, counted and logged.
    """

    monitor: bool = False
    max_active: int = Field(default=4, ge=1, le=64)
    retire_after_seconds: float | None = Field(default=7 * 24 * 3600.0, gt=0)
    champion: str | None = Field(default=None, min_length=1, max_length=MAX_LABEL_BYTES)
    # A version listed here is judged against its own baseline (same columns).
    baselines: dict[str, Path] = {}
    compare: bool = True
    compare_seconds: float = Field(default=300.0, gt=0)
    # Both sides of a comparison are samples, so each statistic has a noise
    # floor: measured on a model's score in 20 bins, the median JS distance
    # between two samples of one distribution is 0.115 at 500 events a side
    # (over the 0.1 threshold) and still crosses it in 8% of windows at
    # 1,000; with 2,000 a side, 200 windows raised nothing.
    min_count: int = Field(default=2000, ge=1)


class SegmentsConfig(Frozen):
    """Monitors per value of segment keys (``country``, or ``country+device`` for pairs).

    Each key's first ``max_values`` values (in event order) get their own
    monitors; later values share ``__other__``. Windows of a segment's
    monitors with fewer than ``min_count`` events are not judged.
    """

    keys: list[str] = []
    max_values: int = Field(default=50, ge=1, le=10_000)
    min_count: int = Field(default=500, ge=1)

    @field_validator("keys")
    @classmethod
    def _valid_keys(cls, keys: list[str]) -> list[str]:
        for key in keys:
            parts = key.split("+")
            if not all(parts) or len(set(parts)) != len(parts):
                msg = f"segment key {key!r}: use a key name, or names joined by '+'"
                raise ValueError(msg)
        if len(set(keys)) != len(keys):
            msg = f"segment keys repeat: {keys}"
            raise ValueError(msg)
        return keys


class QualityConfig(Frozen):
    """Data-quality checks per monitor and window (defaults and rationale: ``core.quality``)."""

    enabled: bool = True
    false_alarm: float = Field(default=QualitySettings.false_alarm, gt=0, lt=1)
    missing_min_excess: float = Field(default=QualitySettings.missing_min_excess, ge=0, lt=1)
    range_min_excess: float = Field(default=QualitySettings.range_min_excess, ge=0, lt=1)
    new_category_min_excess: float = Field(
        default=QualitySettings.new_category_min_excess, ge=0, lt=1
    )
    stuck_min_count: int = Field(default=QualitySettings.stuck_min_count, ge=2)
    # Checks of a model's stream as a whole (defaults and rationale:
    # ``core.freshness`` and ``core.dead_letter_rate``); null turns a
    # freshness check off.
    max_silence_seconds: float | None = Field(
        default=FreshnessSettings.max_silence_seconds, gt=0, allow_inf_nan=False
    )
    max_model_age_days: float | None = Field(
        default=FreshnessSettings.max_model_age_days, gt=0, allow_inf_nan=False
    )
    max_dead_letter_share: float = Field(default=DeadLetterSettings.max_share, gt=0, lt=1)
    dead_letter_window: int = Field(default=DeadLetterSettings.window, ge=1, le=MAX_COUNT)

    @field_validator("dead_letter_window")
    @classmethod
    def _judgeable_window(cls, window: int) -> int:
        DeadLetterSettings(reasons=REASONS, window=window)  # too small a window: ValueError
        return window

    def freshness(self) -> FreshnessSettings | None:
        """The silence and model-age limits; None when both checks are off."""
        silence, age = self.max_silence_seconds, self.max_model_age_days
        if not self.enabled or (silence is None and age is None):
            return None
        return FreshnessSettings(max_silence_seconds=silence, max_model_age_days=age)

    def dead_letters(self, episodes: EpisodeSettings) -> DeadLetterSettings | None:
        """The dead-letter share check, its episodes as the model's others; None when off."""
        if not self.enabled:
            return None
        return DeadLetterSettings(
            reasons=REASONS,
            max_share=self.max_dead_letter_share,
            window=self.dead_letter_window,
            episodes=episodes,
        )


class AnomalyConfig(Frozen):
    """Per-event anomaly scores (defaults and rationale: ``core.anomaly_monitor``)."""

    enabled: bool = True
    rate: float = Field(default=AnomalySettings.rate, gt=0, le=MAX_RATE)
    max_per_minute: float = Field(default=AnomalySettings.max_per_minute, gt=0, allow_inf_nan=False)
    burst: int | None = Field(default=None, ge=1)
    min_factor: float = Field(default=AnomalySettings.min_factor, ge=1, allow_inf_nan=False)
    columns: list[str] | None = Field(default=None, min_length=1)


class ModelConfig(Frozen):
    baseline: Path
    model_version: str = ""
    versions: VersionsConfig = VersionsConfig()
    segments: SegmentsConfig = SegmentsConfig()
    window: WindowConfig = WindowConfig()
    episodes: EpisodeConfig = EpisodeConfig()
    detectors: DetectorsConfig = DetectorsConfig()
    compare_previous: bool = False
    category_cap: int = Field(default=50, ge=1, le=10_000)
    features: dict[str, FeatureConfig] = {}
    labels: LabelsConfig | None = None  # absent: labels for this model are refused
    quality: QualityConfig = QualityConfig()
    anomaly: AnomalyConfig = AnomalyConfig()


ClientValue = str | int | float | bool | SecretStr
# sasl.oauthbearer.config can carry a client secret among its name=value pairs.
SECRET_WORDS = ("password", "secret", "token", "key.pem", "private", "oauthbearer.config")
# librdkafka's sasl.mechanisms (alias sasl.mechanism), CONFIGURATION.md: exactly
# one of these, spelled so. librdkafka itself accepts any SCRAM-SHA-* at start-up
# and ignores the key without a SASL security.protocol.
SASL_MECHANISMS = ("GSSAPI", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
CONSUMER_ONLY = (
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "auto.offset.reset",
    "group.instance.id",
    "partition.assignment.strategy",
    "fetch.min.bytes",
    "fetch.wait.max.ms",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "isolation.level",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
)


class TopicsConfig(Frozen):
    """Topic names. Every input topic is keyed by model_id and co-partitioned."""

    predictions: str = "driftstream.predictions"
    features: str = "driftstream.features"
    labels: str = "driftstream.labels"
    alerts: str = "driftstream.alerts"
    dlq: str = "driftstream.dlq"
    # Internal: with routing "repartition", every input event is forwarded
    # here keyed by model_id, and the monitors read only this topic.
    repartition: str = "driftstream.repartition"


class KafkaConfig(Frozen):
    """Kafka settings.

    ``client`` passes through to confluent-kafka (librdkafka) unchanged:
    ``bootstrap.servers``, ``security.protocol``, ``sasl.*``, ``ssl.*`` and
    the rest. Values whose key names a password or secret, and values read
    from a ``<key>_file``, are kept as ``SecretStr`` so they never show up in
    logs, reprs or error messages. In the environment a property's dots are
    single underscores: ``DRIFTSTREAM__KAFKA__CLIENT__SASL_PASSWORD``.
    """

    client: dict[str, ClientValue] = {"bootstrap.servers": "127.0.0.1:9092"}
    group_id: str = "driftstream"
    topics: TopicsConfig = TopicsConfig()
    # by_key: producers key every event by model_id with the murmur2
    # partitioner (fastest). repartition: producers key by anything; the
    # worker forwards each event to topics.repartition keyed by model_id.
    routing: Literal["by_key", "repartition"] = "by_key"
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    # Most events per micro-batch. At live rates the timeout cuts batches
    # smaller; big batches only speed up catching up on a backlog.
    batch_size: int = Field(default=20_000, ge=1, le=1_000_000)
    batch_timeout_seconds: float = Field(default=0.5, gt=0)

    @field_validator("client")
    @classmethod
    def _hide_secrets(cls, value: dict[str, ClientValue]) -> dict[str, ClientValue]:
        return {
            key: SecretStr(str(item))
            if any(word in key for word in SECRET_WORDS) and not isinstance(item, SecretStr)
            else item
            for key, item in value.items()
        }

    def client_settings(self) -> dict[str, str | int | float | bool]:
        """The client settings with secrets revealed, for confluent-kafka only."""
        return {
            key: item.get_secret_value() if isinstance(item, SecretStr) else item
            for key, item in self.client.items()
        }

    def shared_settings(self) -> dict[str, str | int | float | bool]:
        """Settings for producers and admin clients: consumer-only keys dropped.

        librdkafka warns about every consumer property a producer is given.
        Its log level defaults to warnings: at info level it reports every
        idle connection a broker closes, which is routine.
        """
        settings: dict[str, str | int | float | bool] = {"log_level": 4}
        settings.update(self.client_settings())
        for key in CONSUMER_ONLY:
            settings.pop(key, None)
        return settings


BROKER_LIST_KEYS = ("bootstrap.servers", "metadata.broker.list")


def check_client_settings(kafka: KafkaConfig) -> None:
    """Refuse ``kafka.client`` settings librdkafka would refuse, naming the key.

    A producer and a consumer are built with the settings (the consumer
    sees the consumer-only keys the producer never gets) but without the
    broker list, so nothing connects: librdkafka checks every key and value
    when a client is built, long before it would use them.
    """
    check_sasl_mechanism(kafka)
    settings = kafka.client_settings()
    offline: dict[str, str | int | float | bool] = {"log_level": 0}
    offline.update({k: v for k, v in settings.items() if k not in BROKER_LIST_KEYS})
    problem = _client_refusal(offline, kafka.group_id)
    if problem is not None:
        key = _blamed_key(problem, offline, kafka.group_id)
        where = "kafka.client" if key is None else f"kafka.client.{key}"
        msg = f"{where}: {_without_secrets(problem, kafka)}"
        raise ConfigError(msg)
    if not any(str(settings.get(key, "")).strip() for key in BROKER_LIST_KEYS):
        msg = "kafka.client.bootstrap.servers: missing; list the brokers, e.g. 'kafka-1:9092'"
        raise ConfigError(msg)


def check_sasl_mechanism(
    kafka: KafkaConfig, where: Callable[[Sequence[object]], str] | None = None
) -> None:
    """Refuse a ``sasl.mechanism(s)`` librdkafka cannot use, naming the key and the choices.

    ``where`` names a key for the message (the config's ``Overrides.where``
    adds the environment variable that set it).
    """
    for key in ("sasl.mechanism", "sasl.mechanisms"):
        value = kafka.client.get(key)
        if value is None:
            continue
        mechanism = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if mechanism in SASL_MECHANISMS:
            continue
        loc = ("kafka", "client", key)
        name = where(loc) if where is not None else ".".join(loc)
        shown = "(the value read from its file)" if isinstance(value, SecretStr) else mechanism
        hint = ""
        if mechanism.upper() in SASL_MECHANISMS:
            hint = f" (written in capitals: {mechanism.upper()})"
        msg = (
            f"{name}: Unsupported SASL mechanism: {shown}; give exactly one of "
            f"{', '.join(SASL_MECHANISMS)}{hint}"
        )
        raise ConfigError(msg)


def _without_secrets(text: str, kafka: KafkaConfig) -> str:
    """``text`` with every secret client value masked (librdkafka may quote a value)."""
    for value in kafka.client.values():
        if isinstance(value, SecretStr) and value.get_secret_value():
            text = text.replace(value.get_secret_value(), "***")
    return text


def _client_refusal(settings: dict[str, str | int | float | bool], group_id: str) -> str | None:
    """librdkafka's reason for refusing to build a client with ``settings``, if any."""
    from confluent_kafka import Consumer, KafkaException, Producer

    producer_settings = {k: v for k, v in settings.items() if k not in CONSUMER_ONLY}
    try:
        Producer(producer_settings)
        Consumer({**settings, "group.id": group_id})
    except KafkaException as error:
        reason = error.args[0].str() if error.args else str(error)
    except (TypeError, ValueError) as error:
        reason = str(error)
    else:
        return None
    return re.sub(r"^Failed to create (producer|consumer): ", "", reason.strip())


def _blamed_key(
    problem: str, settings: dict[str, str | int | float | bool], group_id: str
) -> str | None:
    """The user's key behind librdkafka's complaint, when one can be told.

    librdkafka quotes the key it refuses, but under its canonical name
    (``linger.ms`` is reported as ``queue.buffering.max.ms``), and a bad
    combination such as an unknown SASL mechanism names only the value.
    """
    user_keys = [key for key in settings if key != "log_level"]
    for key in user_keys:
        if f'"{key}"' in problem:
            return key
    for key in user_keys:
        if re.search(rf"(?<![\w.]){re.escape(key)}(?![\w.])", problem):
            return key
    for key in user_keys:
        value = str(settings[key])
        if len(value) > 1 and re.search(rf"(?<![\w.-]){re.escape(value)}(?![\w.-])", problem):
            return key
    for key in user_keys:
        if _client_refusal({"log_level": 0, key: settings[key]}, group_id) == problem:
            return key
    return None


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class RedisConfig(Frozen):
    """Where state, offsets and the alert outbox live.

    ``password`` and ``username``, when given, replace those in ``url``, so
    a password kept as a secret (``password_file``, or
    ``DRIFTSTREAM__REDIS__PASSWORD``) need not be written into the URL;
    every Redis client reads the URL with them in it.
    """

    url: SecretStr = SecretStr(DEFAULT_REDIS_URL)
    username: str | None = Field(default=None, min_length=1)
    password: SecretStr | None = None
    key_prefix: str = Field(default="driftstream", pattern=r"^[A-Za-z0-9_.-]+$")
    # true: redis.url names any node of a Redis Cluster (runtime/store.py's keys).
    cluster: bool = False

    @model_validator(mode="before")
    @classmethod
    def _credentials_in_url(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        url, username, password = (
            _revealed(data.get(key)) for key in ("url", "username", "password")
        )
        texts = all(isinstance(value, str | None) for value in (url, username, password))
        if not texts or not (username or password):
            return data  # nothing to add, or a wrong type that validation names
        with_credentials = _url_with(url or DEFAULT_REDIS_URL, username or None, password or None)
        return {**data, "url": SecretStr(with_credentials)}


def _revealed(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _url_with(url: str, username: str | None, password: str | None) -> str:
    """``url`` with the user and password given replacing its own (percent-encoded)."""
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    old_user, colon, old_password = userinfo.partition(":")
    user = old_user if username is None else quote(username, safe="")
    secret = old_password if password is None else quote(password, safe="")
    credentials = f"{user}:{secret}" if (secret or colon) else user
    netloc = f"{credentials}@{host}" if credentials else host
    return urlunsplit(parts._replace(netloc=netloc))


def check_redis_url(redis_config: RedisConfig) -> None:
    """Refuse a ``redis.url`` the Redis client cannot parse (scheme, port), naming the key."""
    import redis

    url = redis_config.url.get_secret_value()
    try:
        options = redis.ConnectionPool.from_url(url).connection_kwargs
    except ValueError as error:
        msg = f"redis.url: {_url_problem(url, error)}"
        raise ConfigError(msg) from None
    if redis_config.cluster and ("path" in options or options.get("db", 0) != 0):
        msg = (
            "redis.url: with redis.cluster: true, give one node as redis://HOST:PORT "
            "(or rediss://): a cluster is reached over TCP and has database 0 only"
        )
        raise ConfigError(msg)


def _url_problem(url: str, error: ValueError) -> str:
    """The parser's complaint, without any piece of the credentials in the URL."""
    credentials = url.partition("//")[2].rpartition("@")[0]
    if re.search(r"[/#?]", credentials):
        # Not percent-encoded, they cut the URL short and the parser quotes the pieces.
        return (
            "the user or password holds a '/', '#' or '?': percent-encode it, "
            "or give the password as redis.password"
        )
    why = str(error)
    for piece in filter(None, re.split(r"[:@]", credentials)):
        why = why.replace(piece, "***")
    return why


class MetricsConfig(Frozen):
    """The Prometheus endpoint; loopback by default, port 0 turns it off.

    ``max_series`` caps the drift-statistic series the configured caps could
    create (models x versions x segment values x statistics); a config
    that could exceed it is refused, so a segment key cannot flood the
    scrape. 10,000 series is a comfortable load for one Prometheus target.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)
    max_series: int = Field(default=10_000, ge=1)
    # /healthz fails once the worker loop has not finished an iteration for
    # this long; null: 20 x kafka.batch_timeout_seconds, at least 60 s.
    liveness_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # A progress line in the log (events/s, lag, alerts, dead letters) this
    # often; 0 turns it off.
    progress_seconds: float = Field(default=30.0, ge=0, allow_inf_nan=False)


class LimitsConfig(Frozen):
    """Input limits; an event over one goes to the dead-letter topic."""

    max_message_bytes: int = Field(default=1_000_000, ge=256)
    max_features: int = Field(default=256, ge=1)


class AlertsConfig(Frozen):
    """What all models' alerts share."""

    # Expected false alarms per model and day, spread over its windowed tests
    # (core/budget.py); null: fixed thresholds only.
    false_alarms_per_day: float | None = Field(
        default=Budget.false_alarms_per_day, gt=0, allow_inf_nan=False
    )


class Config(Frozen):
    version: Literal[1] = 1
    models: dict[str, ModelConfig] = Field(min_length=1)
    kafka: KafkaConfig = KafkaConfig()
    redis: RedisConfig = RedisConfig()
    metrics: MetricsConfig = MetricsConfig()
    limits: LimitsConfig = LimitsConfig()
    alerts: AlertsConfig = AlertsConfig()


def parse_config(data: Any, source: str = "config", overrides: Overrides | None = None) -> Config:
    """Validate already-parsed YAML/JSON data.

    With ``overrides`` (what the environment set), a problem with a key a
    variable set names the variable too.
    """
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, source, overrides or Overrides())) from None


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a YAML config, ``DRIFTSTREAM__`` variables winning over the file.

    ``environ`` defaults to the process's environment; ``config_env`` gives
    the variables' mapping and the secrets' ``<key>_file`` form. Relative
    paths (baselines, secret files) follow the file.
    """
    path = Path(path)
    data, overrides = read_config_data(path, environ)
    config = parse_config(data, str(path), overrides)
    check_sasl_mechanism(config.kafka, overrides.where)
    return baselines_from(config, path.parent)


def read_config_data(path: Path, environ: Mapping[str, str] | None = None) -> tuple[Any, Overrides]:
    """A config file's data with the environment's on top and the secret files read.

    Also returns what the environment set, for messages; ``load_config``
    validates the data.
    """
    raw = read_yaml(path)
    try:
        overrides = read_environment(os.environ if environ is None else environ, Config, raw)
        return read_secret_files(merge(raw, overrides), Config, overrides, path.parent), overrides
    except OverrideError as error:
        raise ConfigError(str(error)) from None


def environment_keys(path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The config keys ``DRIFTSTREAM__`` variables set (dotted key -> variable), no values."""
    overrides = read_config_data(path, environ)[1]
    return {".".join(key): name for key, name in overrides.variables.items()}


def read_yaml(path: Path) -> Any:
    """A config file's YAML, or a ConfigError naming the file."""
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        msg = f"config file not found: {path}"
        raise ConfigError(msg) from None
    except yaml.YAMLError as error:
        msg = f"{path}: not valid YAML: {error}"
        raise ConfigError(msg) from None


def baselines_from(config: Config, directory: Path) -> Config:
    """The config with relative baseline paths taken from ``directory`` (the config file's)."""
    models = {
        model_id: model.model_copy(
            update={
                "baseline": directory / model.baseline,
                "versions": model.versions.model_copy(
                    update={
                        "baselines": {
                            version: directory / path
                            for version, path in model.versions.baselines.items()
                        }
                    }
                ),
            }
        )
        for model_id, model in config.models.items()
    }
    return config.model_copy(update={"models": models})


def read_baseline(
    model_id: str, model: ModelConfig, path: Path | None = None, where: str | None = None
) -> BaselineProfile:
    """Load a model's baseline (or the one at ``path``), naming the config key when it fails."""
    path = path or model.baseline
    where = where or f"models.{model_id}.baseline"
    try:
        text = path.read_bytes()
    except OSError as error:
        msg = f"{where}: cannot read {path}: {error.strerror}"
        raise ConfigError(msg) from None
    try:
        baseline = load_baseline(text)
    except ValueError as error:
        msg = f"{where}: {path}: {error}"
        raise ConfigError(msg) from None
    if baseline.model_id != model_id:
        msg = f"{where}: {path} is the baseline of model {baseline.model_id!r}"
        raise ConfigError(msg)
    return baseline


def monitor_settings(
    model_id: str, model: ModelConfig, baseline: BaselineProfile
) -> MonitorSettings:
    """Combine a model's config with its baseline into core settings."""
    profiles = profiles_of(baseline)
    for name in model.features:
        if name not in profiles:
            msg = (
                f"models.{model_id}.features.{name}: not a column of the baseline "
                f"{model.baseline} (columns: {', '.join(sorted(profiles))})"
            )
            raise ConfigError(msg)
    features = tuple(
        _feature_settings(
            f"models.{model_id}.features.{name}",
            name,
            kind_of(profile),
            model.features.get(name, FeatureConfig()),
        )
        for name, profile in profiles.items()
        if model.features.get(name, FeatureConfig()).enabled
    )
    return MonitorSettings(
        model_id=model_id,
        model_version=model.model_version,
        features=features,
        window=WindowSettings(**model.window.model_dump()),
        episodes=EpisodeSettings(**model.episodes.model_dump()),
        adwin=model.detectors.adwin.model_dump(),
        page_hinkley=model.detectors.page_hinkley.model_dump(),
        cusum=model.detectors.cusum.model_dump(),
        compare_previous=model.compare_previous,
        category_cap=model.category_cap,
        quality=quality_settings(model.quality),
    )


def quality_settings(quality: QualityConfig) -> QualitySettings | None:
    """The window checks' settings (the stream's own checks: ``QualityConfig`` builds them)."""
    if not quality.enabled:
        return None
    streams = {"max_silence_seconds", "max_model_age_days"}
    streams |= {"max_dead_letter_share", "dead_letter_window"}
    return QualitySettings(**quality.model_dump(exclude={"enabled", *streams}))


def anomaly_settings(
    model_id: str, model: ModelConfig, baseline: BaselineProfile
) -> AnomalySettings | None:
    """The model's anomaly settings, or None when scoring is off; fails naming the key."""
    anomaly = model.anomaly
    if not anomaly.enabled:
        return None
    columns = None
    if anomaly.columns is not None:
        unknown = [name for name in anomaly.columns if name not in baseline.features]
        if unknown:
            msg = (
                f"models.{model_id}.anomaly.columns: {unknown} are not features of the baseline "
                f"{model.baseline} (features: {', '.join(sorted(baseline.features))})"
            )
            raise ConfigError(msg)
        columns = tuple(anomaly.columns)
    return AnomalySettings(
        model_id=model_id,
        rate=anomaly.rate,
        max_per_minute=anomaly.max_per_minute,
        burst=anomaly.burst,
        columns=columns,
        min_factor=anomaly.min_factor,
        watch_rate=model.quality.enabled,
        false_alarm=model.quality.false_alarm,
        window=WindowSettings(**model.window.model_dump()),
        episodes=EpisodeSettings(**model.episodes.model_dump()),
    )


def _feature_settings(where: str, name: str, kind: str, config: FeatureConfig) -> FeatureSettings:
    if config.kind is not None and config.kind != kind:
        msg = (
            f"{where}.kind: configured {config.kind} but the baseline profiles it as {kind}; "
            "rebuild the baseline with this config"
        )
        raise ConfigError(msg)
    default = default_feature_settings(name, kind)
    statistics = default.statistics
    if config.statistics is not None:
        statistics = tuple(
            _statistic(f"{where}.statistics.{stat}", stat, kind, override)
            for stat, override in config.statistics.items()
        )
    detectors = default.detectors if config.detectors is None else tuple(config.detectors)
    if detectors and kind != "numeric":
        msg = f"{where}.detectors: detectors need a numeric feature, this one is {kind}"
        raise ConfigError(msg)
    return FeatureSettings(name, kind, statistics, detectors)


def _statistic(where: str, name: str, kind: str, override: StatisticConfig) -> StatisticSetting:
    info = stats.STATISTICS[name]
    if kind not in info.kinds:
        allowed = sorted(s for s, i in stats.STATISTICS.items() if kind in i.kinds)
        msg = f"{where}: {name} does not apply to {kind} features (use one of {allowed})"
        raise ConfigError(msg)
    threshold = info.threshold if override.threshold is None else override.threshold
    critical = info.critical if override.critical is None else override.critical
    return StatisticSetting(name, threshold, critical)


def feature_kinds(model: ModelConfig) -> Mapping[str, str]:
    """Kinds the config pins, for building a baseline."""
    return {name: f.kind for name, f in model.features.items() if f.kind is not None}


def _describe(error: ValidationError, source: str, overrides: Overrides) -> str:
    # Only pydantic's message, never the input: the value may be a secret.
    lines = [f"{source}: {error.error_count()} problem(s)"]
    for item in error.errors():
        lines.append(f"  {overrides.where(item['loc'])}: {item['msg']}")
    return "\n".join(lines)
