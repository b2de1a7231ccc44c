"""The label join of one model on one partition unit, over its buffer in Redis.

Every micro-batch, ``JoinBatch`` reads what it needs of the buffer (a few
pipelined HMGET/GET calls, before anything changes), decides in memory, and
returns the writes as ``Op`` tuples that the unit's commit applies in the
same Lua call as the offsets and the state blobs. A crash anywhere therefore
leaves the buffer exactly as the last commit left it.

Keys, in the unit's hash tag (``store.unit_key``), per model::

    join:<model>:pred:s<k>     hash    8-byte event hash -> PRED entry (waiting)
    join:<model>:label:s<k>    hash    8-byte event hash -> LABEL entry (waiting)
    join:<model>:pred:<b>      string  event hashes filed in prediction bucket b
    join:<model>:label:<b>     string  event hashes filed in label bucket b
    join:<model>:pairs:<w>     string  joined pairs of window w: event hash + PAIR

A joined prediction leaves its hash and its pair is appended to its
window's string, one APPEND per window and batch; the window is judged from
that one string. So a pair costs Redis two entry writes (stored, removed),
not four (stored, rewritten as a pair, removed, read back).

Entries are spread over ``JoinState.shards`` hashes (shard ``k`` from the
hash's first two bytes), about 64 entries each when the buffer is full:
Redis keeps hashes of up to 128 short entries as one compact listpack, about
50 bytes an entry, where one big hash costs over 100 (a hash table entry,
two allocations and a bucket pointer per entry).

The small bookkeeping (watermarks, live buckets, codes) is the ``JoinState``
in the model's ``labels:<model>`` state blob. ``core/join.py`` explains the
time rules that make the joins independent of how topics interleave.
"""

from __future__ import annotations

import struct
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, islice, repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from driftstream.core.baseline import category_label
from driftstream.core.join import (
    ID_BYTES,
    LABEL,
    PAIR,
    PAIR_RECORD,
    PRED,
    Codes,
    JoinState,
    bucket_of,
    class_codes,
    event_hashes,
    hash_order,
    sampled,
    shard_count,
    shard_order,
)
from driftstream.core.settings import PREDICTION, SCORE
from driftstream.runtime.decode import LABEL as LABEL_COLUMN
from driftstream.runtime.decode import ModelBatch
from driftstream.runtime.store import JoinReads

# Outcomes counted in driftstream_labels_total{outcome}.
JOINED = "joined"
EXPIRED = "expired"
ORPHAN = "orphan"
DUPLICATE = "duplicate"
EVICTED = "evicted"
LATE = "late"  # joined after its window was judged: counted, but in no window
DUPLICATE_PREDICTION = "duplicate_prediction"
SAMPLED_OUT = "sampled_out"
OUTCOMES = (JOINED, EXPIRED, ORPHAN, DUPLICATE, EVICTED, LATE, DUPLICATE_PREDICTION, SAMPLED_OUT)

Op = tuple[str, str, bytes, bytes]  # (opcode, key, a, b) as COMMIT_LUA applies them


@dataclass(frozen=True)
class JoinSettings:
    """What the join needs of a model's ``labels`` config."""

    regression: bool
    ttl_seconds: float
    lateness_seconds: float
    max_pending: int
    sample_rate: float
    window_seconds: float
    wait_seconds: float


@dataclass
class Window:
    """One judged window's joined pairs, sorted by prediction time then event hash."""

    number: int
    start: float
    end: float
    pairs: npt.NDArray[Any]  # PAIR records

    def values(self, column: str, regression: bool) -> np.ndarray:
        """``label`` or ``prediction``: floats, or class codes as strings for a classifier."""
        values = self.pairs[column].astype(np.float64)
        return values if regression else _class_names(values)


