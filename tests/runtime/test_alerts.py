import math
from dataclasses import replace

import numpy as np
import orjson
import pytest

from driftstream.core.findings import Finding
from driftstream.runtime.alerts import (
    ALERT_SCHEMA_VERSION,
    HEADER_DETAIL,
    MAX_DETAIL_BYTES,
    Source,
    alert_event,
    alert_id,
    dead_letter_headers,
    encode_alert,
    rfc3339,
)
from driftstream.runtime.decode import DeadLetter, Record

FINDING = Finding(
    kind="drift",
    model_id="fraud",
    model_version="v1",
    feature="amount",
    detector="window",
    statistic="psi",
    value=0.31,
    threshold=0.2,
    severity="critical",
    reference="baseline",
    window_start=1795323600.0,
    window_end=1795323660.5,
    window_count=5000,
    event_time=1795323660.5,
    row=4999,
)
SOURCE = Source("driftstream.predictions", 3, 81234)
FIELDS = {
    "alert_id",
    "kind",
    "severity",
    "model_id",
    "model_version",
    "segment",
    "feature",
    "detector",
    "statistic",
    "value",
    "threshold",
    "window",
    "source",
    "event_time",
    "details",
    "schema_version",
}


def event(finding=FINDING, **kwargs):
    options = {"role": "predictions", "source": SOURCE, "model_version": "v1", **kwargs}
    return alert_event(finding, **options)


def test_alert_id_is_deterministic_hex():
    first = alert_id(FINDING, "predictions", SOURCE)
    again = alert_id(replace(FINDING), "predictions", Source("driftstream.predictions", 3, 81234))
    assert first == again
    assert len(first) == 32 and int(first, 16) >= 0
    assert event()["alert_id"] == first


@pytest.mark.parametrize(
    "change",
    [
        {"model_id": "churn"},
        {"feature": "age"},
        {"detector": "adwin"},
        {"statistic": "js"},
        {"reference": "previous_window"},
        {"kind": "resolved"},
    ],
)
def test_alert_id_changes_with_each_identifying_field(change):
    assert alert_id(replace(FINDING, **change), "predictions", SOURCE) != alert_id(
        FINDING, "predictions", SOURCE
    )


def test_alert_id_changes_with_role_and_source():
    ids = {
        alert_id(FINDING, "predictions", SOURCE),
        alert_id(FINDING, "features", SOURCE),
        alert_id(FINDING, "predictions", replace(SOURCE, topic="other")),
        alert_id(FINDING, "predictions", replace(SOURCE, partition=4)),
        alert_id(FINDING, "predictions", replace(SOURCE, offset=81235)),
    }
    assert len(ids) == 5


def test_fields_are_not_confused_by_their_boundaries():
    # Naive concatenation would make these two identical.
    a = replace(FINDING, model_id="ab", feature="c")
    b = replace(FINDING, model_id="a", feature="bc")
    assert alert_id(a, "predictions", SOURCE) != alert_id(b, "predictions", SOURCE)


def test_alert_id_ignores_what_does_not_identify_the_trigger():
    changed = replace(FINDING, value=0.9, severity="warning", window_count=10, row=3)
    assert alert_id(changed, "predictions", SOURCE) == alert_id(FINDING, "predictions", SOURCE)


def test_alert_event_layout():
    got = event(segment={"region": "eu"})
    assert set(got) == FIELDS
    assert got["schema_version"] == ALERT_SCHEMA_VERSION == 1
    assert got["kind"] == "drift" and got["severity"] == "critical"
    assert (got["model_id"], got["model_version"], got["feature"]) == ("fraud", "v1", "amount")
    assert (got["detector"], got["statistic"]) == ("window", "psi")
    assert (got["value"], got["threshold"]) == (0.31, 0.2)
    assert got["segment"] == {"region": "eu"}
    assert got["window"] == {"start": 1795323600.0, "end": 1795323660.5, "count": 5000}
    assert got["source"] == {"topic": "driftstream.predictions", "partition": 3, "offset": 81234}
    assert got["event_time"] == 1795323660.5
    assert got["details"] == {
        "reference": "baseline",
        "role": "predictions",
        "event_time_rfc3339": "2026-11-22T05:01:00.500000Z",
    }


def test_model_version_comes_from_the_event_and_segment_defaults_to_empty():
    got = event(model_version="v2")
    assert got["model_version"] == "v2"
    assert got["segment"] == {}


def test_non_finite_numbers_become_null():
    nan = math.nan
    finding = replace(
        FINDING, value=nan, threshold=math.inf, window_start=nan, window_end=-math.inf,
        event_time=nan,
    )  # fmt: skip
    got = event(finding)
    assert got["value"] is None and got["threshold"] is None
    assert got["window"] == {"start": None, "end": None, "count": 5000}
    assert got["event_time"] is None
    assert got["details"]["event_time_rfc3339"] is None
    assert b"NaN" not in encode_alert(got)


def test_encoding_is_deterministic_and_round_trips():
    got = event()
    encoded = encode_alert(got)
    assert encoded == encode_alert(dict(reversed(list(got.items()))))
    assert orjson.loads(encoded) == got
    keys = list(orjson.loads(encoded))
    assert keys == sorted(keys)


def test_numpy_numbers_in_a_finding_encode_as_plain_json():
    finding = replace(FINDING, value=np.float64(0.5), window_count=np.int64(7))
    decoded = orjson.loads(encode_alert(event(finding)))
    assert decoded["value"] == 0.5 and decoded["window"]["count"] == 7


def test_rfc3339_out_of_range_is_none():
    assert rfc3339(1e20) is None
    assert rfc3339(0.0) == "1970-01-01T00:00:00Z"


def test_dead_letter_headers():
    record = Record("driftstream.predictions", 2, 77, b"fraud", b"{oops")
    letter = DeadLetter(record, "malformed_json", "not valid JSON: unexpected end")
    assert dead_letter_headers(letter) == [
        ("driftstream.dlq.reason", b"malformed_json"),
        ("driftstream.dlq.detail", b"not valid JSON: unexpected end"),
        ("driftstream.dlq.topic", b"driftstream.predictions"),
        ("driftstream.dlq.partition", b"2"),
        ("driftstream.dlq.offset", b"77"),
    ]


def test_a_long_detail_is_cut_on_a_character_boundary():
    record = Record("t", 0, 1, None, None)
    letter = DeadLetter(record, "wrong_type", "é" * MAX_DETAIL_BYTES)
    detail = dict(dead_letter_headers(letter))[HEADER_DETAIL]
    assert len(detail) <= MAX_DETAIL_BYTES
    assert detail.decode() == "é" * (MAX_DETAIL_BYTES // 2)
