import logging
import threading

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.backoff import ConstantBackoff
from redis.crc import key_slot

from driftstream.runtime.metrics import Metrics
from driftstream.runtime.store import (
    Availability,
    Claim,
    Fenced,
    OffsetConflict,
    OutboxEntry,
    PartitionStore,
    stores_for_group,
    unit_key,
)

pytestmark = pytest.mark.integration

GROUP = "driftstream"


@pytest.fixture
def client(redis_url):
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def make_store(client, prefix, group=GROUP, partition=0):
    return PartitionStore(client, prefix=prefix, group=group, partition=partition)


def alert(alert_id, value=b"{}"):
    return OutboxEntry(id=alert_id, topic="alerts", key=b"fraud", value=value)


def ids(entries):
    return [entry.id for entry in entries]


def test_claim_increments_the_epoch_and_returns_stored_offsets(client, unique):
    store = make_store(client, unique)
    assert store.epoch() == 0
    assert store.claim() == Claim(epoch=1, offsets={})
    store.commit(1, {"predictions": 10, "labels": 4}, {}, [])
    assert store.claim() == Claim(epoch=2, offsets={"predictions": 10, "labels": 4})
    assert store.epoch() == 2


def test_a_newer_claim_fences_the_older_owner_and_changes_nothing(client, unique):
    old = make_store(client, unique, partition=3)
    first = old.claim().epoch
    old.commit(first, {"predictions": 5}, {"predictions:fraud": b"s1"}, [alert("a1")])
    before = (old.snapshot(), ids(old.pending()))

    newer = make_store(client, unique, partition=3).claim().epoch
    with pytest.raises(Fenced) as raised:
        old.commit(first, {"predictions": 9}, {"predictions:fraud": b"s2"}, [alert("a2")])

    message = str(raised.value)
    assert raised.value.stored == newer
    assert "'driftstream' partition 3" in message
    assert f"epoch {newer}" in message and f"epoch {first}" in message
    assert (old.snapshot(), ids(old.pending())) == before


def test_commit_writes_offsets_states_and_outbox(client, unique):
    store = make_store(client, unique)
    epoch = store.claim().epoch
    states = {"predictions:fraud": b'{"n":1}', "labels:fraud": b'{"n":2}'}
    answer = store.commit(epoch, {"predictions": 7, "labels": 3}, states, [alert("a1")])

    assert answer == "ok"
    assert store.snapshot() == {
        "offsets": {"predictions": 7, "labels": 3},
        "states": states,
        "join": {},
    }
    assert store.load(["predictions:fraud", "missing"]) == {"predictions:fraud": b'{"n":1}'}
    assert store.load([]) == {}
    assert store.pending() == [alert("a1")]
    assert store.outbox_size() == 1


def test_a_retried_commit_is_applied_once(client, unique):
    store = make_store(client, unique)
    epoch = store.claim().epoch
    batch = (epoch, {"predictions": 7, "labels": 3}, {"s": b"v1"}, [alert("a1"), alert("a2")])
    assert store.commit(*batch) == "ok"
    assert store.commit(*batch) == "applied"

    # A retry carrying different state must not overwrite what landed first.
    assert store.commit(epoch, {"predictions": 7}, {"s": b"other"}, [alert("a3")]) == "applied"
    assert store.load(["s"]) == {"s": b"v1"}
    assert ids(store.pending()) == ["a1", "a2"]


def test_an_existing_outbox_id_keeps_its_entry_and_place(client, unique):
    store = make_store(client, unique)
    epoch = store.claim().epoch
    store.commit(epoch, {"t": 1}, {}, [alert("a1", b"first"), alert("a2")])
    store.commit(epoch, {"t": 2}, {}, [alert("a1", b"second"), alert("a3"), alert("a3")])

    assert ids(store.pending()) == ["a1", "a2", "a3"]
    assert store.pending()[0].value == b"first"
    assert store.outbox_size() == 3


def test_pending_follows_insertion_order_across_commits(client, unique):
    store = make_store(client, unique)
    epoch = store.claim().epoch
    # Ids chosen so that sorted order differs from insertion order.
    names = ["z9", "a1", "m5", "b2", "y0", "c3"]
    for offset, pair in enumerate([names[0:2], names[2:3], names[3:6]], start=1):
        store.commit(epoch, {"predictions": offset}, {}, [alert(name) for name in pair])

    assert ids(store.pending()) == names
    assert ids(store.pending(limit=2)) == ["z9", "a1"]
    with pytest.raises(ValueError, match="limit must be at least 1"):
        store.pending(limit=0)


