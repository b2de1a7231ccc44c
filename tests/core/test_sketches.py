import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest

from driftstream.core.baseline import category_label
from driftstream.core.sketches import (
    CategorySketch,
    NumericSketch,
    edges_digest,
    sketch_from_state,
)
from driftstream.core.state import StatePath

EDGES = np.array([-1.0, 0.0, 0.5, 2.0])


def noisy_column(rng, size):
    """Normal values with nulls, NaN and ±inf sprinkled in, plus the null mask."""
    values = rng.normal(0.3, 1.2, size)
    kind = rng.integers(0, 10, size)
    values[kind == 0] = np.nan
    values[kind == 1] = np.inf
    values[kind == 2] = -np.inf
    nulls = kind == 3
    # a null's slot may hold anything; it must be ignored
    values[nulls & (rng.random(size) < 0.5)] = 1e300
    return values, nulls


def objects(*values):
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def oracle_counts(edges, values):
    bounds = [-np.inf, *edges.tolist(), np.inf]
    return np.array(
        [np.count_nonzero((values >= lo) & (values < hi)) for lo, hi in itertools.pairwise(bounds)]
    )


def key_path(key):
    """Pattern for an error naming ``key`` or an entry of it (``'counts[1]'``)."""
    return f"'{key}[\\[.']"


def round_trip(sketch):
    text = json.dumps(sketch.to_state(), allow_nan=False)
    edges = sketch.edges if isinstance(sketch, NumericSketch) else None
    return sketch_from_state(json.loads(text), edges=edges)


# ---------------------------------------------------------------- numeric


def test_numeric_counts_match_bin_oracle():
    rng = np.random.default_rng(1)
    values, nulls = noisy_column(rng, 5000)
    sketch = NumericSketch(EDGES).update(values, nulls)
    finite = values[~nulls & np.isfinite(values)]
    assert sketch.counts.tolist() == oracle_counts(EDGES, finite).tolist()
    assert sketch.count == finite.size
    assert sketch.null_count == int(nulls.sum())
    assert sketch.nonfinite_count == int((~nulls & ~np.isfinite(values)).sum())
    assert sketch.total == values.size


def test_numeric_values_on_edges_go_right():
    sketch = NumericSketch([0.0, 1.0]).update(np.array([0.0, 1.0, -1e-12, 0.999]))
    assert sketch.counts.tolist() == [1, 2, 1]


def test_numeric_moments_match_numpy():
    rng = np.random.default_rng(2)
    values, nulls = noisy_column(rng, 3000)
    sketch = NumericSketch(EDGES)
    for chunk, mask in zip(np.array_split(values, 7), np.array_split(nulls, 7), strict=True):
        sketch.update(chunk, mask)
    finite = values[~nulls & np.isfinite(values)]
    assert sketch.mean == pytest.approx(np.mean(finite), rel=1e-12)
    assert sketch.std == pytest.approx(np.std(finite), rel=1e-12)
    assert sketch.min == finite.min()
    assert sketch.max == finite.max()


@pytest.mark.parametrize(("offset", "spread", "rel"), [(1e6, 1.0, 1e-9), (1e9, 1e-3, 1e-4)])
def test_numeric_moments_stable_with_large_offset(offset, spread, rel):
    rng = np.random.default_rng(3)
    values = offset + rng.normal(0.0, spread, 10_000)
    sketch = NumericSketch([offset])
    for chunk in np.array_split(values, 100):
        sketch.update(chunk)
    # batch means carry one ulp of the offset, which bounds the pooled accuracy;
    # a running sum of squares would lose every digit at a 1e12 offset/spread ratio
    assert sketch.std == pytest.approx(np.std(values), rel=rel)
    assert sketch.mean == pytest.approx(np.mean(values), rel=1e-15)


def test_numeric_empty_reads_nan():
    sketch = NumericSketch(EDGES).update(np.array([]))
    assert sketch.count == 0
    assert sketch.total == 0
    assert all(math.isnan(v) for v in (sketch.mean, sketch.std, sketch.min, sketch.max))
    only_bad = NumericSketch(EDGES).update(np.array([np.nan, 1.0]), np.array([False, True]))
    assert only_bad.count == 0
    assert math.isnan(only_bad.mean)
    assert (only_bad.null_count, only_bad.nonfinite_count, only_bad.total) == (1, 1, 2)


