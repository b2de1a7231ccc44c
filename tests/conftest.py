"""Real services for the integration tests, started by the project itself.

By default a Tansu broker and a private redis-server start once per test
session. ``DRIFTSTREAM_KAFKA_BOOTSTRAP`` / ``DRIFTSTREAM_REDIS_URL`` point at
running services instead. ``--containers`` (with a Docker engine and the
``containers`` extra) runs the same tests against Apache Kafka and Redis
containers; without it, the container-only module is not collected.
"""

import gc
import os
import sys
import uuid
from pathlib import Path

import pytest

from driftstream.runtime.services import kafka_service, redis_service

# The runtime tests' in-memory broker, traffic and config helpers (fakes.py,
# pipeline.py) serve the replay, integration and deploy tests too.
sys.path.insert(0, str(Path(__file__).resolve().parent / "runtime"))


def pytest_addoption(parser):
    parser.addoption(
        "--containers",
        action="store_true",
        help="run integration tests against Kafka and Redis containers (Docker)",
    )
    parser.addoption(
        "--chaos-full",
        action="store_true",
        help="run the chaos suite in its long form (more kills, traffic and outage time)",
    )


def pytest_ignore_collect(collection_path, config):
    if collection_path.name == "test_containers.py":
        return not config.getoption("--containers")
    return None


@pytest.fixture(scope="session")
def kafka_bootstrap(request):
    if request.config.getoption("--containers"):
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield kafka.get_bootstrap_server()
        return
    with kafka_service(os.environ) as bootstrap:
        yield bootstrap
        # Kafka clients that tests dropped but a reference cycle keeps alive would
        # outlive the broker and log connection errors after pytest's summary.
        gc.collect()


@pytest.fixture(scope="session")
def redis_url(request):
    if request.config.getoption("--containers"):
        from testcontainers.redis import RedisContainer

        with RedisContainer() as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
        return
    with redis_service(os.environ) as url:
        yield url


@pytest.fixture
def full(request):
    """Whether the chaos suite runs its long form (``--chaos-full``)."""
    return request.config.getoption("--chaos-full")


@pytest.fixture
def unique():
    """A fresh name, so tests sharing one broker and one Redis never collide."""
    return f"t{uuid.uuid4().hex[:10]}"
