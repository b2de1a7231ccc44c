import json
import math
from dataclasses import replace
from importlib import resources

import numpy as np
import orjson
import pytest
from jsonschema import Draft202012Validator

from driftstream.core.baseline import build_profile
from driftstream.core.batch import Batch
from driftstream.core.monitor import ModelMonitor, settings_from_baseline
from driftstream.runtime.alerts import Source, alert_event, encode_alert
from driftstream.runtime.decode import REASONS, Decoder, ModelColumns, Record

CONTRACTS = ("alert", "prediction", "feature", "label")


def schema(name):
    text = resources.files("driftstream.schemas").joinpath(f"{name}.schema.json").read_text()
    return json.loads(text)


def validator(name):
    return Draft202012Validator(schema(name))


def walk(node, path="#"):
    """Every (path, subschema) that declares properties."""
    if isinstance(node, dict):
        if "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}/{i}")


@pytest.mark.parametrize("name", CONTRACTS)
def test_schema_is_valid_draft_2020_12_and_documented(name):
    document = schema(name)
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"] == f"https://driftstream.dev/schemas/{name}/v1"
    assert document["description"]
    for path, node in walk(document):
        for prop, sub in node["properties"].items():
            assert sub.get("description"), f"{name}: {path}/properties/{prop} has no description"


def test_dead_letters_are_documented():
    text = resources.files("driftstream.schemas").joinpath("dead_letter.md").read_text()
    for reason in REASONS:
        assert f"`{reason}`" in text


# --- alerts from real findings ------------------------------------------------


@pytest.fixture(scope="module")
def findings():
    rng = np.random.default_rng(0)
    profile = build_profile(
        {"x": rng.normal(size=5000), "c": rng.choice(["a", "b"], size=5000)}, model_id="m"
    )
    monitor = ModelMonitor(settings_from_baseline(profile), profile)
    stable = {"x": rng.normal(size=4000), "c": rng.choice(["a", "b"], size=4000)}
    monitor.update(Batch(np.arange(4000.0), stable))
    drifted = {"x": rng.normal(loc=1.0, size=4000), "c": np.full(4000, "b", dtype=object)}
    found = monitor.update(Batch(1.8e9 + np.arange(4000.0), drifted))
    assert {f.detector for f in found} >= {"window", "adwin", "page_hinkley"}
    return found


def alerts_for(findings):
    return [
        alert_event(
            finding,
            role="predictions",
            source=Source("driftstream.predictions", 0, 1000 + finding.row),
            model_version="v1",
            segment={"region": "eu"} if i % 2 else None,
        )
        for i, finding in enumerate(findings)
    ]


def test_alerts_from_real_findings_match_the_schema(findings):
    check = validator("alert")
    for event in alerts_for(findings):
        check.validate(event)
        check.validate(orjson.loads(encode_alert(event)))


def test_resolved_and_non_finite_alerts_match_the_schema(findings):
    odd = replace(
        findings[0], kind="resolved", severity="info", value=math.nan, window_start=math.inf
    )
    event = orjson.loads(encode_alert(alerts_for([odd])[0]))
    assert event["value"] is None and event["window"]["start"] is None
    validator("alert").validate(event)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda e: e.update(extra=1),
        lambda e: e.pop("alert_id"),
        lambda e: e.update(alert_id="not-hex"),
        lambda e: e.update(kind="panic"),
        lambda e: e.update(schema_version=2),
        lambda e: e["window"].update(count=-1),
        lambda e: e["window"].update(size=3),
        lambda e: e["source"].pop("offset"),
        lambda e: e.update(value="high"),
        lambda e: e.update(segment={"region": 1}),
        lambda e: e["details"].update(role="outputs"),
    ],
)
def test_spoiled_alerts_fail(findings, spoil):
    event = alerts_for(findings[:1])[0]
    spoil(event)
    assert not validator("alert").is_valid(event)


# --- input events -------------------------------------------------------------

