"""Chaos: kills, a zombie, outages and malformed traffic end exactly like an uninterrupted run.

Short by default (CI); ``--chaos-full`` runs the long form by hand::

    .venv/bin/python -m pytest tests/chaos --chaos-full
"""

import random
import signal
import threading
import time

import pytest
from chaos_harness import (
    MODELS,
    Crew,
    PersistentBroker,
    S3Storage,
    Traffic,
    chaos_config,
    digest,
    outcome,
    wait_committed,
)
from pipeline import committed, first_difference, wait_for, write_config
from prometheus_client import CollectorRegistry
from test_outages import BACK, GONE, RedisProcess

from driftstream.runtime.app import build_worker
from driftstream.runtime.services import EmbeddedKafka, find_tansu, free_port

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

BAD_RECORDS = 10_000


def configs(tmp_path, bootstrap, redis_url, name, batch_size=300):
    """The oracle's config and the chaos run's: same input topics, own group and outputs."""
    made = []
    for run in ("oracle", "chaos"):
        path, _ = write_config(
            tmp_path, bootstrap, redis_url, f"{name}-{run}", models=MODELS, partitions=3,
            batch_size=batch_size, inputs=f"{name}-in",
        )
        made.append((path, chaos_config(path)))
    return made


def oracle(bootstrap, redis_url, config, total):
    """One uninterrupted worker over the whole input."""
    worker = build_worker(config, CollectorRegistry())
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: worker.processed >= total and worker.pending_outbox() == 0, 240,
                 "the oracle run")
    finally:
        stop.set()
        thread.join(60)
    return outcome(bootstrap, redis_url, config)


def compare(scenario, seed, got, want, traffic):
    state, ids, letters, copies = got
    want_state, want_ids, want_letters, _ = want
    where = f"{scenario} (seed {seed})"
    assert digest(state) == digest(want_state), f"{where}: {first_difference(state, want_state)}"
    assert ids == want_ids, f"{where}: alert ids differ: {sorted(ids ^ want_ids)[:5]}"
    expected = traffic.expected_dead()
    assert letters == expected, (
        f"{where}: dead letters differ: "
        f"{sorted(set(letters.items()) ^ set(expected.items()))[:5]}"
    )
    assert want_letters == expected
    return copies


def test_kills_and_a_zombie_under_malformed_traffic(
    kafka_bootstrap, redis_url, unique, tmp_path, full
):
    seed = random.randrange(1_000_000)
    kills = 30 if full else 10
    (_, oracle_config), (path, config) = configs(tmp_path, kafka_bootstrap, redis_url, unique)
    traffic = Traffic(config.kafka.topics.predictions, 30_000 if full else 6_000, BAD_RECORDS,
                      seed)
    feeding = traffic.produce_in_background(kafka_bootstrap, 60 if full else 20)
    crew = Crew(path, 3, seed)
    try:
        for _ in range(kills):
            time.sleep(crew.rng.uniform(0.3, 2.0))
            crew.kill_one()
        prefix, group = config.redis.key_prefix, config.kafka.group_id
        assert committed(redis_url, prefix, group) < len(traffic), "the kills came too late"
        zombie = crew.zombie(8)  # past the 6 s session timeout
        feeding.join()
        wait_committed(redis_url, config, len(traffic), 300, f"all committed (seed {seed})")
        codes = crew.stop()
    finally:
        crew.kill_all()
    assert codes == [0, 0, 0], "\n".join(crew.logs[-40:])
    got = outcome(kafka_bootstrap, redis_url, config)
    want = oracle(kafka_bootstrap, redis_url, oracle_config, len(traffic))
    compare(f"{kills} kills and a zombie", seed, got, want, traffic)
    assert crew.kills == kills
    # Whether the zombie still held a batch to commit when it woke is up to
    # timing; either way the state above proves no stale commit landed.
    assert zombie.process.returncode == 0


