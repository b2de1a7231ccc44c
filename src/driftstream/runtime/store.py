"""Per-partition state in Redis: offsets, state blobs and the alert outbox.

A worker owns a *partition unit*: partition ``p`` of every (co-partitioned)
input topic of one consumer group. Each micro-batch is committed by ONE Lua
script that checks the owner's epoch, then writes the consumed offsets, the
state blobs and the new outbox entries together (DESIGN.md, invariants 1, 2
and 5). Nothing is pickled: state blobs are bytes the caller made with
orjson, and outbox entries are stored as orjson objects.

Key layout, one hash tag per unit so a Redis Cluster keeps a unit's keys in
one slot (a script may only touch keys of one slot), with the schema version
in the key so a future layout can live next to this one::

    {prefix}:v1:{{group}:{partition}}:epoch         string   owner epoch, INCR on claim
    {prefix}:v1:{{group}:{partition}}:offsets       hash     topic -> next offset to consume
    {prefix}:v1:{{group}:{partition}}:state         hash     name -> state blob (overwritten)
    {prefix}:v1:{{group}:{partition}}:outbox        hash     id -> entry (orjson)
    {prefix}:v1:{{group}:{partition}}:outbox:order  zset     id scored by insertion number
    {prefix}:v1:{{group}:{partition}}:outbox:seq    string   last insertion number
    {prefix}:v1:{{group}:{partition}}:join:{model}:...      the label join's buffer

One key is shared by the units of a group, so it lies outside every unit's
slot and never enters a script::

    {prefix}:v1:{group}:model-partitions:{model}    set      partitions that saw the model

A commit registers its models there first (SADD, then SMEMBERS, on that key
alone), then runs the script. Registering before the batch lands is true
whatever follows (the model's events are on that partition), a retry adds
nothing, and of two units that register a model at once the later one's
SMEMBERS sees the other: each key's commands run in one order.

The names are those of the first release (its unit keys already carried
the hash tag), the same on one node as on a cluster: nothing to migrate on a
single node, and a move to a cluster copies the keys as they are (README,
"Redis Cluster").

The outbox is a hash plus a sorted set rather than a list: the hash makes
"add if absent" one HSETNX (dedup by id), and the sorted set gives insertion
order while a delivered id is removed in O(log n); a list would need an O(n)
LREM per delivered entry. Insertion numbers are never reused, so order holds
across commits and deletes; they stay exact up to 2**53.

Redis should run with ``maxmemory-policy noeviction``: an evicted key would
silently lose state, and a script refused for memory midway through its
writes would leave them partly done (every check runs before the first write
to keep that window as small as the server allows).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import orjson
import redis
from redis.backoff import AbstractBackoff, EqualJitterBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException, SlotNotCoveredError

from driftstream.core.join import ID_BYTES, PAIR_RECORD
from driftstream.runtime.metrics import Metrics

log = logging.getLogger(__name__)

SCHEMA_VERSION = "v1"

# A single Redis, or a Redis Cluster (redis.cluster: true); the store uses both alike.
RedisClient = redis.Redis | RedisCluster


class ClusterUnavailable(redis.ConnectionError):
    """No node of the Redis Cluster answers for a slot (or at all).

    redis-py says so with a RedisClusterException, which is not a RedisError;
    as this one is, the worker pauses and retries as for a single Redis that
    went away, rather than stopping.
    """


@contextlib.contextmanager
def cluster_errors() -> Iterator[None]:
    """Raise redis-py's cluster errors that mean "cannot reach" as RedisErrors.

    The node's own error when there is one (a refused password stays an
    AuthenticationError), else ClusterUnavailable. redis-py raises the same
    RedisClusterException for a request it cannot route (keys of several
    slots, no key): a bug that waiting cannot fix, so it stays as it is.
    """
    try:
        yield
    except RedisClusterException as error:
        if isinstance(error.__cause__, redis.RedisError):
            raise error.__cause__ from error
        if isinstance(error, SlotNotCoveredError) or _layout_unknown(error):
            raise ClusterUnavailable(str(error)) from error
        raise


def _layout_unknown(error: RedisClusterException) -> bool:
    # What redis-py says when no node it reached could give a whole slot map
    # (a node down or the cluster resharding); it has no class of its own.
    text = str(error)
    return "not covered" in text or "could not agree" in text


class ClusterClient(RedisCluster):
    """A RedisCluster whose outages raise ClusterUnavailable (a redis.ConnectionError)."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with cluster_errors():
            return super().execute_command(*args, **kwargs)


