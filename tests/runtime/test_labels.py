"""The label join over a real Redis: joins, duplicates, expiry, windows, eviction, interleaving."""

from __future__ import annotations

import math

import numpy as np
import pytest
import redis

from driftstream.core.batch import Batch
from driftstream.core.join import JoinState, hash_order
from driftstream.core.settings import PREDICTION, SCORE
from driftstream.runtime.decode import LABEL, ModelBatch
from driftstream.runtime.labels import (
    DUPLICATE,
    DUPLICATE_PREDICTION,
    EVICTED,
    EXPIRED,
    JOINED,
    LATE,
    ORPHAN,
    JoinBatch,
    JoinSettings,
    positive_code,
)
from driftstream.runtime.store import PartitionStore

MODEL = "m"
SETTINGS = JoinSettings(
    regression=False,
    ttl_seconds=1000.0,
    lateness_seconds=0.0,
    max_pending=1_000_000,
    sample_rate=1.0,
    window_seconds=100.0,
    wait_seconds=50.0,
)


@pytest.fixture
def client(redis_url):
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


class Unit:
    """A partition unit whose join state goes through every commit, as the worker's does."""

    def __init__(self, client, prefix, settings=SETTINGS):
        self.store = PartitionStore(client, prefix=prefix, group="g", partition=0)
        self.epoch = self.store.claim().epoch
        self.settings = settings
        self.state = JoinState()
        self.offset = 0
        self.memory = None
        self.windows = []
        self.counts: dict[str, int] = {}

    def step(self, preds=None, labels=None):
        state = JoinState.from_state(self.state.to_state())
        # The worker keeps the known ids from commit to commit; rebuilding them
        # from Redis (as after a restart) on every other step must not matter.
        memory = self.memory if self.offset % 2 else None
        join = JoinBatch(self.store.join_buffer(MODEL), self.settings, state, memory)
        outcome = join.run(preds, labels)
        self.memory = outcome.memory()
        self.offset += 1
        self.store.commit(self.epoch, {"t": self.offset}, {}, [], ops=outcome.ops)
        self.state = outcome.state
        self.windows += outcome.windows
        for name, count in outcome.counts.items():
            self.counts[name] = self.counts.get(name, 0) + count
        return outcome

    def live(self):
        """The buffer as it matters: entries, and each bucket's ids still in its hash."""
        found = self.store.snapshot()["join"]
        preds = found.pop(f"{MODEL}:pred", {})
        labels = found.pop(f"{MODEL}:label", {})
        return preds, labels, found


def predictions(ids, ts, classes, scores=None, start=0):
    n = len(ids)
    columns = {PREDICTION: np.array(classes, dtype=object)}
    if scores is not None:
        columns[SCORE] = np.array(scores, dtype=float)
    return ModelBatch(
        MODEL,
        "predictions",
        "p",
        0,
        Batch(np.array(ts, dtype=float), columns),
        np.arange(start, start + n, dtype=np.int64),
        np.full(n, "v1", dtype=object),
        None,
        np.array(ids, dtype=object),
    )


def labels(ids, ts, values, start=0):
    n = len(ids)
    columns = {LABEL: np.array(values, dtype=object)}
    return ModelBatch(
        MODEL,
        "labels",
        "l",
        0,
        Batch(np.array(ts, dtype=float), columns),
        np.arange(start, start + n, dtype=np.int64),
        np.full(n, "", dtype=object),
        None,
        np.array(ids, dtype=object),
    )


