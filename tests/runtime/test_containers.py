"""Collected only with --containers: the session fixtures then run containers."""

import pytest
import redis
from confluent_kafka.admin import AdminClient

pytestmark = pytest.mark.integration


def test_container_services_answer(kafka_bootstrap, redis_url):
    assert AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert redis.Redis.from_url(redis_url).ping()
