import gc
import math
import random
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftstream.contract import MAX_LABEL_BYTES
from driftstream.core.baseline import build_profile
from driftstream.runtime import decode as decode_module
from driftstream.runtime.decode import (
    LABEL,
    REASONS,
    Decoder,
    ModelColumns,
    Record,
    parse_timestamp,
)

FRAUD = ModelColumns(("amount", "age"), ("country", "vip"), "categorical", True)
PRICE = ModelColumns(("sqft",), (), "numeric", False)
ROLES = {"preds": "predictions", "feats": "features", "labs": "labels"}
TS = 1795323600.0  # 2026-11-22T05:00:00Z


def event(**changes):
    """A valid prediction event for the fraud model; ``None`` values delete fields."""
    base = {
        "event_id": "e1",
        "model_id": "fraud",
        "model_version": "v7",
        "ts": TS,
        "features": {"amount": 12.5, "age": 40, "country": "DE", "vip": True},
        "prediction": "ok",
        "score": 0.25,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def record(value, *, topic="preds", partition=0, offset=0, key=b"fraud"):
    if isinstance(value, dict):
        value = orjson.dumps(value)
    return Record(topic, partition, offset, key, value)


def numbered(*values, **where):
    return [record(value, offset=i, **where) for i, value in enumerate(values)]


def decoder(**limits):
    return Decoder({"fraud": FRAUD, "price": PRICE}, ROLES, **limits)


def decode(records, **limits):
    return decoder(**limits).decode(records)


def only_batch(out):
    assert len(out.batches) == 1
    return out.batches[0]


def assert_accounted(records, out):
    """Every record is exactly one valid row or exactly one dead letter."""
    rows = [
        (b.topic, b.partition, int(offset)) for b in out.batches for offset in b.offsets.tolist()
    ]
    dead = [(d.record.topic, d.record.partition, d.record.offset) for d in out.dead]
    sources = sorted((r.topic, r.partition, r.offset) for r in records)
    assert sorted(rows + dead) == sources
    assert sum(out.consumed.values()) == len(rows)
    for batch in out.batches:
        assert all(len(column) == len(batch.offsets) for column in batch.batch.columns.values())
        assert len(batch.versions) == len(batch.batch) == len(batch.offsets)


# --- good events --------------------------------------------------------------


def test_prediction_events_become_exact_columns():
    out = decode(
        numbered(
            event(),
            event(
                event_id="e2",
                ts=TS + 1,
                features={"amount": None, "country": 3, "vip": False},
                score=None,
                prediction=1,
            ),
            event(event_id="e3", ts=int(TS) + 2, features={"age": 3.0, "vip": None, "extra": "x"}),
        )
    )
    batch = only_batch(out)
    columns = batch.batch.columns
    assert batch.model_id == "fraud" and batch.role == "predictions"
    assert (batch.topic, batch.partition) == ("preds", 0)
    assert batch.batch.ts.tolist() == [TS, TS + 1, TS + 2]
    assert batch.batch.ts.dtype == np.float64
    np.testing.assert_array_equal(columns["amount"], [12.5, np.nan, np.nan])
    np.testing.assert_array_equal(columns["age"], [40.0, np.nan, 3.0])
    assert columns["amount"].dtype == columns["age"].dtype == np.float64
    assert columns["country"].tolist() == ["DE", "3", None]
    assert columns["vip"].tolist() == ["true", "false", None]
    assert columns["country"].dtype == object
    assert columns["__prediction__"].tolist() == ["ok", "1", "ok"]
    np.testing.assert_array_equal(columns["__score__"], [0.25, np.nan, 0.25])
    assert set(columns) == {"amount", "age", "country", "vip", "__prediction__", "__score__"}
    assert batch.offsets.tolist() == [0, 1, 2] and batch.offsets.dtype == np.int64
    assert batch.versions.tolist() == ["v7", "v7", "v7"] and batch.versions.dtype == object
    assert batch.segments is None
    assert out.dead == [] and out.consumed == {("fraud", "preds"): 3}


def test_feature_events_have_no_prediction_or_score_columns():
    feature_event = event(prediction=None, score=None)
    out = decode(numbered(feature_event, event(prediction={"ignored": True}), topic="feats"))
    batch = only_batch(out)
    assert batch.role == "features"
    assert set(batch.batch.columns) == {"amount", "age", "country", "vip"}
    assert len(batch.batch) == 2 and out.dead == []


def test_numeric_prediction_model():
    price = {
        "event_id": "p",
        "model_id": "price",
        "model_version": "",
        "ts": 10,
        "features": {"sqft": 80},
        "prediction": 310000,
    }
    out = decode(numbered(price, {**price, "prediction": 2.5}, key=b"price"))
    columns = only_batch(out).batch.columns
    assert columns["__prediction__"].dtype == np.float64
    assert columns["__prediction__"].tolist() == [310000.0, 2.5]
    assert "__score__" not in columns  # the baseline has no score: validated, not built
    out = decode([record({**price, "prediction": "high"}, key=b"price")])
    assert [(d.reason, d.detail) for d in out.dead] == [
        (
            "wrong_type",
            "field 'prediction' is a string, expected a number "
            "(the baseline profiles the prediction as numeric)",
        )
    ]


def test_model_without_a_profiled_prediction_still_validates_it():
    columns = ModelColumns(("amount",), (), None, False)
    out = Decoder({"fraud": columns}, ROLES).decode(numbered(event(), event(prediction=[1])))
    batch = only_batch(out)
    assert set(batch.batch.columns) == {"amount"}
    assert [d.reason for d in out.dead] == ["wrong_type"]


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (TS, TS),
        (int(TS), TS),
        (0, 0.0),
        ("2026-11-22T05:00:00Z", TS),
        ("2026-11-22T07:00:00+02:00", TS),
        ("2026-11-22T01:30:00-03:30", TS),
        ("2026-11-22T05:00:00.25Z", TS + 0.25),
        ("2026-11-22T05:00:00.123456789Z", TS + 0.123456789),
        ("2026-11-22t05:00:00z", TS),
        ("2026-11-22 05:00:00Z", TS),
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC).timestamp()),
    ],
)
def test_timestamps_from_numbers_and_rfc3339(ts, expected):
    out = decode([record(event(ts=ts))])
    assert only_batch(out).batch.ts[0] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-22T05:00:00",  # no offset
        "2026-11-22",
        "2026-02-30T00:00:00Z",
        "2026-11-22T24:00:00Z",
        "2026-11-22T05:60:00Z",
        "2026-11-22T05:00:00+0200",
        "٢٠٢٦-11-22T05:00:00Z",  # non-ASCII digits
        "yesterday",
        "",
    ],
)
def test_parse_timestamp_refuses_what_is_not_rfc3339(text):
    assert parse_timestamp(text) is None