def open_client(url: str, *, cluster: bool = False, **options: Any) -> RedisClient:
    """A client for ``url``; with ``cluster``, one that finds every node from that one.

    A cluster client asks its seed node for the cluster's layout at once,
    so it may raise here: the node's own RedisError (an AuthenticationError
    for a refused password), or ClusterUnavailable.
    """
    if not cluster:
        return redis.Redis.from_url(url, **options)
    with cluster_errors():
        return ClusterClient.from_url(url, **options)


def cluster_enabled(url: str, **options: Any) -> bool | None:
    """Whether the node at ``url`` runs in cluster mode; None if it may not say (ACL)."""
    client = redis.Redis.from_url(url, **options)
    try:
        return str(client.info("cluster").get("cluster_enabled")) == "1"
    except redis.ResponseError:
        return None  # a user without INFO (e.g. -@dangerous) cannot tell
    finally:
        client.close()


_NAMES = ("epoch", "offsets", "state", "outbox", "outbox:order", "outbox:seq")

# KEYS: epoch, offsets, state, outbox, outbox:order, outbox:seq (as in _NAMES),
#       then the keys the label join's operations write. Every one is a key
#       of the unit, so in a Redis Cluster the script runs on one slot.
# ARGV: epoch, number of offsets, number of states, number of outbox entries,
#       then topic/offset pairs, name/blob pairs, id/entry pairs and
#       operations (opcode, key index, a, b), in that order.
COMMIT_LUA = """
local epoch = tonumber(redis.call('GET', KEYS[1]) or '0')
local n_offsets = tonumber(ARGV[2])
local n_states = tonumber(ARGV[3])
local n_entries = tonumber(ARGV[4])
local first_state = 5 + 2 * n_offsets
local first_entry = first_state + 2 * n_states
local first_op = first_entry + 2 * n_entries

-- 1. Fencing: a worker whose epoch is not the latest claim is a zombie.
if epoch ~= tonumber(ARGV[1]) then
  return {'fenced', epoch}
end

-- 2. Compare every offset with the stored one (absent = -1, before any offset).
local forward = false
local behind = nil
for i = 5, first_state - 1, 2 do
  local stored = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '-1')
  local given = tonumber(ARGV[i + 1])
  if given > stored then
    forward = true
  elseif given < stored and behind == nil then
    behind = {ARGV[i], stored, given}
  end
end

-- 3. Nothing ahead of what is stored: a retry of a commit that already landed.
if not forward then
  return {'applied'}
end

-- 4. Some topics ahead and some behind: no retry looks like that, so the
--    caller's positions are wrong; writing would move an offset backwards.
if behind ~= nil then
  return {'conflict', behind[1], behind[2], behind[3]}
end

-- 5. Every check passed; only now write offsets, state blobs and new outbox
--    entries (HSETNX skips an id already present, so it keeps its place).
--    An empty state blob deletes that state (a retired monitor).
for i = 5, first_state - 1, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
for i = first_state, first_entry - 1, 2 do
  if #ARGV[i + 1] > 0 then
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  else
    redis.call('HDEL', KEYS[3], ARGV[i])
  end
end
for i = first_entry, first_op - 1, 2 do
  if redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[5], redis.call('INCR', KEYS[6]), ARGV[i])
  end
end

-- 6. The label join's writes. Entries travel packed (8-byte ids, fixed-width
--    values) and are unpacked here, a few thousand arguments per call.
--    hset/hdel spread entries over sharded hashes named key .. shard, the
--    shard read from the id's first two bytes (runtime/labels.py says why).
--    A shard's name extends a declared key after its hash tag, so it lies
--    in the same slot (Redis Cluster allows such undeclared keys there).
--    The caller sorts entries by shard, so each run of one shard is one call;
--    unsorted entries would only cost more calls.
local byte, sub = string.byte, string.sub
local function shard_at(ids, j, shards)
  local hi, lo = byte(ids, j * 8 + 1, j * 8 + 2)
  return (hi * 256 + lo) % shards
end
for i = first_op, #ARGV, 4 do
  local op, key, a, b = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  local name, shards = string.match(op, '^(%a+):(%d+)$')
  if name == 'hset' or name == 'hdel' then
    shards = tonumber(shards)
    local command, n = string.upper(name), #a / 8
    local width = 0
    if name == 'hset' then width = #b / n end
    local j = 0
    while j < n do
      local shard, args = shard_at(a, j, shards), {}
      repeat
        args[#args + 1] = sub(a, j * 8 + 1, j * 8 + 8)
        if width > 0 then args[#args + 1] = sub(b, j * width + 1, j * width + width) end
        j = j + 1
      until j == n or #args >= 4000 or shard_at(a, j, shards) ~= shard
      redis.call(command, key .. shard, unpack(args))
    end
  elseif op == 'append' then
    redis.call('APPEND', key, a)
  elseif op == 'set' then
    if #a > 0 then redis.call('SET', key, a) else redis.call('DEL', key) end
  end
end

return {'ok'}
"""

