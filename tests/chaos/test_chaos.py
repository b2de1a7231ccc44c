"""Chaos: kills, a zombie, outages and malformed traffic end exactly like an uninterrupted run.

Labels flow in every scenario, so the join buffer, its counts and the
performance alerts go through the same faults.

The kills run on a single Redis and on a Redis Cluster of three masters
started here. Short by default (CI); ``--chaos-full`` runs the long form by
hand::

    .venv/bin/python -m pytest tests/chaos --chaos-full
"""

import random
import signal
import time

import pytest
from chaos_harness import (
    LABELS,
    MODELS,
    Crew,
    PersistentBroker,
    S3Storage,
    Traffic,
    chaos_config,
    committed_of,
    digest,
    outcome,
    wait_committed,
)
from pipeline import first_difference, run_in_thread, wait_for, write_config
from test_outages import BACK, GONE, RedisProcess

from driftstream.runtime.redis_cluster import LocalCluster
from driftstream.runtime.services import EmbeddedKafka, find_tansu, free_port

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

BAD_RECORDS = 10_000


@pytest.fixture(scope="module")
def redis_cluster():
    with LocalCluster() as cluster:
        yield cluster


@pytest.fixture(params=["redis", "redis-cluster"])
def store(request, redis_url):
    """(redis.url, redis.cluster): the session's Redis, or a local Redis Cluster."""
    if request.param == "redis":
        return redis_url, False
    return request.getfixturevalue("redis_cluster").url, True


def configs(tmp_path, bootstrap, redis_url, name, batch_size=300, cluster=False):
    """The oracle's config and the chaos run's: same input topics, own group and outputs."""
    made = []
    for run in ("oracle", "chaos"):
        path, _ = write_config(
            tmp_path,
            bootstrap,
            redis_url,
            f"{name}-{run}",
            models=MODELS,
            partitions=3,
            batch_size=batch_size,
            inputs=f"{name}-in",
            labels=LABELS,
        )
        made.append((path, chaos_config(path, cluster)))
    return made


def oracle(bootstrap, redis_url, config, total):
    """One uninterrupted worker over the whole input."""
    run_in_thread(config, total, 240)
    return outcome(bootstrap, redis_url, config)


def settle(crew, redis_url, config, traffic, seed, timeout=180):
    """Wait until everything is committed and relayed, with every worker alive; stop them."""
    wait_committed(redis_url, config, len(traffic), timeout, f"all committed (seed {seed})")
    assert crew.alive(), "a worker exited"
    return crew.stop()


def judge(scenario, seed, crew, codes, bootstrap, redis_url, configs, traffic):
    """Clean exits, then the run against an uninterrupted one over the same input."""
    oracle_config, config = configs
    assert codes == [0] * len(crew.workers), "\n".join(crew.logs[-40:])
    got = outcome(bootstrap, redis_url, config)
    want = oracle(bootstrap, redis_url, oracle_config, len(traffic))
    compare(scenario, seed, got, want, traffic)


def compare(scenario, seed, got, want, traffic):
    state, ids, letters, copies = got
    want_state, want_ids, want_letters, _ = want
    where = f"{scenario} (seed {seed})"
    assert digest(state) == digest(want_state), f"{where}: {first_difference(state, want_state)}"
    assert ids == want_ids, f"{where}: alert ids differ: {sorted(ids ^ want_ids)[:5]}"
    expected = traffic.expected_dead()
    assert letters == expected, (
        f"{where}: dead letters differ: {sorted(set(letters.items()) ^ set(expected.items()))[:5]}"
    )
    assert want_letters == expected
    # Labels flowed and were joined: every model has a join state and a buffer.
    joined = {n for unit in state.values() for n in unit["states"] if n.startswith("labels:")}
    assert joined == {f"labels:{m}" for m in MODELS}, f"{where}: label states {sorted(joined)}"
    return copies


