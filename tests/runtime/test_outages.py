"""Redis killed and restarted under a running `driftstream run`, on the real broker.

Each test starts a redis-server of its own, on a free port with its own
directory, so it can kill it (SIGKILL) and start it again: with AOF
(``appendfsync always``) to lose nothing, or without persistence to lose
every key, as a careless deployment would.
"""

import subprocess
import threading
import time

import pytest
from pipeline import (
    WorkerProcess,
    alert_ids,
    committed,
    events,
    first_difference,
    produce,
    read_topic,
    run_in_thread,
    snapshot,
    wait_for,
    write_config,
)

from driftstream.runtime.services import find_redis_server, free_port, redis_answers

pytestmark = pytest.mark.integration

KEY = b"fraud-detector"
GONE = "Redis is unavailable"
BACK = "Redis is back"


class RedisProcess:
    """A redis-server on a fixed port and directory that can be killed and started again."""

    def __init__(self, workdir, persistent):
        self.port = free_port()
        self.workdir = workdir
        self.persistent = persistent
        self.process = None
        workdir.mkdir(exist_ok=True)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        durability = ["--appendonly", "yes", "--appendfsync", "always"]
        command = [
            find_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.workdir),
            *(durability if self.persistent else ["--appendonly", "no"]),
        ]
        with (self.workdir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: redis_answers(self.url), 20, "redis-server to answer")

    def kill(self):
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def redis_process(tmp_path, request):
    server = RedisProcess(tmp_path / "redis", persistent=request.param)
    server.start()
    yield server
    if server.process.poll() is None:
        server.kill()


@pytest.fixture
def started():
    """Workers a test starts; any still running at the end (a failed test) is killed."""
    workers = []

    def start(path):
        workers.append(WorkerProcess(path))
        return workers[-1]

    yield start
    for worker in workers:
        if worker.process.poll() is None:
            worker.kill()


def run_reference(config, total, outcome):
    """An uninterrupted in-process run over the same input, for comparison."""
    run_in_thread(config, total)
    outcome["done"] = True


def half_committed(kafka_bootstrap, tmp_path, redis_process, unique, started, traffic):
    """A worker on ``redis_process`` that committed the first half of ``traffic``."""
    path, config = write_config(
        tmp_path, kafka_bootstrap, redis_process.url, unique, batch_size=250
    )
    half = len(traffic) // 2
    produce(kafka_bootstrap, config.kafka.topics.predictions, traffic[:half], KEY)
    worker = started(path)
    prefix, group = config.redis.key_prefix, config.kafka.group_id
    wait_for(lambda: committed(redis_process.url, prefix, group) >= half, 60, "first commits")
    return config, worker


def lines_with(worker, text):
    return [line for line in worker.lines if text in line]


@pytest.mark.parametrize("redis_process", [True], indirect=True)
def test_redis_killed_under_traffic_changes_nothing(
    kafka_bootstrap, redis_url, unique, tmp_path, redis_process, started
):
    inputs = f"{unique}-in"
    common = {"inputs": inputs, "batch_size": 250}
    _, config_ref = write_config(tmp_path, kafka_bootstrap, redis_url, f"{unique}-r", **common)
    path, config = write_config(tmp_path, kafka_bootstrap, redis_process.url, unique, **common)
    traffic = events(8000, 8000, seed=31)
    topic = config.kafka.topics.predictions
    produce(kafka_bootstrap, topic, traffic[:6000], KEY)
    reference = {}
    referee = threading.Thread(
        target=run_reference, args=(config_ref, len(traffic), reference), daemon=True
    )
    referee.start()
    worker = started(path)
    prefix, group = config.redis.key_prefix, config.kafka.group_id
    wait_for(lambda: committed(redis_process.url, prefix, group) >= 3000, 60, "first commits")

    redis_process.kill()
    produce(kafka_bootstrap, topic, traffic[6000:12000], KEY)  # traffic goes on meanwhile
    wait_for(lambda: lines_with(worker, GONE), 30, f"the outage noticed\n{worker.log()}")
    time.sleep(5)
    redis_process.start()
    produce(kafka_bootstrap, topic, traffic[12000:], KEY)
    wait_for(
        lambda: committed(redis_process.url, prefix, group) >= len(traffic),
        60,
        f"everything committed\n{worker.log()}",
    )
    referee.join(90)
    assert reference.get("done"), "the reference run did not finish"
    expected = alert_ids(read_topic(kafka_bootstrap, config_ref.kafka.topics.alerts, 1))
    wait_for(
        lambda: (
            alert_ids(read_topic(kafka_bootstrap, config.kafka.topics.alerts, quiet=0.5))
            >= expected
        ),
        30,
        "alerts relayed",
    )

    assert worker.process.poll() is None, worker.log()
    assert worker.stop() == 0, worker.log()
    assert len(lines_with(worker, GONE)) == 1, worker.log()
    assert len(lines_with(worker, BACK)) == 1, worker.log()
    assert not lines_with(worker, "Traceback"), worker.log()
    final = snapshot(redis_process.url, prefix, group)
    want = snapshot(redis_url, config_ref.redis.key_prefix, config_ref.kafka.group_id)
    assert final == want, first_difference(final, want)
    assert alert_ids(read_topic(kafka_bootstrap, config.kafka.topics.alerts)) == expected
    assert expected


@pytest.mark.parametrize("redis_process", [False], indirect=True)
def test_redis_restarted_without_persistence_is_claimed_again_loudly(
    kafka_bootstrap, unique, tmp_path, redis_process, started
):
    traffic = events(6000, 0, seed=32)
    config, worker = half_committed(
        kafka_bootstrap, tmp_path, redis_process, unique, started, traffic
    )
    topic = config.kafka.topics.predictions
    prefix, group = config.redis.key_prefix, config.kafka.group_id

    redis_process.kill()
    redis_process.start()  # empty: every key is gone
    produce(kafka_bootstrap, topic, traffic[3000:], KEY)
    wait_for(
        lambda: committed(redis_process.url, prefix, group) >= len(traffic),
        60,
        f"the lag drained\n{worker.log()}",
    )

    assert worker.process.poll() is None, worker.log()
    lost = lines_with(worker, "Redis lost the keys of group")
    assert lost and all(" ERROR " in line for line in lost), worker.log()
    assert worker.stop() == 0, worker.log()
    assert not lines_with(worker, "Traceback"), worker.log()
    state = snapshot(redis_process.url, prefix, group)
    # The fresh monitors counted what followed Kafka's committed offsets, once each.
    model = "predictions:fraud-detector"
    counted = sum(u["states"].get(model, {}).get("events", 0) for u in state.values())
    assert counted == 3000


@pytest.mark.parametrize("redis_process", [True], indirect=True)
def test_sigterm_during_an_outage_stops_with_a_clear_line_and_status_3(
    kafka_bootstrap, unique, tmp_path, redis_process, started
):
    traffic = events(4000, 0, seed=33)
    config, worker = half_committed(
        kafka_bootstrap, tmp_path, redis_process, unique, started, traffic
    )
    topic = config.kafka.topics.predictions

    redis_process.kill()
    produce(kafka_bootstrap, topic, traffic[2000:], KEY)
    wait_for(lambda: lines_with(worker, GONE), 30, f"the outage noticed\n{worker.log()}")

    assert worker.stop() == 3, worker.log()
    assert lines_with(worker, "stopped while Redis is unavailable"), worker.log()
    assert not lines_with(worker, "Traceback"), worker.log()