def test_numeric_update_returns_self_and_counts_is_a_copy():
    sketch = NumericSketch(EDGES)
    assert sketch.update(np.array([1.0])) is sketch
    sketch.counts[:] = 99
    assert sketch.counts.sum() == 1


def test_numeric_rejects_bad_input():
    sketch = NumericSketch(EDGES)
    with pytest.raises(ValueError, match="nulls"):
        sketch.update(np.array([1.0, 2.0]), np.array([True]))
    with pytest.raises(ValueError, match="1-d"):
        sketch.update(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="increasing"):
        NumericSketch([1.0, 0.0])


def test_numeric_edges_are_read_only():
    edges = np.array([0.0, 1.0])
    sketch = NumericSketch(edges)
    edges[0] = -5.0  # the caller's array is not shared
    assert sketch.edges[0] == 0.0
    with pytest.raises(ValueError):
        sketch.edges[0] = 3.0


def assert_same_numeric(left, right):
    assert left.counts.tolist() == right.counts.tolist()
    assert (left.null_count, left.nonfinite_count, left.total) == (
        right.null_count,
        right.nonfinite_count,
        right.total,
    )
    for name in ("min", "max", "mean", "std"):
        assert getattr(left, name) == pytest.approx(
            getattr(right, name), rel=1e-12, abs=1e-12, nan_ok=True
        )
    assert left.min == right.min or left.count == 0


def test_numeric_merge_equals_single_update_over_random_splits():
    rng = np.random.default_rng(4)
    for _ in range(200):
        size = int(rng.integers(0, 400))
        values, nulls = noisy_column(rng, size)
        cuts = np.sort(rng.integers(0, size + 1, int(rng.integers(1, 5))))
        merged = NumericSketch(EDGES)
        for chunk, mask in zip(np.split(values, cuts), np.split(nulls, cuts), strict=True):
            merged = merged.merge(NumericSketch(EDGES).update(chunk, mask))
        whole = NumericSketch(EDGES).update(values, nulls)
        assert_same_numeric(merged, whole)


def test_numeric_merge_is_new_and_leaves_inputs_alone():
    left = NumericSketch(EDGES).update(np.array([1.0, 2.0]))
    right = NumericSketch(EDGES).update(np.array([-3.0]))
    before = (left.to_state(), right.to_state())
    merged = left.merge(right)
    assert merged is not left
    assert (left.to_state(), right.to_state()) == before
    assert merged.count == 3
    assert merged.min == -3.0


def test_numeric_merge_with_empty_side():
    full = NumericSketch(EDGES).update(np.array([0.25, 3.0]))
    empty = NumericSketch(EDGES)
    assert empty.merge(full).to_state() == full.to_state()
    assert full.merge(empty).to_state() == full.to_state()


def test_numeric_merge_rejects_other_edges():
    with pytest.raises(ValueError, match="edges"):
        NumericSketch([0.0, 1.0]).merge(NumericSketch([0.0, 2.0]))


def test_numeric_copy_and_reset():
    sketch = NumericSketch(EDGES).update(np.array([0.1, 5.0]))
    clone = sketch.copy()
    clone.update(np.array([1.0]))
    assert sketch.count == 2
    assert clone.count == 3
    sketch.reset()
    assert sketch.to_state() == NumericSketch(EDGES).to_state()
    assert sketch.edges.tolist() == EDGES.tolist()


def test_numeric_save_restore_continue_equals_uninterrupted():
    rng = np.random.default_rng(5)
    batches = [noisy_column(rng, int(rng.integers(0, 300))) for _ in range(12)]
    steady = NumericSketch(EDGES)
    restarted = NumericSketch(EDGES)
    for index, (values, nulls) in enumerate(batches):
        steady.update(values, nulls)
        restarted.update(values, nulls)
        if index % 3 == 0:
            restarted = round_trip(restarted)
    assert isinstance(restarted, NumericSketch)
    assert restarted.to_state() == steady.to_state()


