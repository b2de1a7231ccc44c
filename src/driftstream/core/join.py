"""The label join's pure parts: event hashes, packed entries, and the join's small state.

Predictions wait for their label, and labels for their prediction, in a
buffer the runtime keeps in Redis (``runtime/labels.py``). What lives here
decides, without any I/O, what goes into that buffer and when it leaves:

- **Keys.** An entry is keyed by 8 bytes of BLAKE2b over the ``event_id``,
  not the id itself: ids are often 36-character UUIDs, and the buffer may
  hold a million entries per model. Two ids of one model collide with odds
  about n²/2⁶⁵ (3e-8 at a million pending).
- **Entries.** Fixed-width little-endian records (``PRED``, ``PAIR``,
  ``LABEL``): a pending prediction is 38 bytes, a joined one 54.
- **Time.** Entries are filed in buckets of ``window_seconds`` of event time
  (a prediction by its ``ts``, a label by its own). A bucket of predictions
  is also a performance window: it is judged once the model's watermark
  passes its end plus ``wait_seconds``, and whatever is still unlabelled
  expires once the watermark passes its end plus ``ttl_seconds``.
- **Validity.** A prediction and a label join only if their event times lie
  at most ``ttl_seconds`` apart, and a joined pair counts in its window only
  if the label's time is at most ``wait_seconds`` past the window's end.
  Both rules read timestamps only, so the joins and every window's pairs do
  not depend on how the predictions and labels topics interleave in the
  consumer's batches (as long as each topic is late by no more than
  ``lateness_seconds``).

>>> hashes = event_hashes(["a", "b", "a"])
>>> hashes[0] == hashes[2], len(hashes[0])
(True, 8)
>>> sampled(hashes, 1.0).tolist()
[True, True, True]
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftstream.core.state import STATE_VERSION, StatePath, StateReader

ID_BYTES = 8
PRED = np.dtype(
    [
        ("ts", "<f8"),
        ("prediction", "<f8"),  # the value (regression) or a class code (class_codes)
        ("score", "<f8"),  # NaN when absent
        ("offset", "<i8"),  # the prediction's source record, for the alert's source
        ("partition", "<u2"),
        ("version", "<u2"),  # code into JoinState.versions
        ("segment", "<u2"),  # code into JoinState.segments
    ]
)
LABEL = np.dtype([("ts", "<f8"), ("label", "<f8")])
# A joined prediction: its entry with the label's appended.
PAIR = np.dtype([*PRED.descr, ("label_ts", "<f8"), ("label", "<f8")])
# A pair as its window's string holds it: the event hash, then the pair.
PAIR_RECORD = np.dtype([("id", f"S{ID_BYTES}"), *PAIR.descr])

SHARD_ENTRIES = 64  # entries per shard of the buffer at max_pending (runtime/labels.py)
MAX_SHARDS = 65536  # a shard is picked by the id's first two bytes
MAX_CODES = 1000  # versions and segments told apart per model; the rest share code 0
CLASS_BYTES = 6  # a class code is exact in a double


def event_hashes(ids: Iterable[str]) -> list[bytes]:
    """8-byte keys of event ids.

    A list of bytes rather than a numpy ``S8`` array: numpy drops trailing
    zero bytes when it hands such values back.
    """
    blake = hashlib.blake2b
    ids = list(ids)
    try:
        return [blake(i.encode(), digest_size=ID_BYTES).digest() for i in ids]
    except UnicodeEncodeError:  # a lone surrogate, from a JSON escape: slower, same bytes
        return [blake(_utf8(i), digest_size=ID_BYTES).digest() for i in ids]


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def class_codes(labels: Sequence[str | None]) -> npt.NDArray[np.float64]:
    """Class labels as numbers: 6 bytes of BLAKE2b, so equal labels give equal codes.

    A hash rather than a table of labels seen: a table would number classes
    in the order predictions and labels happen to be consumed.
    """
    blake = hashlib.blake2b
    codes = [
        -1.0
        if label is None
        else float(
            int.from_bytes(
                blake(label.encode("utf-8", "surrogatepass"), digest_size=CLASS_BYTES).digest()
            )
        )
        for label in labels
    ]
    return np.array(codes, dtype=np.float64)


def hash_order(hashes: Sequence[bytes]) -> npt.NDArray[np.uint64]:
    """The hashes as integers that sort as the bytes do."""
    return np.frombuffer(b"".join(hashes), dtype=">u8").astype(np.uint64)


def sampled(hashes: Sequence[bytes], rate: float) -> npt.NDArray[np.bool_]:
    """Which events the join keeps at ``rate``: the same answer for a prediction and its label."""
    if rate >= 1.0:
        return np.ones(len(hashes), dtype=bool)
    return hash_order(hashes).astype(np.float64) / 2.0**64 < rate


def shard_count(max_pending: int) -> int:
    """Hashes to spread a buffer of ``max_pending`` entries over, about 64 each when full.

    >>> shard_count(1_000_000), shard_count(10)
    (15625, 1)
    """
    return max(1, min(MAX_SHARDS, -(-max_pending // SHARD_ENTRIES)))


def shard_order(numbers: npt.NDArray[np.uint64], shards: int) -> npt.NDArray[np.intp]:
    """An order of ids (from ``hash_order``) that groups them by shard.

    The shard is the id's first two bytes modulo ``shards``, as the commit
    script reads it; each run of one shard becomes one Redis call there.

    >>> ids = np.array([5, 1, 3, 2], dtype=np.uint64) << np.uint64(48)
    >>> shard_order(ids, 3).tolist()  # shards 2, 1, 0, 2
    [2, 1, 0, 3]
    """
    return np.argsort((numbers >> np.uint64(48)) % np.uint64(shards), kind="stable")


def bucket_of(ts: npt.NDArray[np.float64], seconds: float) -> npt.NDArray[np.int64]:
    """The bucket (window number) of each event time."""
    return np.floor(ts / seconds).astype(np.int64)


@dataclass
class Codes:
    """Strings (class labels, versions, segments) as small integer codes, capped."""

    values: list[str] = field(default_factory=list)
    cap: int = MAX_CODES

    def encode(self, items: Sequence[str | None]) -> npt.NDArray[np.uint16]:
        """Codes in order of first appearance; past the cap, code 0 (the first value)."""
        index = {value: i for i, value in enumerate(self.values)}
        out = np.zeros(len(items), dtype=np.uint16)
        for row, item in enumerate(items):
            text = "" if item is None else item
            code = index.get(text)
            if code is None:
                if len(self.values) >= self.cap:
                    continue
                code = index[text] = len(self.values)
                self.values.append(text)
            out[row] = code
        return out


@dataclass
class Buckets:
    """Live buckets of one side of the buffer: bucket -> entries evicted from its front."""

    cursors: dict[int, int] = field(default_factory=dict)

    def add(self, buckets: Iterable[int]) -> list[int]:
        """Note buckets that received entries; returns the new ones."""
        new = sorted(set(buckets) - self.cursors.keys())
        for bucket in new:
            self.cursors[bucket] = 0
        return new

    def due(self, limit: int) -> list[int]:
        """Buckets below ``limit``, oldest first."""
        return sorted(b for b in self.cursors if b < limit)

    def oldest(self) -> int | None:
        return min(self.cursors) if self.cursors else None

    def to_state(self) -> list[list[int]]:
        return [[bucket, cursor] for bucket, cursor in sorted(self.cursors.items())]

    @classmethod
    def from_rows(cls, reader: StateReader, key: str) -> Buckets:
        at = reader.child(key)
        cursors = {}
        for i, row in enumerate(reader.array(key)):
            if not isinstance(row, list) or len(row) != 2:
                at.wrong(f"[{i}]", "a [bucket, cursor] pair", row)
            bucket = StateReader({"b": row[0], "c": row[1]}, None, ("b", "c"), at / f"[{i}]")
            number = bucket.optional_integer("b")
            if number is None:
                at.wrong(f"[{i}]", "a bucket number", row)
            cursors[number] = bucket.count("c")
        return cls(cursors)


@dataclass
class JoinState:
    """One model's join bookkeeping on one partition unit (the buffer itself is in Redis)."""

    pred_max: float = -math.inf  # latest prediction event time seen
    label_max: float = -math.inf  # latest label event time seen
    judged: int | None = None  # the last window judged
    shards: int = 0  # hashes the buffer is spread over, fixed when the join starts
    pending_predictions: int = 0  # entries in the prediction hash (joined or not)
    pending_labels: int = 0
    predictions: Buckets = field(default_factory=Buckets)
    labels: Buckets = field(default_factory=Buckets)
    paired: Buckets = field(default_factory=Buckets)  # windows with pairs, not judged yet
    versions: Codes = field(default_factory=Codes)  # from predictions only: their order is fixed
    segments: Codes = field(default_factory=Codes)

    def watermark(self, lateness: float) -> float:
        """Event time both sides have passed, less the allowed lateness (-inf until both flow)."""
        return min(self.pred_max, self.label_max) - lateness

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "join",
            "version": STATE_VERSION,
            "pred_max": _time_out(self.pred_max),
            "label_max": _time_out(self.label_max),
            "judged": self.judged,
            "shards": self.shards,
            "pending_predictions": self.pending_predictions,
            "pending_labels": self.pending_labels,
            "prediction_buckets": self.predictions.to_state(),
            "label_buckets": self.labels.to_state(),
            "paired_windows": self.paired.to_state(),
            "versions": list(self.versions.values),
            "segments": list(self.segments.values),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], at: StatePath | None = None) -> JoinState:
        reader = StateReader(state, "join", _KEYS, at)
        return cls(
            pred_max=_time_in(reader, "pred_max"),
            label_max=_time_in(reader, "label_max"),
            judged=reader.optional_integer("judged"),
            shards=reader.count("shards"),
            pending_predictions=reader.count("pending_predictions"),
            pending_labels=reader.count("pending_labels"),
            predictions=Buckets.from_rows(reader, "prediction_buckets"),
            labels=Buckets.from_rows(reader, "label_buckets"),
            paired=Buckets.from_rows(reader, "paired_windows"),
            versions=Codes(_capped(reader, "versions", MAX_CODES)),
            segments=Codes(_capped(reader, "segments", MAX_CODES)),
        )


_KEYS = (
    "pred_max",
    "label_max",
    "judged",
    "shards",
    "pending_predictions",
    "pending_labels",
    "prediction_buckets",
    "label_buckets",
    "paired_windows",
    "versions",
    "segments",
)


def _time_out(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _time_in(reader: StateReader, key: str) -> float:
    value = reader.optional_number(key)
    return -math.inf if value is None else value


def _capped(reader: StateReader, key: str, cap: int) -> list[str]:
    values = reader.texts(key)
    if len(values) > cap:
        reader.fail(key, f"holds {len(values)} entries, over the cap of {cap}")
    return values
