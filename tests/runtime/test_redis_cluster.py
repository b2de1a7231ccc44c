"""The state store on a real Redis Cluster: three masters started here, on loopback.

Every key a unit's commit touches shares the unit's hash tag, so its Lua
script runs on one slot; units spread over slots and nodes. The one key
units share (a model's partitions) never enters a script. The cluster itself
is the witness: Redis refuses a script whose keys span slots or nodes.
"""

import subprocess

import pytest
import redis
from test_memory_store import script

from driftstream.config import ConfigError, RedisConfig, check_redis_url, parse_config
from driftstream.runtime.app import connect_redis
from driftstream.runtime.redis_cluster import LocalCluster
from driftstream.runtime.services import EmbeddedRedis, ServiceError, find_redis_server
from driftstream.runtime.store import (
    ClusterClient,
    Fenced,
    OutboxEntry,
    PartitionStore,
    open_client,
    stores_for_group,
    unit_key,
)

pytestmark = pytest.mark.integration

# A fixed group, so which node holds which unit is the same on every run
# (the slot comes from "{group:partition}"; redis-cli splits slots evenly).
GROUP = "fraud"
PARTITIONS = 12


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster() as local:
        yield local


@pytest.fixture
def client(cluster):
    connection = open_client(cluster.url, cluster=True)
    yield connection
    connection.close()


def alert(alert_id):
    return OutboxEntry(id=alert_id, topic="alerts", key=b"m", value=alert_id.encode())


def join_ops(store, model_id, ids):
    """One of each of the label join's writes, on the unit's join keys."""
    return [
        ("hset:7", store.join_key(model_id, "pred:s"), b"".join(ids), b"ab" * len(ids)),
        ("append", store.join_key(model_id, "pred:3"), b"".join(ids), b""),
        ("set", store.join_key(model_id, "pairs:1"), b"p" * 31, b""),
    ]


def node_keys(cluster, port):
    """The keys one node holds, asked of that node alone."""
    node = redis.Redis(host="127.0.0.1", port=port)
    try:
        return {key.decode() for key in node.scan_iter(count=1000)}
    finally:
        node.close()


def test_every_key_of_a_unit_shares_one_slot_and_units_spread_over_nodes(cluster, client, unique):
    slots, ports = set(), set()
    for partition in range(PARTITIONS):
        store = PartitionStore(client, prefix=unique, group=GROUP, partition=partition)
        epoch = store.claim().epoch
        ids = [bytes([partition, n, 0, 0, 0, 0, 0, 1]) for n in range(20)]
        answer = store.commit(
            epoch,
            {"predictions": 10 + partition, "labels": 3},
            {"predictions:m": b"s%d" % partition},
            [alert(f"a{partition}")],
            (),
            join_ops(store, "m", ids),
        )
        assert answer == "ok"

        node = client.get_node_from_key(unit_key(unique, GROUP, partition, "epoch"))
        keys = {k for k in node_keys(cluster, node.port) if k.startswith(f"{unique}:")}
        mine = {k for k in keys if f"{{{GROUP}:{partition}}}" in k}
        # Offsets, state, outbox (hash, order, sequence), epoch and the join's keys.
        assert {k.rsplit(":", 1)[-1] for k in mine} >= {"epoch", "offsets", "state", "seq"}
        assert any(":join:m:pred:s" in k for k in mine) and any("pairs:1" in k for k in mine)
        assert len({client.keyslot(k) for k in mine}) == 1
        slots |= {client.keyslot(k) for k in mine}
        ports.add(node.port)

        assert store.load(["predictions:m"]) == {"predictions:m": b"s%d" % partition}
        assert [e.id for e in store.pending()] == [f"a{partition}"]
        buffer = store.join_buffer("m")
        assert buffer.entries([(store.join_key("m", "pred:s"), ids[:2])], 7) == [[b"ab", b"ab"]]
        assert buffer.strings([store.join_key("m", "pairs:1")]) == [b"p" * 31]
        assert store.commit(epoch, {"predictions": 10 + partition}, {}, []) == "applied"
        newer = PartitionStore(client, prefix=unique, group=GROUP, partition=partition)
        newer.claim()
        with pytest.raises(Fenced):
            store.commit(epoch, {"predictions": 99}, {}, [])

    assert len(slots) == PARTITIONS
    assert ports == {node.port for node in cluster.nodes}
    assert stores_for_group(client, prefix=unique, group=GROUP) == list(range(PARTITIONS))