def test_numeric_state_is_plain_json():
    state = NumericSketch(EDGES).update(np.array([1.0, np.nan])).to_state()
    assert state["kind"] == "numeric"
    assert state["version"] == 2
    assert json.loads(json.dumps(state, allow_nan=False)) == state
    empty = NumericSketch(EDGES).to_state()
    assert empty["min"] is None
    assert round_trip(NumericSketch(EDGES)).to_state() == empty


NUMERIC_KEYS = [
    "edges_digest",
    "counts",
    "shift",
    "sum",
    "sumsq",
    "min",
    "max",
    "null_count",
    "nonfinite_count",
]


@pytest.mark.parametrize("key", ["kind", "version", *NUMERIC_KEYS])
def test_numeric_state_missing_key_is_named(key):
    state = NumericSketch(EDGES).update(np.array([1.0])).to_state()
    del state[key]
    with pytest.raises(ValueError, match=repr(key)):
        NumericSketch.from_state(state, edges=EDGES)


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("kind", "categorical"),
        ("version", 1),
        ("edges_digest", 1.0),
        ("edges_digest", "01234567"),
        ("counts", [0, 1]),
        ("counts", [0, -1, 0, 0, 0]),
        ("counts", [0, 1.5, 0, 0, 0]),
        ("sum", "x"),
        ("shift", float("nan")),
        ("sumsq", -1.0),
        ("min", None),
        ("max", True),
        ("null_count", -1),
        ("nonfinite_count", 2.0),
    ],
)
def test_numeric_state_bad_value_is_named(key, bad):
    state = NumericSketch(EDGES).update(np.array([1.0])).to_state()
    state[key] = bad
    with pytest.raises(ValueError, match=key_path(key)):
        NumericSketch.from_state(state, edges=EDGES)


def test_numeric_state_min_above_max_rejected():
    state = NumericSketch(EDGES).update(np.array([1.0, 2.0])).to_state()
    state["min"] = 3.0
    with pytest.raises(ValueError, match="'min'"):
        NumericSketch.from_state(state, edges=EDGES)


def test_numeric_state_keeps_a_digest_of_the_edges_not_the_edges():
    state = NumericSketch(EDGES).update(np.array([1.0])).to_state()
    assert "edges" not in state
    assert state["edges_digest"] == edges_digest(EDGES)
    assert len(state["edges_digest"]) == 8
    restored = NumericSketch.from_state(state, edges=EDGES.tolist())
    assert restored.edges.tolist() == EDGES.tolist()
    assert restored.to_state() == state


@pytest.mark.parametrize(
    ("edges", "key", "problem"),
    [
        ([-1.0, 0.0, 0.5], "counts", "holds 5 bins where the baseline has 4"),
        ([-1.0, 0.0, 0.5, 2.0, 3.0], "counts", "holds 5 bins where the baseline has 6"),
        ([-1.0, 0.0, 0.5, 2.5], "edges_digest", "does not match the baseline's edges"),
    ],
)
def test_numeric_state_saved_on_other_edges_is_refused(edges, key, problem):
    state = NumericSketch(EDGES).update(np.array([1.0])).to_state()
    at = StatePath("monitor", ("features", "amount", "sketch"))
    with pytest.raises(ValueError) as err:
        NumericSketch.from_state(state, at, edges=edges)
    expected = f"'features.amount.sketch.{key}' {problem}: saved with another baseline"
    assert expected in str(err.value)


def test_numeric_from_state_needs_valid_edges():
    state = NumericSketch(EDGES).to_state()
    with pytest.raises(ValueError, match="strictly increasing"):
        NumericSketch.from_state(state, edges=[1.0, 0.0])


# ------------------------------------------------------------ categorical


def test_category_counts_and_nulls():
    sketch = CategorySketch().update(np.array(["a", "b", None, "a", "c"], dtype=object))
    assert sketch.counts == {"a": 2, "b": 1, "c": 1}
    assert (sketch.count, sketch.null_count, sketch.total) == (4, 1, 5)
    assert sketch.other_count == 0
    assert sketch.distinct == 3


