"""Pure helpers of the label join: id keys and shard order."""

from __future__ import annotations

import hashlib

import numpy as np

from driftstream.core.join import event_hashes, hash_order, shard_count, shard_order


def test_event_hashes_are_blake2b_of_the_utf8_id() -> None:
    ids = ["e1", "événement-7", ""]
    expected = [hashlib.blake2b(i.encode(), digest_size=8).digest() for i in ids]
    assert event_hashes(ids) == expected


def test_a_lone_surrogate_hashes_without_changing_the_other_ids() -> None:
    # JSON allows "\ud800"; strict UTF-8 cannot encode it, so the batch takes the slow path.
    ids = ["e1", "bad\ud800", "e2"]
    hashes = event_hashes(ids)
    assert hashes[0] == event_hashes(["e1"])[0]
    assert hashes[2] == event_hashes(["e2"])[0]
    assert (
        hashes[1]
        == hashlib.blake2b("bad\ud800".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    )
    assert len(set(hashes)) == 3


def test_shard_order_groups_ids_by_the_shard_the_commit_script_computes() -> None:
    shards = shard_count(1_000_000)
    hashes = event_hashes(f"e{i}" for i in range(5000))
    order = shard_order(hash_order(hashes), shards)
    # The script's shard: first two bytes, big-endian, modulo the shard count.
    script = [(h[0] * 256 + h[1]) % shards for h in hashes]
    ordered = [script[i] for i in order.tolist()]
    assert ordered == sorted(script)
    assert sorted(order.tolist()) == list(range(5000))
    # Stable: ids of one shard keep the batch's order.
    firsts = {}
    for i in order.tolist():
        firsts.setdefault(script[i], []).append(i)
    assert all(ids == sorted(ids) for ids in firsts.values())
    assert np.array_equal(order, shard_order(hash_order(hashes), shards))
