"""Wiring for the runtime: check services, create topics, build a worker."""

from __future__ import annotations

import re

import redis
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry

from driftstream.config import Config
from driftstream.runtime.metrics import Metrics
from driftstream.runtime.models import load_models
from driftstream.runtime.services import ServiceError, kafka_answers
from driftstream.runtime.worker import Worker


def masked(url: str) -> str:
    """A URL with any password replaced, for messages."""
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)


def connect_redis(config: Config) -> redis.Redis:
    url = config.redis.url.get_secret_value()
    client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        msg = (
            f"Redis at {masked(url)} (redis.url) does not answer: {error}. Start Redis "
            "(e.g. redis-server --port 6379) or point redis.url at a running server."
        )
        raise ServiceError(msg) from None
    return client


def check_kafka(config: Config) -> None:
    bootstrap = str(config.kafka.client_settings().get("bootstrap.servers", ""))
    if not kafka_answers(bootstrap, timeout=10):
        msg = (
            f"Kafka at {bootstrap!r} (kafka.client.bootstrap.servers) does not answer. Start "
            "a broker or fix the setting; `driftstream demo` runs on embedded services."
        )
        raise ServiceError(msg)


def create_topics(config: Config) -> dict[str, str]:
    """Create the input, alerts, dead-letter (and repartition) topics; returns topic -> outcome."""
    kafka = config.kafka
    admin = AdminClient(kafka.shared_settings())
    topics = kafka.topics
    names = [topics.predictions, topics.features, topics.alerts, topics.dlq]
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
    """Check both services, load every model, and return a ready worker."""
    models = load_models(config)
    client = connect_redis(config)
    check_kafka(config)
    metrics = Metrics(registry, max_features=config.limits.max_features)
    return Worker(config, models, redis_client=client, metrics=metrics)