def test_kills_and_a_zombie_under_malformed_traffic(kafka_bootstrap, store, unique, tmp_path, full):
    redis_url, cluster = store
    seed = random.randrange(1_000_000)
    kills = 30 if full else 10
    (_, oracle_config), (path, config) = configs(
        tmp_path, kafka_bootstrap, redis_url, unique, cluster=cluster
    )
    traffic = Traffic(config.kafka.topics, 30_000 if full else 6_000, BAD_RECORDS, seed)
    feeding = traffic.produce_in_background(kafka_bootstrap, 60 if full else 20)
    crew = Crew(path, 3, seed)
    try:
        for _ in range(kills):
            time.sleep(crew.rng.uniform(0.3, 2.0))
            crew.kill_one()
        assert committed_of(redis_url, config) < len(traffic), "the kills came too late"
        zombie = crew.zombie(8)  # past the 6 s session timeout
        feeding.join()
        codes = settle(crew, redis_url, config, traffic, seed, timeout=300)
    finally:
        crew.kill_all()
    judge(
        f"{kills} kills and a zombie",
        seed,
        crew,
        codes,
        kafka_bootstrap,
        redis_url,
        (oracle_config, config),
        traffic,
    )
    assert crew.kills == kills
    # Whether the zombie still held a batch to commit when it woke is up to
    # timing; either way the state above proves no stale commit landed.
    assert zombie.process.returncode == 0


def test_redis_killed_and_restarted_with_aof(kafka_bootstrap, unique, tmp_path, full):
    seed = random.randrange(1_000_000)
    redis = RedisProcess(tmp_path / "redis", persistent=True)
    redis.start()
    try:
        (_, oracle_config), (path, config) = configs(tmp_path, kafka_bootstrap, redis.url, unique)
        traffic = Traffic(config.kafka.topics, 6_000, 2_000, seed)
        feeding = traffic.produce_in_background(kafka_bootstrap, 45 if full else 25)
        crew = Crew(path, 2, seed)
        try:
            time.sleep(5)
            redis.kill()
            time.sleep(40 if full else 20)
            assert crew.alive(), "a worker exited while Redis was down"
            redis.start()
            feeding.join()
            codes = settle(crew, redis.url, config, traffic, seed)
        finally:
            crew.kill_all()
        logs = "\n".join(crew.logs)
        assert GONE in logs and BACK in logs
        judge(
            "Redis outage",
            seed,
            crew,
            codes,
            kafka_bootstrap,
            redis.url,
            (oracle_config, config),
            traffic,
        )
    finally:
        redis.kill()


def test_broker_frozen_and_resumed(redis_url, unique, tmp_path, full):
    # A hung broker rather than a dead one: connections stay open, answers stop.
    seed = random.randrange(1_000_000)
    with EmbeddedKafka(find_tansu({})) as broker:
        bootstrap = broker.bootstrap
        (_, oracle_config), (path, config) = configs(tmp_path, bootstrap, redis_url, unique)
        traffic = Traffic(config.kafka.topics, 6_000, 2_000, seed)
        traffic.produce(bootstrap)
        crew = Crew(path, 2, seed)
        try:
            wait_for(lambda: any(w.owned for w in crew.workers), 60, "an assignment")
            time.sleep(1)
            broker._process.send_signal(signal.SIGSTOP)
            time.sleep(20 if full else 8)
            broker._process.send_signal(signal.SIGCONT)
            codes = settle(crew, redis_url, config, traffic, seed)
        finally:
            broker._process.send_signal(signal.SIGCONT)
            crew.kill_all()
        judge(
            "broker frozen",
            seed,
            crew,
            codes,
            bootstrap,
            redis_url,
            (oracle_config, config),
            traffic,
        )


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
        traffic = Traffic(config.kafka.topics, 6_000, 2_000, seed)
        traffic.produce(bootstrap)
        crew = Crew(path, 2, seed)
        try:
            wait_committed(redis_url, config, len(traffic) // 4, 120, "a quarter committed")
            broker.kill()
            time.sleep(20 if full else 5)
            broker.start()
            codes = settle(crew, redis_url, config, traffic, seed)
        finally:
            crew.kill_all()
        judge(
            "broker restarted",
            seed,
            crew,
            codes,
            bootstrap,
            redis_url,
            (oracle_config, config),
            traffic,
        )
    finally:
        broker.stop()
        storage.stop()
