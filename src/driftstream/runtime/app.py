"""Wiring for the runtime: check services, create topics, build a worker."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import redis
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry
from redis.backoff import NoBackoff
from redis.retry import Retry

from driftstream.config import Config, check_client_settings, check_redis_url
from driftstream.runtime.health import Health
from driftstream.runtime.metrics import Metrics
from driftstream.runtime.models import load_models
from driftstream.runtime.services import ServiceError, kafka_problem
from driftstream.runtime.store import RedisClient, cluster_enabled, open_client
from driftstream.runtime.worker import Worker

KAFKA_TIMEOUT_SECONDS = 10


def masked(url: str) -> str:
    """A URL with any password replaced, for messages."""
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)


def connect_redis(config: Config) -> RedisClient:
    """A client for ``redis.url`` that has answered a PING, or a ServiceError saying why not.

    With ``redis.cluster`` a Redis Cluster client, which finds every node
    from the one in the URL; a node whose cluster mode is not the
    setting's is refused, naming the setting.
    """
    check_redis_url(config.redis)
    url, cluster = config.redis.url.get_secret_value(), config.redis.cluster
    # One quick retry at most: the worker pauses and retries with its own
    # backoff, and a long client-side retry would only delay a SIGTERM.
    options = {"socket_timeout": 5, "socket_connect_timeout": 3, "retry": Retry(NoBackoff(), 1)}
    try:
        enabled = cluster_enabled(url, **options)
        if enabled is not None and enabled != cluster:
            raise ServiceError(_cluster_mode_message(url, enabled))
        client = open_client(url, cluster=cluster, **options)
        client.ping()
    except redis.AuthenticationError as error:
        raise ServiceError(_redis_auth_message(url, error)) from None
    except redis.RedisError as error:
        msg = (
            f"Redis at {masked(url)} (redis.url) does not answer: {_clause(error)}. Start Redis "
            f"(e.g. {_redis_start_hint(url)}) or point redis.url at a running server."
        )
        raise ServiceError(msg) from None
    return client


def _cluster_mode_message(url: str, enabled: bool) -> str:
    if enabled:
        return (
            f"Redis at {masked(url)} (redis.url) is a Redis Cluster node, and redis.cluster "
            "is false: set redis.cluster: true (DRIFTSTREAM__REDIS__CLUSTER=true)."
        )
    return (
        f"Redis at {masked(url)} (redis.url) is not in cluster mode, and redis.cluster is "
        "true: set redis.cluster: false, or point redis.url at a node of the cluster."
    )


def _redis_auth_message(url: str, error: redis.RedisError) -> str:
    parts = urlsplit(url)
    if parts.password is None and not parts.username:
        # Redis's own words here are about the HELLO command, not the password.
        problem = "the server requires a password and none is given"
        fix = (
            "Set redis.password (or DRIFTSTREAM__REDIS__PASSWORD; from a secret file: "
            "redis.password_file or DRIFTSTREAM__REDIS__PASSWORD_FILE), or write it into "
            "redis.url: redis://[USER]:PASSWORD@HOST:PORT/DB."
        )
    else:
        problem = f"the server refused the user or password in redis.url ({_clause(error)})"
        fix = "Check redis.password and redis.username, or the credentials in redis.url."
    return f"Redis at {masked(url)} (redis.url): authentication failed: {problem}. {fix}"


def _clause(error: Exception) -> str:
    """An error's text to embed in a sentence of our own."""
    return str(error).strip().rstrip(".")


def _redis_start_hint(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"redis-server --port 0 --unixsocket {parts.path}"
    return f"redis-server --port {parts.port or 6379}"


def check_kafka(config: Config) -> None:
    """Refuse bad client settings, then make one metadata request with all of them.

    The request uses every ``kafka.client`` setting (SASL and TLS included),
    as the worker's own clients will: a broker that only answers an
    authenticated client must not look absent, nor a wrong password fine.
    """
    check_client_settings(config.kafka)
    settings = config.kafka.shared_settings()
    bootstrap = str(settings.get("bootstrap.servers") or settings.get("metadata.broker.list"))
    protocol = str(settings.get("security.protocol", "plaintext"))
    problem = kafka_problem(settings, timeout=KAFKA_TIMEOUT_SECONDS)
    if problem is None:
        return
    if problem.refused:
        msg = (
            f"Kafka at {bootstrap!r} refused the kafka.client settings "
            f"(security.protocol {protocol}): {problem.reason}. Check security.protocol, "
            "sasl.mechanism, sasl.username/sasl.password and ssl.* against the broker's listener."
        )
    else:
        msg = (
            f"Kafka at {bootstrap!r} (kafka.client.bootstrap.servers, security.protocol "
            f"{protocol}) does not answer within {KAFKA_TIMEOUT_SECONDS} s: {problem.reason}. "
            "Start a Kafka broker there (e.g. `docker run -p 9092:9092 apache/kafka` for one "
            "on 127.0.0.1:9092) or fix kafka.client (security.protocol must match the "
            "broker's listener); `driftstream demo` runs on embedded services."
        )
    raise ServiceError(msg)


def create_topics(config: Config) -> dict[str, str]:
    """Create the input (with labels), alerts, dead-letter (and repartition) topics.

    Returns topic -> outcome.
    """
    kafka = config.kafka
    admin = AdminClient(kafka.shared_settings())
    topics = kafka.topics
    names = [topics.predictions, topics.features, topics.labels, topics.alerts, topics.dlq]
    if kafka.routing == "repartition":
        names.append(topics.repartition)
    new = [
        NewTopic(name, num_partitions=kafka.partitions, replication_factor=kafka.replication_factor)
        for name in names
    ]
    outcome = {}
    for name, future in admin.create_topics(new, request_timeout=15).items():
        try:
            future.result()
            outcome[name] = f"created ({kafka.partitions} partitions)"
        except Exception as error:  # the admin API reports per topic
            code = getattr(error.args[0], "name", lambda: "")() if error.args else ""
            outcome[name] = "exists" if code == "TOPIC_ALREADY_EXISTS" else f"failed: {error}"
    return outcome


def build_worker(
    config: Config, registry: CollectorRegistry, health: Health | None = None
) -> Worker:
    """Check the settings, load every model, check both services, and return a ready worker.

    Each failure is one ConfigError or ServiceError naming what to fix. ``health``,
    when given, hears from the worker's loop (``/healthz``, ``/readyz``).
    """
    check_client_settings(config.kafka)
    models = load_models(config)
    client = connect_redis(config)
    check_kafka(config)
    metrics = Metrics(registry, max_features=config.limits.max_features)
    return Worker(config, models, redis_client=client, metrics=metrics, health=health)