def test_records_group_by_topic_partition_and_model_in_offset_order():
    price = {
        "event_id": "p",
        "model_id": "price",
        "model_version": "a",
        "ts": 1,
        "features": {"sqft": 1},
        "prediction": 1,
    }
    records = [
        record(event(ts=5), partition=1, offset=11),
        record({**price, "ts": 6}, partition=1, offset=12, key=b"price"),
        record(event(ts=1), partition=0, offset=3),
        record(event(ts=7, prediction=None, score=None), topic="feats", partition=1, offset=4),
        record(event(ts=2), partition=1, offset=9),  # behind offset 11: rows are sorted
        record(event(ts=3), partition=0, offset=4),
        record({**price, "ts": 8}, partition=1, offset=15, key=b"price"),
    ]
    out = decode(records)
    got = {
        (b.topic, b.partition, b.model_id): (b.offsets.tolist(), b.batch.ts.tolist())
        for b in out.batches
    }
    assert got == {
        ("preds", 0, "fraud"): ([3, 4], [1.0, 3.0]),
        ("preds", 1, "fraud"): ([9, 11], [2.0, 5.0]),
        ("preds", 1, "price"): ([12, 15], [6.0, 8.0]),
        ("feats", 1, "fraud"): ([4], [7.0]),
    }
    assert out.consumed == {("fraud", "preds"): 4, ("price", "preds"): 2, ("fraud", "feats"): 1}
    assert_accounted(records, out)


def test_versions_and_segments_follow_their_rows():
    records = numbered(
        event(model_version="a"),
        event(model_version="b", segment={"region": "eu", "tier": "gold"}),
        event(model_version="c", segment=None),
        event(model_version="d", segment={}),
    )
    batch = only_batch(decode(records))
    assert batch.versions.tolist() == ["a", "b", "c", "d"]
    assert batch.segments.dtype == object
    assert batch.segments.tolist() == [None, {"region": "eu", "tier": "gold"}, None, {}]


def test_events_with_other_key_orders_and_missing_keys_give_the_same_columns():
    reordered = {
        "features": {"vip": "yes", "amount": 7, "country": "FR"},
        "score": 0.5,
        "prediction": "ok",
        "ts": TS,
        "model_version": "v7",
        "model_id": "fraud",
        "event_id": "x",
    }
    out = decode(numbered(event(), reordered, event(score=None)))
    columns = only_batch(out).batch.columns
    np.testing.assert_array_equal(columns["amount"], [12.5, 7.0, 12.5])
    np.testing.assert_array_equal(columns["age"], [40.0, np.nan, 40.0])
    assert columns["vip"].tolist() == ["true", "yes", "true"]
    np.testing.assert_array_equal(columns["__score__"], [0.25, 0.5, np.nan])


def test_chunk_boundaries_do_not_change_the_result(monkeypatch):
    rng = random.Random(3)
    records = [
        record(
            event(ts=TS + i, features={"amount": rng.random(), "country": rng.choice("ab")}),
            partition=i % 3,
            offset=i,
        )
        for i in range(400)
    ]
    records[50] = record(b"{bad", partition=2, offset=50)
    whole = decode(records)
    monkeypatch.setattr(decode_module, "CHUNK", 7)
    chunked = decode(records)
    assert [(d.record, d.reason) for d in whole.dead] == [
        (d.record, d.reason) for d in chunked.dead
    ]
    assert whole.consumed == chunked.consumed
    for a, b in zip(whole.batches, chunked.batches, strict=True):
        assert (a.topic, a.partition, a.model_id) == (b.topic, b.partition, b.model_id)
        np.testing.assert_array_equal(a.offsets, b.offsets)
        np.testing.assert_array_equal(a.batch.ts, b.batch.ts)
        for name, column in a.batch.columns.items():
            np.testing.assert_array_equal(column, b.batch.columns[name])


def test_model_columns_from_a_baseline():
    rng = np.random.default_rng(0)
    profile = build_profile(
        {
            "amount": rng.normal(size=300),
            "country": rng.choice(["DE", "FR"], size=300),
            "prediction": rng.choice(["ok", "fraud"], size=300),
            "score": rng.random(300),
        },
        model_id="fraud",
        prediction="prediction",
        score="score",
    )
    assert ModelColumns.from_baseline(profile) == ModelColumns(
        ("amount",), ("country",), "categorical", True
    )


def test_decoder_refuses_a_bad_configuration():
    with pytest.raises(ValueError, match="role 'outputs'"):
        Decoder({"fraud": FRAUD}, {"outputs": "outputs"})
    with pytest.raises(ValueError, match="unknown prediction kind"):
        Decoder({"fraud": ModelColumns((), (), "ordinal", False)}, ROLES)


@pytest.mark.parametrize("enabled", [True, False])
def test_decode_leaves_the_garbage_collector_as_it_found_it(enabled):
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        decode(numbered(event(), b"{"))
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