def test_delete_removes_entries_and_keeps_the_rest_in_order(client, unique):
    store = make_store(client, unique)
    epoch = store.claim().epoch
    store.commit(epoch, {"t": 1}, {}, [alert(name) for name in ["a", "b", "c", "d"]])

    assert store.delete(["b", "d", "never-added"]) == 2
    assert store.delete([]) == 0
    assert ids(store.pending()) == ["a", "c"]
    assert store.outbox_size() == 2

    store.commit(epoch, {"t": 2}, {}, [alert("e")])
    assert ids(store.pending()) == ["a", "c", "e"]
    store.delete(["a", "c", "e"])
    assert store.pending() == []
    assert store.outbox_size() == 0


def test_binary_values_keys_and_headers_round_trip(client, unique):
    store = make_store(client, unique)
    epoch = store.claim().epoch
    raw = bytes(range(256))
    entries = [
        OutboxEntry(
            id="dlq:predictions:0:41",
            topic="driftstream.dlq",
            key=b"\xff\xfe\x00model",
            value=raw + b"\x80\xc3\x28",
            headers=(("reason", b"bad json \xe9"), ("raw", b"\x00\xff")),
        ),
        OutboxEntry(id="a-no-key", topic="alerts", key=None, value=b""),
    ]
    store.commit(epoch, {"predictions": 42}, {"blob": raw}, entries)

    assert store.pending() == entries
    assert store.load(["blob"]) == {"blob": raw}


def test_keys_carry_the_hash_tag_and_schema_version(client, unique):
    store = make_store(client, unique, group="fraud-workers", partition=7)
    epoch = store.claim().epoch
    store.commit(epoch, {"predictions": 1}, {"s": b"x"}, [alert("a1")])

    keys = sorted(key.decode() for key in client.scan_iter(match=f"{unique}:*"))
    tag = f"{unique}:v1:{{fraud-workers:7}}:"
    names = ["epoch", "offsets", "outbox", "outbox:order", "outbox:seq", "state"]
    assert keys == [tag + name for name in names]
    assert unit_key(unique, "fraud-workers", 7, "offsets") == tag + "offsets"
    # The slot a Redis Cluster would pick (redis-py's own hash-tag rule): one for the unit.
    assert len({key_slot(key.encode()) for key in keys}) == 1


def test_groups_partitions_and_prefixes_are_isolated(client, unique):
    units = [
        make_store(client, unique, group="g1", partition=0),
        make_store(client, unique, group="g1", partition=1),
        make_store(client, unique, group="g2", partition=0),
        make_store(client, f"{unique}x", group="g1", partition=0),
    ]
    for number, store in enumerate(units, start=1):
        epoch = store.claim().epoch
        store.commit(epoch, {"t": number}, {"s": bytes([number])}, [alert(f"a{number}")])

    for number, store in enumerate(units, start=1):
        assert store.epoch() == 1
        assert store.snapshot() == {
            "offsets": {"t": number},
            "states": {"s": bytes([number])},
            "join": {},
        }
        assert ids(store.pending()) == [f"a{number}"]


def test_offsets_only_move_forward(client, unique):
    store = make_store(client, unique)
    epoch = store.claim().epoch
    store.commit(epoch, {"predictions": 10, "labels": 10}, {"s": b"v1"}, [])

    assert store.commit(epoch, {"predictions": 4, "labels": 10}, {"s": b"old"}, []) == "applied"
    with pytest.raises(OffsetConflict, match="'labels' back from offset 10 to 3"):
        store.commit(epoch, {"predictions": 11, "labels": 3}, {"s": b"v2"}, [alert("a")])
    assert store.snapshot() == {
        "offsets": {"predictions": 10, "labels": 10},
        "states": {"s": b"v1"},
        "join": {},
    }
    assert store.outbox_size() == 0

    # A topic not stored yet counts as forward; one already stored may stay put.
    assert store.commit(epoch, {"predictions": 10, "features": 0}, {"s": b"v2"}, []) == "ok"
    assert store.offsets() == {"predictions": 10, "labels": 10, "features": 0}