OPCODES = ("hset", "hdel", "append", "set")

# KEYS: one key of the unit, unused but for routing: a Redis Cluster client
#       sends the call to the node of that key's slot, where the shard keys
#       (built from ARGV, all of the same unit) live.
# ARGV: number of shards, then (key prefix, packed 8-byte ids) pairs.
# Returns one string per pair: for each id, a length byte and the entry
# (0 where absent). One string instead of an array of values: the client
# parses it in one piece, where an array costs it a Python object per value.
READ_LUA = """
local shards = tonumber(ARGV[1])
local answer = {}
for i = 2, #ARGV, 2 do
  local prefix, ids = ARGV[i], ARGV[i + 1]
  local found = {}
  for j = 0, #ids / 8 - 1 do
    local id = string.sub(ids, j * 8 + 1, j * 8 + 8)
    local shard = (string.byte(id, 1) * 256 + string.byte(id, 2)) % shards
    local value = redis.call('HGET', prefix .. shard, id)
    if value then
      found[#found + 1] = string.char(#value) .. value
    else
      found[#found + 1] = '\\0'
    end
  end
  answer[#answer + 1] = table.concat(found)
end
return answer
"""


class JoinBuffer:
    """The Redis side of one model's label join in one unit: its keys and its reads.

    Written only through ``PartitionStore.commit`` (operations), read here.
    """

    def __init__(self, client: RedisClient, prefix: str, read: Any) -> None:
        self._client = client
        self._prefix = prefix
        self._read = read

    def key(self, name: str) -> str:
        return f"{self._prefix}{name}"

    def entries(
        self, requests: Sequence[tuple[str, Sequence[bytes]]], shards: int
    ) -> list[list[bytes | None]]:
        """For each (hash key prefix, ids), the entries stored under those ids."""
        args: list[Any] = [shards]
        for prefix, ids in requests:
            args += [prefix, b"".join(ids)]
        return [_entries(blob) for blob in self._read(keys=[self._prefix], args=args)]

    def strings(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        if isinstance(self._client, RedisCluster):
            # One MGET per slot: a single one for the unit's own keys.
            with cluster_errors():
                return cast(list[bytes | None], self._client.mget_nonatomic(keys))
        return cast(list[bytes | None], self._client.mget(keys))


class JoinReads(Protocol):
    """What the label join reads of its buffer (``JoinBuffer``, or a replay's in memory)."""

    def key(self, name: str) -> str: ...

    def entries(
        self, requests: Sequence[tuple[str, Sequence[bytes]]], shards: int
    ) -> list[list[bytes | None]]: ...

    def strings(self, keys: Sequence[str]) -> list[bytes | None]: ...


class Fenced(Exception):
    """The unit's stored epoch is not this worker's; it must stop writing.

    ``stored`` is the epoch found in Redis. Above the worker's own, a newer
    owner claimed the unit. Epochs only grow, so 0 (no epoch key) means Redis
    lost the unit's keys, and any value below the worker's own means it lost
    them and someone claimed the unit again since.
    """

    def __init__(self, message: str, stored: int) -> None:
        super().__init__(message)
        self.stored = stored


class OffsetConflict(Exception):
    """A commit moved some offsets forward and others backwards; nothing was written."""


def fenced(group: str, partition: int, stored: int, epoch: int) -> Fenced:
    msg = (
        f"group {group!r} partition {partition} was claimed by epoch {stored}; "
        f"this worker holds epoch {epoch}"
    )
    return Fenced(msg, stored)


def conflict(group: str, partition: int, topic: str, stored: int, given: int) -> OffsetConflict:
    msg = (
        f"group {group!r} partition {partition}: commit moves topic {topic!r} back from "
        f"offset {stored} to {given} while moving others forward"
    )
    return OffsetConflict(msg)


@dataclass(frozen=True)
class Claim:
    epoch: int
    offsets: dict[str, int]


@dataclass(frozen=True)
class OutboxEntry:
    id: str
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None  # None: the producer's partitioner picks one


class UnitStore(Protocol):
    """What a worker needs of a unit's store: ``PartitionStore``, or a replay's in memory."""

    group: str
    partition: int
    partitions_seen: dict[str, set[int]]

    def claim(self) -> Claim: ...

    def load(self, names: Iterable[str]) -> dict[str, bytes]: ...

    def commit(
        self,
        epoch: int,
        offsets: Mapping[str, int],
        states: Mapping[str, bytes],
        outbox: Sequence[OutboxEntry],
        register: Sequence[str] = (),
        ops: Sequence[tuple[str, str, bytes, bytes]] = (),
    ) -> str: ...

    def join_buffer(self, model_id: str) -> JoinReads: ...

    def model_partitions(self, model_id: str) -> set[int]: ...

    def pending(self, limit: int = 1000) -> list[OutboxEntry]: ...

    def delete(self, ids: Sequence[str]) -> int: ...

    def outbox_size(self) -> int: ...

    def snapshot(self) -> dict[str, Any]: ...


def unit_key(prefix: str, group: str, partition: int, name: str) -> str:
    """The Redis key of one part of a partition unit.

    >>> unit_key("driftstream", "driftstream", 3, "offsets")
    'driftstream:v1:{driftstream:3}:offsets'
    """
    return f"{prefix}:{SCHEMA_VERSION}:{{{group}:{partition}}}:{name}"


class PartitionStore:
    """State, offsets and outbox of one partition unit, written only by its owner."""

    def __init__(self, client: RedisClient, *, prefix: str, group: str, partition: int) -> None:
        _check_unit(client, prefix, group, partition)
        self.group = group
        self.partition = partition
        self._prefix = prefix
        self.partitions_seen: dict[str, set[int]] = {}
        self._client = client
        self._keys = [unit_key(prefix, group, partition, name) for name in _NAMES]
        self._epoch, self._offsets, self._state, self._outbox, self._order, _ = self._keys
        self._join_prefix = unit_key(prefix, group, partition, "join:")
        self._commit = client.register_script(COMMIT_LUA)
        self._read = client.register_script(READ_LUA)

    def claim(self) -> Claim:
        """Become the owner: a new epoch, and the offsets to seek to."""
        pipe = self._client.pipeline(transaction=True)
        pipe.incr(self._epoch)
        pipe.hgetall(self._offsets)
        epoch, offsets = _execute(pipe)
        return Claim(epoch=int(epoch), offsets=_decode_offsets(offsets))

    def load(self, names: Iterable[str]) -> dict[str, bytes]:
        names = list(names)
        if not names:
            return {}
        blobs = cast(list[bytes | None], self._client.hmget(self._state, names))
        return {name: blob for name, blob in zip(names, blobs, strict=True) if blob is not None}

    def commit(
        self,
        epoch: int,
        offsets: Mapping[str, int],
        states: Mapping[str, bytes],
        outbox: Sequence[OutboxEntry],
        register: Sequence[str] = (),
        ops: Sequence[tuple[str, str, bytes, bytes]] = (),
    ) -> str:
        """Write one micro-batch atomically; "ok", or "applied" for a retry that already landed.

        Both answers mean the batch is stored. A retry is recognised by its
        offsets alone: when none is ahead of the stored one, nothing changes.
        A stale epoch raises Fenced, a mix of forward and backward offsets
        raises OffsetConflict; neither writes anything. An empty blob in
        ``states`` deletes that state.

        ``register`` names models to record as seen on this partition,
        just before the script (the module's docstring says why not in
        it); ``partitions_seen`` then maps each to every partition of the
        group that registered it ("ok" only). ``ops`` are the label join's
        writes (``runtime/labels.py``), on keys of this unit made by
        ``join_key``.
        """
        check_commit(epoch, offsets)
        self.partitions_seen = {}
        args: list[Any] = [epoch, len(offsets), len(states), len(outbox)]
        for topic, offset in offsets.items():
            args += [topic, offset]
        for name, blob in states.items():
            args += [name, blob]
        for entry in outbox:
            args += [entry.id, encode_entry(entry)]
        keys = list(self._keys)
        for opcode, key, a, b in ops:
            if opcode.split(":")[0] not in OPCODES or not key.startswith(self._join_prefix):
                msg = f"not a join operation of partition {self.partition}: {opcode} {key}"
                raise ValueError(msg)
            keys.append(key)
            args += [opcode, len(keys), a, b]
        seen = self._register(register)
        status = self._answer(epoch, self._commit(keys=keys, args=args))
        if status == "ok":
            self.partitions_seen = seen
        return status

    def _register(self, models: Sequence[str]) -> dict[str, set[int]]:
        """Add this partition to each model's set; every partition each set then holds.

        One pipeline, not a transaction: each model's key may sit on another
        cluster node, and only the order of SADD before SMEMBERS on one key
        matters, which a pipeline keeps.
        """
        if not models:
            return {}
        pipe = self._client.pipeline(transaction=False)
        for model_id in models:
            key = self._model_key(model_id)
            pipe.sadd(key, self.partition)
            pipe.smembers(key)
        replies = _execute(pipe)
        return {
            model_id: {int(member) for member in members}
            for model_id, members in zip(models, replies[1::2], strict=True)
        }

    def join_key(self, model_id: str, name: str) -> str:
        """A key of the label join's buffer of ``model_id`` in this unit."""
        return f"{self._join_prefix}{model_id}:{name}"

    def join_buffer(self, model_id: str) -> JoinBuffer:
        return JoinBuffer(self._client, self.join_key(model_id, ""), self._read)

    def join_memory(self, model_id: str) -> int:
        """Bytes Redis reports for the model's join buffer in this unit (MEMORY USAGE)."""
        total = 0
        for key in self._client.scan_iter(match=_glob_escape(self.join_key(model_id, "")) + "*"):
            total += int(self._client.memory_usage(key, samples=0) or 0)
        return total

    def model_partitions(self, model_id: str) -> set[int]:
        """Every partition of the group that registered ``model_id`` in a commit."""
        members = cast(set[bytes], self._client.smembers(self._model_key(model_id)))
        return {int(member) for member in members}

    def _model_key(self, model_id: str) -> str:
        # Shared by every unit of the group: in a Redis Cluster it lies in a
        # slot of its own, so only single-key commands ever touch it.
        return f"{self._prefix}:{SCHEMA_VERSION}:{self.group}:model-partitions:{model_id}"

    def pending(self, limit: int = 1000) -> list[OutboxEntry]:
        """The oldest outbox entries, in insertion order."""
        if limit < 1:
            msg = f"limit must be at least 1, got {limit}"
            raise ValueError(msg)
        ids = cast(list[bytes], self._client.zrange(self._order, 0, limit - 1))
        if not ids:
            return []
        blobs = cast(list[bytes | None], self._client.hmget(self._outbox, ids))
        # An id deleted between the two reads is simply skipped.
        return [decode_entry(blob) for blob in blobs if blob is not None]

    def delete(self, ids: Sequence[str]) -> int:
        """Forget delivered entries; returns how many were present."""
        if not ids:
            return 0
        pipe = self._client.pipeline(transaction=True)
        pipe.hdel(self._outbox, *ids)
        pipe.zrem(self._order, *ids)
        removed, _ = _execute(pipe)
        return int(removed)

    def outbox_size(self) -> int:
        return int(self._client.zcard(self._order))

    def offsets(self) -> dict[str, int]:
        return _decode_offsets(cast(dict[bytes, bytes], self._client.hgetall(self._offsets)))

    def epoch(self) -> int:
        return int(self._client.get(self._epoch) or 0)

    def snapshot(self) -> dict[str, Any]:
        """Offsets and state blobs read together, to compare runs."""
        pipe = self._client.pipeline(transaction=True)
        pipe.hgetall(self._offsets)
        pipe.hgetall(self._state)
        offsets, states = _execute(pipe)
        return {
            "offsets": _decode_offsets(offsets),
            "states": {name.decode(): blob for name, blob in states.items()},
            "join": self._join_snapshot(),
        }

    def _join_snapshot(self) -> dict[str, Any]:
        pattern = _glob_escape(self._join_prefix) + "*"
        hashes: dict[str, dict[bytes, bytes]] = {}
        strings: dict[str, bytes] = {}
        for raw in self._client.scan_iter(match=pattern):
            key = raw.decode()
            name = key[len(self._join_prefix) :]
            if self._client.type(key) == b"hash":
                entries = cast(dict[bytes, bytes], self._client.hgetall(key))
                hashes.setdefault(name.rsplit(":s", 1)[0], {}).update(entries)
            else:
                strings[name] = cast(bytes, self._client.get(key) or b"")
        return join_snapshot(hashes, strings)

    def _answer(self, epoch: int, reply: list[Any]) -> str:
        status = reply[0].decode()
        if status == "fenced":
            raise fenced(self.group, self.partition, int(reply[1]), epoch)
        if status == "conflict":
            raise conflict(self.group, self.partition, reply[1].decode(), reply[2], reply[3])
        return str(status)


def join_snapshot(
    hashes: Mapping[str, dict[bytes, bytes]], strings: Mapping[str, bytes]
) -> dict[str, Any]:
    """A unit's label-join buffer as it matters, to compare runs.

    ``hashes`` maps each side (``<model>:pred``, shards merged) to its
    entries, ``strings`` each bucket or window string to its bytes. A
    bucket's string may also hold ids that left the buffer (joined and
    judged) at moments that depend on batch cuts, so only live ids count;
    pairs are appended in the order they joined, which batch cuts decide,
    and a window is judged sorted.
    """
    found: dict[str, Any] = dict(hashes)
    for name, blob in sorted(strings.items()):
        if ":pairs:" in name:
            width = PAIR_RECORD.itemsize
            found[name] = sorted(blob[i : i + width] for i in range(0, len(blob), width))
            continue
        live = hashes.get(name.rsplit(":", 1)[0], {})
        ids = sorted({blob[i : i + ID_BYTES] for i in range(0, len(blob), ID_BYTES)} & live.keys())
        if ids:
            found[name] = ids
    return found


def default_backoff() -> AbstractBackoff:
    """Capped exponential backoff with jitter: 0.1-0.2 s at first, then at most 5 s."""
    return EqualJitterBackoff(cap=5.0, base=0.1)


class Availability:
    """Whether Redis answers, and when to try again after it did not.

    The first failure logs one warning and the first success after it one
    line saying Redis is back, however many retries lie between. Every
    failure counts in ``driftstream_store_retries_total`` under its operation
    and puts the next try off by the backoff (redis-py's backoff classes).
    """

    def __init__(
        self,
        metrics: Metrics,
        backoff: AbstractBackoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.up = True
        self.failures = 0
        self._backoff = backoff or default_backoff()
        self._clock = clock
        self._down_since = 0.0
        self._retry_at = 0.0
        metrics.store_up.set(1)

    def failed(self, operation: str, error: Exception) -> None:
        self.metrics.store_retries.labels(operation=operation).inc()
        now = self._clock()
        if self.up:
            self.up = False
            self._down_since = now
            self.metrics.store_up.set(0)
            log.warning(
                "Redis is unavailable (%s: %s); consumption paused, retrying with backoff",
                operation,
                error,
            )
        self.failures += 1
        self._retry_at = now + self._backoff.compute(self.failures)

    def succeeded(self) -> None:
        if self.up:
            return
        log.warning(
            "Redis is back after %.1f s (%d retries); consumption resumes",
            self._clock() - self._down_since,
            self.failures,
        )
        self.up = True
        self.failures = 0
        self._retry_at = 0.0
        self._backoff.reset()
        self.metrics.store_up.set(1)

    def due(self) -> bool:
        """Whether the next try may run now."""
        return self._clock() >= self._retry_at

    def wait(self) -> float:
        """Seconds until the next try is due."""
        return max(0.0, self._retry_at - self._clock())


def stores_for_group(client: RedisClient, *, prefix: str, group: str) -> list[int]:
    """Partitions of a group that were ever claimed (they have an epoch key), sorted."""
    pattern = f"{_glob_escape(prefix)}:{SCHEMA_VERSION}:{{{_glob_escape(group)}:*}}:epoch"
    # The glob's * would also match a group named "<group>:x"; the regex keeps digits only.
    exact = re.compile(
        re.escape(f"{prefix}:{SCHEMA_VERSION}:{{{group}:") + r"(\d+)\}:epoch", re.DOTALL
    )
    partitions = set()
    for key in client.scan_iter(match=pattern, count=1000):
        text = key.decode() if isinstance(key, bytes) else key
        found = exact.fullmatch(text)
        if found:
            partitions.add(int(found.group(1)))
    return sorted(partitions)


def encode_entry(entry: OutboxEntry) -> bytes:
    """One orjson object; bytes travel as base64 so any byte round-trips."""
    return orjson.dumps(
        {
            "id": entry.id,
            "topic": entry.topic,
            "key": None if entry.key is None else _b64(entry.key),
            "value": _b64(entry.value),
            "headers": [[name, _b64(value)] for name, value in entry.headers],
            "partition": entry.partition,
        }
    )


def decode_entry(blob: bytes) -> OutboxEntry:
    data = orjson.loads(blob)
    key = data["key"]
    return OutboxEntry(
        id=data["id"],
        topic=data["topic"],
        key=None if key is None else _unb64(key),
        value=_unb64(data["value"]),
        headers=tuple((name, _unb64(value)) for name, value in data["headers"]),
        partition=data.get("partition"),  # absent in entries older releases wrote
    )


def _execute(pipe: Any) -> list[Any]:
    # A cluster pipeline runs its commands itself, not through execute_command.
    with cluster_errors():
        return cast(list[Any], pipe.execute())


def _entries(blob: bytes) -> list[bytes | None]:
    """READ_LUA's answer for one request: length-prefixed entries, 0 for none."""
    found: list[bytes | None] = []
    at = 0
    while at < len(blob):
        size = blob[at]
        found.append(blob[at + 1 : at + 1 + size] if size else None)
        at += 1 + size
    return found


def _check_unit(client: RedisClient, prefix: str, group: str, partition: int) -> None:
    if client.get_connection_kwargs().get("decode_responses"):
        msg = "the Redis client must have decode_responses=False: state blobs are raw bytes"
        raise ValueError(msg)
    for label, text in (("prefix", prefix), ("group", group)):
        # A brace would change the hash tag and split a unit across cluster slots.
        if not text or "{" in text or "}" in text:
            msg = f"{label} must be non-empty and contain no braces, got {text!r}"
            raise ValueError(msg)
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        msg = f"partition must be a non-negative int, got {partition!r}"
        raise ValueError(msg)


def check_commit(epoch: int, offsets: Mapping[str, int]) -> None:
    if epoch < 1:
        msg = f"epoch must come from claim() (at least 1), got {epoch}"
        raise ValueError(msg)
    # With no offsets every commit would look like a retry and be dropped.
    if not offsets:
        msg = "a commit needs the offsets it consumed up to"
        raise ValueError(msg)
    negative = {topic: offset for topic, offset in offsets.items() if offset < 0}
    if negative:
        msg = f"offsets must be non-negative, got {negative}"
        raise ValueError(msg)


def _decode_offsets(raw: Mapping[bytes, bytes]) -> dict[str, int]:
    return {topic.decode(): int(offset) for topic, offset in raw.items()}


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
