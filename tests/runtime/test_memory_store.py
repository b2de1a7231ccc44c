"""The store a replay keeps in memory answers as the Redis store does, commit for commit."""

from __future__ import annotations

import pytest
import redis

from driftstream.runtime.memory_store import MemoryStore, Registry
from driftstream.runtime.store import Fenced, OffsetConflict, OutboxEntry, PartitionStore

GROUP = "g"


def entry(name: str) -> OutboxEntry:
    return OutboxEntry(id=name, topic="alerts", key=b"m", value=name.encode())


def ids(n: int, shift: int = 0) -> list[bytes]:
    return [bytes([(i * 37 + shift) % 256, i % 7, 0, 0, 0, 0, 0, i % 256]) for i in range(n)]


def script(store) -> list[object]:
    """One sequence of commits and reads, with what each returned or raised."""
    answers: list[object] = []
    stale = store.claim().epoch
    epoch = store.claim().epoch
    pred = store.join_key("m", "pred:s")
    keys = ids(40)
    values = b"".join(bytes([i]) * 6 for i in range(40))
    answers.append(
        store.commit(
            epoch,
            {"in": 5, "labels": 2},
            {"monitor": b"{}"},
            [entry("a"), entry("b")],
            ["m"],
            [
                ("hset:7", pred, b"".join(keys), values),
                ("append", store.join_key("m", "pred:3"), b"".join(keys), b""),
            ],
        )
    )
    answers.append(store.commit(epoch, {"in": 5, "labels": 2}, {"monitor": b"x"}, [entry("c")]))
    answers.append(
        store.commit(
            epoch,
            {"in": 9, "labels": 2},
            {"monitor": b"{1}"},
            [entry("b"), entry("d")],
            (),
            [
                ("hdel:7", pred, b"".join(keys[:30]), b""),
                ("set", store.join_key("m", "pred:3"), b"".join(keys[30:]), b""),
                ("append", store.join_key("m", "pairs:1"), b"p" * 62, b""),
            ],
        )
    )
    for call in (
        lambda: store.commit(stale, {"in": 20}, {}, []),
        lambda: store.commit(epoch, {"in": 30, "labels": 1}, {}, []),
        lambda: store.commit(epoch, {"in": 31}, {}, [], (), [("hset:7", "elsewhere", b"", b"")]),
        lambda: store.commit(0, {"in": 31}, {}, []),
        lambda: store.commit(epoch, {}, {}, []),
    ):
        try:
            answers.append(call())
        except (Fenced, OffsetConflict, ValueError) as error:
            answers.append(type(error).__name__)
    found = store.join_buffer("m").entries([(pred, [*keys[28:32], b"\xff" * 8])], 7)
    answers.append(found)
    answers.append(store.join_buffer("m").strings([store.join_key("m", "pred:3"), "nothing"]))
    answers.append([e.id for e in store.pending(2)])
    answers.append(store.delete(["a", "zzz"]))
    answers.append([e.id for e in store.pending()])
    answers.append(store.outbox_size())
    answers.append(store.model_partitions("m"))
    answers.append(store.load(["monitor", "absent"]))
    return answers


@pytest.fixture
def client(redis_url):
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def test_the_memory_store_answers_every_call_as_redis_does(client, unique):
    in_redis = PartitionStore(client, prefix=unique, group=GROUP, partition=0)
    in_memory = MemoryStore(prefix=unique, group=GROUP, partition=0)
    expected = script(in_redis)
    assert script(in_memory) == expected
    assert expected[:3] == ["ok", "applied", "ok"]
    assert expected[3:8] == ["Fenced", "OffsetConflict", "ValueError", "ValueError", "ValueError"]
    assert in_memory.snapshot() == in_redis.snapshot()


def test_units_of_one_replay_share_which_partitions_registered_a_model():
    registry = Registry()
    first = MemoryStore(prefix="p", group=GROUP, partition=0, registry=registry)
    second = MemoryStore(prefix="p", group=GROUP, partition=1, registry=registry)
    first.commit(first.claim().epoch, {"in": 1}, {}, [], ["m"])
    second.commit(second.claim().epoch, {"in": 1}, {}, [], ["m"])
    assert second.partitions_seen == {"m": {0, 1}}
    assert first.model_partitions("m") == {0, 1}