PREDICTION = {
    "event_id": "9b2f",
    "model_id": "fraud",
    "model_version": "2026.11.1",
    "ts": "2026-11-22T05:00:00.250+01:00",
    "features": {"amount": 12.5, "country": "DE", "is_vip": True, "age": None},
    "prediction": "ok",
    "score": 0.12,
    "segment": {"region": "eu"},
}
FEATURES = {k: v for k, v in PREDICTION.items() if k not in ("prediction", "score")}
LABEL = {"event_id": "9b2f", "model_id": "fraud", "ts": 1795323600, "label": "fraud"}

GOOD = [
    ("prediction", PREDICTION),
    ("prediction", {**PREDICTION, "ts": 1795323600.5, "prediction": 3, "score": None}),
    ("prediction", {k: v for k, v in PREDICTION.items() if k not in ("score", "segment")}),
    ("prediction", {**PREDICTION, "unknown_field": [1, 2]}),
    ("feature", FEATURES),
    ("feature", {**FEATURES, "ts": "2026-11-22T05:00:00Z", "segment": None}),
    ("label", LABEL),
    ("label", {**LABEL, "label": 1.0, "ts": "2026-11-22T05:00:00Z"}),
    ("label", {**LABEL, "label": True}),
]
BAD = [
    ("prediction", {k: v for k, v in PREDICTION.items() if k != "prediction"}),
    ("prediction", {k: v for k, v in PREDICTION.items() if k != "model_version"}),
    ("prediction", {**PREDICTION, "prediction": None}),
    ("prediction", {**PREDICTION, "prediction": True}),
    ("prediction", {**PREDICTION, "score": "high"}),
    ("prediction", {**PREDICTION, "ts": "2026-11-22T05:00:00"}),
    ("prediction", {**PREDICTION, "ts": -1}),
    ("prediction", {**PREDICTION, "ts": 1795323600000}),
    ("prediction", {**PREDICTION, "features": [1, 2]}),
    ("prediction", {**PREDICTION, "features": {"amount": {"usd": 1}}}),
    ("prediction", {**PREDICTION, "segment": {"region": 3}}),
    ("prediction", {**PREDICTION, "event_id": 7}),
    ("prediction", {**PREDICTION, "model_id": ""}),
    ("prediction", {**PREDICTION, "features": {f"f{i}": 1 for i in range(257)}}),
    ("prediction", {**PREDICTION, "model_version": "v" * 129}),
    ("feature", {**FEATURES, "model_version": "v" * 129}),
    ("feature", {k: v for k, v in FEATURES.items() if k != "features"}),
    ("label", {k: v for k, v in LABEL.items() if k != "label"}),
    ("label", {**LABEL, "label": None}),
    ("label", {**LABEL, "ts": "soon"}),
]


@pytest.mark.parametrize(("name", "example"), GOOD)
def test_good_examples_pass(name, example):
    validator(name).validate(example)


@pytest.mark.parametrize(("name", "example"), BAD)
def test_bad_examples_fail(name, example):
    assert not validator(name).is_valid(example)


DECODER = Decoder(
    {"fraud": ModelColumns(("amount", "age"), ("country", "is_vip"), "categorical", True)},
    {"preds": "predictions", "feats": "features"},
)
TOPICS = {"prediction": "preds", "feature": "feats"}


@pytest.mark.parametrize(("name", "example"), [case for case in GOOD if case[0] != "label"])
def test_the_decoder_accepts_what_the_schema_accepts(name, example):
    record = Record(TOPICS[name], 0, 0, b"fraud", orjson.dumps(example))
    out = DECODER.decode([record])
    assert out.dead == []
    assert len(out.batches) == 1


@pytest.mark.parametrize(("name", "example"), [case for case in BAD if case[0] != "label"])
def test_the_decoder_refuses_what_the_schema_refuses(name, example):
    record = Record(TOPICS[name], 0, 0, b"fraud", orjson.dumps(example))
    out = DECODER.decode([record])
    assert out.batches == []
    assert len(out.dead) == 1