def test_redis_killed_and_restarted_with_aof(kafka_bootstrap, unique, tmp_path, full):
    seed = random.randrange(1_000_000)
    redis = RedisProcess(tmp_path / "redis", persistent=True)
    redis.start()
    try:
        (_, oracle_config), (path, config) = configs(tmp_path, kafka_bootstrap, redis.url,
                                                     unique)
        traffic = Traffic(config.kafka.topics.predictions, 6_000, 2_000, seed)
        feeding = traffic.produce_in_background(kafka_bootstrap, 45 if full else 25)
        crew = Crew(path, 2, seed)
        try:
            time.sleep(5)
            redis.kill()
            time.sleep(40 if full else 20)
            assert crew.alive(), "a worker exited while Redis was down"
            redis.start()
            feeding.join()
            wait_committed(redis.url, config, len(traffic), 180, f"all committed (seed {seed})")
            assert crew.alive()
            codes = crew.stop()
        finally:
            crew.kill_all()
        assert codes == [0, 0], "\n".join(crew.logs[-40:])
        logs = "\n".join(crew.logs)
        assert GONE in logs and BACK in logs
        got = outcome(kafka_bootstrap, redis.url, config)
        want = oracle(kafka_bootstrap, redis.url, oracle_config, len(traffic))
        compare("Redis outage", seed, got, want, traffic)
    finally:
        redis.kill()


def test_broker_frozen_and_resumed(redis_url, unique, tmp_path, full):
    # Tansu here stores topics in memory only (its other engines need PostgreSQL
    # or S3), so a restart would be a new, empty cluster. Freezing the broker
    # cuts every connection's answers the same way a restart does, and keeps
    # its log, so the run can be compared with the oracle.
    seed = random.randrange(1_000_000)
    with EmbeddedKafka(find_tansu({})) as broker:
        bootstrap = broker.bootstrap
        (_, oracle_config), (path, config) = configs(tmp_path, bootstrap, redis_url, unique)
        traffic = Traffic(config.kafka.topics.predictions, 6_000, 2_000, seed)
        traffic.produce(bootstrap)
        crew = Crew(path, 2, seed)
        try:
            wait_for(lambda: any(w.owned for w in crew.workers), 60, "an assignment")
            time.sleep(1)
            broker._process.send_signal(signal.SIGSTOP)
            time.sleep(20 if full else 8)
            broker._process.send_signal(signal.SIGCONT)
            wait_committed(redis_url, config, len(traffic), 180, f"all committed (seed {seed})")
            assert crew.alive()
            codes = crew.stop()
        finally:
            broker._process.send_signal(signal.SIGCONT)
            crew.kill_all()
        assert codes == [0, 0], "\n".join(crew.logs[-40:])
        got = outcome(bootstrap, redis_url, config)
        want = oracle(bootstrap, redis_url, oracle_config, len(traffic))
        compare("broker frozen", seed, got, want, traffic)


def test_broker_restarted(redis_url, unique, tmp_path, full, monkeypatch):
    seed = random.randrange(1_000_000)
    storage = S3Storage(tmp_path)
    storage.start()
    for name, value in storage.environment().items():
        monkeypatch.setenv(name, value)  # the broker inherits it
    broker = PersistentBroker(find_tansu({}), port=free_port())
    try:
        broker.start()
        bootstrap = broker.bootstrap
        (_, oracle_config), (path, config) = configs(tmp_path, bootstrap, redis_url, unique)
        traffic = Traffic(config.kafka.topics.predictions, 6_000, 2_000, seed)
        traffic.produce(bootstrap)
        crew = Crew(path, 2, seed)
        try:
            wait_committed(redis_url, config, len(traffic) // 4, 120, "a quarter committed")
            broker.kill()
            time.sleep(20 if full else 5)
            broker.start()
            wait_committed(redis_url, config, len(traffic), 180, f"all committed (seed {seed})")
            assert crew.alive()
            codes = crew.stop()
        finally:
            crew.kill_all()
        assert codes == [0, 0], "\n".join(crew.logs[-40:])
        got = outcome(bootstrap, redis_url, config)
        want = oracle(bootstrap, redis_url, oracle_config, len(traffic))
        compare("broker restarted", seed, got, want, traffic)
    finally:
        broker.stop()
        storage.stop()
