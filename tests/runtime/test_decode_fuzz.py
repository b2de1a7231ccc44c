"""Fuzzing the decoder: whatever arrives, every record is a row or a dead letter, once."""

import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftstream.contract import REASONS
from driftstream.runtime.decode import Decoder, ModelColumns, Record

COLUMNS = {"fraud": ModelColumns(("amount", "age"), ("country",), "categorical", True)}
ROLES = {"preds": "predictions", "feats": "features"}
GOOD = {
    "event_id": "e1",
    "model_id": "fraud",
    "model_version": "v1",
    "ts": 1795323600.0,
    "features": {"amount": 12.5, "age": 40, "country": "DE"},
    "prediction": "ok",
    "score": 0.25,
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
timestamps = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(),
    st.text(max_size=30),
    st.sampled_from(["2026-05-01T12:00:00Z", "2026-05-01T12:00Z", "20260501T120000Z", "x"]),
)
features = st.dictionaries(
    st.sampled_from(["amount", "age", "country", "other"]) | st.text(max_size=5),
    scalars,
    max_size=6,
) | st.dictionaries(st.text(min_size=1, max_size=8), st.just(1), min_size=250, max_size=300)


@st.composite
def mutated_events(draw):
    event = dict(GOOD)
    for field in draw(st.sets(st.sampled_from(sorted(GOOD)), max_size=3)):
        event[field] = draw(json_values)
    if draw(st.booleans()):
        event["ts"] = draw(timestamps)
    if draw(st.booleans()):
        event["features"] = draw(features)
    # The standard library writes integers of any size, as a producer might.
    return json.dumps(event).encode()


raw_tricks = st.sampled_from(
    [
        b"",
        b"{",
        b"\xff\xfe",
        b"[" * 2000 + b"]" * 2000,
        b'{"a": NaN}',
        b'{"event_id": "1", "event_id": "2"}',
        orjson.dumps(GOOD).replace(b"12.5", b"1" * 400),
        orjson.dumps(GOOD).replace(b"12.5", b"Infinity"),
        orjson.dumps(GOOD)[:-3],
        b"null",
        b'"text"',
    ]
)
values = st.one_of(
    st.just(orjson.dumps(GOOD)),
    mutated_events(),
    raw_tricks,
    st.binary(max_size=64),
    st.none(),
)
records = st.lists(
    st.tuples(
        values,
        st.sampled_from(["preds", "feats", "elsewhere"]),
        st.sampled_from([b"fraud", b"x", None]),
    ),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(records)
def test_every_record_is_one_row_or_one_dead_letter(drawn):
    batch = [
        Record(topic, 0, offset, key, value) for offset, (value, topic, key) in enumerate(drawn)
    ]
    out = Decoder(COLUMNS, ROLES, max_message_bytes=4096, max_features=256).decode(batch)

    row_offsets = [int(o) for b in out.batches for o in b.offsets.tolist()]
    dead_offsets = [letter.record.offset for letter in out.dead]
    assert sorted(row_offsets + dead_offsets) == list(range(len(batch)))
    assert all(letter.reason in REASONS for letter in out.dead)
    assert all(letter.detail for letter in out.dead)
    for decoded in out.batches:
        assert len(decoded.batch.ts) == len(decoded.offsets)