# --- dead letters -------------------------------------------------------------

DEAD = [
    # (id, record, limits, reason, detail)
    ("unknown topic", record(event(), topic="other"), {}, "unknown_topic",
     "topic 'other' has no role in the config"),
    ("no value", record(None), {}, "empty", "the message has no value"),
    ("empty value", record(b""), {}, "empty", "the message has no value"),
    ("oversized", record(event(event_id="x" * 400)), {"max_message_bytes": 300}, "oversized",
     "over the limit of 300"),
    ("oversized garbage", record(b"{" * 400), {"max_message_bytes": 300}, "oversized",
     "over the limit of 300"),
    ("truncated", record(orjson.dumps(event())[:-1]), {}, "malformed_json", "not valid JSON"),
    ("two values", record(orjson.dumps(event()) * 2), {}, "malformed_json", "not valid JSON"),
    ("bad utf-8", record(b'{"event_id": "\xff"}'), {}, "malformed_json", "not valid JSON"),
    ("whitespace", record(b"  "), {}, "malformed_json", "not valid JSON"),
    ("NaN", record(orjson.dumps(event()).replace(b"0.25", b"NaN")), {}, "non_finite",
     "field 'score' is not a finite number"),
    ("Infinity", record(orjson.dumps(event()).replace(b"12.5", b"Infinity")), {}, "non_finite",
     "feature 'amount' is not a finite number"),
    ("-Infinity ts", record(orjson.dumps(event(ts=1)).replace(b'"ts":1', b'"ts":-Infinity')), {},
     "non_finite", "field 'ts' is not a finite number"),
    ("1e400", record(orjson.dumps(event()).replace(b"12.5", b"1e400")), {}, "non_finite",
     "feature 'amount' is not a finite number"),
    ("400-digit int", record(orjson.dumps(event()).replace(b"12.5", b"9" * 400)), {},
     "non_finite", "feature 'amount' is not a finite number"),
    ("negative 400-digit int", record(orjson.dumps(event()).replace(b"0.25", b"-" + b"1" * 400)),
     {}, "non_finite", "field 'score' is not a finite number"),
    ("5000-digit int", record(orjson.dumps(event()).replace(b"12.5", b"7" * 5000)), {},
     "non_finite", "feature 'amount' is not a finite number"),
    ("array", record(b"[1, 2]"), {}, "not_an_object", "value is an array, expected a JSON object"),
    ("string", record(b'"fraud"'), {}, "not_an_object", "value is a string"),
    ("null", record(b"null"), {}, "not_an_object", "value is null"),
    ("no model_id", record(event(model_id=None)), {}, "missing_field",
     "field 'model_id' is missing"),
    ("null model_id", record({**event(), "model_id": None}), {}, "missing_field",
     "field 'model_id' is null"),
    ("no event_id", record(event(event_id=None)), {}, "missing_field",
     "field 'event_id' is missing"),
    ("no version", record(event(model_version=None)), {}, "missing_field",
     "field 'model_version' is missing"),
    ("no ts", record(event(ts=None)), {}, "missing_field", "field 'ts' is missing"),
    ("null ts", record({**event(), "ts": None}), {}, "missing_field", "field 'ts' is null"),
    ("no features", record(event(features=None)), {}, "missing_field",
     "field 'features' is missing"),
    ("no prediction", record(event(prediction=None)), {}, "missing_field",
     "field 'prediction' is missing"),
    ("list model_id", record(event(model_id=["fraud"])), {}, "wrong_type",
     "field 'model_id' is an array, expected a string"),
    ("int event_id", record(event(event_id=7)), {}, "wrong_type",
     "field 'event_id' is a number, expected a string"),
    ("int version", record(event(model_version=2)), {}, "wrong_type",
     "field 'model_version' is a number, expected a string"),
    ("bool ts", record(event(ts=True)), {}, "wrong_type",
     "field 'ts' is a boolean, expected a number or an RFC 3339 string"),
    ("list features", record(event(features=[1])), {}, "wrong_type",
     "field 'features' is an array, expected an object"),
    ("object prediction", record(event(prediction={"a": 1})), {}, "wrong_type",
     "field 'prediction' is an object, expected a number or a string"),
    ("bool prediction", record(event(prediction=False)), {}, "wrong_type",
     "field 'prediction' is a boolean, expected a number or a string"),
    ("string score", record(event(score="high")), {}, "wrong_type",
     "field 'score' is a string, expected a number"),
    ("string amount", record(event(features={"amount": "12"})), {}, "wrong_type",
     "feature 'amount' is a string, expected a number"),
    ("bool amount", record(event(features={"amount": True})), {}, "wrong_type",
     "feature 'amount' is a boolean, expected a number"),
    ("object age", record(event(features={"age": {"y": 1}})), {}, "wrong_type",
     "feature 'age' is an object, expected a number"),
    ("list country", record(event(features={"country": ["DE"]})), {}, "wrong_type",
     "feature 'country' is an array, expected a string, number or boolean"),
    ("string segment", record(event(segment="eu")), {}, "wrong_type",
     "field 'segment' is a string, expected an object of strings"),
    ("number in segment", record(event(segment={"tier": 1})), {}, "wrong_type",
     "segment 'tier' is a number, expected a string"),
    ("words ts", record(event(ts="yesterday")), {}, "bad_timestamp",
     "field 'ts' is 'yesterday', not an RFC 3339 time"),
    ("naive ts", record(event(ts="2026-11-22T05:00:00")), {}, "bad_timestamp",
     "not an RFC 3339 time"),
    ("millis ts", record(event(ts=1795323600000)), {}, "bad_timestamp",
     "outside 1970-01-01..9999-12-31 (milliseconds? ts is in seconds)"),
    ("negative ts", record(event(ts=-5)), {}, "bad_timestamp", "field 'ts' is -5, outside"),
    ("1960 ts", record(event(ts="1960-01-01T00:00:00Z")), {}, "bad_timestamp",
     "not an RFC 3339 time from 1970 on"),
    ("unknown model", record(event(model_id="nope"), key=b"nope"), {}, "unknown_model",
     "model 'nope' is not configured"),
    ("no key", record(event(), key=None), {}, "key_mismatch",
     "the message has no key; expected the model_id 'fraud'"),
    ("other key", record(event(), key=b"price"), {}, "key_mismatch",
     "message key 'price' does not match model_id 'fraud'"),
    ("too many features", record(event()), {"max_features": 3}, "too_many_features",
     "4 features, over the limit of 3"),
    ("long version", record(event(model_version="v" * 300)), {}, "too_long",
     "field 'model_version' is 300 bytes, over the limit of 128"),
    ("label without a labels section",
     record({"event_id": "e1", "model_id": "fraud", "ts": TS, "label": "ok"}, topic="labs"), {},
     "labels_disabled", "model 'fraud' has no labels section"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("bad", "limits", "reason", "detail"), [case[1:] for case in DEAD], ids=[c[0] for c in DEAD]
)
def test_each_bad_record_becomes_one_dead_letter(bad, limits, reason, detail):
    out = decode([bad], **limits)
    assert out.batches == [] and out.consumed == {}
    assert len(out.dead) == 1
    letter = out.dead[0]
    assert letter.record is bad
    assert letter.reason == reason
    assert detail in letter.detail


def test_labels_are_checked_against_the_task():
    models = {
        "fraud": replace(FRAUD, label_kind="categorical"),
        "price": replace(PRICE, label_kind="numeric"),
    }
    label = {"event_id": "e1", "model_id": "fraud", "ts": TS}
    records = [
        record({**label, "label": "ok"}, topic="labs", offset=0),
        record({**label, "label": 1}, topic="labs", offset=1),
        record({**label, "label": [1]}, topic="labs", offset=2),
        record({**label, "model_id": "price", "label": 3.5}, topic="labs", offset=3, key=b"price"),
        record(
            {**label, "model_id": "price", "label": "3.5"}, topic="labs", offset=4, key=b"price"
        ),
        record({"model_id": "price", "ts": TS, "label": 1.0}, topic="labs", offset=5, key=b"price"),
    ]
    out = Decoder(models, ROLES).decode(records)
    found = {b.model_id: b for b in out.batches}
    assert found["fraud"].batch.columns[LABEL].tolist() == ["ok", "1"]
    assert found["fraud"].event_ids.tolist() == ["e1", "e1"]
    assert found["price"].batch.columns[LABEL].tolist() == [3.5]
    assert [(d.record.offset, d.reason) for d in out.dead] == [
        (2, "wrong_type"),
        (4, "wrong_type"),
        (5, "missing_field"),
    ]
    assert "regression" in out.dead[1].detail


def test_every_reason_is_covered():
    assert {case[3] for case in DEAD} == set(REASONS)


def test_good_events_survive_a_batch_full_of_bad_ones():
    records, good = [], []
    for offset, (_, bad, limits, _, _) in enumerate(DEAD):
        if limits:
            continue
        records.append(Record(bad.topic, bad.partition, 2 * offset, bad.key, bad.value))
        records.append(record(event(ts=TS + offset), offset=2 * offset + 1))
        good.append(2 * offset + 1)
    out = decode(records)
    batch = only_batch(out)
    assert batch.offsets.tolist() == good
    assert batch.batch.columns["amount"].tolist() == [12.5] * len(good)
    assert out.consumed == {("fraud", "preds"): len(good)}
    assert len(out.dead) == len(records) - len(good)
    places = [(letter.record.topic, letter.record.offset) for letter in out.dead]
    assert places == sorted(places)
    assert_accounted(records, out)


def test_values_that_only_parse_when_joined_are_each_refused():
    # Together these read as valid JSON if naively joined with commas.
    parts = [b'{"model_id": "fraud", "x": [', b"1", b"]}", b"{}"]
    records = numbered(*parts)
    out = decode(records)
    assert out.batches == []
    assert [letter.reason for letter in out.dead] == [
        "malformed_json",
        "not_an_object",
        "malformed_json",
        "missing_field",
    ]


# --- fuzz ---------------------------------------------------------------------


def mutate(rng, value):
    data = bytearray(value)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(6)
        position = rng.randrange(len(data) + 1)
        if action == 0 and data:
            del data[min(position, len(data) - 1)]
        elif action == 1:
            data.insert(position, rng.randrange(256))
        elif action == 2:
            token = rng.choice(
                [b"NaN", b"1e400", b"null", b"true", b"{", b"}", b"[", b"]", b'"', b",", b":"]
            )
            data[position:position] = token
        elif action == 3:
            data = data[:position]
        elif action == 4 and data:
            data[min(position, len(data) - 1)] = rng.randrange(32, 127)
        else:
            data = bytearray(rng.randbytes(rng.randrange(40)))
    return bytes(data)


def fuzz_event(rng):
    wild = [None, True, 0, -1.5, 1e308, "", "x", [], {}, [1, "a"], {"k": None}, "2026-01-01Z"]
    changed = event(event_id=f"e{rng.randrange(10)}")
    for _ in range(rng.randrange(3)):
        field = rng.choice([*changed, "segment", "features"])
        if field == "features":
            changed["features"] = {
                rng.choice(["amount", "age", "country", "vip", "other"]): rng.choice(wild)
                for _ in range(rng.randrange(5))
            }
        else:
            changed[field] = rng.choice(wild)
    return changed


@pytest.mark.parametrize("seed", range(8))
def test_fuzz_never_raises_and_accounts_for_every_record(seed):
    rng = random.Random(seed)
    base = orjson.dumps(event())
    records = []
    for offset in range(300):
        choice = rng.random()
        if choice < 0.3:
            value = mutate(rng, base)
        elif choice < 0.55:
            value = orjson.dumps(fuzz_event(rng))
        elif choice < 0.6:
            value = rng.randbytes(rng.randrange(30))
        else:
            value = base
        topic = rng.choice(["preds", "preds", "preds", "feats", "other"])
        key = rng.choice([b"fraud", b"fraud", b"fraud", b"price", None, b"\xff"])
        records.append(Record(topic, rng.randrange(3), offset, key, value))
    out = decode(records, max_message_bytes=400, max_features=4)
    assert_accounted(records, out)
    assert {letter.reason for letter in out.dead} <= set(REASONS)
    for batch in out.batches:
        for name, column in batch.batch.columns.items():
            if column.dtype == np.float64:
                assert not np.isinf(column).any(), name
            else:
                assert all(v is None or isinstance(v, str) for v in column.tolist()), name
        assert np.isfinite(batch.batch.ts).all()


def test_fuzzed_chunks_mixing_good_and_bad_records_agree_with_one_by_one():
    rng = random.Random(99)
    base = orjson.dumps(event())
    records = [
        Record("preds", 0, offset, b"fraud", mutate(rng, base) if rng.random() < 0.2 else base)
        for offset in range(200)
    ]
    together = decode(records)
    alone = [decode([r]) for r in records]
    assert [(d.record.offset, d.reason, d.detail) for d in together.dead] == [
        (d.record.offset, d.reason, d.detail) for out in alone for d in out.dead
    ]
    expected = [int(b.offsets[0]) for out in alone for b in out.batches]
    assert only_batch(together).offsets.tolist() == expected
    assert math.isclose(
        float(np.nansum(only_batch(together).batch.columns["amount"])),
        sum(float(np.nansum(b.batch.columns["amount"])) for out in alone for b in out.batches),
    )


def test_a_record_holding_two_values_and_a_guessed_separator_is_refused():
    good = orjson.dumps(event())
    records = numbered(good, good + b',"z0123456789abcdef",' + good, good)
    out = decode(records)
    assert only_batch(out).offsets.tolist() == [0, 2]
    assert [(d.record.offset, d.reason) for d in out.dead] == [(1, "malformed_json")]


def test_nothing_in_nothing_out():
    out = decode([])
    assert (out.batches, out.dead, out.consumed) == ([], [], {})


def test_integers_that_fit_a_double_are_numbers():
    wide = orjson.dumps(event()).replace(b"12.5", str(2**70).encode())
    batch = only_batch(decode([record(wide)])).batch
    assert batch.columns["amount"].tolist() == [float(2**70)]


# --- many models: grouped by column layout -------------------------------------

REGION = replace(FRAUD, label_kind="categorical", segment_keys=("region", "tier"))
MANY = {
    # a, b and c share one layout; d has another; e differs from a only in its
    # segment keys, f only in its label kind.
    "a": REGION,
    "b": REGION,
    "c": REGION,
    "d": replace(PRICE, label_kind="numeric"),
    "e": replace(REGION, segment_keys=("region",)),
    "f": replace(REGION, label_kind=None),
}
SEGMENTS = [
    None,
    {},
    {"region": "eu"},
    {"region": "us", "tier": "gold"},
    {"tier": "silver"},
    {"other": "x" * 300},  # not a segment key: not limited
]


def many_event(rng, model, offset):
    """A random, mostly valid event for one of ``MANY``; a few are bad."""
    if model == "d":
        body = {"features": {"sqft": rng.choice([80, 95.5, None])}, "prediction": rng.random()}
    else:
        features = {"amount": rng.random(), "age": rng.choice([30, None]), "country": "DE"}
        body = {"features": features, "prediction": rng.choice(["ok", "fraud", 1])}
        if rng.random() < 0.5:
            body["score"] = rng.random()
    value = {
        "event_id": f"{model}{offset}",
        "model_id": model,
        "model_version": rng.choice(["v1", "v2", "é" * 40]),
        "ts": TS + offset,
        **body,
    }
    segment = rng.choice([*SEGMENTS, "absent"])
    if segment != "absent":
        value["segment"] = segment
    bad = rng.random()
    if bad < 0.03:
        return b"{oops"
    if bad < 0.06:
        value["model_version"] = "v" * 200
    elif bad < 0.09:
        value["segment"] = {"region": "r" * 129}
    elif bad < 0.12:
        value["segment"] = {"region": 3}
    elif bad < 0.15:
        value["features"] = {"amount": "12"} if model != "d" else {"sqft": "80"}
    elif bad < 0.18:
        del value["ts"]
    return value


def many_label(rng, model, offset):
    label = rng.choice([1.5, 2]) if model == "d" else rng.choice(["ok", True, [1]])
    return {"event_id": f"{model}{offset}", "model_id": model, "ts": TS + offset, "label": label}


def many_records(seed, count):
    """Records of every model of ``MANY``, interleaved over topics and partitions.

    Offsets rise per topic-partition, with a few swapped; a few records have
    a key that does not match, and a few name unknown models.
    """
    rng = random.Random(seed)
    models = list(MANY)
    offsets = {}
    records = []
    for _ in range(count):
        model = rng.choice(models)
        topic = rng.choice(["preds", "preds", "feats", "labs"])
        partition = rng.randrange(3)
        offset = offsets.get((topic, partition), 100)
        offsets[(topic, partition)] = offset + rng.choice([1, 1, 2])
        maker = many_label if topic == "labs" else many_event
        key = model.encode()
        if rng.random() < 0.02:
            key = b"a" if model != "a" else b"b"
        elif rng.random() < 0.02:
            model, key = "nope", b"nope"
        records.append(record(maker(rng, model, offset), topic=topic, partition=partition,
                              offset=offset, key=key))  # fmt: skip
    for i in rng.sample(range(count - 1), count // 20):
        records[i], records[i + 1] = records[i + 1], records[i]
    return records


def assert_same_batch(got, expected):
    where = (expected.topic, expected.partition, expected.model_id)
    assert (got.topic, got.partition, got.model_id, got.role) == (*where, expected.role)
    assert got.offsets.tolist() == expected.offsets.tolist(), where
    assert got.offsets.dtype == np.int64
    np.testing.assert_array_equal(got.batch.ts, expected.batch.ts)
    assert set(got.batch.columns) == set(expected.batch.columns)
    for name, column in expected.batch.columns.items():
        assert got.batch.columns[name].dtype == column.dtype, name
        if column.dtype == np.float64:
            np.testing.assert_array_equal(got.batch.columns[name], column)
        else:
            assert got.batch.columns[name].tolist() == column.tolist(), name
    assert got.versions.tolist() == expected.versions.tolist()
    for name in ("event_ids", "segments"):
        mine, theirs = getattr(got, name), getattr(expected, name)
        assert (mine is None) == (theirs is None), name
        if theirs is not None:
            assert mine.dtype == object and mine.tolist() == theirs.tolist(), name
    assert set(got.segment_columns) == set(expected.segment_columns)
    for name, column in expected.segment_columns.items():
        assert got.segment_columns[name].dtype == object
        assert got.segment_columns[name].tolist() == column.tolist(), name


def decode_alone(records, chunk, monkeypatch):
    """Each key's records decoded on their own: one model's (or the refused) at a time."""
    monkeypatch.setattr(decode_module, "CHUNK", chunk)
    decoder = Decoder(MANY, ROLES)
    by_key = {}
    for r in records:
        by_key.setdefault(r.key, []).append(r)
    outs = [decoder.decode(part) for part in by_key.values()]
    batches = {(b.topic, b.partition, b.model_id): b for out in outs for b in out.batches}
    dead = [d for out in outs for d in out.dead]
    dead.sort(key=lambda d: (d.record.topic, d.record.partition, d.record.offset))
    consumed = {}
    for out in outs:
        for counted, count in out.consumed.items():
            consumed[counted] = consumed.get(counted, 0) + count
    return batches, dead, consumed


def first_chunks(records, chunk):
    """Where each (topic, partition, model) first has an event, as (chunk, topic, ...).

    The batches come in this order: by the chunk of their first event, then by
    topic (in the order of the roles), partition and model (in config order).
    Events with a bad field count; records refused as a whole do not.
    """
    topics, models = list(ROLES), list(MANY)
    first = {}
    for position, r in enumerate(records):
        try:
            model = orjson.loads(r.value).get("model_id")
        except orjson.JSONDecodeError:
            continue
        if model in MANY and r.key == model.encode():
            rank = (position // chunk, topics.index(r.topic), r.partition, models.index(model))
            first.setdefault((r.topic, r.partition, model), rank)
    return first


@pytest.mark.parametrize("chunk", [500, 37, 1])
@pytest.mark.parametrize("seed", range(4))
def test_models_sharing_a_layout_decode_as_if_alone(seed, chunk, monkeypatch):
    records = many_records(seed, 700)
    expected, expected_dead, expected_consumed = decode_alone(records, chunk, monkeypatch)
    out = Decoder(MANY, ROLES).decode(records)
    assert len(out.batches) == len(expected)
    for batch in out.batches:
        assert_same_batch(batch, expected[(batch.topic, batch.partition, batch.model_id)])
    assert [(d.record, d.reason, d.detail) for d in out.dead] == [
        (d.record, d.reason, d.detail) for d in expected_dead
    ]
    assert out.consumed == expected_consumed
    assert_accounted(records, out)
    reasons = {d.reason for d in out.dead}
    assert {"too_long", "wrong_type", "malformed_json", "labels_disabled"} <= reasons
    assert "key_mismatch" in reasons and "unknown_model" in reasons
    first = first_chunks(records, chunk)
    ranks = [first[(b.topic, b.partition, b.model_id)] for b in out.batches]
    assert ranks == sorted(ranks)


@pytest.mark.parametrize("chunk", [500, 3])
def test_batches_keep_the_order_of_one_group_per_model(chunk, monkeypatch):
    monkeypatch.setattr(decode_module, "CHUNK", chunk)

    def of(model, offset, topic="preds", partition=0):
        value = many_event(random.Random(0), model, offset)
        value.update(model_version="v", segment=None, features={}, prediction=1.0)
        if topic == "labs":
            value = many_label(random.Random(1), model, offset)
        return record(value, topic=topic, partition=partition, offset=offset, key=model.encode())

    records = [
        of("c", 1),
        of("a", 2, partition=1),
        of("d", 3),
        of("b", 4, topic="feats"),
        of("a", 5),
        of("c", 6, partition=1),
        of("b", 7),
        of("e", 8, topic="labs"),
        of("a", 9, topic="labs"),
    ]
    out = Decoder(MANY, ROLES).decode(records)
    places = [(b.topic, b.partition, b.model_id) for b in out.batches]
    first = first_chunks(records, chunk)
    assert places == sorted(first, key=first.__getitem__)
    if chunk == 500:  # one chunk: by topic, partition, then model
        assert places == [
            ("preds", 0, "a"),
            ("preds", 0, "b"),
            ("preds", 0, "c"),
            ("preds", 0, "d"),
            ("preds", 1, "a"),
            ("preds", 1, "c"),
            ("feats", 0, "b"),
            ("labs", 0, "a"),
            ("labs", 0, "e"),
        ]
    labels = {b.model_id: b for b in out.batches if b.topic == "labs"}
    assert labels["a"].batch.columns[LABEL].tolist() == ["ok"]
    assert labels["a"].segment_columns == {} and labels["a"].segments is None


def test_labels_of_models_without_labels_name_their_own_model():
    label = {"event_id": "x", "ts": TS, "label": "ok"}
    records = [
        record({**label, "model_id": model}, topic="labs", offset=i, key=model.encode())
        for i, model in enumerate(["f", "a", "f"])
    ]
    models = {**MANY, "g": MANY["f"]}
    records.append(record({**label, "model_id": "g"}, topic="labs", offset=3, key=b"g"))
    out = Decoder(models, ROLES).decode(records)
    assert [(b.model_id, b.offsets.tolist()) for b in out.batches] == [("a", [1])]
    assert [(d.record.offset, d.reason) for d in out.dead] == [
        (0, "labels_disabled"),
        (2, "labels_disabled"),
        (3, "labels_disabled"),
    ]
    assert "model 'f' has no labels section" in out.dead[0].detail
    assert "model 'g' has no labels section" in out.dead[2].detail


def test_a_model_whose_rows_are_all_bad_has_no_batch_but_its_neighbours_do():
    records = [
        record(event(model_id="a", model_version="v" * 129), offset=0, key=b"a"),
        record(event(model_id="b"), offset=1, key=b"b"),
        record(event(model_id="a", ts="soon"), offset=2, key=b"a"),
        record(event(model_id="c"), offset=3, key=b"c"),
    ]
    out = Decoder(MANY, ROLES).decode(records)
    assert [(b.model_id, b.offsets.tolist()) for b in out.batches] == [("b", [1]), ("c", [3])]
    assert [(d.record.offset, d.reason) for d in out.dead] == [
        (0, "too_long"),
        (2, "bad_timestamp"),
    ]
    assert out.consumed == {("b", "preds"): 1, ("c", "preds"): 1}


# --- segment columns and bounded strings -------------------------------------

KEYED = {"fraud": replace(FRAUD, segment_keys=("region", "tier"))}


def keyed_decode(records):
    return Decoder(KEYED, ROLES).decode(records)


@pytest.mark.parametrize("same_layout", [True, False])
def test_segment_columns_hold_each_rows_value_of_each_key(same_layout):
    segments = [
        {"region": "eu", "tier": "gold"},
        {"region": "us", "tier": "silver"},
        {"region": "eu"},  # no tier
        None,  # null segment
        "absent",
        {},
        {"tier": "bronze", "other": "x"},
    ]
    events = []
    for i, segment in enumerate(segments):
        value = event(event_id=f"e{i}")
        if segment != "absent":
            value["segment"] = segment
        if not same_layout and i % 2:
            value = dict(reversed(value.items()))
        events.append(value)
    batch = only_batch(keyed_decode(numbered(*events)))
    assert set(batch.segment_columns) == {"region", "tier"}
    assert batch.segment_columns["region"].dtype == object
    assert batch.segment_columns["region"].tolist() == ["eu", "us", "eu", None, None, None, None]
    assert batch.segment_columns["tier"].tolist() == [
        "gold", "silver", None, None, None, None, "bronze"
    ]  # fmt: skip
    assert batch.segments.tolist()[:3] == segments[:3]


def test_segment_columns_when_no_event_has_a_segment():
    out = keyed_decode(numbered(event(), event(segment=None)))
    batch = only_batch(out)
    assert batch.segments is None
    assert {k: v.tolist() for k, v in batch.segment_columns.items()} == {
        "region": [None, None],
        "tier": [None, None],
    }
    # A model without segment keys has no segment columns.
    assert only_batch(decode(numbered(event(segment={"region": "eu"})))).segment_columns == {}


def test_segment_columns_follow_their_rows_across_chunks_and_bad_rows(monkeypatch):
    monkeypatch.setattr(decode_module, "CHUNK", 3)
    regions = ["eu", None, "us", "ap", None, "eu", "us"]
    records = []
    for i, region in enumerate(regions):
        segment = None if region is None else {"region": region}
        records.append(record(event(ts=TS + i, segment=segment), offset=10 - i))
    records.append(record(event(segment={"region": 4}), offset=20))
    records.append(record(event(segment={"region": "r" * 200}), offset=21))
    out = keyed_decode(records)
    batch = only_batch(out)
    assert batch.offsets.tolist() == [4, 5, 6, 7, 8, 9, 10]  # sorted by offset
    assert batch.segment_columns["region"].tolist() == regions[::-1]
    assert batch.segment_columns["tier"].tolist() == [None] * 7
    assert [(d.record.offset, d.reason) for d in out.dead] == [(20, "wrong_type"), (21, "too_long")]


def test_max_label_bytes_is_the_contracts():
    assert MAX_LABEL_BYTES == 128
    assert "too_long" in REASONS


@pytest.mark.parametrize(
    ("version", "size"),
    [
        ("v" * 128, None),
        ("é" * 64, None),  # 128 bytes
        ("€" * 42, None),  # 126 bytes
        ("v" * 129, 129),
        ("é" * 65, 130),
        ("€" * 43, 129),
        ("🙂" * 33, 132),
        ("v" * 5000, 5000),
    ],
)
def test_model_versions_longer_than_128_bytes_are_too_long(version, size):
    # Among short versions, so the whole-chunk checks see it as one of many.
    records = numbered(*[event(model_version=f"v{i}") for i in range(5)])
    records.insert(2, record(event(model_version=version), offset=99))
    out = decode(records)
    if size is None:
        assert out.dead == []
        assert only_batch(out).versions.tolist()[-1] == version
    else:
        assert [(d.record.offset, d.reason, d.detail) for d in out.dead] == [
            (99, "too_long", f"field 'model_version' is {size} bytes, over the limit of 128")
        ]
        assert only_batch(out).offsets.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("segment", "reason", "detail"),
    [
        ({"region": "r" * 129}, "too_long", "segment 'region' is 129 bytes, over the limit of 128"),
        ({"region": "eu", "tier": "ü" * 100}, "too_long",
         "segment 'tier' is 200 bytes, over the limit of 128"),
        ({"region": "r" * 300, "tier": "t" * 300}, "too_long",
         "segment 'region' is 300 bytes, over the limit of 128"),
        ({"region": "r" * 300, "tier": 1}, "wrong_type",
         "segment 'tier' is a number, expected a string"),
        ({"region": "r" * 128, "other": "o" * 1000}, None, None),
        ({"other": "o" * 1000}, None, None),
    ],
)  # fmt: skip
def test_segment_values_of_segment_keys_are_bounded(segment, reason, detail):
    records = numbered(event(segment={"region": "eu"}), event(segment=segment), event())
    out = keyed_decode(records)
    if reason is None:
        assert out.dead == []
        assert only_batch(out).segment_columns["region"].tolist()[1] == segment.get("region")
    else:
        assert [(d.record.offset, d.reason, d.detail) for d in out.dead] == [(1, reason, detail)]
        assert only_batch(out).offsets.tolist() == [0, 2]


def test_a_long_version_is_refused_before_a_later_field_is_checked():
    out = keyed_decode([record(event(model_version="v" * 200, ts="soon", segment={"region": 1}))])
    assert [(d.reason, d.detail) for d in out.dead] == [
        ("too_long", "field 'model_version' is 200 bytes, over the limit of 128")
    ]


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(MANY)),
            st.sampled_from(["preds", "feats", "labs"]),
            st.integers(0, 1),
            st.integers(0, 2**32 - 1),
        ),
        max_size=30,
    ),
    st.integers(1, 8),
)
def test_any_mix_of_models_decodes_as_each_model_alone(drawn, chunk):
    records = []
    for offset, (model, topic, partition, seed) in enumerate(drawn):
        rng = random.Random(seed)
        maker = many_label if topic == "labs" else many_event
        value = maker(rng, model, offset)
        records.append(record(value, topic=topic, partition=partition, offset=offset,
                              key=model.encode()))  # fmt: skip
    was = decode_module.CHUNK
    try:
        decode_module.CHUNK = chunk
        out = Decoder(MANY, ROLES).decode(records)
        alone = {m: Decoder(MANY, ROLES).decode([r for r in records if r.key == m.encode()])
                 for m in MANY}  # fmt: skip
    finally:
        decode_module.CHUNK = was
    expected = {(b.topic, b.partition, b.model_id): b for o in alone.values() for b in o.batches}
    assert len(out.batches) == len(expected)
    for batch in out.batches:
        assert_same_batch(batch, expected[(batch.topic, batch.partition, batch.model_id)])
    dead = [(d.record, d.reason, d.detail) for o in alone.values() for d in o.dead]
    dead.sort(key=lambda letter: (letter[0].topic, letter[0].partition, letter[0].offset))
    assert [(d.record, d.reason, d.detail) for d in out.dead] == dead
    assert_accounted(records, out)


