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
from driftstream.runtime.metrics import Metrics
from driftstream.runtime.models import load_models
from driftstream.runtime.services import ServiceError, kafka_problem
from driftstream.runtime.worker import Worker

KAFKA_TIMEOUT_SECONDS = 10


def masked(url: str) -> str:
    """A URL with any password replaced, for messages."""
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)


def connect_redis(config: Config) -> redis.Redis:
    """A client for ``redis.url`` that has answered a PING, or a ServiceError saying why not."""
    check_redis_url(config.redis)
    url = config.redis.url.get_secret_value()
    # One quick retry at most: the worker pauses and retries with its own
    # backoff, and a long client-side retry would only delay a SIGTERM.
    client = redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=3, retry=Retry(NoBackoff(), 1)
    )
    try:
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


def _redis_auth_message(url: str, error: redis.RedisError) -> str:
    parts = urlsplit(url)
    if parts.password is None and not parts.username:
        # Redis's own words here are about the HELLO command, not the password.
        problem = "the server requires a password and redis.url gives none"
    else:
        problem = f"the server refused the user or password in redis.url ({_clause(error)})"
    return (
        f"Redis at {masked(url)} (redis.url): authentication failed: {problem}. "
        "Put the credentials in redis.url: redis://[USER]:PASSWORD@HOST:PORT/DB."
    )


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


def build_worker(config: Config, registry: CollectorRegistry) -> Worker:
    """Check the settings, load every model, check both services, and return a ready worker.

    Each failure is one ConfigError or ServiceError naming what to fix.
    """
    check_client_settings(config.kafka)
    models = load_models(config)
    client = connect_redis(config)
    check_kafka(config)
    metrics = Metrics(registry, max_features=config.limits.max_features)
    return Worker(config, models, redis_client=client, metrics=metrics)