def test_a_prediction_joins_its_label_and_the_window_is_judged_after_the_wait(client, unique):
    unit = Unit(client, unique)
    unit.step(predictions(["a", "b", "c"], [10, 20, 30], ["1", "0", "1"], [0.9, 0.2, 0.4]))
    unit.step(labels=labels(["a", "b"], [40, 45], ["1", "1"]))
    assert unit.counts[JOINED] == 2
    assert unit.state.pending_predictions == 1  # "c"; the pairs wait in their window's string
    assert len(unit.live()[2][f"{MODEL}:pairs:0"]) == 2
    assert unit.windows == []
    # Window [0, 100) is judged once both sides pass 150 (its end plus the wait).
    unit.step(predictions(["d"], [160], ["0"]), labels(["z"], [160], ["0"]))
    [window] = unit.windows
    assert (window.number, window.start, window.end) == (0, 0.0, 100.0)
    assert window.pairs["ts"].tolist() == [10.0, 20.0]
    assert window.values("label", False).tolist() == [positive_code("1")] * 2
    assert window.values("prediction", False).tolist() == [positive_code("1"), positive_code("0")]
    assert window.pairs["score"].tolist() == [0.9, 0.2]
    assert window.pairs["offset"].tolist() == [0, 1]
    # The judged pairs left the buffer; "c" still waits for its label.
    assert unit.state.pending_predictions == 2
    assert f"{MODEL}:pairs:0" not in unit.live()[2]
    preds, _, buckets = unit.live()
    assert len(preds) == 2
    assert sum(len(ids) for ids in buckets.values()) == 3  # "c", "d" and the label "z"


def test_a_label_before_its_prediction_waits_and_joins(client, unique):
    unit = Unit(client, unique)
    unit.step(labels=labels(["a"], [50], ["1"]))
    assert unit.state.pending_labels == 1
    unit.step(predictions(["a"], [45], ["1"]))
    assert unit.counts[JOINED] == 1
    assert unit.state.pending_labels == 0
    assert unit.live()[1] == {}


def test_the_first_label_wins_and_later_ones_count_as_duplicates(client, unique):
    unit = Unit(client, unique)
    unit.step(labels=labels(["a", "a"], [50, 51], ["1", "0"]))  # before the prediction
    unit.step(predictions(["a", "a"], [45, 45], ["1", "1"]))  # and a repeated prediction
    unit.step(labels=labels(["a"], [52], ["0"]))  # after the join
    assert unit.counts[JOINED] == 1
    assert unit.counts[DUPLICATE] == 2
    assert unit.counts[DUPLICATE_PREDICTION] == 1
    unit.step(predictions(["x"], [300], ["1"]), labels(["y"], [300], ["1"]))
    [window] = unit.windows
    assert window.values("label", False).tolist() == [positive_code("1")]


def test_unlabelled_predictions_expire_and_unmatched_labels_become_orphans(client, unique):
    unit = Unit(client, unique)
    unit.step(predictions(["a", "b"], [10, 20], ["1", "0"]), labels(["q"], [15], ["1"]))
    unit.step(labels=labels(["b"], [1500], ["0"]))  # too late: more than the TTL apart
    assert unit.counts[ORPHAN] == 1
    # Both sides pass 20 + 1000 (the TTL) + the bucket's end.
    unit.step(predictions(["c"], [1300], ["1"]), labels(["r"], [1300], ["1"]))
    assert unit.counts[EXPIRED] == 2  # "a" and "b"
    assert unit.counts[ORPHAN] == 2  # and "q", which never met a prediction
    assert unit.counts[JOINED] == 0
    preds, pending, _ = unit.live()
    assert len(preds) == unit.state.pending_predictions == 1
    assert len(pending) == unit.state.pending_labels == 1  # "r"; "b"'s label was refused


def test_a_pair_joined_after_its_window_was_judged_counts_as_late(client, unique):
    unit = Unit(client, unique)
    unit.step(predictions(["a", "b"], [10, 20], ["1", "0"]), labels(["b"], [30], ["0"]))
    unit.step(predictions(["x"], [400], ["1"]), labels(["y"], [400], ["1"]))
    assert [len(w.pairs) for w in unit.windows] == [1]
    unit.step(labels=labels(["a"], [401], ["1"]))
    assert unit.counts[JOINED] == 2
    assert unit.counts[LATE] == 1
    assert unit.state.pending_predictions == 1  # "x"; "a" left with its late label