def test_bad_arguments_are_refused(client, unique, redis_url):
    store = make_store(client, unique)
    epoch = store.claim().epoch
    with pytest.raises(ValueError, match="needs the offsets"):
        store.commit(epoch, {}, {"s": b"x"}, [])
    with pytest.raises(ValueError, match="non-negative"):
        store.commit(epoch, {"t": -1}, {}, [])
    with pytest.raises(ValueError, match="from claim"):
        store.commit(0, {"t": 1}, {}, [])
    with pytest.raises(ValueError, match="no braces"):
        make_store(client, unique, group="a{b}")
    with pytest.raises(ValueError, match="no braces"):
        make_store(client, "")
    with pytest.raises(ValueError, match="non-negative int"):
        make_store(client, unique, partition=-1)
    decoding = redis.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses=False"):
        make_store(decoding, unique)
    decoding.close()
    assert store.offsets() == {}


def test_no_partial_commit_is_ever_visible(client, unique, redis_url):
    """A writer commits batch after batch while a reader watches and a new owner claims.

    Every batch i sets offset 10*i, state b"i" and adds outbox entry "a<i>", so
    any snapshot in which those three disagree would be a torn commit.
    """
    keys = [unit_key(unique, GROUP, 0, name) for name in ("offsets", "state", "outbox:order")]
    writer = make_store(client, unique)
    first = writer.claim().epoch
    halfway, done = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def write():
        try:
            for batch in range(1, 10_000):
                writer.commit(
                    first, {"t": 10 * batch}, {"s": str(batch).encode()}, [alert(f"a{batch}")]
                )
                if batch == 20:
                    halfway.set()
        except Fenced as fenced:
            outcome["fenced"] = fenced
        finally:
            halfway.set()
            done.set()

    def watch():
        reader = redis.Redis.from_url(redis_url)
        seen = []
        while not done.is_set() or not seen:
            pipe = reader.pipeline(transaction=True)
            pipe.hget(keys[0], "t")
            pipe.hget(keys[1], "s")
            pipe.zcard(keys[2])
            seen.append(tuple(pipe.execute()))
        reader.close()
        outcome["seen"] = seen

    threads = [threading.Thread(target=write), threading.Thread(target=watch)]
    for thread in threads:
        thread.start()
    assert halfway.wait(timeout=10)
    newer = make_store(client, unique)
    claim = newer.claim()
    for thread in threads:
        thread.join(timeout=30)

    assert isinstance(outcome.get("fenced"), Fenced)
    for offset, state, size in outcome["seen"]:
        batch = 0 if offset is None else int(offset) // 10
        assert (state, size) == (None if batch == 0 else str(batch).encode(), batch)
    # What the new owner read when claiming is final: the fenced writer added nothing after it.
    last = claim.offsets["t"] // 10
    assert last >= 20
    assert newer.offsets() == claim.offsets
    assert newer.load(["s"]) == {"s": str(last).encode()}
    assert ids(newer.pending()) == [f"a{batch}" for batch in range(1, last + 1)]
    assert newer.commit(claim.epoch, {"t": claim.offsets["t"] + 10}, {}, []) == "ok"


def test_stores_for_group_lists_claimed_partitions(client, unique):
    for partition in (5, 0, 12):
        make_store(client, unique, group="fraud", partition=partition).claim()
    make_store(client, unique, group="fraud:eu", partition=1).claim()
    make_store(client, unique, group="f*", partition=2).claim()
    make_store(client, f"{unique}x", group="fraud", partition=3).claim()

    assert stores_for_group(client, prefix=unique, group="fraud") == [0, 5, 12]
    assert stores_for_group(client, prefix=unique, group="fraud:eu") == [1]
    assert stores_for_group(client, prefix=unique, group="f*") == [2]
    assert stores_for_group(client, prefix=unique, group="nobody") == []


