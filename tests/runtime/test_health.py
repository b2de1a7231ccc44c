"""/healthz and /readyz: the loop's beat, the probes, and the endpoint over HTTP."""

import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
import redis
import yaml
from fakes import fake_broker, fake_config, fake_worker
from pipeline import WorkerProcess, events, wait_for, write_config

from driftstream.config import parse_config
from driftstream.runtime.health import (
    Health,
    Probe,
    kafka_probe,
    liveness_seconds,
    probes_for,
    redis_probe,
)
from driftstream.runtime.metrics import serve
from driftstream.runtime.services import EmbeddedRedis, find_redis_server, free_port

pytestmark = pytest.mark.integration

KEY = b"fraud-detector"


def get(url):
    """(status, body) of a GET, whatever the status; status None if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except urllib.error.URLError as error:  # not listening yet
        return None, str(error.reason)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_liveness_follows_the_loop_beat():
    clock = Clock()
    health = Health(30.0, clock=clock)
    assert health.alive().ok  # starting up counts as alive
    clock.now += 31
    stalled = health.alive()
    assert not stalled.ok
    assert "has not finished an iteration for 31 s" in stalled.text
    assert "metrics.liveness_seconds: 30" in stalled.text
    health.beat(2)
    assert health.alive().ok


def test_liveness_default_follows_the_poll_timeout(tmp_path):
    def config(**kafka):
        baseline = tmp_path / "b.json"
        baseline.write_text("{}")
        return parse_config({"models": {"m": {"baseline": str(baseline)}}, "kafka": kafka})

    assert liveness_seconds(config()) == 60.0  # the floor, with the default 0.5 s poll
    assert liveness_seconds(config(batch_timeout_seconds=5.0)) == 100.0
    set_ = parse_config(
        {
            "models": {"m": {"baseline": str(tmp_path / "b.json")}},
            "metrics": {"liveness_seconds": 12.5},
        }
    )
    assert liveness_seconds(set_) == 12.5


def test_readiness_needs_partitions_and_every_probe(redis_url, kafka_bootstrap):
    nobody = free_port()
    health = Health(
        60.0,
        [
            Probe("Redis", redis_probe(redis_url)),
            Probe("Kafka", kafka_probe({"bootstrap.servers": kafka_bootstrap}, "any.topic")),
        ],
        cache_seconds=0,
    )
    answer = health.ready()
    assert not answer.ok
    assert answer.text == "not ready: no partitions assigned"
    health.beat(3)
    answer = health.ready()
    assert answer.ok, answer.text
    assert answer.text == "ready: 3 partitions, Redis and Kafka answer"

    down = Health(
        60.0,
        [
            Probe("Redis", redis_probe(f"redis://127.0.0.1:{nobody}/0")),
            Probe("Kafka", kafka_probe({"bootstrap.servers": f"127.0.0.1:{nobody}"}, "t")),
        ],
        cache_seconds=0,
    )
    down.beat(1)
    answer = down.ready()
    assert not answer.ok
    assert answer.text.startswith("not ready: Redis: no answer to PING (")
    assert "; Kafka: no answer to a metadata request (" in answer.text


def test_probes_run_at_most_once_per_cache_period():
    clock = Clock()
    calls = []

    def check():
        calls.append(clock.now)
        return None if len(calls) == 1 else "gone"

    health = Health(60.0, [Probe("Redis", check)], clock=clock, cache_seconds=1.0)
    health.beat(1)
    assert health.ready().ok
    assert health.ready().ok  # the cached answer
    assert len(calls) == 1
    clock.now += 1.0
    assert health.ready().text == "not ready: Redis: gone"
    assert len(calls) == 2


def test_a_probe_that_raises_is_a_reason_not_a_crash():
    def broken():
        raise RuntimeError("socket exploded")

    health = Health(60.0, [Probe("Kafka", broken)], cache_seconds=0)
    health.beat(1)
    assert health.ready().text == "not ready: Kafka: RuntimeError: socket exploded"


def test_the_endpoint_routes_metrics_health_and_nothing_else(tmp_path, unique, kafka_bootstrap):
    """A worker on the fake broker with a Redis of its own: alive, ready, stalled, Redis gone."""
    with EmbeddedRedis(find_redis_server()) as own_redis:
        config = fake_config(tmp_path, own_redis.url, unique)
        broker = fake_broker(config)
        for value in events(300, 0, seed=3):
            broker.append(config.kafka.topics.predictions, 0, KEY, value)
        health = Health(
            0.5,
            [
                Probe("Redis", redis_probe(own_redis.url)),
                Probe("Kafka", kafka_probe({"bootstrap.servers": kafka_bootstrap}, "t")),
            ],
            cache_seconds=0.1,
        )
        worker = fake_worker(config, broker, redis.Redis.from_url(own_redis.url), health=health)
        registry = worker.metrics.registry
        flowing = threading.Event()
        flowing.set()
        stop = threading.Event()

        def on_step(_):
            flowing.wait()  # cleared: the loop stalls after an iteration
            time.sleep(0.01)

        thread = threading.Thread(target=worker.run, args=(stop, on_step), daemon=True)
        with serve(registry, "127.0.0.1", 0, health) as server:
            base = f"http://127.0.0.1:{server.port}"
            thread.start()
            try:
                wait_for(lambda: get(f"{base}/readyz")[0] == 200, 30, "ready")
                assert get(f"{base}/readyz")[1] == "ready: 2 partitions, Redis and Kafka answer\n"
                status, body = get(f"{base}/healthz")
                assert status == 200 and body.startswith("alive: last loop iteration")
                status, body = get(f"{base}/metrics")
                assert status == 200 and "driftstream_partitions_owned 2.0" in body
                status, body = get(f"{base}/")
                assert status == 404 and "/metrics, /healthz, /readyz" in body
                assert get(f"{base}/metrics/extra")[0] == 404

                flowing.clear()
                wait_for(lambda: get(f"{base}/healthz")[0] == 503, 30, "a stalled loop")
                assert get(f"{base}/healthz")[1].startswith("not alive: the worker loop has not")
                flowing.set()
                wait_for(lambda: get(f"{base}/healthz")[0] == 200, 30, "the loop again")

                own_redis.stop()
                wait_for(lambda: get(f"{base}/readyz")[0] == 503, 30, "Redis down")
                status, body = get(f"{base}/readyz")
                assert body.startswith("not ready: Redis: no answer to PING")
                assert "Kafka" not in body  # only what is not ready is named
                assert get(f"{base}/healthz")[0] == 200  # the loop goes on, waiting for Redis
            finally:
                flowing.set()
                stop.set()
                thread.join(30)
        assert not thread.is_alive()


def test_run_serves_health_and_readiness(tmp_path, kafka_bootstrap, unique):
    """`driftstream run` wires it all: ready once it owns partitions, not ready without Redis."""
    with EmbeddedRedis(find_redis_server()) as own_redis:
        path, _ = write_config(tmp_path, kafka_bootstrap, own_redis.url, unique)
        port = free_port()
        document = yaml.safe_load(path.read_text())
        document["metrics"] = {"host": "127.0.0.1", "port": port}
        path.write_text(yaml.safe_dump(document))
        worker = WorkerProcess(path)
        base = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_for(lambda: get(f"{base}/readyz")[0] == 200, 90, "ready")
            except AssertionError as error:
                raise AssertionError(f"{error}:\n{worker.log()}") from None
            assert get(f"{base}/readyz")[1] == "ready: 2 partitions, Redis and Kafka answer\n"
            assert get(f"{base}/healthz")[0] == 200
            assert any("health on " in line and "/readyz" in line for line in worker.lines)
            own_redis.stop()
            wait_for(lambda: get(f"{base}/readyz")[0] == 503, 30, "Redis down")
            assert get(f"{base}/readyz")[1].startswith("not ready: Redis: no answer to PING")
            assert get(f"{base}/healthz")[0] == 200
        finally:
            worker.process.send_signal(signal.SIGTERM)
            try:
                worker.process.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        assert "Traceback" not in worker.log()


def test_probes_for_a_config_use_its_redis_and_kafka(tmp_path, redis_url, kafka_bootstrap, unique):
    _, config = write_config(tmp_path, kafka_bootstrap, redis_url, unique)
    health = Health(liveness_seconds(config), probes_for(config), cache_seconds=0)
    health.beat(1)
    assert health.ready().text == "ready: 1 partition, Redis and Kafka answer"