def test_category_labels_follow_the_baseline_rule():
    column = np.array(
        ["1", 1, 1.0, True, False, "true", 2.5, np.float64(2.5), np.int64(7), "x", None,
         math.nan, math.inf, np.str_("x")],
        dtype=object,
    )  # fmt: skip
    sketch = CategorySketch().update(column)
    labels = [category_label(value) for value in column.tolist()]
    oracle = Counter(label for label in labels if label is not None)
    assert sketch.counts == dict(oracle)
    assert sketch.counts == {"1": 3, "true": 2, "false": 1, "2.5": 2, "7": 1, "x": 2}
    assert sketch.null_count == labels.count(None) == 3


@pytest.mark.parametrize(
    ("column", "expected", "nulls"),
    [
        (np.array(["x", "y", "x"]), {"x": 2, "y": 1}, 0),
        (np.array([True, False, True]), {"true": 2, "false": 1}, 0),
        (np.array([3, 1, 3], dtype=np.int32), {"3": 2, "1": 1}, 0),
        (np.array([3.0, 0.5, np.nan, np.nan, -np.inf]), {"3": 1, "0.5": 1}, 3),
        (np.array([], dtype=object), {}, 0),
        (objects(["a"], "a", None), {"['a']": 1, "a": 1}, 1),
    ],
)
def test_category_accepts_typed_and_odd_columns(column, expected, nulls):
    sketch = CategorySketch().update(column)
    assert sketch.counts == expected
    assert sketch.null_count == nulls


@pytest.mark.parametrize(
    "column",
    [
        objects(1, True, 1.0, False, 0, "1"),
        objects(True, 1, None, 0.0, False, np.True_, np.int64(1)),
        objects("a", None, 1, "a", True),
    ],
)
def test_category_keeps_equal_values_of_other_types_apart(column):
    # True == 1 == 1.0 as dict keys, but True reads "true" and 1 reads "1".
    sketch = CategorySketch().update(column)
    labels = [category_label(value) for value in column.tolist()]
    oracle = Counter(label for label in labels if label is not None)
    assert list(sketch.counts.items()) == list(oracle.items())
    assert sketch.null_count == labels.count(None)


@pytest.mark.parametrize("size", [1, 200, 20_000])
def test_category_str_columns_match_a_value_by_value_oracle(size):
    rng = np.random.default_rng(size)
    names = np.array([f"label_{i}" for i in range(12)], dtype=object)
    column = names[rng.integers(0, 12, size)]
    column[rng.random(size) < 0.1] = None
    sketch = CategorySketch(cap=6, categories=["label_3"]).update(column)
    counts, other, nulls = {"label_3": 0}, 0, 0
    for value in column.tolist():
        if value is None:
            nulls += 1
        elif value in counts:
            counts[value] += 1
        elif len(counts) < 6:
            counts[value] = 1
        else:
            other += 1
    assert list(sketch.counts.items()) == list(counts.items())
    assert (sketch.other_count, sketch.null_count) == (other, nulls)


def test_category_rejects_2d_values():
    with pytest.raises(ValueError, match="1-d"):
        CategorySketch().update(np.array([["a"]], dtype=object))


def test_category_cap_admits_names_in_stream_order():
    sketch = CategorySketch(cap=2).update(np.array(["b", "a", "c", "c", "d"], dtype=object))
    assert sketch.counts == {"b": 1, "a": 1}
    assert sketch.other_count == 3
    # tracked names keep counting; a later newcomer cannot take a slot
    sketch.update(np.array(["b", "a", "e"], dtype=object))
    assert sketch.counts == {"b": 2, "a": 2}
    assert sketch.other_count == 4


@pytest.mark.parametrize("dtype", [object, str, np.int64])
def test_category_cap_does_not_depend_on_how_the_stream_is_batched(dtype):
    rng = np.random.default_rng(10)
    column = rng.integers(0, 60, 3000).astype(dtype)
    whole = CategorySketch(cap=12, categories=["1"]).update(column)
    split = CategorySketch(cap=12, categories=["1"])
    for part in np.split(column, np.sort(rng.choice(3000, 30, replace=False))):
        split.update(part)
    assert whole.other_count > 0
    assert list(split.counts.items()) == list(whole.counts.items())
    assert split.to_state() == whole.to_state()


