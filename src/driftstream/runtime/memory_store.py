"""A partition unit's store in process memory, for replays: no Redis, same answers.

``MemoryStore`` keeps what ``PartitionStore`` keeps in Redis (epoch,
offsets, state blobs, outbox, the label join's buffer, the models each
partition registered) in dicts, and applies a commit with the same checks
and the same effects as the commit script: a stale epoch is fenced, a retry
is "applied", an outbox id already present keeps its place, and the join's
operations (sharded hash writes, appends, sets) land as the script lands
them. A replay runs the live worker over these stores, so its state, joins
and alerts are the ones a live run on the same records commits.

Only one process sees these dicts, so there is nothing to fence against in
practice; the checks stay so that a worker behaves exactly as it does live.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from driftstream.core.join import ID_BYTES
from driftstream.runtime.store import (
    OPCODES,
    Claim,
    OutboxEntry,
    check_commit,
    conflict,
    fenced,
    join_snapshot,
    unit_key,
)


class Registry:
    """The group-wide record of which partitions registered each model (shared by units)."""

    def __init__(self) -> None:
        self.partitions: dict[str, set[int]] = {}


class MemoryJoinBuffer:
    """``JoinBuffer``'s reads over a ``MemoryStore``."""

    def __init__(self, store: MemoryStore, prefix: str) -> None:
        self._store = store
        self._prefix = prefix

    def key(self, name: str) -> str:
        return f"{self._prefix}{name}"

    def entries(
        self, requests: Sequence[tuple[str, Sequence[bytes]]], shards: int
    ) -> list[list[bytes | None]]:
        hashes = self._store.hashes
        return [[hashes.get(prefix, {}).get(i) for i in ids] for prefix, ids in requests]

    def strings(self, keys: Sequence[str]) -> list[bytes | None]:
        strings = self._store.strings
        return [strings.get(key) for key in keys]


class MemoryStore:
    """``PartitionStore``'s interface over dicts (see the module docstring)."""

    def __init__(
        self, *, prefix: str, group: str, partition: int, registry: Registry | None = None
    ) -> None:
        self.group = group
        self.partition = partition
        self.partitions_seen: dict[str, set[int]] = {}
        self.registry = registry or Registry()
        self._epoch = 0
        self._offsets: dict[str, int] = {}
        self._states: dict[str, bytes] = {}
        self._outbox: dict[str, OutboxEntry] = {}  # in insertion order
        self._join_prefix = unit_key(prefix, group, partition, "join:")
        # A sharded hash is kept whole under the prefix its operations name:
        # shards only spread Redis's work, they change no answer.
        self.hashes: dict[str, dict[bytes, bytes]] = {}
        self.strings: dict[str, bytes] = {}

    def claim(self) -> Claim:
        self._epoch += 1
        return Claim(epoch=self._epoch, offsets=dict(self._offsets))

    def load(self, names: Iterable[str]) -> dict[str, bytes]:
        return {name: self._states[name] for name in names if name in self._states}

    def commit(
        self,
        epoch: int,
        offsets: Mapping[str, int],
        states: Mapping[str, bytes],
        outbox: Sequence[OutboxEntry],
        register: Sequence[str] = (),
        ops: Sequence[tuple[str, str, bytes, bytes]] = (),
    ) -> str:
        check_commit(epoch, offsets)
        for op in ops:
            self._check(op)
        if epoch != self._epoch:
            raise fenced(self.group, self.partition, self._epoch, epoch)
        self.partitions_seen = {}
        if not self._moves_forward(offsets):
            return "applied"
        self._offsets.update(offsets)
        for name, blob in states.items():
            if blob:
                self._states[name] = blob
            else:
                self._states.pop(name, None)
        for entry in outbox:
            self._outbox.setdefault(entry.id, entry)
        for op in ops:
            self._apply(*op)
        for model_id in register:
            self.registry.partitions.setdefault(model_id, set()).add(self.partition)
            self.partitions_seen[model_id] = set(self.registry.partitions[model_id])
        return "ok"

    def _moves_forward(self, offsets: Mapping[str, int]) -> bool:
        forward, behind = False, None
        for topic, given in offsets.items():
            stored = self._offsets.get(topic, -1)
            if given > stored:
                forward = True
            elif given < stored and behind is None:
                behind = (topic, stored, given)
        if forward and behind is not None:
            raise conflict(self.group, self.partition, *behind)
        return forward

    def _check(self, op: tuple[str, str, bytes, bytes]) -> None:
        opcode, key = op[0], op[1]
        if opcode.split(":")[0] not in OPCODES or not key.startswith(self._join_prefix):
            msg = f"not a join operation of partition {self.partition}: {opcode} {key}"
            raise ValueError(msg)

    def _apply(self, opcode: str, key: str, a: bytes, b: bytes) -> None:
        name = opcode.split(":")[0]
        if name in ("hset", "hdel"):
            ids = [a[i : i + ID_BYTES] for i in range(0, len(a), ID_BYTES)]
            entries = self.hashes.setdefault(key, {})
            if name == "hset":
                width = len(b) // len(ids)
                entries.update((k, b[n * width : (n + 1) * width]) for n, k in enumerate(ids))
            else:
                for k in ids:
                    entries.pop(k, None)
            if not entries:  # Redis drops an empty hash
                del self.hashes[key]
        elif name == "append":
            self.strings[key] = self.strings.get(key, b"") + a
        elif a:
            self.strings[key] = a
        else:
            self.strings.pop(key, None)

    def join_key(self, model_id: str, name: str) -> str:
        return f"{self._join_prefix}{model_id}:{name}"

    def join_buffer(self, model_id: str) -> MemoryJoinBuffer:
        return MemoryJoinBuffer(self, self.join_key(model_id, ""))

    def model_partitions(self, model_id: str) -> set[int]:
        return set(self.registry.partitions.get(model_id, set()))

    def pending(self, limit: int = 1000) -> list[OutboxEntry]:
        if limit < 1:
            msg = f"limit must be at least 1, got {limit}"
            raise ValueError(msg)
        return [entry for _, entry in zip(range(limit), self._outbox.values(), strict=False)]

    def delete(self, ids: Sequence[str]) -> int:
        return sum(self._outbox.pop(i, None) is not None for i in ids)

    def outbox_size(self) -> int:
        return len(self._outbox)

    def offsets(self) -> dict[str, int]:
        return dict(self._offsets)

    def epoch(self) -> int:
        return self._epoch

    def snapshot(self) -> dict[str, Any]:
        """As ``PartitionStore.snapshot``: the two compare equal after the same records."""
        start = len(self._join_prefix)
        hashes: dict[str, dict[bytes, bytes]] = {}
        for key, entries in self.hashes.items():
            hashes.setdefault(key[start:].rsplit(":s", 1)[0], {}).update(entries)
        strings = {key[start:]: blob for key, blob in self.strings.items()}
        return {
            "offsets": dict(self._offsets),
            "states": dict(self._states),
            "join": join_snapshot(hashes, strings),
        }