def test_the_shared_model_key_lives_outside_the_units_slots_and_still_registers(client, unique):
    first = PartitionStore(client, prefix=unique, group=GROUP, partition=0)
    second = PartitionStore(client, prefix=unique, group=GROUP, partition=1)
    unit_node = client.get_node_from_key(unit_key(unique, GROUP, 0, "epoch")).name
    # A model whose set sits on another node than unit 0: a script given both
    # keys would be refused (CROSSSLOT), so registering proves it is not one.
    model_id = next(
        f"model-{n}"
        for n in range(100)
        if client.get_node_from_key(first._model_key(f"model-{n}")).name != unit_node
    )
    assert first.commit(first.claim().epoch, {"predictions": 1}, {}, [], [model_id]) == "ok"
    assert first.partitions_seen == {model_id: {0}}
    assert second.commit(second.claim().epoch, {"predictions": 1}, {}, [], [model_id]) == "ok"
    assert second.partitions_seen == {model_id: {0, 1}}
    assert first.model_partitions(model_id) == {0, 1}
    # A retry of a commit that landed registers nothing new and reports nothing.
    assert second.commit(second.epoch(), {"predictions": 1}, {}, [], [model_id]) == "applied"
    assert second.partitions_seen == {}


def test_the_cluster_store_answers_every_call_as_a_single_redis_does(client, unique, redis_url):
    single = redis.Redis.from_url(redis_url)
    try:
        on_single = PartitionStore(single, prefix=unique, group=GROUP, partition=5)
        on_cluster = PartitionStore(client, prefix=unique, group=GROUP, partition=5)
        expected = script(on_single)
        assert script(on_cluster) == expected
        assert on_cluster.snapshot() == on_single.snapshot()
    finally:
        single.close()


def test_a_single_redis_moves_to_the_cluster_by_copying_its_keys(cluster, client, unique):
    """The README's upgrade path: the key names are the same, so an import carries the units."""
    with EmbeddedRedis(find_redis_server()) as single:
        old = open_client(single.url)
        for partition in range(3):
            store = PartitionStore(old, prefix=unique, group=GROUP, partition=partition)
            ids = [bytes([partition, 9, 0, 0, 0, 0, 0, 2])]
            store.commit(
                store.claim().epoch,
                {"predictions": 40 + partition},
                {"predictions:m": b"x"},
                [alert("pending")],
                ["m"],
                join_ops(store, "m", ids),
            )
        before = [
            PartitionStore(old, prefix=unique, group=GROUP, partition=p).snapshot()
            for p in range(3)
        ]
        old.close()
        done = subprocess.run(
            [
                cluster.cli,
                "--cluster",
                "import",
                cluster.addresses[0],
                "--cluster-from",
                f"{single.host}:{single.port}",
                "--cluster-copy",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    moved = [PartitionStore(client, prefix=unique, group=GROUP, partition=p) for p in range(3)]
    assert [store.snapshot() for store in moved] == before
    assert moved[1].model_partitions("m") == {0, 1, 2}
    assert [e.id for e in moved[2].pending()] == ["pending"]
    claim = moved[2].claim()
    assert (claim.epoch, claim.offsets) == (2, {"predictions": 42})


def test_a_node_down_is_a_redis_error_and_the_store_resumes_when_it_is_back(unique):
    # A cluster of its own: this one loses a node (and, without persistence, its keys).
    with LocalCluster() as local:
        client = open_client(local.url, cluster=True, socket_timeout=2, socket_connect_timeout=1)
        store = PartitionStore(client, prefix=unique, group=GROUP, partition=0)
        store.commit(store.claim().epoch, {"predictions": 3}, {}, [])
        port = client.get_node_from_key(unit_key(unique, GROUP, 0, "epoch")).port
        victim = next(node for node in local.nodes if node.port == port)
        victim.stop()
        # The worker pauses and retries on a RedisError; anything else would stop it.
        for call in (store.claim, lambda: store.load(["x"]), store.pending, store.outbox_size):
            with pytest.raises(redis.RedisError):
                call()
        with pytest.raises(redis.RedisError):
            store.commit(5, {"predictions": 4}, {}, [], ["m"])
        victim.start()
        local.wait_ok(60)
        # Back as itself, without the keys it held: epoch 1 again, as the
        # worker expects of a Redis that lost a unit's keys.
        assert store.claim().epoch == 1
        client.close()


def test_cluster_mode_is_chosen_by_redis_cluster_and_checked_against_the_server(
    cluster, redis_url, tmp_path
):
    def config(url, cluster_mode):
        document = {
            "models": {"m": {"baseline": str(tmp_path / "m.json")}},
            "redis": {"url": url, "cluster": cluster_mode},
        }
        return parse_config(document)

    client = connect_redis(config(cluster.url, True))
    assert isinstance(client, ClusterClient)
    client.close()
    with pytest.raises(ServiceError, match=r"is a Redis Cluster node, and redis.cluster is false"):
        connect_redis(config(cluster.url, False))
    with pytest.raises(ServiceError, match=r"not in cluster mode, and redis.cluster is true"):
        connect_redis(config(redis_url, True))
    with pytest.raises(ConfigError, match=r"^redis.url: with redis.cluster: true"):
        check_redis_url(RedisConfig(url=cluster.url.rsplit("/", 1)[0] + "/3", cluster=True))
    with pytest.raises(ConfigError, match=r"^redis.url: with redis.cluster: true"):
        check_redis_url(RedisConfig(url="unix:///tmp/redis.sock", cluster=True))