def test_category_cap_bounds_memory():
    rng = np.random.default_rng(6)
    sketch = CategorySketch(cap=10)
    for _ in range(20):
        sketch.update(rng.integers(0, 10_000, 500).astype(str))
    assert sketch.distinct == 10
    assert len(sketch.counts) == 10
    assert sketch.count == 20 * 500
    assert sum(sketch.counts.values()) + sketch.other_count == sketch.count


def test_category_cap_is_deterministic():
    rng = np.random.default_rng(7)
    batches = [rng.integers(0, 40, 100).astype(str) for _ in range(10)]
    states = []
    for _ in range(2):
        sketch = CategorySketch(cap=8)
        for batch in batches:
            sketch.update(batch.astype(object))
        states.append(sketch.to_state())
    assert states[0] == states[1]


def test_category_seeds_always_have_a_slot():
    sketch = CategorySketch(cap=2, categories=["z"])
    assert sketch.counts == {"z": 0}
    sketch.update(np.array(["a", "a", "b", "c", "z"], dtype=object))
    assert sketch.counts == {"z": 1, "a": 2}
    assert sketch.other_count == 2
    sketch.reset()
    assert sketch.counts == {"z": 0}
    assert sketch.total == 0


def test_category_rejects_bad_config():
    with pytest.raises(ValueError, match="cap"):
        CategorySketch(cap=0)
    with pytest.raises(ValueError, match="categories"):
        CategorySketch(cap=1, categories=["a", "b"])
    with pytest.raises(ValueError, match="categories"):
        CategorySketch(categories=[True])
    assert CategorySketch(cap=2, categories=["a", "a"]).categories == ("a",)


def test_category_vector_alignment():
    sketch = CategorySketch(cap=3).update(
        np.array(["a", "b", "b", "c", "c", "c", "d", None], dtype=object)
    )
    assert sketch.counts == {"c": 3, "b": 2, "a": 1}
    vector = sketch.vector(["b", "x", "c"])
    assert vector.dtype == np.int64
    # trailing element: tracked "a" (1) plus other "d" (1)
    assert vector.tolist() == [2, 0, 3, 2]
    assert sketch.vector([]).tolist() == [7]
    assert sketch.vector(["a", "b", "c"]).sum() == sketch.count


def test_category_vector_rejects_duplicates():
    with pytest.raises(ValueError, match="distinct"):
        CategorySketch().vector(["a", "a"])


def test_category_merge_equals_single_update_under_cap():
    rng = np.random.default_rng(8)
    for _ in range(200):
        size = int(rng.integers(0, 300))
        column = rng.integers(0, 12, size).astype(str).astype(object)
        column[rng.random(size) < 0.1] = None
        cuts = np.sort(rng.integers(0, size + 1, int(rng.integers(1, 5))))
        merged = CategorySketch(cap=20)
        for chunk in np.split(column, cuts):
            merged = merged.merge(CategorySketch(cap=20).update(chunk))
        whole = CategorySketch(cap=20).update(column)
        assert merged.counts == whole.counts
        assert (merged.null_count, merged.other_count) == (whole.null_count, 0)


def test_category_merge_respects_cap_deterministically():
    left = CategorySketch(cap=3, categories=["s"]).update(np.array(["a", "a", "s"], dtype=object))
    right = CategorySketch(cap=3, categories=["s"]).update(
        np.array(["c", "b", "b", "c", "d", "d", "d", "a", None], dtype=object)
    )
    merged = left.merge(right)
    # right alone tracked s, then c and b as they came, and pooled d (3) and a (1) as other
    assert right.counts == {"s": 0, "c": 2, "b": 2}
    assert right.other_count == 4
    # left's tracked set first, then right's newcomers by count, then name: b takes the slot
    assert merged.counts == {"s": 1, "a": 2, "b": 2}
    assert merged.other_count == 4 + 2
    assert merged.null_count == 1
    assert merged.count == left.count + right.count
    assert left.merge(right).to_state() == merged.to_state()
    assert left.counts == {"s": 1, "a": 2}


def test_category_merge_rejects_other_config():
    with pytest.raises(ValueError, match="'cap'"):
        CategorySketch(cap=2).merge(CategorySketch(cap=3))
    with pytest.raises(ValueError, match="'categories'"):
        CategorySketch(cap=2, categories=["a"]).merge(CategorySketch(cap=2))


