"""Checks of the deploy files: image, compose, Kubernetes, dashboard, alert rules.

The dashboard and the rules are checked against the /metrics page of a live
worker (``exported``).
"""

import urllib.request
import uuid

import pytest
from confluent_kafka import KafkaError
from fakes import FlakyRedis, fake_broker, fake_config, fake_worker
from pipeline import LABELS, events, label_events

from driftstream.runtime.metrics import serve


@pytest.fixture(scope="session")
def worker_scrape(tmp_path_factory, redis_url):
    """The /metrics page of a worker that went through what the dashboard and rules watch.

    It processes drifted traffic with bad records and labels, on the
    in-memory broker with the real test Redis, and meets a Redis outage, a
    failed alert delivery and broker errors on the way. Its registry is
    served by the endpoint ``driftstream run`` starts, and scraped over HTTP.
    """
    tmp_path = tmp_path_factory.mktemp("scrape")
    config = fake_config(
        tmp_path, redis_url, f"deploy-scrape-{uuid.uuid4().hex[:8]}", labels=LABELS
    )
    broker = fake_broker(config)
    key = b"fraud-detector"
    topics = config.kafka.topics
    broker.produce(topics.predictions, events(6_000, 6_000, seed=5), key)
    broker.produce(topics.predictions, [b"{not json", b'{"model_id": "nobody"}'], key)
    broker.produce(topics.labels, label_events(12_000, seed=5), key)
    client = FlakyRedis.from_url(redis_url)
    worker = fake_worker(config, broker, client)
    worker.start()
    try:
        steps(worker, lambda: worker.processed >= 3_000)
        client.down()
        broker.consume_errors = [KafkaError(KafkaError._TRANSPORT)]
        steps(worker, lambda: worker.uncommitted() > 0)
        client.up()
        broker.delivery_failures = [KafkaError(KafkaError._MSG_TIMED_OUT)]
        total = len(broker.messages(topics.predictions)) + len(broker.messages(topics.labels))
        steps(worker, lambda: worker.processed >= total and not worker.pending_outbox())
        with serve(worker.metrics.registry, "127.0.0.1", 0) as server:
            page = scrape(server.url)
    finally:
        worker.close()
        client.close()
    return page


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def steps(worker, done, limit=3_000):
    for _ in range(limit):
        if done():
            return
        worker.step()
    raise AssertionError(f"the worker did not get there in {limit} steps")


@pytest.fixture(scope="session")
def exported(worker_scrape):
    """Sample name -> label names, of every sample with a value on the live page."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(worker_scrape):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found