# --- what dead letters and unknown feature names tell about their model ----------


def test_dead_letters_name_their_model_when_it_is_known():
    price = {**event(model_id="price", prediction=3.5), "features": {"sqft": "big"}}
    records = numbered(
        event(features={"amount": "a lot", "age": 1, "country": "DE", "vip": True}),
        event(ts="yesterday"),
        price,
        event(model_id="nobody"),
        event(),
        b"{oops",
        event(model_id=7),
    )
    records[2] = records[2]._replace(key=b"price")
    records[4] = records[4]._replace(key=b"price")
    out = decode(records)
    assert [(d.record.offset, d.reason, d.model_id) for d in out.dead] == [
        (0, "wrong_type", "fraud"),
        (1, "bad_timestamp", "fraud"),
        (2, "wrong_type", "price"),
        (3, "unknown_model", ""),
        (4, "key_mismatch", "fraud"),
        (5, "malformed_json", ""),
        (6, "wrong_type", ""),
    ]


def test_unknown_feature_names_are_counted_per_model():
    extra = {"amount": 1.0, "age": 2, "country": "DE", "vip": True, "new_a": 1, "new_b": 2}
    price = {**event(model_id="price", prediction=3.5), "features": {"sqft": 1, "new_a": 0}}
    same_layout = [record(event(features=extra), offset=i) for i in range(4)]
    out = decode(same_layout)
    assert {m: (u.count, list(u.names)) for m, u in out.unknown_features.items()} == {
        "fraud": (8, ["new_a", "new_b"])
    }
    mixed = [
        *same_layout[:2],
        record(event(), offset=2),
        record(price, offset=3, key=b"price"),
        record(event(features={"amount": "wrong", "other": 1}), offset=4),  # dead, still counted
    ]
    out = decode(mixed)
    found = {m: (u.count, sorted(u.names)) for m, u in out.unknown_features.items()}
    assert found == {"fraud": (5, ["new_a", "new_b", "other"]), "price": (1, ["new_a"])}
    assert decode(numbered(event(), event())).unknown_features == {}


def test_unknown_feature_names_kept_are_capped_and_turned_off_features_are_known():
    features = {f"f{i}": i for i in range(10)} | {"amount": 1.0}
    out = decode(numbered(event(features=features)), max_features=4)
    assert out.dead[0].reason == "too_many_features"
    unknown = out.unknown_features["fraud"]
    assert unknown.count == 10 and len(unknown.names) == 4
    quiet = Decoder({"fraud": replace(FRAUD, ignored=("f0", "f1"))}, ROLES)
    counted = quiet.decode(numbered(event(features={"amount": 1.0, "f0": 0, "f1": 1, "f2": 2})))
    assert list(counted.unknown_features["fraud"].names) == ["f2"]