def test_category_copy_is_independent():
    sketch = CategorySketch(cap=4).update(np.array(["a"], dtype=object))
    clone = sketch.copy()
    clone.update(np.array(["a", "b"], dtype=object))
    assert sketch.counts == {"a": 1}
    assert clone.counts == {"a": 2, "b": 1}


def test_category_save_restore_continue_equals_uninterrupted():
    rng = np.random.default_rng(9)
    batches = []
    for _ in range(12):
        column = rng.integers(0, 30, int(rng.integers(0, 200))).astype(str).astype(object)
        column[rng.random(column.size) < 0.1] = None
        batches.append(column)
    steady = CategorySketch(cap=10, categories=["0", "1"])
    restarted = CategorySketch(cap=10, categories=["0", "1"])
    for index, batch in enumerate(batches):
        steady.update(batch)
        restarted.update(batch)
        if index % 4 == 1:
            restarted = round_trip(restarted)
    assert isinstance(restarted, CategorySketch)
    assert restarted.to_state() == steady.to_state()
    assert restarted.other_count > 0


CATEGORY_KEYS = ["cap", "categories", "counts", "other_count", "null_count"]


@pytest.mark.parametrize("key", ["kind", "version", *CATEGORY_KEYS])
def test_category_state_missing_key_is_named(key):
    state = CategorySketch(cap=3).update(np.array(["a"], dtype=object)).to_state()
    del state[key]
    with pytest.raises(ValueError, match=repr(key)):
        CategorySketch.from_state(state)


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("kind", "numeric"),
        ("version", "1"),
        ("cap", 0),
        ("cap", True),
        ("categories", "ab"),
        ("categories", ["a", "b", "c", "d"]),
        ("counts", {"a": -1}),
        ("counts", {"a": 1, "b": 1, "c": 1, "d": 1}),
        ("counts", ["a"]),
        ("other_count", None),
        ("null_count", 0.5),
    ],
)
def test_category_state_bad_value_is_named(key, bad):
    state = CategorySketch(cap=3).update(np.array(["a"], dtype=object)).to_state()
    state[key] = bad
    with pytest.raises(ValueError, match=key_path(key)):
        CategorySketch.from_state(state)


def test_category_state_must_hold_seeds():
    state = CategorySketch(cap=3, categories=["s"]).to_state()
    state["counts"] = {}
    with pytest.raises(ValueError, match="'counts'"):
        CategorySketch.from_state(state)


def test_sketch_from_state_dispatches_and_rejects_unknown_kind():
    numeric = sketch_from_state(NumericSketch(EDGES).to_state(), edges=EDGES)
    assert isinstance(numeric, NumericSketch)
    assert isinstance(sketch_from_state(CategorySketch().to_state()), CategorySketch)
    assert isinstance(sketch_from_state(CategorySketch().to_state(), edges=EDGES), CategorySketch)
    with pytest.raises(ValueError, match="'kind' is 'numeric', but no baseline edges"):
        sketch_from_state(NumericSketch(EDGES).to_state())
    with pytest.raises(ValueError, match="'kind'"):
        sketch_from_state({"kind": "quantile", "version": 1})
    with pytest.raises(ValueError, match="'kind'"):
        sketch_from_state({})


@pytest.mark.parametrize("seed", range(20))
def test_numeric_moments_are_bit_identical_however_the_stream_is_batched(seed):
    # A restarted worker sees other batch boundaries; its state must not differ.
    rng = np.random.default_rng(seed)
    values = rng.lognormal(3.0, 1.0, 3000) + 1e6 * (seed % 2)
    whole = NumericSketch(EDGES).update(values).to_state()
    cuts = np.sort(rng.choice(np.arange(1, 3000), size=rng.integers(1, 40), replace=False))
    split = NumericSketch(EDGES)
    for part in np.split(values, cuts):
        split.update(part)
    assert split.to_state() == whole
    assert split.mean == pytest.approx(values.mean(), rel=1e-12)
    assert split.std == pytest.approx(values.std(), rel=1e-9)