def test_a_unit_whose_keys_vanished_answers_epoch_zero(client, unique):
    """What a worker sees after Redis restarted without persistence."""
    store = make_store(client, unique)
    epoch = store.claim().epoch
    store.commit(epoch, {"t": 5}, {"s": b"v"}, [alert("a1")])
    client.delete(*client.scan_iter(match=f"{unique}:*"))

    with pytest.raises(Fenced) as raised:
        store.commit(epoch, {"t": 9}, {"s": b"w"}, [])
    assert raised.value.stored == 0
    assert store.offsets() == {}


def test_availability_logs_once_each_way_and_backs_off(caplog):
    registry = CollectorRegistry()
    now = [100.0]
    health = Availability(Metrics(registry), ConstantBackoff(2.0), clock=lambda: now[0])
    assert registry.get_sample_value("driftstream_store_up") == 1
    assert health.up and health.due()

    with caplog.at_level(logging.INFO):
        for operation in ("commit", "commit", "claim"):
            health.failed(operation, redis.ConnectionError("Connection refused"))
            assert not health.due()
            assert health.wait() == 2.0
        now[0] += 2.0
        assert health.due()
        health.succeeded()
        health.succeeded()

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "Redis is unavailable (commit: Connection refused)" in messages[0]
    assert "Redis is back after 2.0 s (3 retries)" in messages[1]
    assert registry.get_sample_value("driftstream_store_up") == 1
    retries = "driftstream_store_retries_total"
    assert registry.get_sample_value(retries, {"operation": "commit"}) == 2
    assert registry.get_sample_value(retries, {"operation": "claim"}) == 1
    assert health.up and health.failures == 0


def test_availability_reports_down_while_failing():
    registry = CollectorRegistry()
    health = Availability(Metrics(registry), ConstantBackoff(0.0))
    health.failed("relay", redis.TimeoutError("Timeout reading from socket"))
    assert not health.up
    assert registry.get_sample_value("driftstream_store_up") == 0


def test_join_operations_land_with_the_commit_or_not_at_all(client, unique):
    store = make_store(client, unique)
    stale = store.claim().epoch
    epoch = store.claim().epoch
    prefix = store.join_key("m", "pred:s")
    ids = [bytes([i, 0, 0, 0, 0, 0, 0, i]) for i in range(4)]
    ops = [
        ("hset:3", prefix, b"".join(ids), b"".join(bytes([i]) * 5 for i in range(4))),
        ("append", store.join_key("m", "pred:7"), b"".join(ids), b""),
    ]
    store.commit(epoch, {"t": 1}, {}, [], ops=ops)
    found = store.join_buffer("m").entries([(prefix, [*ids, b"\xff" * 8])], 3)
    assert found == [[bytes([i]) * 5 for i in range(4)] + [None]]
    assert client.hlen(f"{prefix}0") == 2  # ids 0 and 3 share shard 0 of 3
    # A refused commit writes none of its operations; a retry changes nothing.
    with pytest.raises(Fenced):
        store.commit(stale, {"t": 2}, {}, [], ops=[("hdel:3", prefix, ids[0], b"")])
    assert store.commit(epoch, {"t": 1}, {}, [], ops=[("hdel:3", prefix, ids[0], b"")]) == (
        "applied"
    )
    snapshot = store.snapshot()["join"]
    assert set(snapshot["m:pred"]) == set(ids)
    assert snapshot["m:pred:7"] == sorted(ids)
    with pytest.raises(ValueError, match="not a join operation"):
        store.commit(epoch, {"t": 3}, {}, [], ops=[("hset:3", "elsewhere", b"", b"")])


def test_join_operations_split_long_runs_of_one_shard(client, unique):
    # More entries for one shard than one Redis call takes (the script splits runs).
    store = make_store(client, unique)
    epoch = store.claim().epoch
    prefix = store.join_key("m", "pred:s")
    ids = [i.to_bytes(8, "little") for i in range(5000)]
    values = [i.to_bytes(4, "big") for i in range(5000)]
    store.commit(epoch, {"t": 1}, {}, [], ops=[("hset:1", prefix, b"".join(ids), b"".join(values))])
    assert client.hlen(f"{prefix}0") == 5000
    store.commit(epoch, {"t": 2}, {}, [], ops=[("hdel:1", prefix, b"".join(ids[:4500]), b"")])
    found = store.join_buffer("m").entries([(prefix, ids[4490:4510])], 1)
    assert found == [[None] * 10 + values[4500:4510]]