class KnownIds:
    """A superset of the ids stored in one side of the buffer, kept by the unit's owner.

    Only the owner writes the buffer, so it can tell, without asking Redis,
    that an id is absent: lookups of ids outside this set skip the read. It
    is built from the bucket strings when the join starts on a worker (they
    list every id stored, and some that have left), then follows each commit.
    A sorted array of the ids as integers: 8 bytes an id.
    """

    def __init__(self, numbers: npt.NDArray[np.uint64] | None = None) -> None:
        self.numbers = np.empty(0, np.uint64) if numbers is None else numbers

    @classmethod
    def from_blobs(cls, blobs: Sequence[bytes | None]) -> KnownIds:
        joined = b"".join(blob or b"" for blob in blobs)
        return cls(np.unique(np.frombuffer(joined, dtype=">u8").astype(np.uint64)))

    def contains(self, numbers: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        known = self.numbers
        if not len(known):
            return np.zeros(len(numbers), dtype=bool)
        places = np.minimum(np.searchsorted(known, numbers), len(known) - 1)
        return np.asarray(known[places] == numbers)

    def updated(self, added: Sequence[bytes], removed: Sequence[bytes]) -> KnownIds:
        """The set after a commit: O(n) per batch (a set operation would sort all n ids)."""
        numbers = self.numbers
        if removed:
            numbers = numbers[~_members(numbers, np.unique(hash_order(removed)))]
        if added:
            new = np.unique(hash_order(added))
            new = new[~KnownIds(numbers).contains(new)]
            numbers = np.insert(numbers, np.searchsorted(numbers, new), new)
        return KnownIds(numbers)

    def __len__(self) -> int:
        return len(self.numbers)


@dataclass
class Recent:
    """Entries of one side this worker wrote or read lately, as Redis holds them.

    Only the owner writes a unit's buffer, so what it wrote stays true until
    it writes again: a label usually finds its prediction here, and a window
    its pairs, without a read. At most ``limit`` entries, the oldest dropped
    first (a dict keeps insertion order).
    """

    limit: int
    entries: dict[bytes, bytes] = field(default_factory=dict)

    def updated(self, changes: Changes) -> Recent:
        entries = self.entries  # the worker's own: changed only once a commit landed
        entries.update(zip(changes.keys, changes.values, strict=True))
        deque(map(entries.pop, changes.deleted, repeat(None)), maxlen=0)
        for key in list(islice(entries, max(0, len(entries) - self.limit))):
            del entries[key]
        return self


@dataclass(frozen=True)
class Changes:
    """One side's writes of a batch: ids stored, with their entries, and ids deleted."""

    keys: list[bytes]
    values: list[bytes]
    deleted: list[bytes]

    @classmethod
    def of(cls, side: _Side) -> Changes:
        """The side's changes; the deletion of an id Redis never held is dropped.

        Such an id was stored and joined within this batch.
        """
        keys, values, deleted = [], [], []
        for key, value in side.changed.items():
            if value is None:
                deleted.append(key)
            else:
                keys.append(key)
                values.append(value)
        if deleted:
            deleted = list(compress(deleted, side.known.contains(hash_order(deleted)).tolist()))
        return cls(keys, values, deleted)


@dataclass
class Memory:
    """What a worker remembers of one model's buffer between its commits."""

    known: tuple[KnownIds, KnownIds]
    recent: tuple[Recent, Recent]
    joined: KnownIds  # exactly the ids in pair strings of windows not judged yet


@dataclass
class JoinOutcome:
    """What one micro-batch did to one model's join."""

    state: JoinState
    ops: list[Op]
    windows: list[Window]
    counts: dict[str, int]
    delays: npt.NDArray[np.float64]  # label ts - prediction ts of each pair joined
    changes: tuple[Changes, Changes]  # predictions, labels
    paired: list[bytes]  # ids of the pairs this batch filed
    judged: list[bytes]  # ids of the pairs this batch judged
    before: Memory  # what the batch started from

    def memory(self) -> Memory:
        """What to remember once this batch is committed."""
        preds, labels = self.changes
        known, recent = self.before.known, self.before.recent
        return Memory(
            (
                known[0].updated(preds.keys, preds.deleted),
                known[1].updated(labels.keys, labels.deleted),
            ),
            (recent[0].updated(preds), recent[1].updated(labels)),
            self.before.joined.updated(self.paired, self.judged),
        )


@dataclass
class _Side:
    """One hash of the buffer: values read from Redis, and this batch's changes over them."""

    key: str
    known: KnownIds = field(default_factory=KnownIds)
    recent: dict[bytes, bytes] = field(default_factory=dict)
    read: dict[bytes, bytes | None] = field(default_factory=dict)
    changed: dict[bytes, bytes | None] = field(default_factory=dict)  # None: deleted
    appended: dict[int, list[bytes]] = field(default_factory=lambda: defaultdict(list))

    def get(self, key: bytes) -> bytes | None:
        if key in self.changed:
            return self.changed[key]
        return self.read.get(key)

    def missing(self, keys: Sequence[bytes]) -> list[bytes]:
        return [k for k in dict.fromkeys(keys) if k not in self.changed and k not in self.read]


class JoinBatch:
    """Joins one micro-batch of one model's predictions and labels."""

    def __init__(
        self,
        buffer: JoinReads,
        settings: JoinSettings,
        state: JoinState,
        memory: Memory | None = None,
    ) -> None:
        self.buffer = buffer
        self.key_of = buffer.key
        self.settings = settings
        self.state = state
        if not state.shards:
            state.shards = shard_count(settings.max_pending)
        self.preds = _Side(buffer.key("pred:s"))
        self.labels = _Side(buffer.key("label:s"))
        self.paired: dict[int, list[bytes]] = defaultdict(list)  # window -> new records
        self.paired_ids: set[bytes] = set()
        self.unpaired: list[bytes] = []  # ids of pairs judged in this batch
        self.memory = memory or self._recall()
        self.preds.known, self.labels.known = self.memory.known
        self.preds.recent = self.memory.recent[0].entries
        self.labels.recent = self.memory.recent[1].entries
        self.joined = self.memory.joined
        self.counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.delays: list[float] = []
        self.rewritten: dict[str, list[bytes] | None] = {}  # bucket key -> ids (None: delete)
        self.windows: list[Window] = []

    # -- reads ----------------------------------------------------------------

    def _recall(self) -> Memory:
        """What a worker new to the join knows, read back from Redis.

        Every id the buckets list, per side (a superset of what the hashes
        hold), and exactly the ids in the pair strings of windows not judged.
        """
        known = []
        for name in ("pred", "label"):
            keys = [self.key_of(f"{name}:{b}") for b in sorted(self._buckets(name).cursors)]
            known.append(KnownIds.from_blobs(self.buffer.strings(keys)))
        keys = [self.key_of(f"pairs:{w}") for w in sorted(self.state.paired.cursors)]
        pairs = [np.frombuffer(b or b"", dtype=PAIR_RECORD) for b in self.buffer.strings(keys)]
        joined = KnownIds.from_blobs([p["id"].tobytes() for p in pairs])
        recent = (Recent(RECENT_ENTRIES), Recent(RECENT_ENTRIES))
        return Memory((known[0], known[1]), recent, joined)

    def _is_joined(self, key: bytes) -> bool:
        return key in self.paired_ids or bool(self.joined.contains(hash_order([key]))[0])

    def _fetch(self, wanted: Sequence[tuple[_Side, Sequence[bytes]]]) -> None:
        """One round trip for every entry that may be stored and is not known yet.

        Ids outside the side's known set are absent: they are not looked at
        one by one (most ids of a batch are new).
        """
        asks = []
        for side, keys in wanted:
            maybe = compress(keys, side.known.contains(hash_order(keys)).tolist())
            read, recent, ask = side.read, side.recent, []
            for key in side.missing(list(maybe)):
                if key in recent:
                    read[key] = recent[key]
                else:
                    ask.append(key)
            if ask:
                asks.append((side, ask))
        if not asks:
            return
        found = self.buffer.entries([(side.key, keys) for side, keys in asks], self.state.shards)
        for (side, keys), values in zip(asks, found, strict=True):
            side.read.update(zip(keys, values, strict=True))

    def _bucket_ids(self, side: _Side, name: str, buckets: Sequence[int]) -> dict[int, list[bytes]]:
        """Each bucket's ids: stored, then appended by this batch, after its evicted front."""
        if not buckets:
            return {}
        keys = [self.key_of(f"{name}:{bucket}") for bucket in buckets]
        cursors = self._buckets(name).cursors
        found = {}
        for bucket, key, blob in zip(buckets, keys, self.buffer.strings(keys), strict=True):
            if key in self.rewritten:
                ids = list(self.rewritten[key] or [])
            else:
                ids = _split_ids(blob or b"")[cursors.get(bucket, 0) :]
            found[bucket] = ids + side.appended.get(bucket, [])
        return found

    def _buckets(self, name: str) -> Any:
        return self.state.predictions if name == "pred" else self.state.labels

    # -- one batch ----------------------------------------------------------

    def run(
        self,
        predictions: ModelBatch | None,
        labels: ModelBatch | None,
        sources: Mapping[int, tuple[int, int]] | None = None,
    ) -> JoinOutcome:
        """Join, judge due windows, expire, evict.

        ``sources`` maps a record's offset to its source (partition, offset)
        when it came through the repartition topic.
        """
        new_preds = self._prediction_rows(predictions, sources or {}) if predictions else None
        new_labels = self._label_rows(labels) if labels else None
        wanted: list[tuple[_Side, Sequence[bytes]]] = []
        if new_preds is not None:
            keys = new_preds[0]
            wanted += [(self.preds, keys), (self.labels, keys)]
        if new_labels is not None:
            keys = new_labels[0]
            wanted += [(self.preds, keys), (self.labels, keys)]
        self._fetch(wanted)
        if new_preds is not None:
            self._add_predictions(*new_preds)
        if new_labels is not None:
            self._add_labels(*new_labels)
        self._judge()
        self._expire()
        self._evict("pred", self.preds, self.settings.max_pending)
        self._evict("label", self.labels, self.settings.max_pending)
        delays = np.array(self.delays, dtype=np.float64)
        changes = (Changes.of(self.preds), Changes.of(self.labels))
        return JoinOutcome(
            self.state,
            self._ops(changes),
            self.windows,
            self.counts,
            delays,
            changes,
            list(self.paired_ids),
            self.unpaired,
            self.memory,
        )

    def _prediction_rows(
        self, batch: ModelBatch, sources: Mapping[int, tuple[int, int]]
    ) -> tuple[list[bytes], npt.NDArray[Any]] | None:
        assert batch.event_ids is not None
        hashes = event_hashes(batch.event_ids)
        keep = self._sample(hashes)
        if not keep.any():
            return None
        rows = np.zeros(int(keep.sum()), dtype=PRED)
        rows["ts"] = batch.batch.ts[keep]
        prediction = batch.batch.columns.get(PREDICTION)
        if prediction is None:
            rows["prediction"] = np.nan
        elif self.settings.regression:
            rows["prediction"] = prediction[keep]
        else:
            rows["prediction"] = _class_codes(_class_labels(prediction[keep]))
        score = batch.batch.columns.get(SCORE)
        rows["score"] = np.nan if score is None else score[keep]
        offsets = batch.offsets[keep]
        if sources:  # read through the repartition topic: the alert names the original
            places = [sources.get(int(o), (batch.partition, int(o))) for o in offsets.tolist()]
            rows["partition"] = [p for p, _ in places]
            rows["offset"] = [o for _, o in places]
        else:
            rows["partition"] = batch.partition
            rows["offset"] = offsets
        rows["version"] = _encoded(self.state.versions, batch.versions[keep])
        segments = batch.segments
        if segments is not None:
            texts = np.array([_segment_text(s) for s in segments[keep]], dtype=object)
            rows["segment"] = _encoded(self.state.segments, texts)
        self.state.pred_max = max(self.state.pred_max, float(rows["ts"].max()))
        return _kept(hashes, keep), rows

    def _label_rows(self, batch: ModelBatch) -> tuple[list[bytes], npt.NDArray[Any]] | None:
        assert batch.event_ids is not None
        hashes = event_hashes(batch.event_ids)
        keep = self._sample(hashes)
        if not keep.any():
            return None
        rows = np.zeros(int(keep.sum()), dtype=LABEL)
        rows["ts"] = batch.batch.ts[keep]
        values = batch.batch.columns[LABEL_COLUMN][keep]
        if self.settings.regression:
            rows["label"] = values
        else:
            rows["label"] = _class_codes(values)
        self.state.label_max = max(self.state.label_max, float(rows["ts"].max()))
        return _kept(hashes, keep), rows

    def _sample(self, hashes: list[bytes]) -> npt.NDArray[np.bool_]:
        keep = sampled(hashes, self.settings.sample_rate)
        self.counts[SAMPLED_OUT] += int(len(keep) - keep.sum())
        return keep

    def _add_predictions(self, keys: list[bytes], rows: npt.NDArray[Any]) -> None:
        """Store the batch's predictions; one whose label waits joins it.

        The usual cases go in bulk: a new prediction with no label yet is
        stored, one whose label waits is joined. The rest (maybe stored
        already, or repeated in the batch) go one by one, in order.
        """
        entries = _entries(rows)
        buckets = bucket_of(rows["ts"], self.settings.window_seconds)
        self.state.predictions.add(np.unique(buckets).tolist())
        numbers = hash_order(keys)
        slow = ~_first(numbers) | self.preds.known.contains(numbers)
        slow |= self.joined.contains(numbers)
        waiting = {**self.labels.read, **self.labels.changed}
        labels = [waiting.get(k) for k in keys]
        has_label = np.array([label is not None for label in labels], dtype=bool)
        fresh = np.flatnonzero(~slow & ~has_label).tolist()
        self.preds.changed.update((keys[i], entries[i]) for i in fresh)
        self.state.pending_predictions += len(fresh)
        joinable = np.flatnonzero(~slow & has_label)
        if len(joinable):
            chosen = [keys[i] for i in joinable.tolist()]
            self.labels.changed.update(dict.fromkeys(chosen))
            self.state.pending_labels -= len(chosen)
            self.state.pending_predictions += len(chosen)
            found = np.frombuffer(b"".join([labels[i] for i in joinable.tolist()]), dtype=LABEL)  # type: ignore[misc]
            self._pair_up(chosen, rows[joinable], found, store_orphans=True)
        stored = ~slow
        for i in np.flatnonzero(slow).tolist():
            stored[i] = self._add_prediction(keys[i], entries[i], int(buckets[i]))
        appended = self.preds.appended
        for bucket in np.unique(buckets[stored]).tolist():
            appended[bucket].extend(compress(keys, (stored & (buckets == bucket)).tolist()))

    def _add_prediction(self, key: bytes, entry: bytes, bucket: int) -> bool:
        """One prediction the bulk path could not place; False for a duplicate."""
        if self.preds.get(key) is not None or self._is_joined(key):
            self.counts[DUPLICATE_PREDICTION] += 1
            return False
        self.state.pending_predictions += 1
        label = self.labels.get(key)
        if label is None:
            self.preds.changed[key] = entry
            return True
        self.labels.changed[key] = None
        self.state.pending_labels -= 1
        self._join(key, entry, label, bucket)
        return True

    def _add_labels(self, keys: list[bytes], rows: npt.NDArray[Any]) -> None:
        """Join labels whose prediction waits, keep new ones waiting (in bulk); the rest in order.

        Every label's bucket is noted, kept or not, so the live buckets do not
        depend on which labels happened to arrive before their prediction.
        """
        entries = _entries(rows)
        buckets = bucket_of(rows["ts"], self.settings.window_seconds)
        self.state.labels.add(np.unique(buckets).tolist())
        stored = {**self.preds.read, **self.preds.changed}
        found = [stored.get(k) for k in keys]
        numbers = hash_order(keys)
        first = _first(numbers)
        sizes = np.array([0 if f is None else len(f) for f in found], dtype=np.int64)
        join = (sizes == PRED.itemsize) & first
        wait = (sizes == 0) & first & ~self.labels.known.contains(numbers)
        wait &= ~self.joined.contains(numbers)
        wait &= np.array([k not in self.labels.changed for k in keys], dtype=bool)
        if join.any():
            index = np.flatnonzero(join).tolist()
            preds = np.frombuffer(b"".join([found[i] for i in index]), dtype=PRED)  # type: ignore[misc]
            self._pair_up([keys[i] for i in index], preds, rows[join], store_orphans=False)
        if wait.any():
            index = np.flatnonzero(wait).tolist()
            self.labels.changed.update((keys[i], entries[i]) for i in index)
            self.state.pending_labels += len(index)
            appended = self.labels.appended
            for bucket in np.unique(buckets[wait]).tolist():
                appended[bucket].extend(compress(keys, (wait & (buckets == bucket)).tolist()))
        for i in np.flatnonzero(~join & ~wait).tolist():
            self._add_label(keys[i], entries[i], int(buckets[i]))

    def _add_label(self, key: bytes, entry: bytes, bucket: int) -> None:
        pred = self.preds.get(key)
        if pred is not None:
            p_ts = _TS.unpack_from(pred)[0]
            self._join(key, pred, entry, _bucket(p_ts, self.settings.window_seconds))
            return
        if self._is_joined(key) or self.labels.get(key) is not None:
            self.counts[DUPLICATE] += 1
            return
        self.labels.changed[key] = entry
        self.labels.appended[bucket].append(key)
        self.state.pending_labels += 1

    def _pair_up(
        self,
        keys: list[bytes],
        preds: npt.NDArray[Any],
        labels: npt.NDArray[Any],
        *,
        store_orphans: bool,
    ) -> None:
        """``_join`` for many predictions at once, each with its label.

        ``store_orphans``: the predictions are new, so one too far in time
        from its label must be stored to wait (an old one is stored already).
        """
        delay = labels["ts"] - preds["ts"]
        near = np.abs(delay) <= self.settings.ttl_seconds
        self.counts[ORPHAN] += int(len(near) - near.sum())
        self.counts[JOINED] += int(near.sum())
        self.delays.extend(delay[near].tolist())
        changed = self.preds.changed
        if store_orphans and not near.all():
            entries = _entries(preds)
            changed.update((keys[i], entries[i]) for i in np.flatnonzero(~near).tolist())
        judged = self.state.judged
        window = bucket_of(preds["ts"], self.settings.window_seconds)
        late = near & (window <= judged) if judged is not None else np.zeros(len(near), bool)
        # A pair whose window was judged already is counted, then gone.
        self.counts[LATE] += int(late.sum())
        changed.update(dict.fromkeys(compress(keys, near.tolist())))
        self.state.pending_predictions -= int(near.sum())
        kept = near & ~late
        chosen = list(compress(keys, kept.tolist()))
        records = np.zeros(len(chosen), dtype=PAIR_RECORD)
        records["id"] = np.frombuffer(b"".join(chosen), dtype="S8") if chosen else records["id"]
        for name in _PRED_FIELDS:
            records[name] = preds[name][kept]
        records["label_ts"] = labels["ts"][kept]
        records["label"] = labels["label"][kept]
        self._paired(chosen, records, window[kept])

    def _join(self, key: bytes, pred: bytes, label: bytes, bucket: int) -> None:
        """Pair a prediction with its label; a label too far from it in time is an orphan."""
        p_ts = _TS.unpack_from(pred)[0]
        l_ts = _TS.unpack_from(label)[0]
        if abs(l_ts - p_ts) > self.settings.ttl_seconds:
            self.counts[ORPHAN] += 1
            self.preds.changed[key] = pred  # it keeps waiting, and expires in time
            return
        self.counts[JOINED] += 1
        self.delays.append(l_ts - p_ts)
        self.preds.changed[key] = None
        self.state.pending_predictions -= 1
        judged = self.state.judged
        if judged is not None and bucket <= judged:
            self.counts[LATE] += 1  # its window was judged already: counted, then gone
            return
        # LABEL is PAIR's tail: label time, label.
        record = np.frombuffer(key + pred + label, dtype=PAIR_RECORD)
        self._paired([key], record, np.array([bucket]))

    def _paired(self, keys: list[bytes], records: npt.NDArray[Any], windows: np.ndarray) -> None:
        """File joined pairs under their windows, to append to the windows' strings."""
        if not len(keys):
            return
        self.paired_ids.update(keys)
        for w in np.unique(windows).tolist():
            self.state.paired.add([w])
            self.paired[w].append(records[windows == w].tobytes())

    # -- windows, expiry, eviction -------------------------------------------

    def _watermark(self) -> float:
        return self.state.watermark(self.settings.lateness_seconds)

    def _judge(self) -> None:
        seconds = self.settings.window_seconds
        watermark = self._watermark() - self.settings.wait_seconds
        judged = self.state.judged
        windows = set(self.state.predictions.cursors) | set(self.state.paired.cursors)
        due = [
            w
            for w in sorted(windows)
            if (judged is None or w > judged) and (w + 1) * seconds <= watermark
        ]
        if not due:
            return
        live = [w for w in due if w in self.state.predictions.cursors]
        ids = self._bucket_ids(self.preds, "pred", live)
        self._fetch([(self.preds, [k for w in live for k in ids[w]])])
        stored = self.buffer.strings([self.key_of(f"pairs:{w}") for w in due])
        for window, blob in zip(due, stored, strict=True):
            self._judge_one(window, ids.get(window), blob or b"")
            self.state.judged = window

    def _judge_one(self, window: int, ids: list[bytes] | None, stored: bytes) -> None:
        seconds = self.settings.window_seconds
        end = (window + 1) * seconds
        if ids is not None:  # predictions of the window still waiting stay filed
            waiting = [k for k in dict.fromkeys(ids) if self.preds.get(k) is not None]
            self.rewritten[self.key_of(f"pred:{window}")] = waiting
            self.preds.appended.pop(window, None)
            self.state.predictions.cursors[window] = 0
        records = np.frombuffer(stored + b"".join(self.paired.pop(window, [])), dtype=PAIR_RECORD)
        self.rewritten[self.key_of(f"pairs:{window}")] = None
        self.state.paired.cursors.pop(window, None)
        self.unpaired.extend(_split_ids(records["id"].tobytes()))
        in_time = records["label_ts"] <= end + self.settings.wait_seconds
        self.counts[LATE] += int(len(records) - in_time.sum())
        records = records[in_time]
        keys = np.frombuffer(records["id"].tobytes(), ">u8")
        order = np.lexsort((keys, records["ts"]))
        pairs = np.zeros(len(records), dtype=PAIR)
        for name in PAIR.fields or ():
            pairs[name] = records[name][order]
        self.windows.append(Window(window, window * seconds, end, pairs))

    def _expire(self) -> None:
        watermark = self._watermark()
        if not np.isfinite(watermark):
            return
        limit = int(
            np.floor((watermark - self.settings.ttl_seconds) / self.settings.window_seconds)
        )
        for name, side, outcome in (("pred", self.preds, EXPIRED), ("label", self.labels, ORPHAN)):
            buckets = [
                b
                for b in self._buckets(name).due(limit)
                if (b + 1) * self.settings.window_seconds + self.settings.ttl_seconds < watermark
            ]
            self._drop(name, side, buckets, outcome)

    def _drop(self, name: str, side: _Side, buckets: list[int], outcome: str) -> None:
        """Delete whole buckets: what is still waiting in them counts under ``outcome``."""
        if not buckets:
            return
        ids = self._bucket_ids(side, name, buckets)
        self._fetch([(side, [k for b in buckets for k in ids[b]])])
        for bucket in buckets:
            for key in dict.fromkeys(ids[bucket]):
                if side.get(key) is not None:
                    self._delete(name, side, key, outcome)
            self.rewritten[self.key_of(f"{name}:{bucket}")] = None
            side.appended.pop(bucket, None)
            del self._buckets(name).cursors[bucket]

    def _delete(self, name: str, side: _Side, key: bytes, outcome: str) -> None:
        side.changed[key] = None
        self.counts[outcome] += 1
        if name == "pred":
            self.state.pending_predictions -= 1
        else:
            self.state.pending_labels -= 1

    def _evict(self, name: str, side: _Side, cap: int) -> None:
        """Drop the oldest entries, bucket by bucket, until at most ``cap`` remain."""
        count = self.state.pending_predictions if name == "pred" else self.state.pending_labels
        buckets = self._buckets(name)
        while count > cap and buckets.cursors:
            bucket = buckets.oldest()
            assert bucket is not None
            ids = self._bucket_ids(side, name, [bucket])[bucket]
            self._fetch([(side, ids)])
            taken = 0
            for key in ids:
                if count <= cap:
                    break
                taken += 1
                if side.get(key) is not None:
                    self._delete(name, side, key, EVICTED)
                    count -= 1
            left = ids[taken:]
            self.rewritten[self.key_of(f"{name}:{bucket}")] = left or None
            side.appended.pop(bucket, None)
            if left:
                buckets.cursors[bucket] = 0
            else:
                del buckets.cursors[bucket]

    # -- writes ---------------------------------------------------------------

    def _ops(self, changes: tuple[Changes, Changes]) -> list[Op]:
        ops: list[Op] = []
        shards = self.state.shards
        for side, change in zip((self.preds, self.labels), changes, strict=True):
            if change.deleted:
                ops.append((f"hdel:{shards}", side.key, *_by_shard(change.deleted, [], shards)))
            if change.keys:
                ops.append(
                    (f"hset:{shards}", side.key, *_by_shard(change.keys, change.values, shards))
                )
        for bucket_key, ids in self.rewritten.items():
            ops.append(("set", bucket_key, b"".join(ids or []), b""))
        for name, side in (("pred", self.preds), ("label", self.labels)):
            for bucket, ids in side.appended.items():
                if ids:
                    ops.append(("append", self.key_of(f"{name}:{bucket}"), b"".join(ids), b""))
        for window, parts in self.paired.items():
            ops.append(("append", self.key_of(f"pairs:{window}"), b"".join(parts), b""))
        return ops


_PRED_FIELDS = tuple(PRED.fields or ())
_TS = struct.Struct("<d")  # the event time that starts PRED and LABEL entries
# Join entries a worker remembers per model and side (about 150 bytes each),
# so labels find their predictions, and windows their pairs, without a read.
RECENT_ENTRIES = 200_000


def _by_shard(keys: list[bytes], values: list[bytes], shards: int) -> tuple[bytes, bytes]:
    """Ids and their values (one width per side; none for a delete), packed in shard order."""
    ids = b"".join(keys)
    order = shard_order(hash_order(keys), shards)
    packed_ids = np.frombuffer(ids, dtype="V8")[order].tobytes()
    if not values:
        return packed_ids, b""
    width = len(values[0])
    return packed_ids, np.frombuffer(b"".join(values), dtype=f"V{width}")[order].tobytes()


def _entries(rows: npt.NDArray[Any]) -> list[bytes]:
    """Each record's bytes, as Redis stores it."""
    return list(np.frombuffer(rows.tobytes(), dtype=f"V{rows.dtype.itemsize}").tolist())


def _members(numbers: npt.NDArray[np.uint64], wanted: npt.NDArray[np.uint64]) -> np.ndarray:
    """A mask of the entries of sorted ``numbers`` that are in sorted ``wanted``."""
    mask = np.zeros(len(numbers), dtype=bool)
    if len(numbers) and len(wanted):
        places = np.minimum(np.searchsorted(numbers, wanted), len(numbers) - 1)
        mask[places[numbers[places] == wanted]] = True
    return mask


def _first(numbers: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    """Whether each id is its first occurrence in the batch."""
    first = np.zeros(len(numbers), dtype=bool)
    first[np.unique(numbers, return_index=True)[1]] = True
    return first


def _class_labels(values: np.ndarray) -> np.ndarray:
    """Predictions as class labels; a baseline may profile 0/1 predictions as numbers."""
    if values.dtype.kind == "f":
        return np.array([category_label(v) for v in values.tolist()], dtype=object)
    return values


def _distinct(values: np.ndarray) -> tuple[list[Any], npt.NDArray[np.intp]]:
    """The distinct values in order of first appearance, and each row's index among them.

    Columns such as versions and classes hold a handful of values, so work
    per distinct value instead of per row.
    """
    index: dict[Any, int] = {}
    rows = [index.setdefault("" if v is None else v, len(index)) for v in values.tolist()]
    return list(index), np.array(rows, dtype=np.intp)


def _encoded(codes: Codes, values: np.ndarray) -> npt.NDArray[np.uint16]:
    distinct, rows = _distinct(values)
    return codes.encode(distinct)[rows]


def _class_codes(values: np.ndarray) -> npt.NDArray[np.float64]:
    distinct, rows = _distinct(values)
    return class_codes(distinct)[rows]


def _class_names(codes: npt.NDArray[np.float64]) -> np.ndarray:
    return codes.astype(np.int64).astype(str).astype(object)


def positive_code(positive: str) -> str:
    """How ``Window.values`` names the positive class."""
    return str(_class_names(class_codes([positive]))[0])


def _kept(hashes: list[bytes], keep: npt.NDArray[np.bool_]) -> list[bytes]:
    return hashes if keep.all() else [h for h, k in zip(hashes, keep.tolist(), strict=True) if k]


def _split_ids(blob: bytes) -> list[bytes]:
    return [blob[i : i + ID_BYTES] for i in range(0, len(blob), ID_BYTES)]


def _bucket(ts: float, seconds: float) -> int:
    return int(np.floor(ts / seconds))


def _segment_text(segment: Any) -> str:
    if not segment:
        return ""
    return ",".join(f"{k}={v}" for k, v in sorted(segment.items()))