def test_pending_predictions_are_capped_and_the_oldest_evicted(client, unique):
    settings = JoinSettings(**{**SETTINGS.__dict__, "max_pending": 5_000})
    unit = Unit(client, unique, settings)
    total = 20_000
    ts = np.arange(total, dtype=float) / 100  # 100 predictions per second of event time
    ids = [f"event-{i:08d}" for i in range(total)]
    for start in range(0, total, 4_000):
        end = start + 4_000
        unit.step(predictions(ids[start:end], ts[start:end], ["1"] * 4_000, start=start))
    assert unit.state.pending_predictions == 5_000
    assert unit.counts[EVICTED] == 15_000
    preds, _, _ = unit.live()
    assert len(preds) == 5_000
    # The newest 5,000 remain.
    survivors = predictions(ids[15_000:], ts[15_000:], ["1"] * 5_000)
    from driftstream.core.join import event_hashes

    assert set(preds) == set(event_hashes(survivors.event_ids))
    # Listpack-encoded shards and the 8-byte window index: about 60 bytes an entry.
    per_entry = unit.store.join_memory(MODEL) / 5_000
    assert per_entry < 80, f"{per_entry:.0f} bytes per pending prediction"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_joins_and_windows_do_not_depend_on_how_the_topics_interleave(client, unique, seed):
    rng = np.random.default_rng(seed)
    n = 3_000
    p_ts = np.sort(rng.uniform(0, 3_000, n))
    delay = rng.exponential(60, n)
    delay[rng.random(n) < 0.05] = -5  # a few labels come before their prediction
    keep = rng.random(n) > 0.1  # 10% never get a label
    ids = [f"e{i}" for i in range(n)]
    classes = rng.choice(["0", "1"], n).tolist()
    label_rows = np.flatnonzero(keep)
    label_rows = label_rows[np.argsort(p_ts[label_rows] + delay[label_rows], kind="stable")]
    label_ids = [ids[i] for i in label_rows]
    label_ts = (p_ts + delay)[label_rows]
    label_values = [classes[i] if rng.random() < 0.8 else "0" for i in label_rows]

    def run(prefix, cuts):
        unit = Unit(client, prefix)
        p, q = 0, 0
        for take_p, take_q in cuts:
            pb = (
                predictions(
                    ids[p : p + take_p], p_ts[p : p + take_p], classes[p : p + take_p], start=p
                )
                if take_p
                else None
            )
            lb = (
                labels(
                    label_ids[q : q + take_q],
                    label_ts[q : q + take_q],
                    label_values[q : q + take_q],
                    start=q,
                )
                if take_q
                else None
            )
            unit.step(pb, lb)
            p, q = p + take_p, q + take_q
        return unit

    def cuts(sizes_rng):
        out, p, q = [], 0, 0
        while p < n or q < len(label_ids):
            take_p = min(int(sizes_rng.integers(0, 400)), n - p)
            take_q = min(int(sizes_rng.integers(0, 400)), len(label_ids) - q)
            out.append((take_p, take_q))
            p, q = p + take_p, q + take_q
        return out

    first = run(unique + "a", cuts(np.random.default_rng(seed * 10)))
    second = run(unique + "b", cuts(np.random.default_rng(seed * 10 + 1)))
    assert first.counts == second.counts
    assert first.counts[JOINED] > 0.8 * len(label_ids)
    assert [w.number for w in first.windows] == [w.number for w in second.windows]
    for one, other in zip(first.windows, second.windows, strict=True):
        assert one.pairs.tobytes() == other.pairs.tobytes()
    assert first.state.to_state() == second.state.to_state()
    assert first.live()[:2] == second.live()[:2]
    assert not math.isinf(first.state.pred_max)


def test_known_ids_follow_additions_and_removals_like_a_set():
    from driftstream.runtime.labels import KnownIds

    rng = np.random.default_rng(4)
    pool = [bytes(rng.integers(0, 256, 8, dtype=np.uint8)) for _ in range(3_000)]
    expected: set[bytes] = set()
    known = KnownIds()
    for _ in range(40):
        added = [pool[i] for i in rng.integers(0, len(pool), 200)]
        removed = [pool[i] for i in rng.integers(0, len(pool), 150)]
        removed = [k for k in removed if k not in added]
        expected = (expected - set(removed)) | set(added)
        known = known.updated(added, removed)
        assert len(known) == len(expected)
        assert known.contains(hash_order(pool)).tolist() == [k in expected for k in pool]
    assert np.all(np.diff(known.numbers.astype(np.float64)) >= 0)
